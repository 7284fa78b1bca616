"""Enqueue-to-start latency on Redis and on SQLite, with the recommended flags.

A worker is started and warmed up. Then, many times: stamp ``time.time()``
into a payload, queue the probe job, and wait for the job to report
``time.time() - stamp`` from its first line; sleep U(0, 20 ms) before the
next. The producer's queueing call is part of that time; the enqueue
columns show how long it took on its own. After that, a few probes follow
U(1.5, 4.5) s of idleness each (the randomised gap keeps them from
phase-locking with the SQLite poller's backoff). On SQLite the kit's
workers sleep on a wake-up socket that each dispatch on this host rings
(``kit/wakeup.py``), so its idle column measures that wake-up; bare Huey
sleeps out its backoff. Bare Huey with the same flags is measured alongside
as the reference, in the same rounds.
Percentiles are medians over rounds; the idle column pools the idle probes
of every round.

    python benchmarks/latency.py [--samples 500] [--rounds 3] [--idle 4]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import _common as c
from throughput import FLAGS, kit_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=4, help="idle probes per round")
    args = parser.parse_args()

    c.banner("Enqueue-to-start latency", "huey", "redis", "flask")
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    data = c.workdir("bench-sqlite")
    logs = c.workdir("bench-logs")

    import redis

    conn = redis.Redis.from_url(url)

    import bare_huey
    from bench_jobs import create_app
    from bench_jobs.kit import enqueue

    kit_sqlite = str(data / "kit.sqlite3")
    bare_sqlite = str(data / "bare.sqlite3")
    kit_apps = {
        "redis": create_app(
            {"REDIS_URL": url, "QUEUE_NAME": "kit", "SECRET_KEY": "bench"}
        ),
        "sqlite": create_app(
            {
                "REDIS_URL": None,
                "SQLITE_PATH": kit_sqlite,
                "QUEUE_NAME": "kit",
                "SECRET_KEY": "x",
            }
        ),
    }
    bare_probes = {
        "redis": bare_huey.latency_probe,
        "sqlite": bare_huey.build(bare_sqlite)[2],
    }

    def kit_sender(backend: str):
        app = kit_apps[backend]

        def send() -> None:
            with app.app_context():
                enqueue("benchProbe", {"ts": time.time()})

        return send

    def bare_sender(backend: str):
        probe = bare_probes[backend]
        return lambda: probe({"ts": time.time()})

    kit, bare = kit_worker(project, FLAGS), c.huey_consumer("bare_huey.huey", FLAGS)
    kit_env = project.env(BENCH_REDIS_URL=url, FLASK_QUEUE_NAME="kit")
    bare_env = project.env(BENCH_REDIS_URL=url)
    configs = [
        ("kit redis", kit_sender("redis"), kit, dict(kit_env, REDIS_URL=url)),
        ("kit sqlite", kit_sender("sqlite"), kit,
         dict(kit_env, FLASK_SQLITE_PATH=json.dumps(kit_sqlite))),
        ("bare redis", bare_sender("redis"), bare, bare_env),
        ("bare sqlite", bare_sender("sqlite"), bare,
         dict(bare_env, BENCH_SQLITE=bare_sqlite)),
    ]  # fmt: skip

    sent_in: list[float] = []  # how long each send() took, ms: the producer's part

    def measure(send) -> float:
        start = time.perf_counter()
        send()
        sent_in.append((time.perf_counter() - start) * 1000)
        reply = conn.blpop(["bench:lat"], timeout=30)
        if reply is None:
            raise RuntimeError("a probe never started")
        return float(reply[1]) * 1000

    results: dict[str, dict[str, list]] = {
        name: {"p50": [], "p95": [], "p99": [], "max": [], "idle": [], "send": []}
        for name, *_ in configs
    }
    print(f"{args.samples} probes + {args.idle} idle probes per round", end="")
    print(f", {args.rounds} rounds\n")
    for round_no in range(args.rounds):
        shift = round_no % len(configs)
        for name, send, argv, env in configs[shift:] + configs[:shift]:
            conn.flushdb()
            worker = c.spawn(argv, env, project.root, logs / f"{name}.log")
            try:
                for _ in range(20):  # warm-up: imports, connections, first polls
                    measure(send)
                samples = []
                sent_in.clear()
                for _ in range(args.samples):
                    samples.append(measure(send))
                    time.sleep(random.uniform(0, 0.02))
                idle = []
                for _ in range(args.idle):
                    time.sleep(random.uniform(1.5, 4.5))
                    idle.append(measure(send))
            finally:
                c.stop(worker)
            cell = results[name]
            for key, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
                cell[key].append(c.percentile(samples, fraction))
            cell["max"].append(max(samples))
            cell["send"].append(
                (c.percentile(sent_in, 0.5), c.percentile(sent_in, 0.95))
            )
            cell["idle"].extend(idle)
            print(
                f"round {round_no + 1} {name:<12} p50 {cell['p50'][-1]:6.2f} ms"
                f"  p95 {cell['p95'][-1]:6.2f}  p99 {cell['p99'][-1]:6.2f}"
                f"  idle {', '.join(f'{v:.0f}' for v in idle)} ms"
                "  (enqueue p50 {:.2f} p95 {:.2f})".format(*cell["send"][-1]),
                flush=True,
            )

    print()
    rows = []
    for name, *_ in configs:
        cell = results[name]
        rows.append(
            [
                name,
                c.fmt(c.median(cell["p50"]), 2),
                c.fmt(c.median(cell["p95"]), 2),
                c.fmt(c.median(cell["p99"]), 2),
                c.fmt(max(cell["max"]), 1),
                f"{c.fmt(c.median(cell['idle']), 1)} / {c.fmt(max(cell['idle']), 1)}",
                c.fmt(c.median(p50 for p50, _ in cell["send"]), 2),
                c.fmt(c.median(p95 for _, p95 in cell["send"]), 2),
            ]
        )
    print(f"Worker flags (both sides): {' '.join(FLAGS)}\n")
    headers = [
        "config",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "after 1.5-4.5 s idle: median / max ms",
        "enqueue p50 ms",
        "enqueue p95 ms",
    ]
    print(c.table(headers, rows))
    print()
    ratio_rows = []
    for backend in ("redis", "sqlite"):
        kit, bare = results[f"kit {backend}"], results[f"bare {backend}"]
        ratio_rows.append(
            [backend]
            + [
                f"{c.median(k / b for k, b in zip(kit[k_], bare[k_], strict=True)):.2f}"
                for k_ in ("p50", "p95", "p99")
            ]
        )
    print(
        c.table(
            ["backend", "kit / bare p50", "kit / bare p95", "kit / bare p99"],
            ratio_rows,
        )
    )


if __name__ == "__main__":
    main()
    c.finish()
