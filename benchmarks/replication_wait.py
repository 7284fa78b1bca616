"""What REDIS_WAIT_REPLICAS costs a dispatch: enqueue() with and without Redis WAIT.

Starts a Redis primary and one replica (``--replicaof``) on loopback, then
times N ``enqueue()`` calls of the kit in this process, one at a time, with
``REDIS_WAIT_REPLICAS`` 0 and 1 in alternating rounds. With 1, each dispatch
is one round trip still (the job's script and WAIT are pipelined), but it
returns only once the replica has acknowledged the write: the extra time is
the replica's round trip (here loopback; across hosts, the network's).

    python benchmarks/replication_wait.py [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time

import _common as c


def start_replica(primary_url: str) -> str:
    """A redis-server replicating the private primary; returns its URL."""
    import redis

    port = c.free_port()
    primary_port = primary_url.rsplit(":", 1)[1].split("/")[0]
    argv = [shutil.which("redis-server") or "redis-server", "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [*argv, "--replicaof", "127.0.0.1", primary_port],
        cwd=c.workdir("bench-replica"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    c._cleanups.append(lambda: c.stop(process))
    replica = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if replica.info("replication").get("master_link_status") == "up":
                return f"redis://127.0.0.1:{port}/0"
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise SystemExit("the replica did not sync")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    c.banner("REDIS_WAIT_REPLICAS: dispatch with and without WAIT", "huey", "redis")
    project = c.generate_project()
    project.import_path()
    url = c.start_redis()
    start_replica(url)

    from bench_jobs import create_app
    from bench_jobs.kit import enqueue

    apps = {
        replicas: create_app(
            {
                "REDIS_URL": url,
                "QUEUE_NAME": "kit",
                "SECRET_KEY": "bench",
                "REDIS_WAIT_REPLICAS": replicas,
            }
        )
        for replicas in (0, 1)
    }
    samples: dict[int, list[list[float]]] = {0: [], 1: []}
    for round_no in range(args.rounds):
        for replicas in (0, 1) if round_no % 2 == 0 else (1, 0):
            times = []
            with apps[replicas].app_context():
                for _ in range(args.n):
                    started = time.perf_counter()
                    enqueue("benchNoop", c.PAYLOAD)
                    times.append(time.perf_counter() - started)
            samples[replicas].append(times)
            print(
                f"round {round_no + 1} WAIT {replicas}:"
                f" {args.n / sum(times):6.0f} dispatches/s"
                f"  p50 {c.percentile(times, 0.5) * 1e3:.3f} ms",
                flush=True,
            )

    rows = []
    for replicas, rounds in samples.items():
        rows.append(
            [
                f"REDIS_WAIT_REPLICAS={replicas}",
                c.fmt(c.median(len(t) / sum(t) for t in rounds)),
                c.fmt(c.median(c.percentile(t, 0.5) * 1e3 for t in rounds), 3),
                c.fmt(c.median(c.percentile(t, 0.99) * 1e3 for t in rounds), 3),
            ]
        )
    print()
    print(c.table(["setting", "dispatches/s", "p50 ms", "p99 ms"], rows))


if __name__ == "__main__":
    main()
    c.finish()
