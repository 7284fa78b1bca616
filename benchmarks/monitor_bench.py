"""How fast is /monitor with a million jobs in its history, and what does it cost Redis?

    python benchmarks/monitor_bench.py              # 1,000,000 records
    python benchmarks/monitor_bench.py --records 100000 --requests 100

What it does:

1. Generates the default project (cookiecutter's Python API) in a temporary
   directory and imports it, with credentials and generous retention limits.
2. Starts a private ``redis-server`` on a free port (no persistence).
3. Runs one real job to completion and fails another, through the real
   history code, and uses those two records as prototypes.
4. Bulk-loads N records shaped exactly like them (90% completed, 10% failed,
   finished over the last 24 hours, several job names) with pipelined writes
   straight into the store's keys, plus the matching per-minute and per-hour
   rollups.
5. Requests the overview and the list pages through Flask's test client
   (the Redis round trips are real) and prints p50/p95 of the server-side
   time, then Redis memory per retained record.

It prints numbers; it does not judge them. The target is p95 < 50 ms.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent
SLUG = "acme_jobs"
NAMES = ["jobModelo", "sendInvoiceJob", "resizeImageJob", "syncCrmJob"]
USER, PASSWORD = "bench", "bench-password"
API_KEY = "bench-api-key-0123456789abcdef"  # the jobs API refuses requests without one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return server, url
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def generate_project(workdir: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(workdir)))


def make_prototypes(app) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """One completed and one failed record, written by the real code."""
    history = app.extensions["jobkit"].history
    huey = app.extensions["jobkit"].huey
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {API_KEY}"
    payload = {"nome": "João da Silva", "idade": 42}

    done_id = client.post("/jobs/jobModelo", json=payload).get_json()["id"]
    huey.execute(huey.dequeue())

    failed_id = client.post("/jobs/jobModelo", json=payload).get_json()["id"]
    task = huey.dequeue()
    history.on_signal("executing", task)
    try:
        raise ConnectionError("the CRM answered 503 Service Unavailable")
    except ConnectionError as exc:
        task.retries = 0
        history.on_signal("error", task, exc)

    conn = history.store.conn
    prefix = history.store.prefix
    done = conn.hgetall(f"{prefix}:job:{done_id}")
    failed = conn.hgetall(f"{prefix}:job:{failed_id}")
    history.store.clear()
    return done, failed


def bulk_load(app, records: int, failed_share: float, now: float) -> None:
    """Write ``records`` job records and their indexes and rollups, pipelined."""
    from acme_jobs.kit.history import model
    from acme_jobs.kit.history.model import rollup_fields

    history = app.extensions["jobkit"].history
    conn, prefix = history.store.conn, history.store.prefix
    settings = history.settings
    done_proto, failed_proto = make_prototypes(app)
    rng = random.Random(42)
    per_minute: dict[int, dict[str, int]] = {}
    per_hour: dict[int, dict[str, int]] = {}
    pipe = conn.pipeline(transaction=False)
    started = time.monotonic()
    for i in range(records):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        failed = rng.random() < failed_share
        name = NAMES[i % len(NAMES)]
        finished = now - rng.random() * 86400
        duration = rng.lognormvariate(-4.5, 1.0)  # median ~11 ms
        status = model.FAILED if failed else model.COMPLETE
        record = dict(failed_proto if failed else done_proto)
        record.update(
            {
                b"name": name.encode(),
                b"state_at": repr(finished).encode(),
                b"finished_at": repr(finished).encode(),
                b"started_at": repr(finished - duration).encode(),
                b"enqueued_at": repr(finished - duration - 0.002).encode(),
                b"duration": repr(duration).encode(),
            }
        )
        pipe.hset(f"{prefix}:job:{job_id}", mapping=record)
        pipe.zadd(f"{prefix}:state:{status}", {job_id: finished})
        pipe.zadd(f"{prefix}:state:{status}:{name}", {job_id: finished})
        counter = "failed" if failed else "complete"
        change = model.Change(
            job_id, name, finished, counters={counter: 1}, duration_ms=duration * 1000
        )
        minute_fields, hour_fields = rollup_fields(change)
        for bucket, start, fields in (
            (per_minute, int(finished // 60) * 60, minute_fields),
            (per_hour, int(finished // 3600) * 3600, hour_fields),
        ):
            counts = bucket.setdefault(start, {})
            for field, amount in fields.items():
                counts[field] = counts.get(field, 0) + amount
        if i % 5000 == 4999:
            pipe.execute()
        if i % 100_000 == 99_999:
            rate = (i + 1) / (time.monotonic() - started)
            print(f"  loaded {i + 1:>9,} records ({rate:,.0f}/s)", flush=True)
    for bucket, kind, ttl in (
        (per_minute, "m", settings.minute_rollups_age),
        (per_hour, "h", settings.hour_rollups_age),
    ):
        for start, counts in bucket.items():
            key = f"{prefix}:{kind}:{start}"
            pipe.hset(key, mapping=counts)
            pipe.expire(key, int(ttl))
    pipe.execute()


def timed(client, url: str, headers: dict, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--failed-share", type=float, default=0.10)
    parser.add_argument("--requests", type=int, default=200, help="per page")
    parser.add_argument(
        "--listpack-value",
        type=int,
        default=None,
        help="set Redis's hash-max-listpack-value first (default 64 bytes keeps "
        "records in hashtable encoding; 1024 packs them, for less memory)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    server, url = start_redis(workdir)
    try:
        project = generate_project(workdir)
        sys.path.insert(0, str(project))
        from acme_jobs import create_app

        app = create_app(
            {
                "REDIS_URL": url,
                "SECRET_KEY": secrets.token_hex(32),  # a weak key keeps the monitor off
                "MONITOR_USERNAME": USER,
                "MONITOR_PASSWORD": PASSWORD,
                "JOBS_API_KEYS": {"bench": {"key": API_KEY, "jobs": ["*"]}},
                "LOG_LEVEL": "WARNING",
                "HISTORY_COMPLETED_MAX_COUNT": 10 * args.records,
                "HISTORY_FAILED_MAX_COUNT": 10 * args.records,
            }
        )
        import redis

        conn = redis.Redis.from_url(url)
        if args.listpack_value:
            conn.config_set("hash-max-listpack-value", args.listpack_value)
        before = conn.info("memory")["used_memory"]
        print(f"Loading {args.records:,} records into a private Redis ({url})...")
        load_start = time.monotonic()
        bulk_load(app, args.records, args.failed_share, time.time())
        load_seconds = time.monotonic() - load_start
        after = conn.info("memory")["used_memory"]
        keys = conn.dbsize()

        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        client = app.test_client()
        history = app.extensions["jobkit"].history
        deep = str(args.records // 2)
        some_failed = history.page("failed", limit=1)[0][0]["id"]
        pages = [
            ("overview", "/monitor/"),
            ("overview, live part", "/monitor/?partial=1"),
            ("failed list", "/monitor/jobs/failed"),
            ("completed list", "/monitor/jobs/complete"),
            ("completed, one job name", "/monitor/jobs/complete?name=syncCrmJob"),
            ("completed, deep page", f"/monitor/jobs/complete?cursor={deep}"),
            ("failed, error search", "/monitor/jobs/failed?q=503"),
            ("job page", f"/monitor/job/{some_failed}"),
            ("API counts", "/monitor/api/counts"),
        ]
        for _, page in pages:  # warm up: connections, templates, scripts
            timed(client, page, headers, 3)
        rows = []
        for label, page in pages:
            times = timed(client, page, headers, args.requests)
            rows.append((label, statistics.median(times), percentile(times, 0.95)))

        counts = history.counts()
        print()
        print(
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, Redis {conn.info()['redis_version']}"
        )
        print(
            f"Records: {counts['complete']:,} completed + {counts['failed']:,} failed "
            f"(loaded in {load_seconds:.0f} s); {keys:,} Redis keys"
        )
        print(
            f"Requests per page: {args.requests} "
            "(Flask test client; the Redis round trips are real)"
        )
        print()
        print(f"| {'page':<26} | {'p50 ms':>7} | {'p95 ms':>7} |")
        print(f"|{'-' * 28}|{'-' * 9}|{'-' * 9}|")
        for label, p50, p95 in rows:
            print(f"| {label:<26} | {p50:7.2f} | {p95:7.2f} |")
        print()
        per_record = (after - before) / max(args.records, 1)
        print(
            f"Redis memory: {after / 2**20:,.0f} MiB used, {per_record:,.0f} bytes per "
            "retained record (record, its two index entries, and the rollups)"
        )
        sample = conn.memory_usage(f"{history.store.prefix}:job:{some_failed}")
        done_id = history.page("complete", limit=1)[0][0]["id"]
        done_sample = conn.memory_usage(f"{history.store.prefix}:job:{done_id}")
        print(
            f"One record's hash: {done_sample} bytes (completed), "
            f"{sample} bytes (failed, with its traceback)"
        )
        print(f"Target: p95 < 50 ms -> worst p95 here {max(r[2] for r in rows):.2f} ms")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
