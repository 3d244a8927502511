"""How a store lives on disk: its schema, race-free creation, opening without side files, the
refusals made before anything is touched, and the upgrade of older schemas.

A new store is built complete in a temp file beside its final path and hard-linked into place: the
link fails if the path exists, so two processes creating one store at the same instant never replace
each other's file; the loser opens the winner's. Readers never create the -wal/-shm files, so a report
works on a read-only copy and leaves nothing behind.

Schema 2 adds the claims table and the records' logits column to schema 1; schema 3 (this one) the
records' metrics column (a user training function's metric, extra metrics and curves: NULL for the
built-in recipes). A writer upgrades an older store in place; a fastseed that reads older schemas only
then refuses it in one line instead of writing into it blind to what it cannot store.
"""

import os
import secrets
import sqlite3
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

from fastseed import FastseedError, __version__
from fastseed.store import claims
from fastseed.store.record import ROW_COLUMNS

SCHEMA_VERSION = "3"
READABLE_SCHEMAS = ("1", "2", "3")
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
BUSY_TIMEOUT_MS = 30_000  # writers queue for the lock (each holds it for milliseconds), not fail

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE records (
    protocol_hash TEXT NOT NULL, seed INTEGER NOT NULL, protocol TEXT NOT NULL, status TEXT NOT NULL,
    test_acc REAL, test_loss REAL, headline_epoch INTEGER NOT NULL, wall_time_s REAL NOT NULL,
    finished_at TEXT, eval_curve TEXT NOT NULL, train_curve TEXT NOT NULL, pack TEXT NOT NULL,
    provenance TEXT NOT NULL, predictions BLOB NOT NULL, logits BLOB, metrics TEXT,
    PRIMARY KEY (protocol_hash, seed)
);
""" + claims.SCHEMA
META_KEYS = ("schema", "protocol", "protocol_hash", "protocol_json", "created_at", "fastseed_version")
RECORD_COLUMNS = tuple(c for c in ROW_COLUMNS if c != "finished_at")  # what a Record is read from
INSERT = (f"INSERT INTO records ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join(':' + c for c in ROW_COLUMNS)}) "
          f"ON CONFLICT (protocol_hash, seed) DO ")
KEEP, REPLACE = "NOTHING", "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in ROW_COLUMNS)


def statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


def side_file(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)  # SQLite's -wal and -shm files beside the store


def wal_has_frames(path: Path) -> bool:
    """True when commits may sit in the -wal file, not yet copied into the store file."""
    try:
        return side_file(path, "-wal").stat().st_size > 0
    except OSError:  # absent, or its folder is not one
        return False


def uri(path: Path, query: str) -> str:
    return "file:" + urllib.parse.quote(str(path.resolve())) + "?" + query


def probe(path: Path) -> None:
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


def connect_reader(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection that creates no file; returns it and whether it is immutable.

    With no frames in a -wal file, every commit is in the store file, and `immutable=1` reads it
    without the -shm/-wal files a plain read-only connection would create (and leave behind, or fail
    to create in a read-only folder). With frames, only a WAL reader sees the last commits; it uses the
    -wal and -shm that are there."""
    immutable = not wal_has_frames(path)
    try:
        conn = sqlite3.connect(uri(path, "immutable=1" if immutable else "mode=ro"), uri=True,
                               isolation_level=None, check_same_thread=False)  # see Store._lock
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        if not immutable and not side_file(path, "-shm").exists():
            raise FastseedError(f"{path}: its last commits are in {path.name}-wal, and SQLite cannot "
                                f"create {path.name}-shm beside it to read them ({e}); copy the store "
                                f"and its -wal file to a writable folder") from None
        raise FastseedError(f"{path} is not a readable SQLite database: {e}") from None
    return conn, immutable


def read_meta(conn: sqlite3.Connection, path: Path) -> dict:
    """The store's meta; refuses an SQLite file that is not a store, or a schema it cannot read."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
    except sqlite3.DatabaseError as e:
        raise FastseedError(f"{path} is not a readable SQLite database: {e}") from None
    if "records" not in tables or any(k not in meta for k in META_KEYS):
        raise FastseedError(f"{path} is an SQLite database but not a fastseed store")
    if meta["schema"] not in READABLE_SCHEMAS:
        raise FastseedError(f"{path} has store schema {meta['schema']}; fastseed {__version__} "
                            f"reads schemas {', '.join(READABLE_SCHEMAS)}: use a newer fastseed")
    return meta


def disk_full(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11; the message on 3.10
    return (code & 0xFF) == 13 if code is not None else "database or disk is full" in str(e)  # SQLITE_FULL


def short(h: str) -> str:
    return h[:12]


def existing_meta(path: Path, protocol: str, protocol_hash: str) -> dict:
    """The meta of the store at `path`, refusing one that holds another protocol; writes nothing."""
    probe(path)
    conn, _ = connect_reader(path)
    try:
        meta = read_meta(conn, path)
    finally:
        conn.close()
    if meta["protocol_hash"] != protocol_hash:
        raise FastseedError(
            f"{path} holds protocol {meta['protocol']} ({short(meta['protocol_hash'])}), "
            f"not {protocol} ({short(protocol_hash)}); use another --out")
    return meta


def refuse_read_only(path: Path) -> None:
    """A writer needs the store file, and the folder for SQLite's -wal and -shm files, writable:
    refused here rather than after a seed has trained."""
    if not os.access(path, os.R_OK | os.W_OK):
        raise FastseedError(f"{path} is read-only; make it writable or use another --out")
    folder = path.resolve().parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FastseedError(f"{path} is in a read-only folder: SQLite must create {path.name}-wal and "
                            f"{path.name}-shm in {folder}; use another --out")
    for side in (side_file(path, "-wal"), side_file(path, "-shm")):
        if side.exists() and not os.access(side, os.R_OK | os.W_OK):
            raise FastseedError(f"{side} is read-only; make it writable or use another --out")


def refuse_orphan_wal(path: Path) -> None:
    """A -wal file without its store (the store deleted, its -wal left) would be replayed into a new
    store at that path, mixing another study's pages into it."""
    if wal_has_frames(path) and not path.exists():
        raise FastseedError(f"{path} does not exist but {path.name}-wal does (left by a deleted "
                            f"store?): remove it or use another --out")


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_store_file(path: Path, meta: dict) -> None:
    """A complete empty store at a fresh `path` that no one else opens: every byte in the file itself
    (no -wal beside it), fsynced, its header already in WAL mode."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN")
        for statement in statements(SCHEMA):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")  # a rollback journal: the commit lands in the file itself
        conn.execute("PRAGMA journal_mode=WAL")  # persistent: written into the file's header
    finally:
        conn.close()  # the only connection: nothing left in a -wal file
    if wal_has_frames(path):
        raise OSError(f"SQLite left commits in {path.name}-wal")
    fsync(path)


def publish_store_file(tmp: Path, path: Path) -> bool:
    """Hard-link the finished `tmp` to `path` and drop `tmp`; False (nothing changed) if `path` exists.
    A link, unlike a rename, never replaces an existing file: of two racing creators one wins."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync(path.parent)  # make the new name itself durable
    return True


def temp_beside(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def new_meta(protocol: str, protocol_hash: str, protocol_json: str) -> dict:
    return {"schema": SCHEMA_VERSION, "protocol": protocol, "protocol_hash": protocol_hash,
            "protocol_json": protocol_json, "fastseed_version": __version__,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def create(path: Path, meta: dict) -> None:
    """A new store at `path`, or nothing if another process created one first (then open that)."""
    tmp = temp_beside(path, "new")
    try:
        build_store_file(tmp, meta)
        publish_store_file(tmp, path)
    except (OSError, sqlite3.Error) as e:
        for p in (tmp, side_file(tmp, "-wal"), side_file(tmp, "-shm")):
            p.unlink(missing_ok=True)
        hint = " (the store is put in place by a hard link)" if isinstance(e, PermissionError) else ""
        raise FastseedError(f"cannot create store {path}: {e}{hint}") from None


def upgrade(conn: sqlite3.Connection) -> None:
    """Schema 1 or 2 → 3 in place, in one transaction (another writer may be upgrading it too)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
        if schema == "1":
            conn.execute("ALTER TABLE records ADD COLUMN logits BLOB")
            for statement in statements(claims.SCHEMA):
                conn.execute(statement)
        if schema in ("1", "2"):
            conn.execute("ALTER TABLE records ADD COLUMN metrics TEXT")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    # fastseed 0.1.0 peeks at the schema in the file alone (immutable, ignoring the -wal): copy the
    # upgrade into the file now, so that it refuses the store rather than write it without claims
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
