"""CIFAR-10 from its official archives: find, read, verify, and place on a device as uint8 tensors.

Both official formats are accepted, as the archive or unpacked. Whatever the format, every batch is
checked by the SHA-256 of its *binary-record* layout (1 label byte + 3,072 pixel bytes per image), so a
single table of digests vouches for the python pickles as well as for the .bin files.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import torch

from fastseed import FastseedError

try:  # numpy 2 moved it to numpy._core; the official pickles (numpy 1, Python 2) name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue 32x32 planes

# SHA-256 of each batch in binary-record layout: the .bin files of the official binary archive.
OFFICIAL_SHA256 = {
    "data_batch_1": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}
HOME_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


class Format(NamedTuple):
    """One official distribution: its folder, the archive that holds it, where to get it (as torchvision)."""
    name: str
    folder: str
    archive: str
    url: str
    md5: str
    suffix: str  # of each batch file inside the folder


FORMATS = {
    "binary": Format("binary", "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                     "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                     "c32a1d4ab5d03f1284b67883e8d87530", ".bin"),
    "python": Format("python", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                     "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     "c58f30108f718f92721af3b95e74349a", ""),
}
ACCEPTED = ", ".join(f"{f.folder}/, {f.archive}" for f in FORMATS.values())  # in the order tried


@dataclass(frozen=True, eq=False)
class Cifar10:
    """The whole data set in official order: images (N, 3, 32, 32) uint8 as R, G, B planes; labels int64."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str


@dataclass(frozen=True, eq=False)
class CifarTensors:
    """CIFAR-10 resident on a device; uint8 because normalisation is the engine's, done per batch."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def record_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """The binary-record layout of a batch: per image, its label byte then its 3,072 pixel bytes."""
    x = np.asarray(x, dtype=np.uint8).reshape(len(x), RECORD - 1)
    records = np.empty((len(x), RECORD), dtype=np.uint8)
    records[:, 0] = y
    records[:, 1:] = x
    return records.tobytes()


def batch_digest(x: np.ndarray, y: np.ndarray) -> str:
    return hashlib.sha256(record_bytes(x, y)).hexdigest()


# --- reading each format ---------------------------------------------------------------------------

def _parse_binary(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % RECORD:
        raise FastseedError(f"{where}: {len(raw)} bytes is not a whole number of {RECORD}-byte records "
                            f"(truncated or not CIFAR-10)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    x = np.ascontiguousarray(records[:, 1:]).reshape(-1, 3, 32, 32)
    return x, records[:, 0].astype(np.int64)


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: a pickle may name any callable, so only the few that
    rebuild a numpy array (and bytes pickled by Python 3 at protocol 2) are handed out."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        ("codecs", "encode"): codecs.encode,
    }

    def __init__(self, raw: bytes, where: str):
        super().__init__(io.BytesIO(raw), encoding="bytes")  # the official pickles come from Python 2
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise FastseedError(f"{self.where}: refusing to unpickle {_one_line(module)}.{_one_line(name)}"
                                f" (a CIFAR batch holds only numpy arrays and lists)") from None


def _parse_python(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = BatchUnpickler(raw, where).load()
    except FastseedError:
        raise
    except Exception as e:  # a damaged pickle fails in many ways, all meaning the same to the user
        raise FastseedError(f"{where}: not a readable CIFAR batch pickle ({_one_line(e)})") from None
    if not isinstance(batch, dict):
        raise FastseedError(f"{where}: a CIFAR batch pickle holds a dict, found {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (RECORD - 1,)
            and isinstance(labels, list) and len(labels) == len(data)
            and all(isinstance(label, int) for label in labels)):
        raise FastseedError(f"{where}: expected uint8 data of shape (N, {RECORD - 1}) and a list of N int "
                            f"labels, found data {getattr(data, 'shape', type(data).__name__)} and "
                            f"{type(labels).__name__} labels")
    return np.ascontiguousarray(data).reshape(-1, 3, 32, 32), np.array(labels, dtype=np.int64)


# --- finding the batches -----------------------------------------------------------------------------

def _read_folder(folder: Path, fmt: Format) -> dict[str, bytes]:
    raw = {}
    for name in BATCHES:
        path = folder / (name + fmt.suffix)
        if not path.is_file():
            raise FastseedError(f"{folder}: missing {path.name} (incomplete CIFAR-10 folder)")
        raw[name] = path.read_bytes()
    return raw


def _read_archive(path: Path, fmt: Format) -> dict[str, bytes]:
    wanted = {f"{fmt.folder}/{name}{fmt.suffix}": name for name in BATCHES}
    raw = {}
    try:
        with tarfile.open(path, "r|gz") as tar:  # a stream: one pass, nothing extracted to disk
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name and member.isfile():
                    raw[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise FastseedError(f"{path}: corrupt or truncated archive ({_one_line(e)}); "
                            f"delete it and download it again") from None
    missing = [m for m, name in wanted.items() if name not in raw]
    if missing:
        raise FastseedError(f"{path}: archive lacks {', '.join(missing)} (not the official CIFAR-10 archive)")
    return raw


def _sources(root: Path):
    """Where CIFAR-10 may be in `root`, in the order tried: binary before python, each unpacked first."""
    for fmt in FORMATS.values():
        yield root / fmt.folder, fmt, _read_folder
        yield root / fmt.archive, fmt, _read_archive


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The dataset root: the argument, else $FASTSEED_DATA, else ./data."""
    return Path(data_dir if data_dir is not None else os.environ.get("FASTSEED_DATA") or "data")


def download_cifar10(root: str | Path, fmt: str = "binary", url: str | None = None,
                     md5: str | None = None, timeout: float = 30) -> Path:
    """Fetch an official archive into `root`; it appears there whole and checked, or not at all."""
    if fmt not in FORMATS:
        raise FastseedError(f"unknown CIFAR-10 format {fmt!r}: expected one of {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    url, md5 = url or spec.url, md5 or spec.md5
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.archive
    fd, tmp = tempfile.mkstemp(dir=root, prefix=spec.archive + ".", suffix=".part")
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != md5:
            raise FastseedError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}: "
                                f"the file is corrupt or not the official archive")
        os.replace(tmp, target)
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise FastseedError(f"download of {url} failed ({_one_line(getattr(e, 'reason', e))}); "
                            f"download it by hand from {HOME_PAGE} and put {spec.archive} in {root}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load_cifar10(data_dir: str | Path | None = None, *, download: bool = False,
                 verify: bool | Mapping[str, str] = True) -> Cifar10:
    """Read CIFAR-10 from the first official layout found in the data folder, checking every batch.

    verify: True checks against OFFICIAL_SHA256, a mapping against those digests, False skips."""
    root = resolve_data_dir(data_dir)
    found = next(((p, f, r) for p, f, r in _sources(root) if p.exists()), None)
    if found is None and download:
        download_cifar10(root)
        found = next((p, f, r) for p, f, r in _sources(root) if p.exists())
    if found is None:
        raise FastseedError(f"no CIFAR-10 in {root.absolute()}: expected one of {ACCEPTED}; get it "
                            f"from {HOME_PAGE} or pass --download")
    path, fmt, read = found
    expected = OFFICIAL_SHA256 if verify is True else None if verify is False else verify
    binary = fmt.name == "binary"
    batches = {}
    for name, raw in read(path, fmt).items():
        where = f"{name} in {path}"
        x, y = (_parse_binary if binary else _parse_python)(raw, where)
        if expected is not None:
            # a .bin file already is the record layout; a pickle's is rebuilt from its arrays
            digest = hashlib.sha256(raw).hexdigest() if binary else batch_digest(x, y)
            want = expected.get(name)
            if digest != want:
                raise FastseedError(f"{where} does not match its {'official' if verify is True else 'expected'}"
                                    f" SHA-256 (got {digest[:16]}..., want {(want or 'none')[:16]}...): the data"
                                    f" is corrupt or not this data set")
        if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise FastseedError(f"{where}: labels outside 0..{len(CLASSES) - 1} (corrupt or not CIFAR-10)")
        batches[name] = x, y
    train = [batches[n] for n in BATCHES[:-1]]
    return Cifar10(train_x=np.concatenate([x for x, _ in train]), train_y=np.concatenate([y for _, y in train]),
                   test_x=batches["test_batch"][0], test_y=batches["test_batch"][1], source=str(path))


def to_tensors(data: Cifar10, device: str | torch.device = "cpu") -> CifarTensors:
    """Copy the data set onto `device` once; training then gathers batches there without the host."""
    move = lambda a: torch.tensor(a, device=device)  # a copy: the engine may not alias the numpy arrays
    return CifarTensors(move(data.train_x), move(data.train_y), move(data.test_x), move(data.test_y))
