"""SQLite results store: one file per study, one durable row per seed, many writers.

A record is committed with the drop of its claim in one transaction under WAL with
synchronous=FULL, so once `add` returns the row survives a SIGKILL or a power cut, and a crash loses
only seeds in flight. Workers share a store through claims with leases (claims.py); how the file is created,
opened, refused and upgraded is file.py; a row and the Record it holds, record.py.
"""

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fastseed import FastseedError
from fastseed.store import claims
from fastseed.store.file import (BUSY_TIMEOUT_MS, INSERT, KEEP, META_KEYS, RECORD_COLUMNS, REPLACE, SCHEMA_VERSION,
                                 connect_reader, create, disk_full, existing_meta, new_meta, probe, read_meta, refuse_orphan_wal,
                                 refuse_read_only, short, upgrade, uri, wal_has_frames)
from fastseed.store.record import (ACCURACY, JSON_COLUMNS, ROW_COLUMNS, SCALAR_COLUMNS, MalformedRow, Metric, Record,
                                   finished_at)

STOPPING_NOTE = "stopping"  # meta: the stopping rule a scan followed (workers/stopping.py), which the report states


class Store:
    """The records of one protocol under many seeds; `Store(...)` writes, `Store.open(path)` reads.

    One Store may be shared by the threads of a process (e.g. one renewing the lease while another
    trains and commits): its calls take turns on one connection."""

    ROWS_PER_READ = 128  # records() reads this many rows at a time: memory stays bounded with logits

    def __init__(self, path, protocol: str, protocol_hash: str, protocol_json: str):
        self.path = Path(path)
        self.skipped_rows: list[tuple[int | None, str]] = []
        self._lock, self._depth = threading.RLock(), 0
        Store.check(self.path, protocol, protocol_hash)
        if not self.path.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FastseedError(f"cannot create folder {self.path.parent}: "
                                    f"{e.strerror}; use another --out") from None
            create(self.path, new_meta(protocol, protocol_hash, protocol_json))
            existing_meta(self.path, protocol, protocol_hash)  # the winner's, if another was first
        self._conn = None
        try:
            self._conn = sqlite3.connect(uri(self.path, "mode=rw"), uri=True, isolation_level=None,
                                         check_same_thread=False)  # threads take turns: self._lock
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
            if read_meta(self._conn, self.path)["schema"] != SCHEMA_VERSION:
                upgrade(self._conn)
            # read again through the writer: the peek may predate commits (test labels) in the WAL
            self._set_meta(read_meta(self._conn, self.path))
        except (sqlite3.Error, FastseedError) as e:
            if self._conn is not None:
                self._conn.close()
            if isinstance(e, FastseedError):
                raise
            raise FastseedError(f"cannot open {self.path} for writing: {e}") from None
        self._conn.row_factory = sqlite3.Row
        self.writable, self._immutable = True, False

    @staticmethod
    def check(path, protocol: str, protocol_hash: str) -> None:
        """Make the refusals of `Store(...)` without writing anything, so a scan fails fast before
        its slow start-up and leaves no file behind."""
        path = Path(path)
        if path.exists():
            probe(path)
            refuse_read_only(path)
            existing_meta(path, protocol, protocol_hash)
            return
        refuse_orphan_wal(path)
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise FastseedError(f"cannot create {path}: {ancestor} is not a writable folder; use another --out")

    @classmethod
    def open(cls, path) -> "Store":
        """An existing store, read-only; creates no file beside it (see `connect_reader`), so it
        works on a read-only copy, and reads while scans write (it sees their commits)."""
        path = Path(path)
        if not path.exists():
            raise FastseedError(f"no store at {path}")
        probe(path)
        store = cls.__new__(cls)
        store.path, store.skipped_rows, store.writable = path, [], False
        store._lock, store._depth = threading.RLock(), 0
        store._connect()
        return store

    def _connect(self) -> None:
        self._conn, self._immutable = connect_reader(self.path)
        self._stamp = self._file_stamp()
        try:
            self._set_meta(read_meta(self._conn, self.path))
        except FastseedError:
            self._conn.close()
            raise
        self._conn.row_factory = sqlite3.Row

    def _file_stamp(self):
        st = self.path.stat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    @contextmanager
    def _reading(self):
        """The connection to read with, this thread's turn. An immutable one is a snapshot of the
        file: once a writer has committed since (frames in its -wal, or a checkpoint changed the
        file), reconnect."""
        with self._lock:
            if self._immutable and (wal_has_frames(self.path) or self._file_stamp() != self._stamp):
                self._conn.close()
                self._connect()
            yield self._conn

    def _set_meta(self, meta: dict) -> None:
        self.meta = meta
        self.protocol = meta["protocol"]
        self.protocol_hash = meta["protocol_hash"]
        self.protocol_json = meta["protocol_json"]
        self.schema = meta["schema"]

    @property
    def label_dtype(self) -> type:
        """How labels and predictions are stored: uint8 (< 255 classes; 255 = no prediction), or
        uint16 for ImageNet's 1,000 classes (65535 = no prediction)."""
        return np.uint16 if self.meta.get("label_dtype") == "uint16" else np.uint8

    @property
    def test_labels(self) -> np.ndarray | None:
        """True class of every test image, stored once: records keep only predictions, and a
        report needs the truth to score ensembles and subsets of the test set."""
        if "test_labels" not in self.meta:  # another process may have stored them since: set once, never changed
            with self._reading() as conn:
                self.meta.update((r[0], r[1]) for r in conn.execute(
                    "SELECT key, value FROM meta WHERE key IN ('label_dtype', 'test_labels')"))
        text = self.meta.get("test_labels")
        return None if text is None else np.frombuffer(bytes.fromhex(text), dtype=self.label_dtype)

    # ---- writing ------------------------------------------------------------------------------

    @contextmanager
    def transaction(self, what: str):
        """One `BEGIN IMMEDIATE` transaction: every write inside commits together or not at all
        (nested calls join the outer one). SQLite errors become one line: `what` failed, or the
        disk was full while doing `what` — the commits before are intact either way."""
        if not self.writable:
            raise FastseedError(f"{self.path} was opened read-only")
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            with self._sqlite_errors(what):
                self._conn.execute("BEGIN IMMEDIATE")
                self._depth = 1
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
                finally:
                    self._depth = 0

    @contextmanager
    def _sqlite_errors(self, what: str):
        try:
            yield
        except sqlite3.DatabaseError as e:
            if type(e) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise  # a constraint broken by the caller's data is a bug, not the environment
            if disk_full(e):
                raise FastseedError(f"{self.path}: disk full while {what}; "
                                    f"the records committed before are intact") from None
            raise FastseedError(f"{self.path}: {what} failed: {e}") from None

    def _rollback(self) -> None:
        """After SQLITE_FULL or an I/O error SQLite may or may not have ended the transaction."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # nothing committed either way; the next BEGIN starts clean

    def set_test_labels(self, labels) -> None:
        labels = np.asarray(labels)
        wide = labels.size > 0 and int(labels.max()) >= 255
        labels = labels.astype(np.uint16 if wide else np.uint8)
        known = self.test_labels
        if known is None and self.writable:
            with self.transaction("storing the test labels") as conn:
                known = self.test_labels  # read again under the lock: another writer may be first
                if known is None:
                    rows = [("label_dtype", "uint16")] * wide + [("test_labels", labels.tobytes().hex())]
                    conn.executemany("INSERT INTO meta VALUES (?, ?)", rows)
                    self.meta.update(rows)
                    return
        if known is None:
            raise FastseedError(f"{self.path} was opened read-only")
        if not np.array_equal(known, labels):
            raise FastseedError(f"{self.path} was scored against other test labels "
                                f"(a different test set); use another --out")

    def _check_labels(self, record: Record) -> None:
        """The test labels a record's predictions refer to: stored with the first such record, then
        every record's must be the same (the per-example statistics compare seeds image by image)."""
        labels = np.frombuffer(record.labels, dtype=np.uint16)
        known = self.test_labels
        if known is None:
            self.set_test_labels(labels)
        elif not np.array_equal(known, labels):
            raise FastseedError(f"seed {record.seed} was scored on other test labels than the {len(known):,} "
                                f"{self.path} holds: every seed must return the same test set (a split drawn "
                                f"from a stream that varies by seed is not one; fix it, e.g. random_state=0)")

    def set_meta(self, key: str, value: str) -> None:
        """Write one meta entry of this study (e.g. the stopping rule a scan followed); the store's
        identity (protocol, hash, schema, test labels) is set once, at creation, and not through here."""
        if key in META_KEYS or key in ("label_dtype", "test_labels"):
            raise ValueError(f"meta key {key!r} is the store's identity, not a note to set")
        with self.transaction(f"writing the meta entry {key}") as conn:
            conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (key, str(value)))
        self.meta[key] = str(value)

    def stopping_note(self) -> dict | None:
        """The stopping rule a scan recorded here (`rule` in words, `flags`, `decision`, `verdict`,
        `seeds_fed`), or None when none was, or one this fastseed cannot read."""
        try:
            note = json.loads(self.meta.get(STOPPING_NOTE) or "null")
        except ValueError:
            return None
        return note if isinstance(note, dict) and isinstance(note.get("rule"), str) else None

    def claim(self, start: int, end: int, k: int, worker: str, lease_s: float) -> list[int]:
        """Up to k seeds of [start, end), lowest first, that are neither stored nor claimed under a
        live lease, now claimed by `worker` for `lease_s` seconds; expired claims are taken over."""
        if k <= 0 or start >= end:
            return []
        with self.transaction(f"claiming seeds for {worker}") as conn:
            return claims.claim(conn, self.protocol_hash, int(start), int(end), int(k), worker, lease_s)

    def renew(self, worker: str, lease_s: float) -> None:
        """Every claim `worker` holds runs for another `lease_s` seconds from now."""
        with self.transaction(f"renewing the claims of {worker}") as conn:
            claims.renew(conn, worker, lease_s)

    def release(self, worker: str, seeds=None) -> None:
        """Drop `worker`'s claims (all, or those on `seeds`): the seeds are free for others at once."""
        with self.transaction(f"releasing the claims of {worker}") as conn:
            claims.release(conn, worker, seeds)

    def add(self, record: Record, worker: str | None = None, *, replace: bool = False) -> bool:
        """Commit `record` and drop the claims on its seed, in one transaction. False, and the stored
        record kept, when the seed is already stored: a worker whose lease ran out and whose seed was
        taken over may finish second; the first commit wins. `replace=True` overwrites instead
        (merge --prefer). `worker` names the committer; whoever's claim it was, a stored seed needs
        none."""
        if record.protocol_hash != self.protocol_hash:
            raise FastseedError(f"record of seed {record.seed} has protocol hash "
                                f"{short(record.protocol_hash)}; {self.path} holds "
                                f"{self.protocol} ({short(self.protocol_hash)})")
        row = record.to_row()
        with self.transaction(f"committing seed {record.seed}") as conn:
            if record.labels is not None:  # a user function's test labels: kept once, the same for every seed
                self._check_labels(record)
            written = conn.execute(INSERT + (REPLACE if replace else KEEP), row).rowcount == 1
            conn.execute("DELETE FROM claims WHERE seed = ?", (record.seed,))
        return written

    # ---- reading ------------------------------------------------------------------------------

    def _has_claims(self, conn) -> bool:
        return self.schema != "1" or conn.execute(  # a schema-1 store opened read-only has none
            "SELECT 1 FROM sqlite_master WHERE name = 'claims'").fetchone() is not None

    def progress(self, start: int, end: int) -> tuple[int, int]:
        """(stored, claimed under a live lease and not stored) among the seeds of [start, end)."""
        with self._reading() as conn:
            stored = conn.execute("SELECT COUNT(*) FROM records WHERE protocol_hash = ? AND seed >= ? "
                                  "AND seed < ?", (self.protocol_hash, start, end)).fetchone()[0]
            live = claims.live_claims(conn, self.protocol_hash, start, end) if self._has_claims(conn) else 0
        return stored, live

    def accuracies(self, start: int, end: int) -> np.ndarray:
        """test_acc of the stored seeds of [start, end) in seed order, NaN for a diverged seed (a
        malformed value is left out)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT test_acc FROM records WHERE protocol_hash = ? AND seed >= ? AND seed < ? AND "
                "typeof(test_acc) IN ('real', 'integer', 'null') ORDER BY seed",
                (self.protocol_hash, start, end)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.float64)  # None (a NaN stored) → nan

    def metric(self) -> Metric:
        """What the records' headline is: a training function's metric (its first record's), else the
        built-in recipes' test accuracy."""
        with self._reading() as conn:
            if "metrics" not in {r[1] for r in conn.execute("PRAGMA table_info(records)")}:
                return ACCURACY
            row = conn.execute("SELECT metrics FROM records WHERE protocol_hash = ? AND metrics IS NOT NULL "
                               "ORDER BY seed LIMIT 1", (self.protocol_hash,)).fetchone()
        try:
            return Metric.of(None if row is None else json.loads(row[0]))
        except (TypeError, ValueError):  # a malformed row: the report and the scan name it elsewhere
            return ACCURACY

    # without the blobs: a blob's type only (SQLite types a value without reading it); a value of
    # another type is passed on, for the row to be named malformed
    BLOBLESS = {"predictions": "CASE WHEN typeof(predictions) = 'blob' THEN X'' ELSE predictions END",
                "logits": "CASE WHEN typeof(logits) IN ('blob', 'null') THEN NULL ELSE logits END"}

    def _select(self, conn, blobs: bool = True) -> str:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(records)")}
        return ", ".join(f"NULL AS {c}" if c not in columns else c if blobs or c not in self.BLOBLESS
                         else f"{self.BLOBLESS[c]} AS {c}" for c in RECORD_COLUMNS)

    def iter_records(self, blobs: bool = True):
        """The records in seed order, read ROWS_PER_READ at a time (a store with logits may not fit
        in memory). Rows that do not decode are skipped and listed in `skipped_rows` as (seed, reason).
        `blobs=False`: without predictions (empty) and logits (None), only to see which rows decode."""
        self.skipped_rows = []
        after = ()  # the last seed read: each batch is one short query, so no statement stays open
        while True:
            with self._reading() as conn:
                rows = conn.execute(f"SELECT {self._select(conn, blobs)} FROM records WHERE protocol_hash = ? "
                                    f"{'AND seed > ? ' * len(after)}ORDER BY seed LIMIT {self.ROWS_PER_READ}",
                                    (self.protocol_hash, *after)).fetchall()
            for row in rows:
                try:
                    yield Record.from_row(row)
                except MalformedRow as e:
                    seed = row["seed"] if type(row["seed"]) is int else None
                    self.skipped_rows.append((seed, str(e)))
            if len(rows) < self.ROWS_PER_READ:
                return
            after = (rows[-1]["seed"],)

    def records(self) -> list[Record]:
        return list(self.iter_records())

    def record(self, seed: int) -> Record | None:
        """Seed `seed`'s record, None if not stored; one line naming the seed if its row is malformed."""
        if not -2**63 <= seed < 2**63:  # not an SQLite INTEGER: never stored
            return None
        with self._reading() as conn:
            row = conn.execute(f"SELECT {self._select(conn)} FROM records WHERE protocol_hash = ? AND "
                               f"seed = ?", (self.protocol_hash, seed)).fetchone()
        try:
            return None if row is None else Record.from_row(row)
        except MalformedRow as e:
            raise FastseedError(f"{self.path}: the record of seed {seed} is malformed: {e}") from None

    def done_seeds(self) -> set[int]:
        with self._reading() as conn:
            return {r[0] for r in conn.execute("SELECT seed FROM records WHERE protocol_hash = ?",
                                               (self.protocol_hash,))}

    def __len__(self) -> int:
        with self._reading() as conn:
            return conn.execute("SELECT COUNT(*) FROM records WHERE protocol_hash = ?",
                                (self.protocol_hash,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- export -------------------------------------------------------------------------------

    def to_frame(self) -> "pd.DataFrame":  # noqa: F821
        """One row per seed: scalars, curves and pack/provenance/metrics as Python objects (metrics None
        for a built-in recipe), predictions and logits (None when not stored) as bytes."""
        import pandas as pd  # here, not at the top: workers that only claim and add start faster
        rows = [dict(asdict(r), finished_at=finished_at(r)) for r in self.records()]
        columns = list(SCALAR_COLUMNS) + list(JSON_COLUMNS) + ["metrics", "predictions", "logits"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"seed": "int64", "headline_epoch": "int64", "test_acc": "float64",
                             "test_loss": "float64", "wall_time_s": "float64"})

    def export_csv(self, path) -> None:
        """Scalars plus curves, pack, provenance and metrics as JSON text; predictions and logits stay in
        the store."""
        frame = self.to_frame().drop(columns=["predictions", "logits"])
        for col in JSON_COLUMNS + ("metrics",):
            frame[col] = frame[col].map(json.dumps)
        self._write(path, lambda p: frame.to_csv(p, index=False))

    def export_parquet(self, path) -> None:
        """Scalars, curves as nested float lists, pack/provenance/metrics as JSON text (metrics null for a
        built-in recipe), predictions and logits (encode_logits' bytes, null when not stored) as binary."""
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise FastseedError("Parquet export needs pyarrow: pip install 'fastseed[parquet]'") from None
        frame = self.to_frame()
        curve = pa.list_(pa.list_(pa.float64()))
        schema = pa.schema([("protocol", pa.string()), ("protocol_hash", pa.string()),
                            ("seed", pa.int64()), ("status", pa.string()),
                            ("test_acc", pa.float64()), ("test_loss", pa.float64()),
                            ("headline_epoch", pa.int64()), ("wall_time_s", pa.float64()),
                            ("finished_at", pa.string()), ("eval_curve", curve),
                            ("train_curve", curve), ("pack", pa.string()),
                            ("provenance", pa.string()), ("metrics", pa.string()),
                            ("predictions", pa.binary()), ("logits", pa.binary())])
        columns = {c: frame[c].tolist() for c in schema.names}
        for col in ("pack", "provenance", "metrics"):  # free-form dicts: JSON keeps them lossless
            columns[col] = [None if v is None and col == "metrics" else json.dumps(v) for v in columns[col]]
        table = pa.table(columns, schema=schema)
        self._write(path, lambda p: pq.write_table(table, p))

    @staticmethod
    def _write(path, write) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        except OSError as e:
            raise FastseedError(f"cannot write {path}: {e.strerror or e}") from None

    # ---- streaming read (reports of 10^5 seeds) -------------------------------------------------

    def iter_columns(self, columns, seeds=None, batch: int = 1024):
        """Raw values of some columns of this protocol's records, in seed order, as lists of up to
        `batch` rows (tuples in the order of `columns`, which must name `seed`): a report of 10^5
        seeds reads what it needs without building 10^5 Records, and leaves what it does not ask for
        (logits) on disk. `seeds`: only these. A column the table lacks (`logits` in a schema-1
        store) reads as None. Values are not decoded (that is the reader's job, malformed rows
        included); as in `iter_records`, each batch is one short query, so no statement stays open."""
        columns = tuple(columns)
        unknown = [c for c in columns if c not in ROW_COLUMNS]
        if unknown or "seed" not in columns:
            raise FastseedError(f"iter_columns: no column {unknown[0]!r}" if unknown else
                                "iter_columns reads in seed order: ask for the seed column")

        def query(where: str, values, limit: str = "") -> list[tuple]:
            with self._reading() as conn:
                present = {r[1] for r in conn.execute("PRAGMA table_info(records)")}
                select = ", ".join(c if c in present else f"NULL AS {c}" for c in columns)
                cursor = conn.execute(f"SELECT {select} FROM records WHERE protocol_hash = ? {where} "
                                      f"ORDER BY seed{limit}", (self.protocol_hash, *values))
                cursor.row_factory = None  # plain tuples: a sqlite3.Row per row costs more than it saves
                return cursor.fetchall()

        if seeds is not None:  # IN lists of at most 500 values: under every SQLite build's variable limit
            wanted, per_query = sorted({int(s) for s in seeds}), min(500, batch)
            for i in range(0, len(wanted), per_query):
                group = wanted[i: i + per_query]
                if rows := query(f"AND seed IN ({', '.join('?' * len(group))})", group):
                    yield rows
            return
        after = ()  # the last seed read
        while rows := query("AND seed > ?" * len(after), after, f" LIMIT {batch}"):
            yield rows
            if len(rows) < batch:
                return
            after = (rows[-1][columns.index("seed")],)
