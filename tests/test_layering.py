"""The documented layer order (fastseed.LAYERS, written out in fastseed/__init__'s docstring) holds for
every import of the package, function-level ones included: a module uses the layers below its own and
its own package, never a layer above nor another package of its own layer. So a replay, a pool's
worker or a Ray actor never drags in `scan`, and the engine never reaches up into the store's API."""

import ast
from pathlib import Path

import pytest

import fastseed

PACKAGE = Path(fastseed.__file__).parent
SHARED = "fastseed.cli"  # the command lines' shared parser: the one module of a layer its siblings use


def imported_modules(path: Path) -> set[str]:
    """Every fastseed module an `import` or `from … import` in the file names, wherever it sits (lazy
    imports inside functions included); `from fastseed import scan` counts as fastseed.scan."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute ones")
    return {n for n in names if n == "fastseed" or n.startswith("fastseed.")}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def place(name: str) -> tuple[int, str]:
    """(layer, package) of a module: the longest entry of fastseed.LAYERS that is it or holds it. A
    name that is an attribute (fastseed.store.Store) belongs to its module's place."""
    best = None
    for layer, entries in enumerate(fastseed.LAYERS):
        for entry in entries:
            if (name == entry or name.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (layer, entry)
    assert best is not None, name
    return best


def wrong_way(root: Path = PACKAGE) -> dict[str, list[str]]:
    """module → the imports that break the layer order."""
    offenders = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        layer, package = place(name)
        bad = sorted(n for n in imported_modules(path)
                     if place(n)[0] < layer or (place(n)[0] == layer and place(n)[1] not in (package, SHARED)))
        if bad:
            offenders[name] = bad
    return offenders


def test_every_import_follows_the_layer_order():
    assert wrong_way() == {}


def test_the_docstring_states_the_same_layers():
    """The order is written once as data (LAYERS) and once in words; the words name every entry, in order."""
    doc = fastseed.__doc__
    rows = [line.strip() for line in doc.split("\n\n")[2].splitlines() if line.strip()]
    assert len(rows) == len(fastseed.LAYERS)
    for row, entries in zip(rows, fastseed.LAYERS):
        for entry in entries:
            short = "fastseed itself" if entry == "fastseed" else entry.removeprefix("fastseed.")
            assert short.split(".")[0] in row, (row, entry)


def test_every_module_has_a_place():
    for path in PACKAGE.rglob("*.py"):
        place(module_name(path))


@pytest.mark.parametrize("where, line", [
    ("engine/plant.py", "def f():\n    from fastseed.workers.local import work\n"),   # a lazy upward import
    ("store/plant.py", "from fastseed import jobs\n"),                              # `from fastseed import x`
    ("report/plant.py", "import fastseed.workers.stopping\n"),                     # a sibling of its layer
    ("models/plant.py", "from fastseed.store import Store\n"),                     # the store's API
])
def test_a_planted_wrong_way_import_is_found(tmp_path, where, line):
    """The check itself, on a copy of the package with one wrong-way import planted."""
    import shutil
    root = tmp_path / "fastseed"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    assert wrong_way(root) == {}
    (root / where).write_text(line)
    found = wrong_way(root)
    assert list(found) == [module_name(root / where, root)], found


def test_every_import_names_something_that_exists():
    """Every module imports, and every fastseed name an import statement names -- function-level ones
    included, which only run when called -- is a module of the package or an attribute of one. (After a
    module moves, a stale `from fastseed import old_name` inside a function would otherwise wait for the
    one call that reaches it.)"""
    import importlib
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fastseed":
                names = [(node.module, a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [(a.name.rsplit(".", 1)[0], a.name.rsplit(".", 1)[1]) for a in node.names
                         if a.name.startswith("fastseed.")]
            else:
                continue
            for module, name in names:
                if module not in modules:
                    missing.setdefault(module_name(path), []).append(module)
                elif f"{module}.{name}" not in modules and not hasattr(importlib.import_module(module), name):
                    missing.setdefault(module_name(path), []).append(f"{module}.{name}")
    assert missing == {}
