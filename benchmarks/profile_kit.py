"""Where the kit's time goes, per job: enqueue, dispatch and execution.

Runs each path in this one process, with one thread, on a private Redis,
for the kit and for the bare equivalent:

* enqueue: the kit's ``enqueue()`` against calling a bare Huey task;
* dispatch: ``POST /jobs/jobModelo`` through Flask's test client, the kit's
  app against the minimal app of ``http_dispatch.py`` (the test client's own
  cost is the same on both sides);
* execute: what a worker does per job (``dequeue()`` then ``execute()``,
  after the worker start-up hooks), the kit's Huey against bare Huey.

For each it prints the wall time and Redis round trips per job measured
without a profiler, then cProfile's self time per job grouped by where the
code lives (kit modules, huey, redis-py, marshmallow, Flask, socket calls,
...). cProfile inflates Python-heavy code, so read the groups as shares.

    python benchmarks/profile_kit.py [--n 3000]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import time

import _common as c

ROUND_TRIPS = collections.Counter()


def count_round_trips() -> None:
    """Count what redis-py sends: one call per command or per pipeline."""
    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        ROUND_TRIPS["sent"] += 1
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = counted


PACKAGE_DIR = ""  # the baked package's directory, set in main()


def area(filename: str, function: str) -> str:
    if filename.startswith(PACKAGE_DIR):
        rest = filename[len(PACKAGE_DIR) :]
        if rest.startswith("jobs/bench_jobs"):
            return "benchmark task body / app"
        # The kit's part: kit/history/..., kit/queue.py, ... -> "history", "queue".
        part = rest.removeprefix("kit/").split("/")[0].removesuffix(".py")
        return f"kit: {part}"
    if "bench_body" in filename or "bare_huey" in filename or "minimal_app" in filename:
        return "benchmark task body / app"
    for package in (
        "huey",
        "redis",
        "marshmallow",
        "flask",
        "werkzeug",
        "prometheus_client",
    ):
        if f"/site-packages/{package}/" in filename:
            return "redis-py" if package == "redis" else package
    if filename == "~":
        if "socket" in function or "select" in function or "poll" in function:
            return "socket I/O (system calls)"
        if "json" in function or "pickle" in function:
            return "json/pickle (C)"
        return "other built-ins"
    for module in ("json", "logging", "uuid", "threading", "contextlib", "socket"):
        if f"/{module}/" in filename or filename.endswith(f"/{module}.py"):
            return f"stdlib {module}"
    return "other Python"


# The kit's functions with the most cumulative time in the last profile:
# (function, µs per job, calls per job).
LAST_TOP: list[tuple[str, float, float]] = []


def profile(fn, n: int, setup=None) -> tuple[float, float, dict[str, float]]:
    """Run ``fn(n)`` plainly, then under cProfile; µs/job, trips/job, areas.

    ``setup(n)``, if given, runs untimed before each of the two runs.
    """
    if setup:
        setup(n)
    ROUND_TRIPS.clear()
    started = time.perf_counter()
    fn(n)
    wall = (time.perf_counter() - started) / n * 1e6
    trips = ROUND_TRIPS["sent"] / n
    if setup:
        setup(n)
    profiler = cProfile.Profile()
    profiler.enable()
    fn(n)
    profiler.disable()
    areas: dict[str, float] = collections.defaultdict(float)
    kit_functions = []
    stats = pstats.Stats(profiler).stats
    for (filename, line, function), (_, calls, tottime, cumtime, _) in stats.items():
        areas[area(filename, function)] += tottime / n * 1e6
        if filename.startswith(PACKAGE_DIR):
            name = f"{filename[len(PACKAGE_DIR) :]}:{line} {function}"
            kit_functions.append((name, cumtime / n * 1e6, calls / n))
    LAST_TOP[:] = sorted(kit_functions, key=lambda item: -item[1])[:12]
    return wall, trips, areas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    n = args.n

    c.banner(
        "Profile: the kit's costs per job", "huey", "redis", "flask", "marshmallow"
    )
    project = c.generate_project()
    project.import_path()
    global PACKAGE_DIR
    PACKAGE_DIR = f"{project.root / c.SLUG}/"
    url = c.start_redis()
    count_round_trips()

    import redis

    conn = redis.Redis.from_url(url)
    import bare_huey
    import minimal_app
    from bench_jobs import create_app
    from bench_jobs.kit import enqueue

    app = create_app(
        {
            "REDIS_URL": url,
            "QUEUE_NAME": "kit",
            "SECRET_KEY": "bench",
            "JOBS_API_KEYS": c.API_KEYS,
        }
    )
    kit_huey = app.extensions["jobkit"].huey
    body = {"nome": "João", "idade": 30}

    def kit_enqueue(k: int) -> None:
        with app.app_context():
            for _ in range(k):
                enqueue("benchNoop", c.PAYLOAD)

    def bare_enqueue(k: int) -> None:
        for _ in range(k):
            bare_huey.noop(c.PAYLOAD)

    kit_client = app.test_client()
    minimal_client = minimal_app.app.test_client()

    def kit_dispatch(k: int) -> None:
        for _ in range(k):
            response = kit_client.post("/jobs/jobModelo", json=body, headers=c.AUTH)
            assert response.status_code == 202

    def minimal_dispatch(k: int) -> None:
        for _ in range(k):
            response = minimal_client.post("/jobs/jobModelo", json=body, headers=c.AUTH)
            assert response.status_code == 202

    def worker(huey):
        for hook in huey._startup.values():  # what each worker runs first
            hook()

        def run(k: int) -> None:
            for _ in range(k):
                huey.execute(huey.dequeue())

        return run

    results = {}
    top = {}
    phases = (
        ("enqueue", kit_enqueue, bare_enqueue, None, None),
        ("dispatch (test client)", kit_dispatch, minimal_dispatch, None, None),
        (
            "execute",
            worker(kit_huey),
            worker(bare_huey.huey),
            kit_enqueue,
            bare_enqueue,
        ),
    )
    for phase, kit_fn, bare_fn, kit_setup, bare_setup in phases:
        for who, fn, setup in (
            ("kit", kit_fn, kit_setup),
            ("bare", bare_fn, bare_setup),
        ):
            conn.flushdb()
            if setup:
                setup(min(200, n))
            fn(min(200, n))  # warm-up
            conn.flushdb()
            results[phase, who] = profile(fn, n, setup)
            if who == "kit":
                top[phase] = list(LAST_TOP)
            print(
                f"{phase:<24} {who:<5} {results[phase, who][0]:7.0f} µs/job", flush=True
            )

    print()
    summary = []
    for phase in ("enqueue", "dispatch (test client)", "execute"):
        kit, bare = results[phase, "kit"], results[phase, "bare"]
        summary.append(
            [
                phase,
                c.fmt(kit[0]),
                c.fmt(bare[0]),
                f"{bare[0] / kit[0]:.2f}",
                c.fmt(kit[1], 1),
                c.fmt(bare[1], 1),
            ]
        )
    headers = [
        "path",
        "kit µs/job",
        "bare µs/job",
        "bare / kit",
        "kit trips",
        "bare trips",
    ]
    print(c.table(headers, summary))
    for phase in ("enqueue", "dispatch (test client)", "execute"):
        kit, bare = results[phase, "kit"][2], results[phase, "bare"][2]
        names = sorted(
            set(kit) | set(bare), key=lambda a: -(kit.get(a, 0) - bare.get(a, 0))
        )
        rows = [
            [
                name,
                c.fmt(kit.get(name, 0)),
                c.fmt(bare.get(name, 0)),
                c.fmt(kit.get(name, 0) - bare.get(name, 0)),
            ]
            for name in names
            if abs(kit.get(name, 0)) >= 1 or abs(bare.get(name, 0)) >= 1
        ]
        rows.append(["total", c.fmt(sum(kit.values())), c.fmt(sum(bare.values())), ""])
        print(
            f"\n### {phase}: cProfile self time per job (µs), by where the code lives\n"
        )
        print(c.table(["area", "kit", "bare", "kit - bare"], rows))
        print(f"\nKit functions with the most cumulative time per job ({phase}):\n")
        functions = [
            [f"`{name}`", c.fmt(cum), c.fmt(calls, 1)]
            for name, cum, calls in top[phase]
        ]
        print(c.table(["function", "µs/job (cumulative)", "calls/job"], functions))


if __name__ == "__main__":
    main()
    c.finish()
