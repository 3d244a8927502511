"""The scan command line: trains the smoke preset on real CIFAR-10, resumes after a kill or a signal
without losing or repeating a seed, and refuses bad input with one line, exit code 2 and no write.

The scans that train, and those a signal or a kill stops, run as `python -m fastseed.scan` in a
subprocess, as a user runs them (tests/processes.py), on smoke at small scale (tests/scans.py: their
point is the scan, not the recipe). The refusals and the limits run `scan.main` in this process."""

import os
import signal
import sqlite3
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
import torch

from fastseed.data.synthetic import make_cifar_like, write_cifar_archive
from fastseed.store import Store
from processes import TIMEOUT_S, Process, run
from scans import SMALL_SET, SMOKE, STOP_TIMEOUT_S, assert_complete, claims, committed, scan_argv

TEST_IMAGES = 10_000


@pytest.fixture(scope="module")
def read() -> dict:
    """The data sets the scans of this process have read, by folder."""
    return {}


@pytest.fixture(autouse=True)
def read_once(read, monkeypatch):
    """A scan in this process reads a folder's CIFAR-10 once for the module, not once a scan: the same
    files give the same arrays (a folder that fails to load fails every time, as before)."""
    from fastseed.data import cifar
    real = cifar.load_cifar10

    def load(data_dir=None, **kw):
        key = (str(data_dir), tuple(sorted(kw.items())))
        if key not in read:
            read[key] = real(data_dir, **kw)
        return read[key]

    monkeypatch.setattr(cifar, "load_cifar10", load)  # where a scan reads it (fastseed.jobs)


# ---- training and resuming --------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_scan_end_to_end_on_real_data(smoke_scan):
    first = smoke_scan.result
    assert first.returncode == 0, first.stderr
    assert "3 of 3 seeds to train" in first.stdout
    records = committed(smoke_scan.out)
    assert [r.seed for r in records] == [0, 1, 2]
    for seed, record in enumerate(records):
        assert_complete(record, seed)

    table = pd.read_csv(smoke_scan.csv)
    assert list(table["seed"]) == [0, 1, 2]
    assert list(table["test_acc"]) == [r.test_acc for r in records]

    again = run(smoke_scan.argv, smoke_scan.out.parent)
    assert again.returncode == 0, again.stderr
    assert "0 of 3 seeds to train" in again.stdout
    assert committed(smoke_scan.out) == records


@pytest.mark.slow
def test_resume_after_kill_loses_nothing(real_cifar_root, tmp_path):
    out = tmp_path / "k.sqlite"
    argv = scan_argv(real_cifar_root, out, "--seeds", 4, *SMALL_SET)
    with Process(argv, tmp_path, name="scan") as scan:
        scan.wait_until(lambda: len(committed(out)) >= 1, "a first committed record")
        scan.kill()  # SIGKILL: no handler runs, the seed in flight is simply lost
    before = committed(out)
    assert 1 <= len(before) < 4

    rerun = run(argv, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{4 - len(before)} of 4 seeds to train" in rerun.stdout
    after = {r.seed: r for r in committed(out)}
    assert sorted(after) == [0, 1, 2, 3]  # each seed once (a record per seed is the store's key)
    for record in before:
        assert after[record.seed] == record  # every field: metrics, curves, predictions, provenance
    for seed, record in after.items():
        assert_complete(record, seed)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_commits_the_seed_in_flight_and_exits(real_cifar_root, tmp_path, signum):
    out = tmp_path / "i.sqlite"
    argv = scan_argv(real_cifar_root, out, "--seeds", 4, "--no-progress", *SMALL_SET)
    with Process(argv, tmp_path, name="scan") as scan:
        # the scan claims seed 1 once seed 0 is committed, then trains it: the signal lands in flight
        scan.wait_until(lambda: 1 in claims(out), "seed 1 to be claimed")
        scan.send_signal(signum)
        assert scan.wait(timeout=STOP_TIMEOUT_S) == 130
    stderr = scan.stderr_text()
    assert "Traceback" not in stderr
    assert signal.Signals(signum).name in stderr
    assert "rerun the same command to resume" in stderr
    stopped = committed(out)
    assert [r.seed for r in stopped] == [0, 1]  # seed 1 was in flight: finished and committed, then stop
    for seed, record in enumerate(stopped):
        assert_complete(record, seed)

    if signum != signal.SIGINT:
        return  # resuming does not depend on which signal stopped the scan: checked once, for SIGINT
    rerun = run(argv, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 of 4 seeds to train" in rerun.stdout
    done = committed(out)
    assert [r.seed for r in done] == [0, 1, 2, 3]
    assert done[:2] == stopped


# ---- refusals ---------------------------------------------------------------------------------
# Each case returns the arguments that make the command bad (argparse: a later option wins over the
# good defaults before it) and the phrase its one-line error must contain.

def missing_data(tmp, real):
    (tmp / "empty").mkdir()
    return ["--data-dir", tmp / "empty"], "no CIFAR-10 in"


def truncated_archive(tmp, real):
    (tmp / "cut").mkdir()
    with open(real / "cifar-10-binary.tar.gz", "rb") as f:
        (tmp / "cut" / "cifar-10-binary.tar.gz").write_bytes(f.read(1 << 20))
    return ["--data-dir", tmp / "cut"], "corrupt or truncated archive"


def digest_mismatch(tmp, real):
    write_cifar_archive(tmp / "fake", make_cifar_like(50, 10, seed=0), fmt="binary", archive=True)
    return ["--data-dir", tmp / "fake"], "SHA-256"


def unknown_preset(tmp, real):
    return ["--preset", "no-such-preset"], "unknown preset"


def zero_seeds(tmp, real):
    return ["--seeds", 0], "--seeds must be a positive number"


def negative_seeds(tmp, real):
    return ["--seeds", -3], "--seeds must be a positive number"


def negative_start(tmp, real):
    return ["--start", -1], "--start must be >= 0"


def zero_pack(tmp, real):
    return ["--pack", 0], "--pack must be a positive number"


def out_under_a_file(tmp, real):
    (tmp / "afile").write_text("a regular file, not a folder\n")
    return ["--out", tmp / "afile" / "s.sqlite"], "use another --out"


def store_of_another_protocol(tmp, real):
    Store(tmp / "other.sqlite", "other", "f" * 64, "{}").close()
    return ["--out", tmp / "other.sqlite"], "holds protocol other"


def store_of_another_augment(tmp, real):
    # a store of "smoke"; with another augmentation the recipe is another protocol
    Store(tmp / "smoke.sqlite", SMOKE.name, SMOKE.hash, SMOKE.to_json()).close()
    return ["--out", tmp / "smoke.sqlite", "--augment", "image"], "holds protocol smoke"


def cuda_without_a_gpu(tmp, real):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible here")
    return ["--device", "cuda"], "no CUDA GPU"


def out_not_sqlite(tmp, real):
    (tmp / "notes.txt").write_text("these are my notes, not a results store\n")
    return ["--out", tmp / "notes.txt"], "not an SQLite database"


def unknown_argument(tmp, real):
    return ["--frobnicate", 3], "unrecognized arguments"


BAD_INPUT = [missing_data, truncated_archive, digest_mismatch, unknown_preset, zero_seeds, negative_seeds,
             negative_start, zero_pack, out_under_a_file, store_of_another_protocol, store_of_another_augment,
             cuda_without_a_gpu, out_not_sqlite, unknown_argument]

def files_under(folder: Path) -> dict:
    """Every file (its bytes) and folder under `folder` — SQLite -wal/-shm side files included."""
    return {p: p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


@pytest.mark.parametrize("make_bad", BAD_INPUT, ids=[f.__name__ for f in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(make_bad, real_cifar_root, tmp_path, capsys):
    from fastseed import scan
    bad, phrase = make_bad(tmp_path, real_cifar_root)
    argv = smoke_argv(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 2) + [str(a) for a in bad]
    out = Path(argv[max(i for i, a in enumerate(argv) if a == "--out") + 1])  # the last --out wins
    before = files_under(tmp_path)

    assert scan.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastseed.scan: error:"), lines
    assert phrase in lines[0]
    assert files_under(tmp_path) == before  # nothing created (the --out, a folder, a CSV), nothing changed
    assert out.exists() == (out in before)


@pytest.mark.slow
def test_bad_input_at_the_command_line_exits_2_with_one_line_and_writes_nothing(real_cifar_root, tmp_path):
    """The same refusal as a user meets it: `python -m fastseed.scan` exits with main's code, and its
    stderr is the one line (the cases above run main in this process)."""
    bad, phrase = unknown_argument(tmp_path, real_cifar_root)
    result = run(scan_argv(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 2, *bad), tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastseed.scan: error:") and phrase in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_backs_off_to_smaller_packs(real_cifar_root, tmp_path, monkeypatch, capsys):
    """A pack that does not fit is retried in halves; its seeds are committed once, none is lost."""
    import fastseed.engine
    from fastseed import scan
    from fastseed.store.record import Record

    tried = []

    def fake_train_pack(protocol, seeds, data, device, *, on_record, **kw):
        tried.append(list(seeds))
        if len(seeds) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        for slot, seed in enumerate(seeds):
            on_record(Record(protocol=protocol.name, protocol_hash=protocol.hash, seed=seed, status="ok",
                             test_acc=0.5, test_loss=1.0, headline_epoch=3, eval_curve=[], train_curve=[],
                             predictions=bytes(TEST_IMAGES), wall_time_s=0.1,
                             pack={"strategy": "fused", "size": len(seeds), "slot": slot, "seeds": seeds},
                             provenance={}))

    monkeypatch.setattr(fastseed.engine, "train_pack", fake_train_pack)
    out = tmp_path / "s.sqlite"
    code = scan.main(["--preset", "smoke", "--device", "cpu", "--data-dir", str(real_cifar_root), "--out",
                      str(out), "--seeds", "8", "--pack", "8", "--no-progress"])
    assert code == 0
    assert tried[:3] == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [0, 1]]
    printed = capsys.readouterr()
    assert "backing off to packs of 4" in printed.out and "backing off to packs of 2" in printed.out
    records = committed(out)
    assert [r.seed for r in records] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert max(r.pack["size"] for r in records) <= 2


# ---- many scans on one store ------------------------------------------------------------------

@pytest.mark.slow
def test_three_scans_started_together_on_a_new_store_train_each_seed_once(real_cifar_root, tmp_path):
    """Issue #12's acceptance on real smoke training (the 10 repeated races are tests/workers/
    test_local.py's, on a tinier protocol): every scan exits 0 once the range is stored, whoever
    trained it; each seed is trained by one scan; records = seeds; SQLite finds the file sound."""
    out = tmp_path / "s.sqlite"
    argv = scan_argv(real_cifar_root, out, "--seeds", 3, "--no-progress", *SMALL_SET)
    with ExitStack() as running:
        scans = []
        for i in range(3):
            (tmp_path / str(i)).mkdir()
            scans.append(running.enter_context(Process(argv, tmp_path / str(i), name="scan")))
        codes = [scan.wait(timeout=TIMEOUT_S) for scan in scans]
    assert codes == [0, 0, 0], [scan.stderr_text() for scan in scans]
    printed = [scan.stdout_text() for scan in scans]
    trained = sorted(int(line.split()[1][:-1]) for text in printed for line in text.splitlines()
                     if line.startswith("seed ") and ": ok" in line)
    assert trained == [0, 1, 2]  # one "seed S: ok" line per commit: no seed trained by two scans
    assert not any("already stored" in text for text in printed)
    records = committed(out)
    for seed, record in zip([0, 1, 2], records, strict=True):
        assert_complete(record, seed)
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


# ---- signals ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_during_start_up_prints_one_line_and_exits(real_cifar_root, tmp_path):
    """The data set is a named pipe nobody writes to: the scan is surely in its start-up (reading the
    data, before any training) when the signal comes. One line, exit 130, no store left behind."""
    slow = tmp_path / "slow"
    slow.mkdir()
    os.mkfifo(slow / "cifar-10-binary.tar.gz")
    out = tmp_path / "s.sqlite"
    writer = None

    def reading():  # a writer can open the pipe only once the scan has it open for reading
        nonlocal writer
        try:
            writer = os.open(slow / "cifar-10-binary.tar.gz", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    try:
        with Process(scan_argv(slow, out, "--seeds", 2), tmp_path, name="scan") as scan:
            scan.wait_until(reading, "the scan to read its data")
            scan.send_signal(signal.SIGTERM)
            assert scan.wait(timeout=STOP_TIMEOUT_S) == 130
    finally:
        if writer is not None:
            os.close(writer)
    assert scan.stderr_text().splitlines() == [
        "fastseed.scan: SIGTERM during start-up: stopped before training any seed"]
    assert not out.exists()


@pytest.mark.slow
def test_a_gpu_preset_on_a_cpu_says_so_before_its_first_seed_ends_and_ctrl_c_says_what_is_left(
        real_cifar_root, tmp_path):
    """resnet18-exp1 on one CPU thread: about 40 min a seed. Within seconds the scan prints the measured
    time per step and the projections, and says a GPU is expected; the first Ctrl-C says how long the
    seed in flight still needs; the second drops it (nothing is committed)."""
    out = tmp_path / "r.sqlite"
    argv = scan_argv(real_cifar_root, out, "--seeds", 10000, "--no-progress")
    argv[argv.index("smoke")] = "resnet18-exp1"
    with Process(argv, tmp_path, name="scan") as scan:
        scan.wait_until(lambda: "pace:" in scan.stdout_text(), "the pace line")
        scan.send_signal(signal.SIGINT)
        scan.wait_until(lambda: "more)" in scan.stderr_text(), "the first Ctrl-C's message")
        scan.send_signal(signal.SIGINT)
        assert scan.wait(timeout=STOP_TIMEOUT_S) == 130
    pace = next(line for line in scan.stdout_text().splitlines() if line.startswith("pace:"))
    per_step = float(pace.split()[1])
    assert 0 < per_step < 60 and "s per training step on cpu" in pace
    assert "a seed (3910 steps)" in pace and "for the 10000 seeds to train" in pace  # 391 batches × 10 epochs
    printed = scan.stdout_text()
    assert "meant for a GPU" in printed and "--preset smoke" in printed
    first = next(line for line in scan.stderr_text().splitlines() if line.startswith("SIGINT"))
    assert "finishing the seeds in flight (about" in first and "more), then stopping" in first
    assert "Traceback" not in scan.stderr_text()
    assert committed(out) == []


# ---- limits and hardening (in this process; training is replaced where only the scan is tested) ---

def smoke_argv(real_cifar_root, out, *extra) -> list:
    return ["--preset", "smoke", "--device", "cpu", "--data-dir", str(real_cifar_root), "--out", str(out),
            "--no-progress", *map(str, extra)]


def fake_record(protocol, seed, seeds, acc=0.5):
    from fastseed.store.record import Record
    return Record(protocol=protocol.name, protocol_hash=protocol.hash, seed=seed, status="ok", test_acc=acc,
                  test_loss=1.0, headline_epoch=3, eval_curve=[[3, acc, 1.0]], train_curve=[[3, 1.0, acc]],
                  predictions=bytes(TEST_IMAGES), wall_time_s=0.1,
                  pack={"strategy": "fused", "size": len(seeds), "slot": seeds.index(seed), "seeds": seeds},
                  provenance={})


def instant_training(monkeypatch, after=None) -> list:
    """engine.train_pack replaced by one that makes each pack's records at once (the scan around the
    training is under test); returns the packs it was asked to train. `after(packs)` after each."""
    import fastseed.engine
    packs = []

    def train_pack(protocol, seeds, data, device, *, on_record, **kw):
        seeds = list(seeds)
        for seed in seeds:
            on_record(fake_record(protocol, seed, seeds, acc=0.5 + seed % 7 / 100))
        packs.append(seeds)
        if after is not None:
            after(packs)

    monkeypatch.setattr(fastseed.engine, "train_pack", train_pack)
    return packs


class data_limit:
    """RLIMIT_DATA at what the process uses now plus `extra` bytes: a scan that tried to hold its whole
    range in memory gets a MemoryError instead of taking the machine's."""

    def __init__(self, extra: int):
        self.extra = extra

    def __enter__(self):
        import resource
        used = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmData"))
        self.saved = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (used + self.extra, self.saved[1]))

    def __exit__(self, *exc):
        import resource
        resource.setrlimit(resource.RLIMIT_DATA, self.saved)


def test_a_trillion_seeds_cost_the_memory_of_a_pack_not_of_the_range(real_cifar_root, tmp_path, monkeypatch,
                                                                        capsys):
    """Issue #11.10: the pending seeds are never listed (today's scan queued all 10¹² of them first)."""
    from fastseed import scan

    def ctrl_c_after_three(packs):
        if len(packs) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the scan stops after this pack, as after a Ctrl-C

    packs = instant_training(monkeypatch, ctrl_c_after_three)
    with data_limit(1 << 30):  # the data set and the store need a few hundred MB
        code = scan.main(smoke_argv(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 10**12))
    assert code == 130 and packs == [[0], [1], [2]]
    assert "1000000000000 of 1000000000000 seeds to train" in capsys.readouterr().out
    assert [r.seed for r in committed(tmp_path / "s.sqlite")] == [0, 1, 2]


def test_the_last_seed_of_a_scan_is_2_to_the_63_minus_2(real_cifar_root, tmp_path, monkeypatch, capsys):
    """Issue #11.10: today a range past 2**63 trained, then overflowed. The range's end, 2**63 - 1, is
    the largest signed 64-bit integer (SQLite's INTEGER)."""
    from fastseed import scan
    packs = instant_training(monkeypatch)
    top = 2**63 - 2
    assert scan.main(smoke_argv(real_cifar_root, tmp_path / "s.sqlite", "--start", top - 2, "--seeds", 3)) == 0
    assert [r.seed for r in committed(tmp_path / "s.sqlite")] == [top - 2, top - 1, top]
    assert scan.main(smoke_argv(real_cifar_root, tmp_path / "t.sqlite", "--start", top - 2, "--seeds", 4)) == 2
    assert "a scan's seeds end at 2**63 - 2" in capsys.readouterr().err and len(packs) == 3  # none more
    assert not (tmp_path / "t.sqlite").exists()


def test_an_explicit_pack_is_capped_by_the_seeds_left(real_cifar_root, tmp_path, monkeypatch, capsys):
    from fastseed import scan
    packs = instant_training(monkeypatch)
    assert scan.main(smoke_argv(real_cifar_root, tmp_path / "s.sqlite", "--seeds", 3, "--pack", 100000)) == 0
    assert packs == [[0, 1, 2]]
    assert "strategy fused, pack 3" in capsys.readouterr().out


def test_a_malformed_row_is_named_in_one_line_and_the_scan_goes_on(real_cifar_root, tmp_path, monkeypatch,
                                                                     capsys):
    """Issue #11.9: today the scan crashed reading the store."""
    import sqlite3

    from fastseed import scan
    packs = instant_training(monkeypatch)
    out = tmp_path / "s.sqlite"
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 3)) == 0
    with sqlite3.connect(out) as db:
        db.execute("UPDATE records SET eval_curve = '[[3, 0.5' WHERE seed = 1")  # invalid JSON
    capsys.readouterr()
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 4)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "malformed row" in line]
    assert len(lines) == 1 and "seed 1" in lines[0] and "eval_curve" in lines[0] and "goes on" in lines[0]
    assert packs == [[0], [1], [2], [3]]  # the malformed seed is stored: not trained again
    with Store.open(out) as store:
        assert [r.seed for r in store.records()] == [0, 2, 3] and store.skipped_rows[0][0] == 1


def test_a_read_only_store_is_refused_before_anything_trains(real_cifar_root, tmp_path, monkeypatch, capsys):
    """Issue #11.8: today a seed trained, then a 20-line traceback. (CI runs as root, whom a file mode
    does not stop: os.access is made to answer as for another user; tests/store/test_file.py also
    refuses a real read-only mount.)"""
    from fastseed import scan
    packs = instant_training(monkeypatch)
    out = tmp_path / "s.sqlite"
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 1)) == 0
    os.chmod(out, 0o444)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if Path(p).resolve() == out.resolve() and mode & os.W_OK else real_access(p, mode, **kw)))
    capsys.readouterr()
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 3)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "is read-only" in err[0]
    assert packs == [[0]]


def test_a_full_disk_during_a_scan_is_one_line_and_the_records_before_stay(real_cifar_root, tmp_path,
                                                                           monkeypatch, capsys):
    """Issue #11.7. SQLite's own page limit makes it report "database or disk is full" exactly as on a
    full disk, on any machine (tests/store/test_file.py fills a real file system where it can)."""
    from fastseed import scan
    from fastseed.store import Store as RealStore
    instant_training(monkeypatch)
    add = RealStore.add

    def add_on_a_filling_disk(self, record, worker=None, **kw):
        if record.seed == 2:  # no room for a third record
            pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
            self._conn.execute(f"PRAGMA max_page_count = {pages + 1}")
        return add(self, record, worker, **kw)

    monkeypatch.setattr(RealStore, "add", add_on_a_filling_disk)
    out = tmp_path / "s.sqlite"
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 4)) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"fastseed.scan: error: {out}: disk full while committing seed 2; "
                   f"the records committed before are intact"]
    monkeypatch.setattr(RealStore, "add", add)  # space freed: the same command resumes
    assert scan.main(smoke_argv(real_cifar_root, out, "--seeds", 4)) == 0
    assert "2 of 4 seeds to train" in capsys.readouterr().out
    assert [r.seed for r in committed(out)] == [0, 1, 2, 3]


@pytest.mark.parametrize("argv,phrase", [
    (["--fix", "head"], "--fix head: smoke draws no head stream; its streams are augment, init, order"),
    (["--fix", "dropout,init"], "--fix dropout: smoke draws no dropout stream"),
    (["--classes", "3"], "--classes: not a knob of smoke"),
    (["--start", 2**63 - 2, "--seeds", 2], "the last seed would be 9223372036854775807"),
    (["--workers", 0], "--workers must be a positive number"),
    (["--workers", 2, "--gpus", "all"], "--gpus and --workers: give one"),
    (["--gpus", "all"], "--gpus and --device cpu: give one"),
    (["--loader-threads", 0], "--loader-threads must be a positive number"),
])
def test_more_bad_input_exits_2_with_one_line_and_writes_nothing(argv, phrase, real_cifar_root, tmp_path, capsys):
    from fastseed import scan
    assert scan.main(smoke_argv(real_cifar_root, tmp_path / "s.sqlite", *argv)) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("fastseed.scan: error:") and phrase in err[0], err
    assert list(tmp_path.iterdir()) == []
