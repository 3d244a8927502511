"""A user model's file is checked against the protocol's digest at every seed's init, but read once: a
scan of 10^5 seeds does not re-hash it 10^5 times; an edited file is still refused."""

import pathlib
import sys
import textwrap
import uuid

import pytest

from fastseed import FastseedError
from fastseed.models.user import build_user_model
from fastseed.usercode import source_digest


def test_the_model_file_is_read_once_and_an_edit_is_still_refused(tmp_path, monkeypatch):
    name = f"net_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent("""
        from torch import nn
        def make():
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = f"{name}:make"
    digest = source_digest(spec, "--model", "factory")
    reads, read_bytes = [], pathlib.Path.read_bytes
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: (reads.append(self), read_bytes(self))[1])
    for _ in range(20):  # twenty seeds' inits
        build_user_model(spec, digest)
    assert [p for p in reads if p == path] == []
    path.write_text(path.read_text() + "# edited\n")
    with pytest.raises(FastseedError, match="changed since this protocol was made"):
        build_user_model(spec, digest)
    sys.modules.pop(name, None)
