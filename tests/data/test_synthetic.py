"""The synthetic CIFAR-like set: deterministic, learnable, and written in exactly the official layouts."""

import pickle
import tarfile

import numpy as np
import pytest
import torch

from fastseed.data.cifar import BATCHES, load_cifar10, to_tensors
from fastseed.data.synthetic import digests, make_cifar_like, write_cifar_archive


def assert_same(a, b):
    for field in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_shapes_and_dtypes():
    data = make_cifar_like(120, 30)
    assert data.train_x.shape == (120, 3, 32, 32) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (30, 3, 32, 32) and data.test_y.dtype == np.int64
    assert np.bincount(data.train_y, minlength=10).tolist() == [12] * 10  # balanced


def test_same_seed_same_bytes_other_seed_differs():
    assert_same(make_cifar_like(seed=3), make_cifar_like(seed=3))
    assert digests(make_cifar_like(seed=3)) != digests(make_cifar_like(seed=4))
    assert not np.array_equal(make_cifar_like(seed=3).train_x, make_cifar_like(seed=4).train_x)


def test_classes_distinguishable_by_nearest_class_mean():
    data = make_cifar_like(1000, 500, seed=1)
    train = data.train_x.reshape(1000, -1).astype(np.float64)
    means = np.stack([train[data.train_y == c].mean(0) for c in range(10)])
    test = data.test_x.reshape(500, -1).astype(np.float64)
    predicted = ((test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == data.test_y).mean() > 0.35  # chance is 0.10


def test_tiny_convnet_learns_beyond_colour_in_two_epochs():
    data = to_tensors(make_cifar_like(1000, 500, seed=1))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                              torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    scale = lambda x: (x.float() - 128) / 64
    for _ in range(2):
        for idx in torch.randperm(1000).split(50):
            loss = torch.nn.functional.cross_entropy(net(scale(data.train_x[idx])), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (net(scale(data.test_x)).argmax(1) == data.test_y).float().mean().item()
    assert accuracy > 0.5


@pytest.mark.parametrize("archive", [True, False], ids=["archive", "folder"])
@pytest.mark.parametrize("fmt", ["binary", "python"])
def test_round_trip_is_exact(tmp_path, fmt, archive):
    data = make_cifar_like(230, 70, seed=5)  # 230 does not split evenly: batches of 46
    written = write_cifar_archive(tmp_path, data, fmt, archive=archive)
    loaded = load_cifar10(tmp_path, verify=digests(data))
    assert_same(data, loaded)
    assert loaded.source == str(written)


def test_binary_layout_matches_official(tmp_path):
    data = make_cifar_like(50, 10)
    path = write_cifar_archive(tmp_path, data, "binary")
    with tarfile.open(path) as tar:
        names = tar.getnames()
        record = tar.extractfile("cifar-10-batches-bin/data_batch_1.bin").read()[:3073]
        meta = tar.extractfile("cifar-10-batches-bin/batches.meta.txt").read().decode().split()
    assert names[0] == "cifar-10-batches-bin"
    assert {f"cifar-10-batches-bin/{b}.bin" for b in BATCHES} <= set(names)
    assert record[0] == data.train_y[0] and record[1:] == data.train_x[0].tobytes()  # label, then R, G, B
    assert meta[:2] == ["airplane", "automobile"] and meta[-1] == "truck"


def test_python_layout_matches_official(tmp_path):
    data = make_cifar_like(50, 10)
    folder = write_cifar_archive(tmp_path, data, "python", archive=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*BATCHES, "batches.meta"])
    raw = (folder / "data_batch_2").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official pickles
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"batch_label"] == b"training batch 2 of 5"
    assert batch[b"data"].shape == (10, 3072) and batch[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(batch[b"data"][0], data.train_x[10].ravel())
    assert batch[b"labels"] == data.train_y[10:20].tolist()
    meta = pickle.loads((folder / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"label_names"][6] == b"frog"


def test_fewer_train_batches_split_in_order():
    data = make_cifar_like(60, 10)
    assert list(digests(data, n_train_batches=3)) == ["data_batch_1", "data_batch_2", "data_batch_3",
                                                      "test_batch"]
