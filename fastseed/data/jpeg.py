"""The structural check of a JPEG file (sound or not, and its size), cached per data set folder.

Enough to keep files a decoder would choke on (empty, not JPEG, cut off) out of an index, and to read
each image's height and width from its frame header (the random crop windows are drawn for them),
without decoding anything. Results live in a small cache keyed by (path, size, mtime), so ImageNet's
1.3 M files are checked once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

CACHE_VERSION = 2  # 2: image sizes kept beside the verdicts
log = logging.getLogger(__name__)

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length field
EOI_WINDOW = 4096  # an EOI this close to the end counts: some encoders pad files after it


def inspect_jpeg(path: str) -> tuple[str | None, int, int]:
    """(problem, height, width): why `path` is not a sound JPEG (SOI, a SOF with sane width/height, EOI
    near the end) or None, and the image size its SOF gives (0, 0 when there is none)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return "empty file", 0, 0
            if f.read(3) != b"\xff\xd8\xff":
                return "not a JPEG (no SOI marker)", 0, 0
            problem, h, w = _read_sof(f, size)
            if problem:
                return problem, 0, 0
            f.seek(max(0, size - EOI_WINDOW))
            if b"\xff\xd9" not in f.read():
                return "truncated JPEG (no EOI marker at the end)", 0, 0
    except OSError as e:
        return f"unreadable ({e.strerror or e})", 0, 0
    return None, h, w


def jpeg_problem(path: str) -> str | None:
    """Why `path` is not a sound JPEG, or None."""
    return inspect_jpeg(path)[0]


def _read_sof(f, size: int) -> tuple[str | None, int, int]:
    """Walk the marker segments from the SOI to the first SOF: (problem, height, width)."""
    pos = 2
    while pos + 4 <= size:
        f.seek(pos)
        head = f.read(4)
        if head[0] != 0xFF:
            return "broken JPEG header (marker expected)", 0, 0
        marker = head[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image before any frame header
            return "broken JPEG header (no SOF before the image data)", 0, 0
        if marker in _SOF:
            sof = f.read(5)  # precision, height, width
            h, w = int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")
            return (None, h, w) if len(sof) == 5 and 0 < h and 0 < w else (f"bad JPEG size {w}x{h}", 0, 0)
        pos += 2 + int.from_bytes(head[2:4], "big")
    return "broken JPEG header (ends before a SOF)", 0, 0


# The cache.

def _stat_key(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class CheckCache:
    """Check results (verdict and image size) under 64-bit keys of (path, size, mtime): ~20 MB for all of
    ImageNet, rewritten only when new files were checked. Lives in cache_dir, else root/.fastseed, else
    ~/.cache/fastseed."""

    def __init__(self, root: Path, split: str, cache_dir: str | Path | None):
        tag = hashlib.blake2b(str(root).encode(), digest_size=6).hexdigest()
        name = f"jpeg-check-v{CACHE_VERSION}-{split}-{tag}.npz"
        dirs = [Path(cache_dir)] if cache_dir else [root / ".fastseed", Path.home() / ".cache" / "fastseed"]
        self.paths = [d / name for d in dirs]
        self.results: dict[int, tuple[str, int, int]] = {}  # key -> ("" if sound else why, height, width)
        for path in self.paths:
            if path.exists():
                try:
                    with np.load(path) as z:
                        reasons = z["reasons"].tolist()
                        self.results = {k: (reasons[r], h, w) for k, r, h, w in
                                        zip(*(z[n].tolist() for n in ("keys", "verdicts", "heights", "widths")))}
                    break
                except Exception:  # a damaged cache is only a slower index
                    log.warning("ignoring unreadable index cache %s", path)

    def save(self) -> None:
        n = len(self.results)
        keys = np.fromiter(self.results, dtype=np.uint64, count=n)
        texts, heights, widths = zip(*self.results.values()) if n else ((), (), ())
        # the few distinct reasons once, and an index per file: a fixed-width string per file would be
        # as wide as the longest reason
        reasons, verdicts = np.unique(np.array(texts, dtype=str), return_inverse=True)
        arrays = {"keys": keys, "reasons": reasons, "verdicts": verdicts.astype(np.int32),
                  "heights": np.array(heights, np.int32), "widths": np.array(widths, np.int32)}
        for path in self.paths:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
                np.savez(tmp, **arrays)
                os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
                return
            except OSError:
                continue  # e.g. a read-only dataset mount: try the next place
        log.warning("could not write the index cache to any of %s", [str(p) for p in self.paths])


def _map(pool: ThreadPoolExecutor, fn, items: list, chunk: int) -> list:
    """pool.map in chunks: a future per item costs more than a stat (its `chunksize` is for processes)."""
    parts = pool.map(lambda i: [fn(x) for x in items[i:i + chunk]], range(0, len(items), chunk))
    return [y for part in parts for y in part]


def check_files(paths: list[str], cache: CheckCache, workers: int) -> list[tuple[str | None, int, int]]:
    """(problem or None, height, width) of each path, from the cache where its size and mtime still match."""
    with ThreadPoolExecutor(workers) as pool:
        keys = _map(pool, _stat_key, paths, 1024)
        todo = [i for i, k in enumerate(keys) if k is None or k not in cache.results]
        found = _map(pool, inspect_jpeg, [paths[i] for i in todo], 64)
    for i, (problem, h, w) in zip(todo, found):
        if keys[i] is not None:
            cache.results[keys[i]] = (problem or "", h, w)
    if todo:
        cache.save()
    out = []
    for k in keys:
        why, h, w = cache.results[k] if k is not None else ("missing or unreadable", 0, 0)
        out.append((why or None, h, w))
    return out
