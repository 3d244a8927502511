"""Reading CIFAR-10: the SHA-256 digests of the real 60,000 images, which every load checks against the
official batches (so every scan's start-up pays them)."""

import pytest

from fastseed.data.cifar import OFFICIAL_SHA256, load_cifar10
from fastseed.data.synthetic import digests


@pytest.fixture(scope="module")
def real(cifar_root):
    return load_cifar10(cifar_root)


def test_batch_digests(benchmark, real):
    assert benchmark.pedantic(digests, args=(real,), rounds=3, iterations=1) == OFFICIAL_SHA256
    benchmark.extra_info.update(images=len(real.train_x) + len(real.test_x))
