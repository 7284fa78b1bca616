"""The kit's shape: no import cycles, no oversized modules, one public API."""

import ast
from pathlib import Path

import acme_jobs.kit

KIT_DIR = Path(acme_jobs.kit.__file__).resolve().parent
KIT = "acme_jobs.kit"
# A module should be readable in one sitting; past this, split it by design.
MAX_MODULE_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(KIT_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([KIT, *parts])


def kit_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(KIT_DIR.rglob("*.py"))}


def load_time_imports(path: Path, name: str) -> set[str]:
    """Kit modules that ``path`` imports when it is loaded.

    Imports inside functions and under ``if TYPE_CHECKING:`` run later or
    never, so they cannot make a cycle at import time.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = kit_modules()
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{module}" if module else base
            # ``from pkg import sub`` needs the module ``pkg.sub``; ``from pkg
            # import name`` needs ``pkg`` itself, fully loaded.
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in modules else module)
    return {module for module in found if module in modules and module != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_kit_has_no_import_cycles():
    graph = {name: load_time_imports(path, name) for name, path in kit_modules().items()}

    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_kit_module_is_over_the_size_limit():
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in kit_modules().items()
    }

    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_public_name_is_importable_from_the_kit():
    missing = [name for name in acme_jobs.kit.__all__ if not hasattr(acme_jobs.kit, name)]

    assert missing == []


# Only these modules look at which storage Huey has: the rest of the kit gets
# its stores from the backend picked once (backends/), or talks to Huey
# through its public API.
STORAGE_AWARE = ("acme_jobs.kit.backends", "acme_jobs.kit.huey_seam")
STORAGE_HANDLES = {"redis_queue", "sqlite_queue"}


def storage_checks(path: Path) -> list[str]:
    """``isinstance(x, ...Storage)`` and storage-handle calls in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        # A bare call (``redis_queue(s)``) or through a module (``seam.redis_queue(s)``).
        called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if called in STORAGE_HANDLES:
            found.append(f"{called}()")
        elif called == "isinstance" and "Storage" in ast.unparse(node.args[1]):
            found.append(ast.unparse(node))
    return found


def test_only_the_backend_and_huey_seams_check_which_storage_huey_has():
    offending = {
        name: checks
        for name, path in kit_modules().items()
        if not name.startswith(STORAGE_AWARE) and (checks := storage_checks(path))
    }

    assert offending == {}


def test_the_storage_check_finder_sees_the_backend_seams_own_checks():
    assert storage_checks(kit_modules()["acme_jobs.kit.backends"])
