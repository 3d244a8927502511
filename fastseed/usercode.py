"""A user's own code, named `package.module:attribute` on a command line: `--model mynets.wide:make`,
`--train examples.digits_mlp:train`.

The module is found as `python -m` finds modules, on `sys.path` with the current directory first, so
`--train mystudy:train` is ./mystudy.py when the scan runs from its folder. Its source file's sha256 is
part of the protocol that uses it, so editing the file makes another protocol and another store, and a
run whose file no longer has the recorded digest is refused (`checked_file`). Only that one file is
covered: code it imports from other files is not.

`load` runs exactly the file it hashed: a module imported before in this process (a notebook that
imported it, then edited the file) is imported again when its file changed since, so the code that
trains is never an older copy than the digest says. Every problem is one line (FastseedError) naming
the flag and the spec.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from fastseed import FastseedError

_LOADED: dict[str, str] = {}  # module name → the sha256 of its file when `load` last imported it


def split_spec(spec: str, flag: str, role: str) -> tuple[str, str]:
    """(module, attribute) of `package.module:attribute`; `role` names the attribute in messages."""
    module, _, attr = spec.partition(":")
    if not module or not attr or not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
        raise FastseedError(f"{flag} {spec}: expected package.module:{role} (a Python module path, a colon, "
                            f"a callable in it)")
    return module, attr


def _cwd_on_path() -> None:
    """The current directory on sys.path, first, as `python -m` puts it there (idempotent)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def module_file(spec: str, flag: str, role: str) -> Path:
    """The source file of the spec's module, found without running it."""
    module, _ = split_spec(spec, flag, role)
    _cwd_on_path()
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:  # a parent package that does not import
        raise FastseedError(f"{flag} {spec}: cannot find module {module} ({e})") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise FastseedError(f"{flag} {spec}: no module {module} on the Python path (it is imported from the "
                            f"current directory {os.getcwd()} or an installed package)")
    return Path(found.origin)


def code_root(spec: str, flag: str, role: str) -> str:
    """The folder of `sys.path` the module is imported from: a worker on another process or node puts
    it on its own path (/r for /r/examples/digits_mlp.py as examples.digits_mlp)."""
    module, _ = split_spec(spec, flag, role)
    path = module_file(spec, flag, role)
    if path.name == "__init__.py":
        path = path.parent
    return str(path.resolve().parents[len(module.split(".")) - 1])


def source_digest(spec: str, flag: str, role: str) -> str:
    return hashlib.sha256(module_file(spec, flag, role).read_bytes()).hexdigest()


def checked_file(spec: str, digest: str, flag: str, role: str) -> None:
    """Refuse (one line) a module file that no longer has the sha256 its protocol recorded."""
    if digest and source_digest(spec, flag, role) != digest:
        raise FastseedError(f"{flag} {spec}: {module_file(spec, flag, role)} changed since this protocol was "
                            f"made (its sha256 is not {digest[:12]}…): restore it, or scan the new file as a "
                            f"new protocol")


def load(spec: str, flag: str, role: str):
    """The callable `spec` names, from its module's file as it is now (imported again if it changed since
    this process last imported it, or if it was imported by someone else first)."""
    module_name, attr = split_spec(spec, flag, role)
    path = module_file(spec, flag, role)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        module = sys.modules.get(module_name)
        if module is not None and _LOADED.get(module_name) != digest:
            module = importlib.reload(module)
        elif module is None:
            module = importlib.import_module(module_name)
    except Exception as e:
        raise FastseedError(f"{flag} {spec}: importing {path} failed: {type(e).__name__}: {first_line(e)}") from None
    _LOADED[module_name] = digest
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FastseedError(f"{flag} {spec}: {module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FastseedError(f"{flag} {spec}: {attr} is not callable")
    return obj


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
