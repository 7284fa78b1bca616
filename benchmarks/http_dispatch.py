"""HTTP dispatch under gunicorn: the kit's endpoint against a minimal one.

Three apps answer ``POST /jobs/jobModelo`` with the same body
(``{"nome": "João", "idade": 30}``) and the same ``Authorization: Bearer``
header, each under gunicorn with the same flags (``-w 2 -k sync``, warnings
only, no access log):

* kit: the baked project's ``create_app()``, with the API key configured
  (``FLASK_JOBS_API_KEYS``), so every request is checked;
* minimal: a bare Flask view that validates the body with the same
  ``Pessoa`` schema and queues it with bare Huey on a pooled connection;
* new connection: the same view opening a new queue connection for every
  request, as the seed's handler does.

A fourth row runs the kit as shipped: ``gunicorn --config gunicorn.conf.py``
(access log on, ``WEB_CONCURRENCY=2``). Load comes from ``wrk`` (Debian
package ``wrk``: ``-t1 -c8``, ``--latency``) or, without it, a Python
client. No worker runs, so this measures dispatch only; Redis is flushed
before every cell. Each round visits every app, in a rotating order;
ratios are medians of per-round ratios.

Each cell also records the CPU time its gunicorn processes and redis-server
used per request. On a busy machine req/s swings with the neighbours' load;
CPU per request hardly does, and its ratio is what req/s tends to once the
app alone saturates the cores.

    python benchmarks/http_dispatch.py [--rounds 5] [--duration 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

import _common as c

BODY = json.dumps({"nome": "João", "idade": 30}, ensure_ascii=False).encode()
GUNICORN = ["-w", "2", "-k", "sync", "--log-level", "warning"]

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%s"
"""


def run_wrk(url: str, seconds: int, connections: int, script: str) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for pct, number, unit in re.findall(
        r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\b", out, re.M
    ):
        latency[pct] = float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": rps,
        "p50": latency.get("50", float("nan")),
        "p99": latency.get("99", float("nan")),
        "non2xx": int(bad.group(1)) if bad else 0,
        "errors": errors.group(0) if errors else "",
        "requests": total,
    }


def run_python_client(url: str, seconds: int, connections: int) -> dict:
    """A plain load client: ``connections`` threads, one request at a time each."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    path = url.split(port, 1)[1]
    latencies: list[float] = []
    non2xx = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        nonlocal non2xx
        mine, bad = [], 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            headers = {"Content-Type": "application/json", **c.AUTH}
            conn.request("POST", path, BODY, headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            mine.append((time.perf_counter() - started) * 1000)
            bad += response.status >= 300
        with lock:
            latencies.extend(mine)
            non2xx += bad

    threads = [threading.Thread(target=client) for _ in range(connections)]
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begun
    return {
        "rps": len(latencies) / elapsed,
        "p50": c.percentile(latencies, 0.5),
        "p99": c.percentile(latencies, 0.99),
        "non2xx": non2xx,
        "errors": "",
        "requests": len(latencies),
    }


def wait_until_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=BODY, method="POST")
            request.add_header("Content-Type", "application/json")
            request.add_header("Authorization", c.AUTH["Authorization"])
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 202:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.python_client

    c.banner("HTTP dispatch under gunicorn", "gunicorn", "flask", "huey", "redis")
    project = c.generate_project()
    url = c.start_redis()
    logs = c.workdir("bench-logs")
    script = logs / "post.lua"
    script.write_text(
        WRK_SCRIPT % (BODY.decode(), c.AUTH["Authorization"]), encoding="utf-8"
    )

    import redis

    conn = redis.Redis.from_url(url)
    # gunicorn reads ./gunicorn.conf.py by default, and the project's root
    # has one (access log on): the rows meant to share plain flags get an
    # empty config instead.
    no_config = logs / "empty.conf.py"
    no_config.write_text("")
    gunicorn = [sys.executable, "-m", "gunicorn"]
    env = project.env(
        BENCH_REDIS_URL=url,
        REDIS_URL=url,
        FLASK_QUEUE_NAME="kit",
        FLASK_JOBS_API_KEYS=json.dumps(c.API_KEYS),
    )
    servers = {}
    for name, argv, extra in (
        ("kit", [*GUNICORN, f"{c.SLUG}:create_app()"], {}),
        ("minimal", [*GUNICORN, "minimal_app:app"], {}),
        ("new connection", [*GUNICORN, "minimal_app:seed_app"], {}),
        ("kit, gunicorn.conf.py",
         ["--config", "gunicorn.conf.py", f"{c.SLUG}:create_app()"],
         {"WEB_CONCURRENCY": "2"}),
    ):  # fmt: skip
        port = c.free_port()
        command = [
            *gunicorn,
            "--config",
            str(no_config),
            *argv,
            "-b",
            f"127.0.0.1:{port}",
        ]
        if "--config" in argv:
            command = [*gunicorn, *argv]
            extra = dict(extra, PORT=str(port))
        process = c.spawn(
            command, dict(env, **extra), project.root, logs / f"{name}.log"
        )
        servers[name] = (f"http://127.0.0.1:{port}/jobs/jobModelo", process)
    for target, _ in servers.values():
        wait_until_up(target)

    client = f"wrk -t1 -c{args.connections} --latency" if use_wrk else "Python client"
    print(f"{client}, {args.duration} s per cell, {args.rounds} rounds\n", flush=True)
    names = list(servers)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            target = servers[name][0]
            conn.flushdb()
            # Warm-up: connections, imports, first requests in every process.
            if use_wrk:
                run_wrk(target, 2, args.connections, str(script))
            else:
                run_python_client(target, 2, args.connections)
            conn.flushdb()
            group = servers[name][1].pid
            web_before = c.group_cpu_seconds(group)
            redis_before = c.redis_counters(conn)[1]
            if use_wrk:
                cell = run_wrk(target, args.duration, args.connections, str(script))
            else:
                cell = run_python_client(target, args.duration, args.connections)
            web_after = c.group_cpu_seconds(group)
            redis_after = c.redis_counters(conn)[1]
            requests = max(cell["requests"], 1)
            cell["web_us"] = (web_after - web_before) / requests * 1e6
            cell["redis_us"] = (redis_after - redis_before) / requests * 1e6
            results[name].append(cell)
            print(
                f"round {round_no + 1} {name:<22} {cell['rps']:7.0f} req/s"
                f"  p50 {cell['p50']:6.2f} ms  p99 {cell['p99']:6.2f} ms"
                f"  CPU/req web {cell['web_us']:4.0f} us"
                f" redis {cell['redis_us']:3.0f} us"
                f"  non-2xx {cell['non2xx']} {cell['errors']}",
                flush=True,
            )

    print()
    rows = []
    for name in names:
        cells = results[name]
        rows.append(
            [
                name,
                c.fmt(c.median(x["rps"] for x in cells)),
                ", ".join(c.fmt(x["rps"]) for x in cells),
                c.fmt(c.median(x["p50"] for x in cells), 2),
                c.fmt(c.median(x["p99"] for x in cells), 2),
                c.fmt(c.median(x["web_us"] for x in cells)),
                c.fmt(c.median(x["redis_us"] for x in cells)),
                str(sum(x["non2xx"] for x in cells)),
            ]
        )
    header = ["app", "req/s (median)", "rounds", "p50 ms", "p99 ms"]
    header += ["web CPU us/req", "Redis CPU us/req", "non-2xx"]
    print(c.table(header, rows))
    print()

    def ratio(a: str, b: str) -> list[float]:
        pairs = zip(results[a], results[b], strict=True)
        return [x["rps"] / y["rps"] for x, y in pairs]

    ratio_rows = []
    for a, b in (
        ("kit", "minimal"),
        ("kit, gunicorn.conf.py", "minimal"),
        ("minimal", "new connection"),
        ("kit", "new connection"),
    ):
        values = ratio(a, b)
        ratio_rows.append(
            [
                f"{a} / {b}",
                f"**{c.median(values):.2f}**",
                f"{min(values):.2f}-{max(values):.2f}",
            ]
        )
    print(c.table(["req/s ratio", "median of rounds", "range"], ratio_rows))

    def cpu(name: str) -> float:
        return c.median(x["web_us"] + x["redis_us"] for x in results[name])

    print(
        f"\nCPU per request (web + Redis), minimal / kit: "
        f"**{cpu('minimal') / cpu('kit'):.2f}**"
    )
    kit_ok = c.median(ratio("kit", "minimal")) >= 0.80
    verdict = "met" if kit_ok else "missed"
    print(f"\nGoal (kit >= 0.80 x minimal, same gunicorn flags): {verdict}")


if __name__ == "__main__":
    main()
    c.finish()
