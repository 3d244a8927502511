"""The store on disk: created without ever replacing a file, refused before anything is touched,
read without side files (also on a read-only mount), read through its WAL, upgraded from schema 1."""

import dataclasses
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastseed.store import Store, claims
from fastseed.store.file import build_store_file, new_meta, publish_store_file

sys.path.insert(0, str(Path(__file__).parent))
from test_store import (PROTOCOL_HASH, PROTOCOL_JSON, assert_same, make_record, new_store,  # noqa: E402
                        refused, snapshot)

REPO = Path(__file__).resolve().parents[2]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_publishing_never_replaces_an_existing_store(tmp_path):
    path = tmp_path / "s.sqlite"
    new_store(path).close()
    before = snapshot(path)
    tmp = tmp_path / ".s.tmp"
    build_store_file(tmp, new_meta("other", "b" * 64, "{}"))
    assert listing(tmp_path) == [".s.tmp", "s.sqlite"]  # complete in one file: no -wal beside it
    assert publish_store_file(tmp, path) is False
    assert snapshot(path) == before and listing(tmp_path) == ["s.sqlite"]
    assert Store.open(path).protocol_hash == PROTOCOL_HASH


def deny(monkeypatch, *denied: Path):
    """os.access as a non-root user sees a read-only file or folder (root may write anything, and CI
    runs as root: this is how the refusal is tested there; a real read-only mount is tested below)."""
    real = os.access
    denied = {p.resolve() for p in denied}
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if Path(p).resolve() in denied and mode & os.W_OK else real(p, mode, **kw)))


def test_a_read_only_store_file_is_refused_before_anything_is_touched(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        store.add(make_record(0))
    before = snapshot(path)
    deny(monkeypatch, path)
    for call in (new_store, lambda p: Store.check(p, "picard-short", PROTOCOL_HASH)):
        assert "s.sqlite is read-only" in refused(call, path)
    assert snapshot(path) == before and listing(tmp_path) == ["s.sqlite"]
    assert len(Store.open(path)) == 1  # reading it is fine


def test_a_store_in_a_read_only_folder_is_refused_before_anything_is_touched(tmp_path, monkeypatch):
    path = tmp_path / "ro" / "s.sqlite"
    new_store(path).close()
    before = snapshot(path)
    deny(monkeypatch, path.parent)
    message = refused(new_store, path)
    assert "read-only folder" in message and "s.sqlite-wal" in message
    assert "read-only folder" in refused(Store.check, path, "picard-short", PROTOCOL_HASH)
    assert snapshot(path) == before and listing(path.parent) == ["s.sqlite"]
    with Store.open(path) as reader:  # a report reads it, writing nothing
        assert len(reader) == 0 and reader.records() == []
    assert listing(path.parent) == ["s.sqlite"]


def test_open_and_read_leave_no_wal_or_shm_beside_the_store(tmp_path):
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        for seed in range(3):
            store.add(make_record(seed))
    assert listing(tmp_path) == ["s.sqlite"]  # the last writer checkpointed and removed them
    with Store.open(path) as reader:
        assert [r.seed for r in reader.records()] == [0, 1, 2]
        assert len(reader) == 3 and reader.progress(0, 10) == (3, 0) and reader.record(1) is not None
        assert reader.accuracies(0, 3).shape == (3,) and reader.to_frame().shape[0] == 3
    assert listing(tmp_path) == ["s.sqlite"]


def test_a_reader_sees_the_commits_of_a_writer_that_started_after_it(tmp_path):
    path = tmp_path / "s.sqlite"
    with new_store(path) as store:
        store.add(make_record(0))
    with Store.open(path) as reader:
        assert reader.done_seeds() == {0}
        with new_store(path) as writer:
            writer.add(make_record(1))
            assert reader.done_seeds() == {0, 1}
            writer.set_test_labels(np.arange(10_000) % 10)  # a class for each of the records' predictions
            writer.add(make_record(2))
            assert [r.seed for r in reader.records()] == [0, 1, 2]
        writer_gone = reader.done_seeds()  # its checkpoint rewrote the file under the reader
        assert writer_gone == {0, 1, 2} and np.array_equal(reader.test_labels, np.arange(10_000) % 10)


def wal_pages(wal: Path) -> tuple[int, set[int]]:
    """Page size and the pages that have a newer version in the WAL (sqlite.org/fileformat2.html §4.1:
    a 32-byte header, then frames of a 24-byte header, page number first, and one page)."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    pages, offset = set(), 32
    while offset + 24 + page_size <= len(data):
        pages.add(struct.unpack(">I", data[offset:offset + 4])[0])
        offset += 24 + page_size
    return page_size, pages


def test_a_store_whose_last_commits_sit_in_the_wal_opens_and_resumes(tmp_path):
    """Issue #11.7: a checkpoint cut short (the disk filled up) leaves pages of the store file torn;
    their good versions are in the WAL. Read alone the file is malformed; read with its WAL it is
    whole, and a scan must resume it."""
    live, crashed = tmp_path / "live" / "s.sqlite", tmp_path / "crashed"
    with new_store(live) as store:
        for seed in range(6):
            store.add(make_record(seed))
        crashed.mkdir()  # the files as a power cut would leave them: the commits in the WAL only
        for name in ("s.sqlite", "s.sqlite-wal", "s.sqlite-shm"):
            shutil.copy(live.parent / name, crashed / name)
    path = crashed / "s.sqlite"
    page_size, pages = wal_pages(crashed / "s.sqlite-wal")
    with open(path, "r+b") as f:  # tear every page the WAL holds a newer version of
        for page in pages:
            f.seek((page - 1) * page_size + (100 if page == 1 else 0))  # keep the 100-byte file header
            f.write(b"\xa5" * (page_size - (100 if page == 1 else 0)))
    with pytest.raises(sqlite3.DatabaseError):  # what the old check read: the file without its WAL
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        conn.execute("SELECT * FROM meta").fetchall()
        conn.execute("SELECT seed FROM records").fetchall()
    with Store.open(path) as reader:
        assert [r.seed for r in reader.records()] == list(range(6))
    Store.check(path, "picard-short", PROTOCOL_HASH)
    with new_store(path) as store:
        assert store.done_seeds() == set(range(6))
        assert store.add(make_record(6)) is True
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 7


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    protocol_hash TEXT NOT NULL, seed INTEGER NOT NULL, protocol TEXT NOT NULL, status TEXT NOT NULL,
    test_acc REAL, test_loss REAL, headline_epoch INTEGER NOT NULL, wall_time_s REAL NOT NULL,
    finished_at TEXT, eval_curve TEXT NOT NULL, train_curve TEXT NOT NULL, pack TEXT NOT NULL,
    provenance TEXT NOT NULL, predictions BLOB NOT NULL,
    PRIMARY KEY (protocol_hash, seed)
);
"""  # fastseed 0.1.0's schema, as its store.py wrote it


def schema_1_store(path: Path, seeds) -> Path:
    """A store as fastseed 0.1.0 made it: schema "1", WAL, records without logits."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_1)
    meta = {**new_meta("picard-short", PROTOCOL_HASH, PROTOCOL_JSON), "schema": "1"}
    conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    for seed in seeds:
        row = make_record(seed).to_row()
        del row["logits"], row["metrics"]
        conn.execute(f"INSERT INTO records ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})", row)
    conn.close()
    return path


def meta_schema(path: Path, immutable: bool) -> str:
    conn = sqlite3.connect(f"file:{path}?{'immutable=1' if immutable else 'mode=ro'}", uri=True)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    finally:
        conn.close()


def test_a_schema_1_store_is_read_as_it_is(tmp_path):
    path = schema_1_store(tmp_path / "old.sqlite", [0, 1])
    before = snapshot(path)
    with Store.open(path) as reader:
        assert reader.schema == "1" and reader.progress(0, 5) == (2, 0)
        records = reader.records()
    assert [r.seed for r in records] == [0, 1] and records[0].logits is None
    assert_same(records[1], make_record(1))
    assert snapshot(path) == before and listing(tmp_path) == ["old.sqlite"]


def test_a_schema_1_store_is_upgraded_in_place_and_old_fastseed_then_refuses_it(tmp_path):
    path = schema_1_store(tmp_path / "old.sqlite", [0, 1])
    with new_store(path) as store:
        assert store.schema == "3"
        assert [r.seed for r in store.records()] == [0, 1]
        assert store.claim(0, 4, 2, "w", 60) == [2, 3]  # the claims table is there
        store.add(make_record(2, status="diverged"))
    with new_store(path) as store:  # a second open finds it upgraded already
        assert len(store) == 3 and store.schema == "3"
    conn = sqlite3.connect(path)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(records)")]
    assert columns[-2:] == ["logits", "metrics"] and conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    # fastseed 0.1.0 accepts a store only if meta.schema == "1", read by its writer from the file
    # alone (immutable=1, ignoring the WAL) and by its readers through the WAL: both now see "3"
    assert meta_schema(path, immutable=True) == "3" and meta_schema(path, immutable=False) == "3"


def test_a_schema_2_store_gets_the_metrics_column_and_keeps_its_records(tmp_path):
    """Schema 2 (claims, logits) → 3 (a user function's metrics): the records read as before, with no
    metrics (a built-in recipe's test accuracy); a record with metrics is stored beside them."""
    path = schema_1_store(tmp_path / "two.sqlite", [0, 1])
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE records ADD COLUMN logits BLOB")
    conn.executescript(claims.SCHEMA)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    conn.close()
    with Store.open(path) as reader:  # read as it is: no metrics column, None for each record
        assert reader.schema == "2" and [r.metrics for r in reader.records()] == [None, None]
    with new_store(path) as store:
        assert store.schema == "3" and [r.metric.name for r in store.records()] == ["test accuracy"] * 2
        store.add(dataclasses.replace(make_record(2), metrics={"metric": {"name": "f1", "unit": "",
                                                                          "higher_is_better": True, "bounds": None}}))
    with Store.open(path) as reader:
        assert [r.metric.name for r in reader.records()] == ["test accuracy", "test accuracy", "f1"]
        assert meta_schema(path, immutable=False) == "3"


def test_a_store_of_a_newer_schema_is_refused_in_one_line(tmp_path):
    path = schema_1_store(tmp_path / "new.sqlite", [0])
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    before = snapshot(path)
    for call in (new_store, Store.open):
        assert "schema 4" in refused(call, path)
    assert snapshot(path) == before


def test_a_wal_left_without_its_store_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    (tmp_path / "s.sqlite-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(60))
    assert "s.sqlite-wal" in refused(new_store, path)
    assert "s.sqlite-wal" in refused(Store.check, path, "picard-short", PROTOCOL_HASH)
    assert listing(tmp_path) == ["s.sqlite-wal"]


# ---- real read-only and full file systems, where a private mount namespace can be made ---------


def in_private_mount(shell: str, script: str) -> dict:
    """Run `shell` (mounts) then the Python `script` as root of a new user and mount namespace, which
    an unprivileged user may create on most Linux systems; the script prints one JSON object."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("no private mount namespace here (the monkeypatched and max_page_count tests cover "
                    "the same code)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-ec",
                           f'{shell}\nexec "{sys.executable}" -c "$0"', script],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


READ_ONLY_MOUNT = """
import json, os
from fastseed import FastseedError
from fastseed.store import Store, claims
ro, live = {ro!r}, {live!r}
out = {{"refused": []}}
with Store.open(ro + "/s.sqlite") as s:
    out["seeds"] = [r.seed for r in s.records()]
with Store.open(live + "/s.sqlite") as s:
    out["live"] = [r.seed for r in s.records()]
out["files"] = sorted(os.listdir(ro)), sorted(os.listdir(live))
for call in (lambda: Store(ro + "/s.sqlite", "picard-short", {hash!r}, "{{}}"),
             lambda: Store.check(ro + "/s.sqlite", "picard-short", {hash!r}),
             lambda: Store(live + "/s.sqlite", "picard-short", {hash!r}, "{{}}")):
    try:
        call()
    except FastseedError as e:
        out["refused"].append(str(e))
print(json.dumps(out))
"""


@pytest.mark.slow
def test_on_a_read_only_mount_stores_are_read_and_refused_for_writing(tmp_path):
    """Issue #14.5 and #11.8 on a real read-only file system (where root cannot write either)."""
    quiet, live = tmp_path / "quiet", tmp_path / "live"
    with new_store(quiet / "s.sqlite") as store:
        store.add(make_record(0))
    with new_store(tmp_path / "writing" / "s.sqlite") as store:  # a scan's files while it runs
        for seed in range(3):
            store.add(make_record(seed))
        shutil.copytree(tmp_path / "writing", live)
    ro, ro_live = tmp_path / "ro", tmp_path / "ro_live"
    ro.mkdir(), ro_live.mkdir()
    out = in_private_mount(
        f"mount --bind {quiet} {ro}; mount -o remount,bind,ro {ro}; "
        f"mount --bind {live} {ro_live}; mount -o remount,bind,ro {ro_live}",
        READ_ONLY_MOUNT.format(ro=str(ro), live=str(ro_live), hash=PROTOCOL_HASH))
    assert out["seeds"] == [0] and out["live"] == [0, 1, 2]
    assert out["files"] == [["s.sqlite"], ["s.sqlite", "s.sqlite-shm", "s.sqlite-wal"]]
    assert len(out["refused"]) == 3 and all("read-only" in m and "\n" not in m for m in out["refused"])


FULL_DISK = """
import json, os
from fastseed import FastseedError
from test_store import make_record, new_store
small = {small!r}
out = {{}}
store = new_store(small + "/s.sqlite")
for seed in range(3):
    store.add(make_record(seed))
with open(small + "/filler", "wb", buffering=0) as f:  # fill the file system, whatever its block accounting
    try:
        while True:
            f.write(bytes(4096))
    except OSError:
        pass
seed = 3
try:
    while True:
        assert store.add(make_record(seed))
        seed += 1
except FastseedError as e:
    out["message"], out["failed_at"] = str(e), seed
os.remove(small + "/filler")  # space freed: the same store goes on
out["retried"] = store.add(make_record(seed))
store.close()
with new_store(small + "/s.sqlite") as store:
    out["seeds"] = sorted(store.done_seeds())
    out["integrity"] = store._conn.execute("PRAGMA integrity_check").fetchone()[0]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_full_file_system_fails_one_commit_in_one_line_and_the_store_goes_on(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    out = in_private_mount(f"mount -t tmpfs -o size=1m tmpfs {small}; cd {REPO / 'tests' / 'store'}",
                           FULL_DISK.format(small=str(small)))
    seed = out["failed_at"]
    assert out["message"].endswith(f"disk full while committing seed {seed}; the records committed "
                                   f"before are intact")
    assert seed >= 3 and out["retried"] is True and out["seeds"] == list(range(seed + 1))
    assert out["integrity"] == "ok"


# ---- temp files a killed process left (issue #23) ----------------------------------------------------

KILLED_CREATION = """
import os, signal
import fastseed.store.file as file
def publish(tmp, path):  # SIGKILL between the build of the new store and its link into place
    os.kill(os.getpid(), signal.SIGKILL)
file.publish_store_file = publish
from test_store import new_store
new_store({path!r})
"""


@pytest.mark.slow
def test_a_store_whose_creator_was_killed_before_linking_it_leaves_a_temp_the_next_writer_removes(tmp_path):
    """Issue #23.6: a `.new-*.tmp` store stayed beside the path after a kill -9 of a scan. A live
    process's temp file, and one of another machine, are kept."""
    path = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "store"), str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", KILLED_CREATION.format(path=str(path))], env=env, capture_output=True)
    assert done.returncode == -9
    left = listing(tmp_path)
    assert len(left) == 1 and left[0].startswith(".s.sqlite.new-") and left[0].endswith(".tmp")
    from fastseed.store.file import temp_beside
    mine = temp_beside(path, "merge")  # this process's: alive
    mine.write_bytes(b"a merge in flight")
    elsewhere = tmp_path / ".s.sqlite.merge-00000000-1-0123abcd.tmp"  # pid 1 of another machine
    elsewhere.write_bytes(b"another machine's merge")
    new_store(path).close()
    assert listing(tmp_path) == sorted([mine.name, elsewhere.name, "s.sqlite"])
