"""CIFAR-10 loading: the real data set's known facts, every official layout, and each way it can go wrong."""

import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from fastseed import FastseedError
from fastseed.data import cifar
from fastseed.data.cifar import (OFFICIAL_SHA256, batch_digest, download_cifar10, load_cifar10,
                                 record_bytes, resolve_data_dir, to_tensors)
from fastseed.data.synthetic import digests, make_cifar_like, write_cifar_archive


def error_of(call, *args, **kwargs) -> str:
    """The FastseedError message of a call, checked to be the one line the CLI prints."""
    with pytest.raises(FastseedError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    return message


def assert_same(a, b):
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


@pytest.fixture(scope="module")
def real(real_cifar_root):
    return load_cifar10(real_cifar_root)  # verify=True: every batch against OFFICIAL_SHA256


@pytest.fixture
def small():
    return make_cifar_like(100, 20, seed=7)


# --- the real data set ------------------------------------------------------------------------------

def test_real_cifar_known_facts(real, real_cifar_root):
    assert real.train_x.shape == (50000, 3, 32, 32) and real.train_x.dtype == np.uint8
    assert real.test_x.shape == (10000, 3, 32, 32) and real.test_x.dtype == np.uint8
    assert real.train_y.dtype == real.test_y.dtype == np.int64
    assert real.source.startswith(str(real_cifar_root))
    assert real.train_y[0] == 6 and real.test_y[0] == 3  # a frog, a cat
    assert real.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert np.bincount(real.train_y).tolist() == [5000] * 10
    values = np.arange(256.0)
    for channel, (mean, std) in enumerate([(125.307, 62.993), (122.950, 62.089), (113.865, 66.705)]):
        counts = np.bincount(real.train_x[:, channel].ravel(), minlength=256)  # exact, without float copies
        m = counts @ values / counts.sum()
        assert abs(m - mean) < 0.01
        assert abs(np.sqrt(counts @ (values - m) ** 2 / counts.sum()) - std) < 0.01


def test_real_digests_are_the_binary_records(real):
    """(How fast: bench/test_data_bench.py; a wall-clock limit here failed on a busy machine.)"""
    got = {f"data_batch_{i + 1}": batch_digest(real.train_x[i * 10000:(i + 1) * 10000],
                                               real.train_y[i * 10000:(i + 1) * 10000]) for i in range(5)}
    got["test_batch"] = batch_digest(real.test_x, real.test_y)
    assert got == OFFICIAL_SHA256


def test_real_converted_to_python_format_loads_identically(real, tmp_path):
    folder = write_cifar_archive(tmp_path, real, "python", archive=False)
    again = load_cifar10(tmp_path)  # the official digests vouch for the pickles too
    assert again.source == str(folder)
    assert_same(real, again)


def test_real_unpacked_binary_folder_wins_over_archive(real, tmp_path):
    folder = write_cifar_archive(tmp_path, real, "binary", archive=False)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not read: the folder comes first")
    again = load_cifar10(tmp_path)
    assert again.source == str(folder)
    assert_same(real, again)


def test_python2_pickle_as_in_official_archive_loads(tmp_path, small):
    """The official pickles come from Python 2: byte strings, numpy.core paths; no codecs involved."""
    def py2_batch(x, y):
        data = x.tobytes()
        return (b"\x80\x02}(U\x04data"
                b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
                b"(K\x01M" + struct.pack("<H", len(x)) + b"M\x00\x0c\x86"
                b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
                b"\x89T" + struct.pack("<I", len(data)) + data + b"tb"
                b"U\x06labels](" + b"".join(b"K" + bytes([int(v)]) for v in y) + b"eu.")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    splits = np.array_split(np.arange(100), 5)
    for i, idx in enumerate(splits):
        (folder / f"data_batch_{i + 1}").write_bytes(py2_batch(small.train_x[idx].reshape(-1, 3072),
                                                               small.train_y[idx]))
    (folder / "test_batch").write_bytes(py2_batch(small.test_x.reshape(-1, 3072), small.test_y))
    assert_same(small, load_cifar10(tmp_path, verify=digests(small)))


# --- finding the data -------------------------------------------------------------------------------

def test_data_dir_from_argument_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTSEED_DATA", raising=False)
    assert resolve_data_dir(None) == cifar.Path("data")
    monkeypatch.setenv("FASTSEED_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("elsewhere") == cifar.Path("elsewhere")


def test_env_data_dir_is_used(monkeypatch, tmp_path, small):
    write_cifar_archive(tmp_path, small, "python")
    monkeypatch.setenv("FASTSEED_DATA", str(tmp_path))
    assert_same(small, load_cifar10(verify=digests(small)))


def test_missing_data_names_folder_and_remedy(tmp_path):
    message = error_of(load_cifar10, tmp_path / "empty")
    assert str(tmp_path / "empty") in message
    assert "cifar-10-binary.tar.gz" in message and "cifar-10-batches-py/" in message
    assert "--download" in message and "cs.toronto.edu" in message


@pytest.mark.parametrize("archive", [True, False], ids=["archive", "folder"])
def test_missing_batch_is_reported(tmp_path, small, archive):
    write_cifar_archive(tmp_path, small, "binary", archive=archive, n_train_batches=4)
    assert "data_batch_5" in error_of(load_cifar10, tmp_path, verify=False)


# --- corruption -------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0.5, 0.9, 20, 0])
@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_truncated_archive_is_reported(tmp_path, small, fmt, keep):
    path = write_cifar_archive(tmp_path, small, fmt)
    raw = path.read_bytes()
    path.write_bytes(raw[:int(keep * len(raw)) if keep < 1 else keep])
    assert str(path) in error_of(load_cifar10, tmp_path, verify=False)


def test_garbage_archive_is_reported(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(os.urandom(5000))
    assert "corrupt" in error_of(load_cifar10, tmp_path)


def test_flipped_byte_in_bin_fails_its_digest(tmp_path, small):
    folder = write_cifar_archive(tmp_path, small, "binary", archive=False)
    raw = bytearray((folder / "data_batch_3.bin").read_bytes())
    raw[1000] ^= 0xFF
    (folder / "data_batch_3.bin").write_bytes(bytes(raw))
    message = error_of(load_cifar10, tmp_path, verify=digests(small))
    assert "data_batch_3" in message and str(folder) in message


def test_cut_bin_file_is_not_whole_records(tmp_path, small):
    folder = write_cifar_archive(tmp_path, small, "binary", archive=False)
    (folder / "test_batch.bin").write_bytes((folder / "test_batch.bin").read_bytes()[:-5])
    assert "3073-byte records" in error_of(load_cifar10, tmp_path, verify=False)


@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_digest_mismatch_names_the_batch(tmp_path, small, fmt):
    write_cifar_archive(tmp_path, small, fmt)
    assert "data_batch_1" in error_of(load_cifar10, tmp_path)  # synthetic is not the official data
    wrong = {**digests(small), "test_batch": "0" * 64}
    message = error_of(load_cifar10, tmp_path, verify=wrong)
    assert "test_batch" in message and "cifar-10" in message
    load_cifar10(tmp_path, verify=False)  # and skipping the check reads it


def test_pickle_with_wrong_shape_is_reported(tmp_path, small):
    folder = write_cifar_archive(tmp_path, small, "python", archive=False)
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}
    (folder / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    assert "data_batch_2" in error_of(load_cifar10, tmp_path, verify=False)


class Payload:
    """What a crafted pickle looks like: unpickling it calls an arbitrary function."""
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("how", ["os.system", "open"])
def test_malicious_pickle_runs_no_code(tmp_path, small, how):
    folder = write_cifar_archive(tmp_path / "root", small, "python", archive=False)
    marker = tmp_path / "pwned"
    payload = Payload(os.system, f"touch {marker}") if how == "os.system" else Payload(open, str(marker), "w")
    crafted = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    (folder / "data_batch_1").write_bytes(crafted)
    message = error_of(load_cifar10, tmp_path / "root", verify=False)
    assert "refusing" in message and "data_batch_1" in message
    assert not marker.exists()
    pickle.loads(crafted)  # the payload is live: a plain unpickler does run it
    assert marker.exists()


# --- download ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_download_checks_md5_and_loads(tmp_path, small, fmt):
    source = write_cifar_archive(tmp_path / "server", small, fmt)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    got = download_cifar10(tmp_path / "root", fmt, url=source.as_uri(), md5=md5)
    assert got == tmp_path / "root" / source.name and got.read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "root").iterdir()] == [source.name]
    assert_same(small, load_cifar10(tmp_path / "root", verify=digests(small)))


def test_load_with_download_fetches_when_absent(tmp_path, small, monkeypatch):
    source = write_cifar_archive(tmp_path / "server", small, "binary")
    official = cifar.FORMATS["binary"]
    monkeypatch.setitem(cifar.FORMATS, "binary", official._replace(
        url=source.as_uri(), md5=hashlib.md5(source.read_bytes()).hexdigest()))
    assert_same(small, load_cifar10(tmp_path / "root", download=True, verify=digests(small)))


def test_download_with_wrong_md5_leaves_nothing(tmp_path, small):
    source = write_cifar_archive(tmp_path / "server", small, "binary")
    message = error_of(download_cifar10, tmp_path / "root", url=source.as_uri(), md5="0" * 32)
    assert "md5" in message
    assert list((tmp_path / "root").iterdir()) == []


def test_unreachable_download_says_where_to_put_the_file(tmp_path):
    message = error_of(download_cifar10, tmp_path / "root", url="file:///nonexistent/x.tar.gz")
    assert "failed" in message and "cifar-10-binary.tar.gz" in message and str(tmp_path / "root") in message
    assert list((tmp_path / "root").iterdir()) == []


def test_unknown_download_format(tmp_path):
    assert "format" in error_of(download_cifar10, tmp_path, "matlab")


# --- layouts and device -----------------------------------------------------------------------------

def test_record_bytes_is_label_then_planes():
    x = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3, 32, 32).astype(np.uint8)
    raw = record_bytes(x, np.array([4, 9]))
    assert len(raw) == 2 * 3073 and raw[0] == 4 and raw[3073] == 9
    assert raw[1:3073] == x[0].tobytes() and raw[3074:] == x[1].tobytes()
    assert batch_digest(x, np.array([4, 9])) == hashlib.sha256(raw).hexdigest()


def test_to_tensors_keeps_uint8_and_copies(small):
    tensors = to_tensors(small, "cpu")
    assert tensors.train_x.dtype == torch.uint8 and tensors.train_x.shape == (100, 3, 32, 32)
    assert tensors.train_y.dtype == torch.int64 and tensors.test_y.shape == (20,)
    assert torch.equal(tensors.test_x, torch.from_numpy(small.test_x))
    tensors.train_x[0] = 0
    assert small.train_x[0].any()  # the numpy arrays are not aliased
