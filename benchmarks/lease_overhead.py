"""What at-least-once delivery costs: the kit's worker with and without leases.

Leases (the kit's ``leases/``) change three things per job: the dequeue becomes a
script that moves the message into the worker's lease list and reads the
job's revoke flags (so Huey's own check needs no round trip), instead of
``BRPOP`` and ``HMGET``; the lease is released (``LREM``, ``HDEL``, and the
run's revoke flag that Huey would delete on its own) inside the job
history's last write of the run; and a heartbeat thread per worker process
renews the registration and checks its leases every ``LEASE_HEARTBEAT``
seconds. This script measures the sum: with leases off, the worker makes
Huey's own round trips.

Each round queues N no-op jobs (a ~200-byte payload; the body is one Redis
INCR), starts the kit's worker (``python -m <slug>.worker``) and times the
drain from inside the jobs: once with ``LEASES_ENABLED`` on (the default),
once with it off, the order alternating. Everything else is the same: the
app, the history store, the flags. Prints per-round numbers, the medians,
and the median of the per-round ratios.

    python benchmarks/lease_overhead.py [--n 20000] [--rounds 5] [--quiet]
"""

from __future__ import annotations

import argparse

import _common as c
from throughput import FLAGS, kit_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--quiet", action="store_true", help="workers log at WARNING (-q)"
    )
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a median of fewer means little here")

    c.banner(
        "Lease overhead: the kit's worker with and without leases",
        "huey",
        "redis",
        "flask",
    )
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    logs = c.workdir("bench-logs")

    import redis

    conn = redis.Redis.from_url(url)

    from bench_jobs import create_app
    from bench_jobs.kit import enqueue

    app = create_app({"REDIS_URL": url, "QUEUE_NAME": "kit"})

    def enqueue_kit(n: int) -> None:
        with app.app_context():
            for _ in range(n):
                enqueue("benchNoop", c.PAYLOAD)

    flags = [*FLAGS, "-q"] if args.quiet else FLAGS
    argv = kit_worker(project, flags)
    base = {"BENCH_REDIS_URL": url, "REDIS_URL": url, "FLASK_QUEUE_NAME": "kit"}
    configs = {
        "leases on": project.env(**base, FLASK_LEASES_ENABLED="true"),
        "leases off": project.env(**base, FLASK_LEASES_ENABLED="false"),
    }
    results: dict[str, list[c.Drain]] = {name: [] for name in configs}
    worker = " ".join(argv[1:])
    print(f"N = {args.n:,} jobs per run, {args.rounds} rounds, worker: {worker}\n")
    for round_no in range(args.rounds):
        order = list(configs) if round_no % 2 == 0 else list(reversed(configs))
        for name in order:
            log = logs / f"{name.replace(' ', '-')}.log"
            drain = c.e2e_round(
                conn, args.n, enqueue_kit, argv, configs[name], project.root, log
            )
            results[name].append(drain)
            print(
                f"round {round_no + 1} {name:<10} steady {drain.steady:7.0f} jobs/s"
                f"  worker cpu {drain.worker_cpu_us:5.0f} us/job"
                f"  redis cmds/job {drain.commands:4.1f}",
                flush=True,
            )

    print()
    rows = []
    for name, runs in results.items():
        rows.append(
            [
                name,
                c.fmt(c.median(d.steady for d in runs)),
                ", ".join(c.fmt(d.steady) for d in runs),
                c.fmt(c.median(d.worker_cpu_us for d in runs)),
                c.fmt(c.median(d.redis_cores for d in runs), 2),
                c.fmt(c.median(d.commands for d in runs), 1),
            ]
        )
    headers = [
        "config",
        "steady jobs/s (median)",
        "rounds",
        "worker CPU µs/job",
        "redis cores",
    ]
    print(c.table([*headers, "Redis cmds/job"], rows))

    on, off = results["leases on"], results["leases off"]
    ratios = [a.steady / b.steady for a, b in zip(on, off, strict=True)]
    print(
        "\nleases on / leases off, median of per-round ratios:"
        f" **{c.median(ratios):.3f}**"
        f" (rounds {', '.join(f'{r:.3f}' for r in ratios)});"
        f" cost {100 * (1 - c.median(ratios)):.1f}% of throughput"
    )
    print("\nRedis commands per job (median round):")
    for name, runs in results.items():
        middle = sorted(runs, key=lambda d: d.steady)[len(runs) // 2]
        shown = ", ".join(
            f"{cmd} {calls:.2f}" for cmd, calls in middle.by_command.items()
        )
        print(f"- {name}: {shown}")


if __name__ == "__main__":
    main()
