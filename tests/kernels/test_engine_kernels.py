"""The engine's GPU path — Triton augment and loss inside a packed training loop — trains a pack
to the same records as the PyTorch references (run here under triton's interpreter)."""

import pytest

import fastseed.kernels.augment as augment_module
import fastseed.kernels.lsce as lsce_module
from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train_pack
from fastseed.recipe.presets import get_preset

TINY = get_preset("smoke").variant(train_size=200, batch_size=100, chunk_size=100, epochs=2,
                                   lr_warmup_epochs=2, lr_decay_end=3, eval_batch_size=100, width=0.0625)


@pytest.mark.slow
def test_engine_kernel_path_matches_references(triton_device, monkeypatch):
    calls = {"augment": 0, "loss": 0}

    def counted(module, name, key):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counted(augment_module, "augment_triton", "augment")
    counted(lsce_module, "protocol_loss_triton", "loss")
    data = to_tensors(make_cifar_like(200, 100, seed=3), triton_device)
    with_kernels = train_pack(TINY, [4, 9], data, triton_device, strategy="fused", dtype="float32")
    assert calls == {"augment": 4, "loss": 4}  # 2 epochs × 2 steps, every step on the kernels
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # impl="auto" now takes the references
    references = train_pack(TINY, [4, 9], data, triton_device, strategy="fused", dtype="float32", graphs=False)
    for a, b in zip(with_kernels, references):
        assert a.seed == b.seed and a.status == b.status == "ok"
        assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=1e-4)
        assert sum(a.eval_curve, []) == pytest.approx(sum(b.eval_curve, []), rel=1e-4, abs=0.02)
    assert calls == {"augment": 4, "loss": 4}  # the reference run used no kernel
