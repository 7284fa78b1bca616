"""The same no-op workload on RQ and Celery, next to Huey and the kit.

Every framework drains the same N pre-queued jobs (same ~200-byte payload,
same task body: one Redis INCR) from the same Redis, with two worker
processes each and warnings-only logging:

* kit: the baked project's worker, ``--worker-type process --workers 2 -q``
  plus the kit's polling flags;
* bare Huey: ``huey_consumer`` with the same flags;
* RQ: ``rq worker-pool -n 2 -w rq.worker.SimpleWorker`` (RQ's default
  worker forks a process per job and manages a few dozen jobs a second);
* Celery: ``celery worker -P prefork -c 2`` with its Redis broker, results
  ignored, JSON messages.

RQ and Celery rows appear only when those packages are installed. Rounds
interleave the frameworks in a rotating order; ratios are medians of
per-round ratios.

    python benchmarks/peers.py [--n 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

import _common as c
from throughput import FLAGS, kit_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    c.banner(
        "Peers: Huey, the kit, RQ and Celery", "huey", "rq", "celery", "kombu", "redis"
    )
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    logs = c.workdir("bench-logs")

    import redis

    conn = redis.Redis.from_url(url)
    env = project.env(BENCH_REDIS_URL=url, REDIS_URL=url, FLASK_QUEUE_NAME="kit")
    quiet = [*FLAGS, "-q"]

    _, enqueue_kit, enqueue_bare = c.producers(url)

    configs = [
        ("kit", enqueue_kit, kit_worker(project, quiet), " ".join(quiet)),
        (
            "bare Huey",
            enqueue_bare,
            c.huey_consumer("bare_huey.huey", quiet),
            " ".join(quiet),
        ),
    ]
    missing = []
    if importlib.util.find_spec("rq"):
        import peer_rq
        from rq import Queue

        rq_queue = Queue("bench", connection=conn)

        def enqueue_rq(n: int) -> None:
            for _ in range(n):
                rq_queue.enqueue(peer_rq.noop, c.PAYLOAD)

        rq_flags = [
            "worker-pool",
            "-n",
            "2",
            "-w",
            "rq.worker.SimpleWorker",
            "-q",
            "-u",
            url,
        ]
        rq_argv = [sys.executable, "-m", "rq.cli", *rq_flags, "bench"]
        configs.append(("RQ", enqueue_rq, rq_argv, "rq " + " ".join(rq_flags[:-2])))
    else:
        missing.append("rq")
    if importlib.util.find_spec("celery"):
        import peer_celery

        def enqueue_celery(n: int) -> None:
            for _ in range(n):
                peer_celery.noop.delay(c.PAYLOAD)

        celery_flags = [
            "-A",
            "peer_celery",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "WARNING",
        ]
        celery_argv = [sys.executable, "-m", "celery", *celery_flags]
        configs.append(
            ("Celery", enqueue_celery, celery_argv, "celery " + " ".join(celery_flags))
        )
    else:
        missing.append("celery")

    results: dict[str, list[c.Drain]] = {name: [] for name, *_ in configs}
    print(f"N = {args.n:,} jobs per run, {args.rounds} rounds", flush=True)
    if missing:
        print(f"not installed, so not measured: {', '.join(missing)}")
    print()
    for round_no in range(args.rounds):
        shift = round_no % len(configs)
        for name, enqueue_fn, argv, _ in configs[shift:] + configs[:shift]:
            drain = c.e2e_round(
                conn,
                args.n,
                enqueue_fn,
                argv,
                env,
                project.support,
                logs / f"{name}.log",
            )
            results[name].append(drain)
            print(
                f"round {round_no + 1} {name:<10} steady {drain.steady:7.0f}/s"
                f"  enqueue {drain.enqueue_rate:6.0f}/s  startup {drain.startup:4.1f} s"
                f"  cpu {drain.worker_cpu_us:6.0f} us/job"
                f"  redis cmds/job {drain.commands:5.1f}",
                flush=True,
            )

    bare = results["bare Huey"]
    rows = []
    for name, _, _, command in configs:
        runs = results[name]
        ratios = [b.steady / r.steady for b, r in zip(bare, runs, strict=True)]
        enqueue_ratios = [
            b.enqueue_rate / r.enqueue_rate for b, r in zip(bare, runs, strict=True)
        ]
        rows.append(
            [
                name,
                f"`{command}`",
                c.fmt(c.median(d.steady for d in runs)),
                ", ".join(c.fmt(d.steady) for d in runs),
                c.fmt(c.median(d.enqueue_rate for d in runs)),
                c.fmt(c.median(d.startup for d in runs), 1),
                c.fmt(c.median(d.worker_cpu_us for d in runs)),
                c.fmt(c.median(d.commands for d in runs), 1),
                f"{c.median(ratios):.2f}x",
                f"{c.median(enqueue_ratios):.2f}x",
            ]
        )
    print()
    headers = [
        "framework",
        "worker",
        "steady jobs/s",
        "rounds",
        "enqueue jobs/s",
        "startup s",
        "worker CPU µs/job",
        "Redis cmds/job",
        "bare Huey drain ÷ this",
        "bare Huey enqueue ÷ this",
    ]
    print(c.table(headers, rows))


if __name__ == "__main__":
    main()
    c.finish()
