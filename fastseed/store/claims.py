"""Seed claims: how many workers share one store without training a seed twice or losing one.

A worker claims its next seeds in one `BEGIN IMMEDIATE` transaction (SQLite's single writer lock, so
two workers never claim the same seed), holds them under a lease it renews while it trains, and
drops each claim in the transaction that commits the seed's record (`Store.add`). A worker that dies
stops renewing; once its lease has run out, the next worker that asks takes the seeds over.

Leases are wall-clock times (`time.time()`): workers on several machines need clocks that agree to
well within a lease, which NTP gives; a lease of minutes leaves ample margin.
The functions here run inside the caller's transaction and never commit.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import time

SCHEMA = """
CREATE TABLE claims (
    seed INTEGER PRIMARY KEY, worker TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    expires REAL NOT NULL  -- unix time at which the lease runs out
);
CREATE INDEX claims_by_worker ON claims (worker);
"""

# The free seeds of [start, end) come in runs between taken ones (stored, or claimed under a live
# lease). A sentinel at start - 1 opens the first run; LEAD gives each taken seed the next one (end
# after the last), so each row is one run of free seeds, lowest first. SQLite walks the taken seeds
# in C; Python reads only as many runs as it needs seeds: O(k) whatever the width of the range.
FREE_RUNS = """
WITH taken(seed) AS (
    SELECT :start - 1
    UNION SELECT seed FROM records WHERE protocol_hash = :hash AND seed >= :start AND seed < :end
    UNION SELECT seed FROM claims WHERE expires > :now AND seed >= :start AND seed < :end
)
SELECT seed + 1, next FROM (SELECT seed, LEAD(seed, 1, :end) OVER (ORDER BY seed) AS next FROM taken)
WHERE next > seed + 1
"""


def worker_id() -> str:
    """`host:pid:random`: unique per worker, even for two workers in one process or a reused pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def machine() -> str:
    """This process's machine as the claims name it: its host name and its pid namespace (two
    containers of one host may share a host name, never their pids), so a claim's pid is only judged
    dead by a process that can see it."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: a host's processes share one pid space
        return socket.gethostname()
    return f"{socket.gethostname()}/pidns:{namespace}"


def claim(conn: sqlite3.Connection, protocol_hash: str, start: int, end: int, k: int, worker: str,
          lease_s: float) -> list[int]:
    """Up to k free seeds of [start, end), lowest first, now claimed by `worker` (expired claims are
    taken over)."""
    now, host, pid = time.time(), machine(), os.getpid()
    release_dead(conn, host)
    seeds: list[int] = []
    runs = conn.execute(FREE_RUNS, {"start": start, "end": end, "hash": protocol_hash, "now": now})
    for first, end in runs:
        seeds.extend(range(first, min(end, first + k - len(seeds))))
        if len(seeds) == k:
            break
    runs.close()
    conn.executemany(
        "INSERT INTO claims VALUES (?, ?, ?, ?, ?) ON CONFLICT (seed) DO UPDATE SET "
        "worker = excluded.worker, host = excluded.host, pid = excluded.pid, expires = excluded.expires",
        [(s, worker, host, pid, now + lease_s) for s in seeds])
    return seeds


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: it exists
    return True


def release_dead(conn: sqlite3.Connection, host: str) -> None:
    """Drop the claims of processes of `host` (this machine: `machine()`) that no longer exist: a worker killed
    with SIGKILL, or crashed, gives its seeds back now rather than when its lease runs out, so a rerun
    right after `kill -9` resumes at once. A frozen process still exists and keeps its lease; workers
    of other machines, or of another pid namespace here, keep theirs (their pids mean nothing here)."""
    conn.executemany("DELETE FROM claims WHERE host = ? AND pid = ?", [(host, pid) for pid in dead_pids(conn, host)])


def renew(conn: sqlite3.Connection, worker: str, lease_s: float) -> None:
    """Every claim `worker` still holds runs for another `lease_s`. A claim whose lease ran out but
    that nobody took over is still this worker's row, and is renewed too: the worker is alive."""
    conn.execute("UPDATE claims SET expires = ? WHERE worker = ?", (time.time() + lease_s, worker))


def release(conn: sqlite3.Connection, worker: str, seeds=None) -> None:
    """Drop `worker`'s claims: all of them, or those on `seeds`."""
    if seeds is None:
        conn.execute("DELETE FROM claims WHERE worker = ?", (worker,))
    else:
        conn.executemany("DELETE FROM claims WHERE worker = ? AND seed = ?",
                         [(worker, int(s)) for s in seeds])


def dead_pids(conn: sqlite3.Connection, host: str) -> list[int]:
    """The pids of `host` (this machine: `machine()`) that hold claims and no longer exist."""
    return [pid for (pid,) in conn.execute("SELECT DISTINCT pid FROM claims WHERE host = ?", (host,))
            if not alive(pid)]


def live_claims(conn: sqlite3.Connection, protocol_hash: str, start: int, end: int) -> int:
    """Seeds of [start, end) claimed under a live lease and not stored yet. A claim of a dead process
    of this machine is not live, whatever its lease says: the next claim drops it (`release_dead`)."""
    host = machine()
    dead = dead_pids(conn, host)
    return conn.execute(
        "SELECT COUNT(*) FROM claims c WHERE expires > ? AND seed >= ? AND seed < ? AND NOT EXISTS "
        "(SELECT 1 FROM records r WHERE r.protocol_hash = ? AND r.seed = c.seed) AND NOT (host = ? AND pid IN "
        f"({', '.join('?' * len(dead))}))",
        (time.time(), start, end, protocol_hash, host, *dead)).fetchone()[0]
