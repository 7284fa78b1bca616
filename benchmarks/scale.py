"""Scale-out: jobs/s with more workers and machines, and where one Redis saturates.

Each round queues N no-op jobs (the body is one Redis INCR), then starts
the workers all at once and times the drain from inside the jobs, for the
kit's worker and for bare Huey with the same flags:

* 1, 2 and 4 consumer processes on this machine, each with one process
  worker (``--workers 1``);
* 1, 2 and 3 "machines": each a UTS namespace with a hostname of its own
  (``unshare --uts``, as root; the kit names its workers by hostname), with
  one consumer of two process workers, as kit_tests/test_many_hosts.py runs
  them. Without root, the machines are plain process groups, and the table
  says so.

For each it reads redis-server's CPU (``INFO cpu``, user + system) and
command counts before the enqueue and after the drain, and prints Redis CPU
per job (enqueue, run, history: everything a job costs Redis) and the
extrapolated ceiling: jobs/s one Redis core could serve at that cost. Redis
runs commands on one thread, so that is the throughput where one Redis
saturates, however many workers and machines are added.

    python benchmarks/scale.py [--n 10000] [--rounds 3]
        [--consumers 1,2,4] [--machines 1,2,3]

On a machine with few cores the workers, the driver and Redis compete for
them: jobs/s stops growing at the core count, while the CPU per job (and so
the per-core ceiling) stays meaningful.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import _common as c
from throughput import FLAGS, kit_worker, with_workers

# Commands the driver sends, not the jobs.
DRIVER_COMMANDS = ("get", "info", "mget", "flushdb", "commandstats")


@dataclass
class Result:
    jobs_per_s: float
    redis_us_per_job: float
    commands_per_job: float
    redis_cores: float  # of the drain: Redis CPU seconds per wall second

    @property
    def per_core(self) -> float:
        """Jobs/s one fully busy Redis core would serve at this cost."""
        cost = self.redis_us_per_job
        return 1e6 / cost if cost > 0 else float("nan")


def can_unshare() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = ["unshare", "--uts", "hostname", "probe"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def on_machine(host: str, argv: Sequence[str], namespaces: bool) -> list[str]:
    """``argv`` run under its own hostname, when UTS namespaces are allowed."""
    if not namespaces:
        return list(argv)
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host, *argv]


def drain(
    conn,
    n: int,
    enqueue: Callable[[int], None],
    commands: list[list[str]],
    env: dict[str, str],
    project: c.Project,
    logs,
    timeout: float = 600,
) -> Result:
    """Queue ``n`` jobs, start every worker command at once, wait for the drain."""
    conn.flushdb()
    calls0, cpu0 = c.redis_counters(conn)
    enqueue(n)
    env = dict(env, BENCH_N=str(n))
    processes = [
        c.spawn(argv, env, project.root, logs / f"worker{i}.log")
        for i, argv in enumerate(commands)
    ]
    try:
        deadline = time.monotonic() + timeout
        while int(conn.get("bench:count") or 0) < n:
            if time.monotonic() > deadline:
                ran = int(conn.get("bench:count") or 0)
                raise RuntimeError(f"only {ran} of {n} jobs ran; see {logs}")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a worker exited early; see {logs}")
            time.sleep(0.05)
        calls1, cpu1 = c.redis_counters(conn)
    finally:
        for process in processes:
            c.stop(process)
    first, last = c.read_drain(conn)
    # Commands run inside Lua scripts count too (INFO commandstats does).
    calls = sum(
        calls1.get(name, 0) - calls0.get(name, 0)
        for name in calls1
        if name not in DRIVER_COMMANDS
    )
    return Result(
        jobs_per_s=(n - 1) / (last - first) if last > first else float("nan"),
        redis_us_per_job=(cpu1 - cpu0) / n * 1e6,
        commands_per_job=calls / n,
        # Redis' CPU includes the enqueue: over the drain alone, an upper bound.
        redis_cores=(cpu1 - cpu0) / (last - first) if last > first else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="jobs per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--consumers", default="1,2,4")
    parser.add_argument("--machines", default="1,2,3")
    args = parser.parse_args()
    namespaces = can_unshare()

    c.banner("Scale-out: consumers and machines, kit vs bare Huey", "huey", "redis")
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    logs = c.workdir("bench-logs")

    import redis

    conn = redis.Redis.from_url(url)
    env = project.env(BENCH_REDIS_URL=url, REDIS_URL=url, FLASK_QUEUE_NAME="kit")

    _, enqueue_kit, enqueue_bare = c.producers(url)

    def worker(side: str, workers: str) -> list[str]:
        flags = [*with_workers(FLAGS, workers), "-q"]
        if side == "kit":
            return kit_worker(project, flags)
        return c.huey_consumer("bare_huey.huey", flags)

    layouts = []  # (label, side, commands)
    for count in (int(x) for x in args.consumers.split(",")):
        for side in ("kit", "bare"):
            commands = [worker(side, "1") for _ in range(count)]
            layouts.append((f"{count} consumer(s), 1 worker each", side, commands))
    for count in (int(x) for x in args.machines.split(",")):
        for side in ("kit", "bare"):
            commands = [
                on_machine(f"machine-{i + 1}", worker(side, "2"), namespaces)
                for i in range(count)
            ]
            layouts.append((f"{count} machine(s), 2 workers each", side, commands))

    print(
        f"N = {args.n:,} jobs per run, {args.rounds} round(s), Redis {url}, "
        f"machines as {'UTS namespaces' if namespaces else 'process groups'}\n",
        flush=True,
    )
    results: dict[tuple[str, str], list[Result]] = {}
    for round_no in range(args.rounds):
        for label, side, commands in layouts:
            enqueue_fn = enqueue_kit if side == "kit" else enqueue_bare
            result = drain(conn, args.n, enqueue_fn, commands, env, project, logs)
            results.setdefault((label, side), []).append(result)
            print(
                f"round {round_no + 1} {label:<30} {side:<4}"
                f" {result.jobs_per_s:7.0f} jobs/s"
                f"  redis {result.redis_us_per_job:5.0f} µs/job"
                f"  {result.commands_per_job:4.1f} cmds/job",
                flush=True,
            )

    print()
    rows = []
    for label, _, _ in layouts[::2]:
        kit, bare = results[(label, "kit")], results[(label, "bare")]

        def med(runs: list[Result], attr: str) -> float:
            return c.median(getattr(r, attr) for r in runs)

        rows.append(
            [
                label,
                c.fmt(med(kit, "jobs_per_s")),
                c.fmt(med(bare, "jobs_per_s")),
                f"{med(kit, 'jobs_per_s') / med(bare, 'jobs_per_s'):.2f}",
                c.fmt(med(kit, "redis_us_per_job")),
                c.fmt(med(bare, "redis_us_per_job")),
                c.fmt(med(kit, "commands_per_job"), 1),
                c.fmt(med(bare, "commands_per_job"), 1),
                c.fmt(med(kit, "per_core")),
                c.fmt(med(bare, "per_core")),
            ]
        )
    headers = [
        "layout",
        "kit jobs/s",
        "bare jobs/s",
        "kit / bare",
        "kit Redis µs/job",
        "bare Redis µs/job",
        "kit cmds/job",
        "bare cmds/job",
        "kit jobs/s per Redis core",
        "bare jobs/s per Redis core",
    ]
    print(c.table(headers, rows))


if __name__ == "__main__":
    main()
    c.finish()
