"""SQLite results store: one file per study, one durable row per seed.

A record is committed by a single INSERT (one transaction) under WAL with synchronous=FULL, so once
`add` returns the row survives a SIGKILL or a power cut, and a crash loses only seeds in flight.
A new store is built beside its final path and renamed into place: a store file is either absent or
complete, never a half-made schema. Every refusal is decided before anything on disk is touched.
"""

import json
import math
import os
import sqlite3
import urllib.parse
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from fastseed import FastseedError, __version__

SCHEMA_VERSION = "1"
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
BUSY_TIMEOUT_MS = 30_000  # a reader and the writer wait for each other's short locks, not fail

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    protocol_hash TEXT NOT NULL, seed INTEGER NOT NULL, protocol TEXT NOT NULL, status TEXT NOT NULL,
    test_acc REAL, test_loss REAL, headline_epoch INTEGER NOT NULL, wall_time_s REAL NOT NULL,
    finished_at TEXT, eval_curve TEXT NOT NULL, train_curve TEXT NOT NULL, pack TEXT NOT NULL,
    provenance TEXT NOT NULL, predictions BLOB NOT NULL,
    PRIMARY KEY (protocol_hash, seed)
);
"""
META_KEYS = ("schema", "protocol", "protocol_hash", "protocol_json", "created_at", "fastseed_version")
JSON_COLUMNS = ("eval_curve", "train_curve", "pack", "provenance")
SCALAR_COLUMNS = ("protocol", "protocol_hash", "seed", "status", "test_acc", "test_loss",
                  "headline_epoch", "wall_time_s", "finished_at")


@dataclass
class Record:
    """Everything one finished seed leaves behind: metrics, curves, predictions, how it was run."""
    protocol: str            # preset name, e.g. "picard-short"
    protocol_hash: str       # hex sha256 of the protocol's canonical JSON
    seed: int
    status: str              # "ok" or "diverged"
    test_acc: float          # headline test accuracy in [0, 1]; NaN allowed when diverged
    test_loss: float
    headline_epoch: int      # 0-based epoch the headline number comes from
    eval_curve: list         # [[epoch, acc, loss], ...]
    train_curve: list        # [[epoch, mean_train_loss, train_acc], ...]
    predictions: bytes       # predicted class per test image, in the store's label_dtype
    wall_time_s: float
    pack: dict               # {"strategy", "size", "slot", "seeds"}: how the seed shared the GPU
    provenance: dict         # versions, commit, device, dtype, started_at, finished_at, ...

    def predictions_array(self, dtype=np.uint8) -> np.ndarray:
        """Predicted classes; `dtype` is the store's `label_dtype` (uint16 for ImageNet)."""
        return np.frombuffer(self.predictions, dtype=dtype)

    def to_row(self) -> dict:
        row = asdict(self)
        for col in JSON_COLUMNS:
            row[col] = json.dumps(row[col])
        row["predictions"] = bytes(self.predictions)
        row["finished_at"] = _finished_at(self)
        return row

    @classmethod
    def from_row(cls, row) -> "Record":
        values = {f.name: row[f.name] for f in fields(cls)}
        for col in JSON_COLUMNS:
            values[col] = json.loads(values[col])
        for col in ("test_acc", "test_loss"):  # SQLite stores a NaN REAL as NULL
            values[col] = math.nan if values[col] is None else float(values[col])
        values["predictions"] = bytes(values["predictions"])
        return cls(**values)


def _finished_at(record: Record) -> str | None:
    """Copied out of provenance into its own column so readers can sort and filter by it."""
    finished = record.provenance.get("finished_at")
    return None if finished is None else str(finished)


ROW_COLUMNS = tuple(f.name for f in fields(Record)) + ("finished_at",)


def _probe(path: Path) -> None:
    """Refuse a path that is not an SQLite file, reading only its header (sqlite3 fails lazily)."""
    if path.is_dir():
        raise FastseedError(f"{path} is a directory, not a fastseed store")
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise FastseedError(f"cannot read {path}: {e.strerror}") from None
    if header != SQLITE_MAGIC:
        raise FastseedError(f"{path} is not a fastseed store (not an SQLite database)")


def _connect_readonly(path: Path, peek: bool = False) -> tuple[sqlite3.Connection, dict]:
    """A read-only connection to an existing store and its meta; refuses anything else.

    `peek` opens the file as immutable: no -wal/-shm files are created beside a store that is only
    being checked (and maybe refused); only the meta, written once at creation, is read that way."""
    _probe(path)
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + ("?immutable=1" if peek else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
    except sqlite3.DatabaseError as e:
        raise FastseedError(f"{path} is not a readable SQLite database: {e}") from None
    if "records" not in tables or any(k not in meta for k in META_KEYS):
        conn.close()
        raise FastseedError(f"{path} is an SQLite database but not a fastseed store")
    if meta["schema"] != SCHEMA_VERSION:
        conn.close()
        raise FastseedError(f"{path} has store schema {meta['schema']}; "
                            f"fastseed {__version__} reads schema {SCHEMA_VERSION}")
    conn.row_factory = sqlite3.Row
    return conn, meta


def _create(path: Path, meta: dict) -> None:
    """Build a complete empty store next to `path`, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: recorded in the file header
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript("BEGIN;" + SCHEMA)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute("COMMIT")
        finally:
            conn.close()  # the last connection checkpoints the WAL into the file and removes it
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, sqlite3.Error) as e:
        tmp.unlink(missing_ok=True)
        raise FastseedError(f"cannot create store {path}: {e}") from None


def _short(h: str) -> str:
    return h[:12]


def _existing_meta(path: Path, protocol: str, protocol_hash: str) -> dict:
    """The meta of the store at `path`, refusing one that holds another protocol."""
    conn, meta = _connect_readonly(path, peek=True)
    conn.close()
    if meta["protocol_hash"] != protocol_hash:
        raise FastseedError(
            f"{path} holds protocol {meta['protocol']} ({_short(meta['protocol_hash'])}), "
            f"not {protocol} ({_short(protocol_hash)}); use another --out")
    return meta


class Store:
    """The records of one protocol under many seeds; `Store(...)` writes, `Store.open(path)` reads."""

    def __init__(self, path, protocol: str, protocol_hash: str, protocol_json: str):
        self.path = Path(path)
        if not self.path.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FastseedError(f"cannot create folder {self.path.parent}: "
                                    f"{e.strerror}; use another --out") from None
            if not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise FastseedError(f"folder {self.path.parent} is not writable; use another --out")
            _create(self.path, {
                "schema": SCHEMA_VERSION, "protocol": protocol, "protocol_hash": protocol_hash,
                "protocol_json": protocol_json, "fastseed_version": __version__,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        _existing_meta(self.path, protocol, protocol_hash)
        try:
            # autocommit: each `add` is one INSERT, hence one transaction, committed on return
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
        except sqlite3.Error as e:
            raise FastseedError(f"cannot open {self.path} for writing: {e}") from None
        # the peek above may predate the last commits still in the WAL: read the meta again for real
        self._set_meta(dict(self._conn.execute("SELECT key, value FROM meta")))
        self._conn.row_factory = sqlite3.Row
        self.writable = True

    @staticmethod
    def check(path, protocol: str, protocol_hash: str) -> None:
        """Make the refusals of `Store(...)` without writing anything, so a scan fails fast before
        its slow start-up and leaves no file behind."""
        path = Path(path)
        if path.exists():
            _existing_meta(path, protocol, protocol_hash)
            return
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
            raise FastseedError(f"cannot create {path}: {ancestor} is not a writable folder; use another --out")

    @classmethod
    def open(cls, path) -> "Store":
        """An existing store, read-only (reports may read while a scan writes)."""
        path = Path(path)
        if not path.exists():
            raise FastseedError(f"no store at {path}")
        store = cls.__new__(cls)
        store.path = path
        store._conn, meta = _connect_readonly(path)
        store._set_meta(meta)
        store.writable = False
        return store

    def _set_meta(self, meta: dict) -> None:
        self.meta = meta
        self.protocol = meta["protocol"]
        self.protocol_hash = meta["protocol_hash"]
        self.protocol_json = meta["protocol_json"]

    @property
    def label_dtype(self) -> type:
        """How labels and predictions are stored: uint8 (< 255 classes; 255 = no prediction), or
        uint16 for ImageNet's 1,000 classes (65535 = no prediction)."""
        return np.uint16 if self.meta.get("label_dtype") == "uint16" else np.uint8

    @property
    def test_labels(self) -> np.ndarray | None:
        """True class of every test image, stored once: records keep only predictions, and a
        report needs the truth to score ensembles and subsets of the test set."""
        text = self.meta.get("test_labels")
        return None if text is None else np.frombuffer(bytes.fromhex(text), dtype=self.label_dtype)

    def set_test_labels(self, labels) -> None:
        labels = np.asarray(labels)
        wide = labels.size > 0 and int(labels.max()) >= 255
        labels = labels.astype(np.uint16 if wide else np.uint8)
        known = self.test_labels
        if known is not None:
            if not np.array_equal(known, labels):
                raise FastseedError(f"{self.path} was scored against other test labels "
                                    f"(a different test set); use another --out")
            return
        if not self.writable:
            raise FastseedError(f"{self.path} was opened read-only")
        rows = [("label_dtype", "uint16")] * wide + [("test_labels", labels.tobytes().hex())]
        self._conn.execute("BEGIN IMMEDIATE")  # one transaction: both keys or neither
        try:
            self._conn.executemany("INSERT INTO meta VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        if wide:
            self.meta["label_dtype"] = "uint16"
        self.meta["test_labels"] = labels.tobytes().hex()

    def done_seeds(self) -> set[int]:
        rows = self._conn.execute("SELECT seed FROM records WHERE protocol_hash = ?",
                                  (self.protocol_hash,))
        return {r[0] for r in rows}

    def add(self, record: Record) -> None:
        if not self.writable:
            raise FastseedError(f"{self.path} was opened read-only")
        if record.protocol_hash != self.protocol_hash:
            raise FastseedError(f"record of seed {record.seed} has protocol hash "
                                f"{_short(record.protocol_hash)}; {self.path} holds "
                                f"{self.protocol} ({_short(self.protocol_hash)})")
        row = record.to_row()
        sql = (f"INSERT INTO records ({', '.join(ROW_COLUMNS)}) "
               f"VALUES ({', '.join(':' + c for c in ROW_COLUMNS)})")
        try:
            self._conn.execute(sql, row)
        except sqlite3.IntegrityError:
            raise FastseedError(f"seed {record.seed} is already stored in {self.path}") from None

    def records(self) -> list[Record]:
        rows = self._conn.execute("SELECT * FROM records WHERE protocol_hash = ? ORDER BY seed",
                                  (self.protocol_hash,))
        return [Record.from_row(r) for r in rows]

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM records WHERE protocol_hash = ?",
                                  (self.protocol_hash,)).fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- export -------------------------------------------------------------------------------

    def to_frame(self) -> pd.DataFrame:
        """One row per seed: scalars, curves and pack/provenance as Python objects, predictions as bytes."""
        rows = [dict(asdict(r), finished_at=_finished_at(r)) for r in self.records()]
        frame = pd.DataFrame(rows, columns=list(SCALAR_COLUMNS) + list(JSON_COLUMNS) + ["predictions"])
        return frame.astype({"seed": "int64", "headline_epoch": "int64", "test_acc": "float64",
                             "test_loss": "float64", "wall_time_s": "float64"})

    def export_csv(self, path) -> None:
        """Scalars plus curves, pack and provenance as JSON text; predictions stay in the store."""
        frame = self.to_frame().drop(columns="predictions")
        for col in JSON_COLUMNS:
            frame[col] = frame[col].map(json.dumps)
        self._write(path, lambda p: frame.to_csv(p, index=False))

    def export_parquet(self, path) -> None:
        """Scalars, curves as nested float lists, pack/provenance as JSON text, predictions as binary."""
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
                            ("provenance", pa.string()), ("predictions", pa.binary())])
        columns = {c: frame[c].tolist() for c in schema.names}
        for col in ("pack", "provenance"):  # free-form dicts: JSON keeps them lossless
            columns[col] = [json.dumps(v) for v in columns[col]]
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
        `batch` rows (tuples in the order of `columns`): a report of 10^5 seeds reads what it needs
        without building 10^5 Records, and leaves what it does not ask for (logits) on disk.
        `seeds`: only these. A known column the table lacks (`logits`, in a store written before
        logits were kept) reads as None. Values are not decoded: that is the reader's job."""
        present = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
        unknown = [c for c in columns if c not in set(ROW_COLUMNS) | {"logits"}]
        if unknown:
            raise FastseedError(f"records have no column {unknown[0]!r}")
        select = ", ".join(c if c in present else f"NULL AS {c}" for c in columns)
        sql = f"SELECT {select} FROM records WHERE protocol_hash = ?"
        if seeds is None:
            groups = [()]
        else:  # IN lists of at most 500 values: under every SQLite build's variable limit
            wanted = sorted({int(s) for s in seeds})
            groups = [tuple(wanted[i: i + 500]) for i in range(0, len(wanted), 500)]
        for group in groups:
            where = f" AND seed IN ({', '.join('?' * len(group))})" if group else ""
            cursor = self._conn.execute(sql + where + " ORDER BY seed", (self.protocol_hash, *group))
            cursor.row_factory = None  # plain tuples: a sqlite3.Row per row costs more than it saves
            while rows := cursor.fetchmany(batch):
                yield rows
