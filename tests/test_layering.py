"""The command lines sit on top: no module of the package imports one, another command line included
(a replay, a pool's worker or a Ray actor must never drag in `scan`, whose orchestration moved to
fastseed/jobs.py and fastseed/workers/)."""

import ast
from pathlib import Path

import fastseed

PACKAGE = Path(fastseed.__file__).parent
COMMAND_LINES = {"fastseed.scan", "fastseed.report", "fastseed.replay", "fastseed.merge"}


def imported_modules(path: Path) -> set[str]:
    """Every module an `import` or `from … import` in the file names, wherever it sits (lazy imports
    inside functions included); `from fastseed import scan` counts as fastseed.scan."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute ones")
    return names


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_imports_a_command_line():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        bad = imported_modules(path) & (COMMAND_LINES - {name})
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_the_check_sees_lazy_and_from_imports(tmp_path):
    """The check itself: an import inside a function and the `from fastseed import scan` form are found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fastseed import scan, store\n    import fastseed.replay\n")
    assert {"fastseed.scan", "fastseed.replay"} <= imported_modules(module)
    assert not {"fastseed.scan", "fastseed.replay"} & imported_modules(PACKAGE / "jobs.py")
