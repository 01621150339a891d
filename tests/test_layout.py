"""The package's layout as its architecture: tiers that import only downwards, no cycle, no private coupling.

These read the source with :mod:`ast` (nothing is imported), so they hold for imports placed inside
functions too.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nasgen"

#: Each subpackage's tier: a module may import only from its own tier or a lower one.
TIERS = {"common": 0, "space": 1, "nn": 2, "constraints": 3, "samplers": 4, "search": 5, "train": 6, "cli": 7}
MAX_MODULE_LINES = 800


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _resolve(module: str, name: str | None) -> str:
    """The nasgen module an ``import`` names (``from nasgen.space import backend`` names a module)."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _imports(path: pathlib.Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every nasgen import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "nasgen"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nasgen":
            found += [(node.module, a.name) for a in node.names]
    return found


def _tier(module: str) -> int | None:
    parts = module.split(".")
    return TIERS.get(parts[1]) if len(parts) > 1 else None


def _graph() -> dict[str, set[str]]:
    return {mod: {_resolve(m, n) for m, n in _imports(path)} - {mod} for mod, path in MODULES.items()}


def test_every_module_is_in_a_tier_and_none_is_over_800_lines():
    loose = [m for m in MODULES if m.count(".") >= 1 and _tier(m) is None and m not in ("nasgen.__main__",)]
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not loose, f"modules outside every tier: {loose}"
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_tiers_import_only_from_their_own_tier_or_below():
    upward = []
    for mod, deps in _graph().items():
        own = _tier(mod)
        if own is None:
            continue
        upward += [f"{mod} -> {d}" for d in deps if (t := _tier(d)) is not None and t > own]
        upward += [f"{mod} -> {d}" for d in deps if d == "nasgen"]
    assert not upward, "imports from a higher tier: " + "; ".join(sorted(upward))


def test_no_import_cycle_function_level_imports_included():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycles.append(" -> ".join(trail[trail.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, trail + [dep])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_is_imported_from_another_module():
    # The compiled kernel is private to the one module that talks to it (nasgen.space.backend).
    allowed = {("nasgen.space.backend", "nasgen.space", "_kernel")}
    private = []
    for mod, path in MODULES.items():
        for module, name in _imports(path):
            if name and name.startswith("_") and not name.startswith("__") and (mod, module, name) not in allowed:
                private.append(f"{mod}: from {module} import {name}")
            if module.split(".")[-1].startswith("_") and not module.endswith("__"):
                private.append(f"{mod}: import {module}")
    assert not private, "private names imported across modules: " + "; ".join(private)


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_each_tier_is_a_subpackage(tier):
    assert (PACKAGE / tier / "__init__.py").is_file()


def test_an_unbuilt_source_folder_fails_in_one_line_naming_it_unless_the_twin_is_asked_for(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(PACKAGE, tmp_path / "nasgen", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NASGEN_PURE_PYTHON"}
    probe = "import nasgen; print(nasgen.count(nasgen.SearchSpace((30,), (20,), min_layers=2, max_layers=2)))"
    failed = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    last = failed.stderr.strip().splitlines()[-1]
    assert failed.returncode != 0 and str(tmp_path) in last and "pip install -e ." in last
    twin = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=dict(env, NASGEN_PURE_PYTHON="1"),
                          capture_output=True, text=True)
    assert twin.returncode == 0 and twin.stdout.strip() == "9", twin.stderr
