"""--pack auto: the choice rule, and backing off on out-of-memory."""

import pytest
import torch

from fastseed.engine.autopack import choose_pack, pick_pack
from fastseed.recipe.presets import get_preset

GIB = 2**30


def test_picks_the_fastest_pack_that_fits_in_memory():
    timings = {1: 1.0, 2: 0.6, 4: 0.4, 8: 0.35, 16: 0.3, 32: 0.1, 64: 0.2}
    assert pick_pack(GIB, 100 * GIB, timings.__getitem__, log=lambda m: None) == 32
    # 10 GiB free, 1 GiB a seed: only packs up to 8 fit in 80 % of it
    assert pick_pack(GIB, 10 * GIB, timings.__getitem__, log=lambda m: None) == 8


def test_out_of_memory_while_measuring_ends_the_search():
    def timing(k):
        if k >= 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return 1.0 / k
    assert pick_pack(GIB, 100 * GIB, timing, log=lambda m: None) == 4


def test_other_errors_are_not_swallowed():
    def timing(k):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
    with pytest.raises(RuntimeError, match="cuDNN"):
        pick_pack(GIB, 100 * GIB, timing, log=lambda m: None)


def test_cpu_trains_one_seed_at_a_time():
    assert choose_pack(get_preset("smoke"), None, "cpu", torch.float32, "fused", False, log=lambda m: None) == 1
