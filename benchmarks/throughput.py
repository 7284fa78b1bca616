"""End-to-end throughput: the kit's worker against bare Huey on the same Redis.

Each round queues N no-op jobs (a ~200-byte payload; the body is one Redis
INCR), starts one worker and times the drain from inside the jobs, for each
configuration in turn, the order rotating every round. A pair is the kit's
worker (its app, history store, metrics and whatever else it runs per job)
and bare Huey (``RedisHuey`` with its defaults) with the same flags; the
"-q" pair repeats both at WARNING level, so log output is the same on both
sides of each pair. Ratios are medians of per-round ratios.

    python benchmarks/throughput.py [--n 20000] [--rounds 5] [--pairs default,quiet]
        [--workers 2] [--three-queues]

``--three-queues`` adds "kit 3 queues": the kit's worker with the first
pair's flags serving ``critical=6,default=3,low=1``, the jobs spread evenly
over the three named queues, against the one-queue "kit" run of that pair.
"""

from __future__ import annotations

import argparse
import sys

import _common as c

# The kit's recommended worker settings, spelled out so that bare Huey gets
# exactly the same ones.
FLAGS = [
    "--worker-type",
    "process",
    "--workers",
    "2",
    "--delay",
    "0.01",
    "--max-delay",
    "0.25",
]
PAIRS = {"default": FLAGS, "quiet": [*FLAGS, "-q"]}
QUEUES = ("critical", "default", "low")


def with_workers(flags: list[str], workers: str) -> list[str]:
    changed = list(flags)
    changed[changed.index("--workers") + 1] = workers
    return changed


def kit_worker(project: c.Project, flags: list[str]) -> list[str]:
    """``python -m <slug>.worker`` when the kit has its own entry point."""
    worker = (project.root / c.SLUG / "worker.py").read_text()
    if '__name__ == "__main__"' in worker:
        return [sys.executable, "-m", f"{c.SLUG}.worker", *flags]
    return c.huey_consumer(f"{c.SLUG}.worker.huey", flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", default="default,quiet")
    parser.add_argument(
        "--workers", default="2", help="worker processes, on both sides"
    )
    parser.add_argument("--three-queues", action="store_true")
    args = parser.parse_args()
    pairs = args.pairs.split(",")
    flags_of = {
        pair: with_workers(flags, args.workers) for pair, flags in PAIRS.items()
    }

    c.banner("Throughput: the kit's worker vs bare Huey", "huey", "redis", "flask")
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    logs = c.workdir("bench-logs")

    import redis

    conn = redis.Redis.from_url(url)
    env = project.env(BENCH_REDIS_URL=url, REDIS_URL=url, FLASK_QUEUE_NAME="kit")

    from bench_jobs.kit import enqueue

    app, enqueue_kit, enqueue_bare = c.producers(url)

    def enqueue_three(n: int) -> None:
        with app.app_context():
            for i in range(n):
                enqueue("benchNoop", c.PAYLOAD, queue=QUEUES[i % 3])

    configs = []
    for pair in pairs:
        flags = flags_of[pair]
        configs.append((f"kit {pair}", enqueue_kit, kit_worker(project, flags), flags))
        bare = c.huey_consumer("bare_huey.huey", flags)
        configs.append((f"bare {pair}", enqueue_bare, bare, flags))
    if args.three_queues:
        flags = [*flags_of[pairs[0]], "--queues", "critical=6,default=3,low=1"]
        worker = kit_worker(project, flags)
        configs.append(("kit 3 queues", enqueue_three, worker, flags))

    results: dict[str, list[c.Drain]] = {name: [] for name, *_ in configs}
    print(
        f"N = {args.n:,} jobs per run, {args.rounds} rounds, Redis {url}\n", flush=True
    )
    for round_no in range(args.rounds):
        shift = round_no % len(configs)
        for name, enqueue_fn, argv, _ in configs[shift:] + configs[:shift]:
            drain = c.e2e_round(
                conn, args.n, enqueue_fn, argv, env, project.root, logs / f"{name}.log"
            )
            results[name].append(drain)
            print(
                f"round {round_no + 1} {name:<13} steady {drain.steady:7.0f}/s"
                f"  enqueue {drain.enqueue_rate:6.0f}/s"
                f"  cpu {drain.worker_cpu_us:5.0f} us/job"
                f"  redis cmds/job {drain.commands:4.1f}",
                flush=True,
            )

    print()
    rows = []
    for name, _, _, flags in configs:
        runs = results[name]
        rows.append(
            [
                name,
                " ".join(flags),
                c.fmt(c.median(d.steady for d in runs)),
                ", ".join(c.fmt(d.steady) for d in runs),
                c.fmt(c.median(d.wall for d in runs)),
                c.fmt(c.median(d.enqueue_rate for d in runs)),
                c.fmt(c.median(d.worker_cpu_us for d in runs)),
                c.fmt(c.median(d.worker_cores for d in runs), 2),
                c.fmt(c.median(d.redis_cores for d in runs), 2),
                c.fmt(c.median(d.commands for d in runs), 1),
            ]
        )
    headers = [
        "config",
        "worker flags",
        "steady jobs/s (median)",
        "rounds",
        "wall jobs/s",
        "enqueue jobs/s",
        "worker CPU µs/job",
        "worker cores",
        "redis cores",
        "Redis cmds/job",
    ]
    print(c.table(headers, rows))
    print()
    ratio_rows = []
    for pair in pairs:
        kit, bare = results[f"kit {pair}"], results[f"bare {pair}"]
        drain_ratios = [k.steady / b.steady for k, b in zip(kit, bare, strict=True)]
        enqueue_ratios = [
            k.enqueue_rate / b.enqueue_rate for k, b in zip(kit, bare, strict=True)
        ]
        ratio_rows.append(
            [
                pair,
                f"**{c.median(drain_ratios):.2f}**",
                f"{min(drain_ratios):.2f}-{max(drain_ratios):.2f}",
                f"{c.median(enqueue_ratios):.2f}",
                "yes" if c.median(drain_ratios) >= 0.85 else "no",
            ]
        )
    print(
        c.table(
            [
                "pair",
                "kit / bare drain (median of rounds)",
                "range",
                "kit / bare enqueue",
                "≥ 0.85",
            ],
            ratio_rows,
        )
    )
    if args.three_queues:
        three, one = results["kit 3 queues"], results[f"kit {pairs[0]}"]
        ratios = [t.steady / o.steady for t, o in zip(three, one, strict=True)]
        print(
            f"\nkit 3 queues / kit one queue ({pairs[0]}), drain: median "
            f"**{c.median(ratios):.2f}**, range {min(ratios):.2f}-{max(ratios):.2f}"
        )
    print("\nRedis commands per job (median round):")
    for name, *_ in configs:
        middle = sorted(results[name], key=lambda d: d.steady)[len(results[name]) // 2]
        shown = ", ".join(
            f"{cmd} {calls:.2f}" for cmd, calls in middle.by_command.items()
        )
        print(f"- {name}: {shown}")


if __name__ == "__main__":
    main()
    c.finish()
