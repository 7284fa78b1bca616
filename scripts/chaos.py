#!/usr/bin/env python3
"""Kill workers and Redis while jobs run: ``python3 scripts/chaos.py [options]``.

Checks the kit's delivery promise, nothing lost at the default settings:

1. Bakes the template with its default answers into ``chaos/`` (or takes
   ``--project PATH``, a project baked with the default answers).
2. Creates the baked project's virtualenv and ``pip install -e '.[dev]'``
   into it, unless ``--python`` names an interpreter that already has the
   project's dependencies.
3. Per backend (``--backend redis|sqlite|both``), runs the kit's chaos
   harness (``kit_tests/chaos_harness.py``): a web server and three kit
   workers (``python -m <package>.worker``, default settings), ``--jobs``
   jobs registered with the defaults (no retries) dispatched over HTTP, and
   meanwhile, at moments drawn from the printed ``--seed``, ``--kills``
   SIGKILLs of single worker processes and of whole consumers, each started
   again after a moment. On Redis, the run's own redis-server (append-only
   file, fsync always) is also SIGKILLed and restarted once, and stopped
   for a ``--outage`` of 20 s.
4. Waits, at most 3 minutes after the last disturbance, until every job has
   run to its end, then prints per backend: jobs lost (with what the job
   history says of them), duplicates (runs that no kill explains), the time
   from a kill to the cut job's next start, the history's counts, and a
   table of all backends.

Exits 1 if any job was lost or 1 % or more ran twice unexplained. ``--fast``
shortens the lease timings (a dead worker's jobs come back within seconds
instead of ~40 s) for a quicker run; the promise must hold without it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
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
CHAOS_DIR = ROOT / "chaos"
KIT_TESTS = ROOT / "kit_tests"
# Set by the first stage (bake, install) for the second (the run itself),
# which this same file performs under the project's interpreter.
STAGE_VARIABLE = "CHAOS_PROJECT"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["redis", "sqlite", "both"], default="both"
    )
    parser.add_argument(
        "--jobs", type=int, default=1000, help="jobs per backend (1000)"
    )
    parser.add_argument(
        "--kills", type=int, default=15, help="SIGKILLs per backend (15)"
    )
    parser.add_argument("--seed", type=int, help="seed of the random moments (printed)")
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds over which jobs are dispatched and disturbances fall "
        "(default: 0.06 per job, at least 30)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=20.0,
        help="Redis outage in seconds, 0 for none (20)",
    )
    parser.add_argument(
        "--freeze",
        type=float,
        default=0.0,
        help="also SIGSTOP Redis for this many seconds",
    )
    parser.add_argument(
        "--fast", action="store_true", help="short lease timings, for CI"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs and the ledger"
    )
    parser.add_argument(
        "--project", type=Path, help="a project baked with the default answers"
    )
    parser.add_argument(
        "--python", type=Path, help="an interpreter that has the project's dependencies"
    )
    return parser.parse_args(argv)


def default_slug() -> str:
    """The project_slug that cookiecutter derives from the default answers."""
    context = json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
    return context["project_name"].lower().replace(" ", "_").replace("-", "_")


def bake() -> Path:
    """Render the template with default answers into chaos/, return the project."""
    python = ensure_venv(VENV)
    pip_install(VENV, ["cookiecutter>=2.6"], inputs=[], purpose="demo")
    CHAOS_DIR.mkdir(exist_ok=True)
    cookiecutter = [str(python), "-m", "cookiecutter", "--no-input"]
    run(
        [
            *cookiecutter,
            "--overwrite-if-exists",
            "--output-dir",
            str(CHAOS_DIR),
            str(ROOT),
        ]
    )
    return CHAOS_DIR / default_slug()


def prepare(args: argparse.Namespace, argv: list[str]) -> int:
    """First stage: a baked project and an interpreter, then the run itself."""
    require_python()
    project = args.project.resolve() if args.project else bake()
    slug = default_slug()
    if not (project / slug).is_dir():
        # The kit's tests, which the harness is part of, import this package.
        print(f"ERROR: {project} has no package {slug!r}: bake the default answers.")
        return 2
    if args.python:
        python = args.python.absolute()  # a venv's python may be a symlink: keep it
    else:
        python = venv_bin(install_project(project, purpose="chaos"), "python")
    env = dict(os.environ, PYTHONUNBUFFERED="1", KIT_PROJECT_ROOT=str(project))
    env.setdefault(
        "FLASK_SECRET_KEY", secrets.token_hex(32)
    )  # throwaway, for quiet logs
    env["PYTHONPATH"] = os.pathsep.join([str(project), str(KIT_TESTS)])
    env[STAGE_VARIABLE] = str(project)
    cmd = [str(python), str(Path(__file__).resolve()), *argv]
    return subprocess.run(cmd, cwd=project, env=env, check=False).returncode


def chaos(args: argparse.Namespace) -> int:
    """Second stage, under the project's interpreter: one run per backend."""
    import chaos_harness as harness  # on PYTHONPATH: kit_tests/

    seed = (
        args.seed
        if args.seed is not None
        else random.SystemRandom().randrange(1, 2**31)
    )
    print(f"seed {seed} (again with --seed {seed})", flush=True)
    backends = ["redis", "sqlite"] if args.backend == "both" else [args.backend]
    reports = []
    for backend in backends:
        scenario = harness.Scenario(
            backend=backend,
            seed=seed,
            jobs=args.jobs,
            kills=args.kills,
            duration=args.duration or max(30.0, 0.06 * args.jobs),
            outage=args.outage,
            freeze=args.freeze,
            settings=harness.FAST_SETTINGS if args.fast else {},
            worker_flags=harness.FAST_WORKER_FLAGS if args.fast else (),
        )
        workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{backend}-"))
        report = harness.run(
            scenario, workdir, say=lambda line: print(line, flush=True)
        )
        print(report.summary(), flush=True)
        if args.keep:
            print(f"  logs and ledger kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        reports.append(report)
    print_table(reports)
    return 1 if any(report.problems() for report in reports) else 0


def print_table(reports: list) -> None:
    header = ["backend", "jobs", "kills", "redis", "lost", "dup %", "restarted"]
    header += ["recovery p50/max", "history", "result"]
    rows = [header]
    for report in reports:
        kills = report.kills
        rows.append(
            [
                report.scenario.backend,
                str(report.jobs),
                f"{sum(kills.values())} ({kills['consumer']}c {kills['process']}p)",
                ", ".join(report.redis) or "-",
                str(len(report.lost)),
                f"{report.duplicate_percent:.2f}",
                str(report.restarted),
                report.recovery(),
                " ".join(f"{s}={n}" for s, n in sorted(report.counts.items()) if n),
                "FAIL" if report.problems() else "ok",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    for row in rows:
        print(
            "  ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.environ.get(STAGE_VARIABLE):
        return chaos(args)
    return prepare(args, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
