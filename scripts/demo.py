#!/usr/bin/env python3
"""Bake the default project and run it: ``python3 scripts/demo.py [--port N]``.

1. Creates (or reuses) ``.venv`` at the repository root with cookiecutter.
2. Bakes the template with its default answers into ``demo/`` (re-baked over
   the previous copy on every run, so it always reflects the template).
3. Creates the baked project's own virtualenv and ``pip install -e '.[dev]'``
   into it (skipped when its pyproject.toml has not changed).
4. Starts the web app (``flask run``) and the Huey worker from the project
   directory, with the default SQLite queue, and waits for ``/healthz``.
5. Prints the URL and ready-to-paste curl commands that carry a throwaway
   API key made for this run, then runs until Ctrl-C or SIGTERM, when it
   stops both processes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from _bootstrap import (
    ROOT,
    ensure_venv,
    install_project,
    pip_install,
    require_python,
    run,
    venv_bin,
)

VENV = ROOT / ".venv"
DEMO_DIR = ROOT / "demo"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0


class Stop(Exception):
    """Raised by the SIGTERM handler to leave the wait loop."""


def default_slug() -> str:
    """The project_slug that cookiecutter derives from the default answers."""
    context = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    return context["project_name"].lower().replace(" ", "_").replace("-", "_")


def bake(python: Path) -> Path:
    """Render the template with default answers into demo/, return the project."""
    DEMO_DIR.mkdir(exist_ok=True)
    run(
        [
            str(python),
            "-m",
            "cookiecutter",
            "--no-input",
            "--overwrite-if-exists",
            "--output-dir",
            str(DEMO_DIR),
            str(ROOT),
        ]
    )
    return DEMO_DIR / default_slug()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a child in its own session, so a terminal Ctrl-C reaches only us
    and the children are stopped in order, by ``stop``."""
    print("+", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True)


def stop(children: list[tuple[subprocess.Popen, int]]) -> None:
    """Ask every child to stop with its own signal, then kill leftovers."""
    for proc, sig in children:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc, _ in children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="web port (5000)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    require_python()
    if not port_is_free(args.host, args.port):
        print(f"ERROR: port {args.port} is in use; try --port {args.port + 1}.")
        return 1

    python = ensure_venv(VENV)
    pip_install(VENV, ["cookiecutter>=2.6"], inputs=[], purpose="demo")
    project = bake(python)
    slug = project.name

    project_venv = install_project(project, purpose="demo")

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("REDIS_URL", None)  # the default SQLite queue, shared via the cwd
    # Throwaway credentials so the monitor opens; a real project sets its own
    # in .env (see .env.example).
    monitor_password = secrets.token_urlsafe(12)
    # The same for the jobs API, which refuses requests without a key: one
    # key, named "demo", that may use every job.
    api_key = secrets.token_urlsafe(32)
    env.update(
        FLASK_SECRET_KEY=secrets.token_hex(32),
        FLASK_MONITOR_USERNAME="demo",
        FLASK_MONITOR_PASSWORD=monitor_password,
        FLASK_JOBS_API_KEYS=json.dumps({"demo": {"key": api_key, "jobs": ["*"]}}),
    )
    auth = f"-H 'Authorization: Bearer {api_key}'"
    web_cmd = [
        str(venv_bin(project_venv, "flask")),
        "--app",
        slug,
        "run",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    # The kit's worker: Huey's consumer with the recommended flags, where
    # SIGTERM and SIGINT both let running jobs finish.
    worker_cmd = [str(venv_bin(project_venv, "python")), "-m", f"{slug}.worker"]

    def on_sigterm(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, on_sigterm)
    # Both stop on SIGTERM; the worker first lets running jobs finish.
    children: list[tuple[subprocess.Popen, int]] = []
    try:
        children.append((start(web_cmd, project, env), signal.SIGTERM))
        children.append((start(worker_cmd, project, env), signal.SIGTERM))
        base = f"http://{args.host}:{args.port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not healthy(f"{base}/healthz"):
            if any(proc.poll() is not None for proc, _ in children):
                print("ERROR: the web app or the worker exited during startup.")
                return 1
            if time.monotonic() > deadline:
                print(f"ERROR: {base}/healthz did not answer in time.")
                return 1
            time.sleep(0.25)

        print(
            "\n"
            f"Demo project: {project}\n"
            f"Web app:      {base}/   (health: {base}/healthz)\n"
            "Queue:        SQLite (REDIS_URL unset)\n"
            f"Monitor:      {base}/monitor\n"
            f"              user demo, password {monitor_password}\n"
            f"Jobs API key: {api_key}   (named demo, every job, this run only)\n"
            "\n"
            "Queue a job (the response carries its id):\n"
            f"  curl -X POST {base}/jobs/jobModelo {auth} "
            "-H 'Content-Type: application/json' "
            """-d '{"nome":"João","idade":30}'\n"""
            "Then follow it:\n"
            f"  curl {base}/jobs/<id> {auth}\n"
            "For the README's examples, which read the key from the environment:\n"
            f"  export JOBS_API_KEY={api_key}\n"
            "\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(proc.poll() is None for proc, _ in children):
            time.sleep(0.5)
        print("ERROR: the web app or the worker stopped unexpectedly.")
        return 1
    except (KeyboardInterrupt, Stop):
        print("\nStopping the web app and the worker...", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop(children)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
