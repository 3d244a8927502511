"""The corners of a scan's life that issue #23 found broken: a signal while Python imports torch, an
export path that cannot be written, the summary and the claims of a store that others share.

"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastseed import scan
from fastseed.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from processes import environment  # noqa: E402
from scans import committed, scan_argv  # noqa: E402
from test_scan import fake_record, instant_training, smoke_argv  # noqa: E402

from fastseed.recipe.presets import get_preset  # noqa: E402

SMOKE = get_preset("smoke")


def mapped(pid: int, library: str) -> bool:
    """Whether process `pid` has loaded a shared library whose name contains `library`."""
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("library", ["_multiarray_umath", "libtorch_cpu"], ids=["numpy", "libtorch"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_torch_imports_stops_at_once_with_one_line(real_cifar_root, tmp_path, library, signum):
    """Issue #23.2: the handler raised into `import torch`, whose C start-up imports numpy and swallows
    what that import raises: the signal was lost and the whole range trained (exit 0), or ended in a
    RecursionError. The signal is sent the moment numpy's core, or libtorch, is loaded (read from
    /proc/PID/maps): the scan must stop at once with one line and exit 130, leaving nothing behind."""
    proc = subprocess.Popen(scan_argv(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 2), cwd=tmp_path,
                            env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not mapped(proc.pid, library):
            assert proc.poll() is None and time.monotonic() < deadline, f"the scan never loaded {library}"
            time.sleep(0.001)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"fastseed.scan: {signal.Signals(signum).name} during start-up: stopped before "
                                f"training any seed"]
    assert list(tmp_path.iterdir()) == []


def test_an_export_path_that_cannot_be_written_is_refused_before_training(real_cifar_root, tmp_path, monkeypatch,
                                                                           capsys):
    """Issue #23.8: `--csv DIR` was found out only after the whole range had trained."""
    packs = instant_training(monkeypatch)
    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("not a folder\n")
    out = tmp_path / "s.sqlite"
    for flag, path, phrase in [("--csv", tmp_path / "folder", "is a folder"),
                               ("--parquet", tmp_path / "folder", "is a folder"),
                               ("--csv", tmp_path / "afile" / "s.csv", "is not a writable folder"),
                               ("--csv", out, "is the store itself")]:
        assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 2, flag, path)) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"fastseed.scan: error: {flag} {path}: ") and phrase in err[0], err
    assert packs == [] and not out.exists()
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 2, "--csv", tmp_path / "new" / "s.csv")) == 0
    assert (tmp_path / "new" / "s.csv").read_text().count("\n") == 3  # the header and two seeds
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["s.csv"]  # no temp file beside it


def test_the_summary_covers_every_stored_seed_of_the_range_whoever_trained_it(real_cifar_root, tmp_path,
                                                                             monkeypatch, capsys):
    """Issue #23.10: with another scan on the store, the last line said "4 of 4 seeds" beside the mean
    ± std of the 2 this scan trained."""
    out = tmp_path / "s.sqlite"
    protocol = SMOKE

    def another_scan_commits(packs):  # after this scan's first pack, another one stores seeds 2 and 3
        if len(packs) == 1:
            with Store(out, protocol.name, protocol.hash, protocol.to_json()) as other:
                for seed in (2, 3):
                    other.add(fake_record(protocol, seed, [seed], acc=0.9))

    instant_training(monkeypatch, after=another_scan_commits)
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 4)) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"smoke: 4 of 4 seeds in {out}; ") and "(n=4)" in last and "max 90.00" in last


def test_a_dead_claimant_is_not_called_another_worker(real_cifar_root, tmp_path, monkeypatch, capsys):
    """Issue #23.10: a rerun after kill -9 said "1 claimed by other workers" about a dead process."""
    from fastseed.store.claims import machine
    instant_training(monkeypatch)
    out = tmp_path / "s.sqlite"
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 1)) == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(out, SMOKE.name, SMOKE.hash, SMOKE.to_json()) as store, store.transaction("a claim") as conn:
        conn.execute("INSERT INTO claims VALUES (1, 'killed', ?, ?, ?)", (machine(), dead.pid, time.time() + 600))
    capsys.readouterr()
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 3)) == 0
    printed = capsys.readouterr().out
    assert "2 of 3 seeds to train, 1 already in" in printed and "claimed by other workers" not in printed
    assert [r.seed for r in committed(out)] == [0, 1, 2]
