"""Golden float64 records: what each preset's recipe trained to, at CPU size, with the code before issue 19
moved every schedule into device tensors (so that a pack's step is captured once for the whole run).

    PYTHONPATH=. python tests/engine/golden.py      # rewrites golden_records.json (only on purpose)

The cases are the presets' own code paths, shrunk (width, images, epochs) but keeping what the capture
rule has to get right: Picard's per-epoch LambdaLR (warm-up, decay, picard-long's floor), the ResNet-18
study's Adam with a last partial batch, fast94's per-step lr, lookahead and its whitening bias that stops
training after an epoch. Each is trained as a fused pack of two seeds on synthetic CIFAR-shaped data
(fastseed.data.synthetic), in float64 on the CPU; the file keeps only outcomes (curves, accuracy, loss,
predictions as hex) and protocol hashes, no data. tests/engine/test_golden.py trains the same cases with
today's code (eager, and through the recorded stand-in of the CUDA graph API) and holds them to 1e-9
relative, predictions equal.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE = Path(__file__).with_name("golden_records.json")
SEEDS = (3, 7)  # one fused pack of two


def cases() -> dict:
    """name -> (protocol, (train images, test images, data seed))."""
    from fastseed.recipe.presets import get_preset
    small = dict(width=0.0625, train_size=200, test_size=100, batch_size=100, chunk_size=100, eval_batch_size=100)
    return {
        "smoke": (get_preset("smoke").variant(**small, epochs=3, lr_warmup_epochs=2, lr_decay_end=3), (200, 100, 2)),
        # picard's eval rule (epochs 0, 1, 6) and its LambdaLR: warm-up over 2 epochs, decay to epoch 7
        "picard-short": (get_preset("picard-short").variant(**small, epochs=7, lr_warmup_epochs=2, lr_decay_end=7),
                         (200, 100, 2)),
        # the same, with picard-long's flat 0.01 from epoch 4 on and every epoch evaluated
        "picard-long": (get_preset("picard-long").variant(**small, epochs=6, lr_warmup_epochs=2, lr_decay_end=7,
                                                          lr_floor_from=4), (200, 100, 2)),
        # Adam; 100 images in batches of 32: the last batch of every epoch holds 4
        "resnet18-exp1": (get_preset("resnet18-exp1").variant(train_size=100, test_size=100, batch_size=32, epochs=2,
                                                              eval_batch_size=100), (100, 100, 5)),
        # 4 steps an epoch, 2.5 epochs: 10 steps; lookahead every 3; the whitening bias trains in epoch 0 only
        "fast94": (get_preset("fast94").variant(train_size=200, test_size=100, batch_size=50, eval_batch_size=50,
                                                width=0.0625, epochs=3, train_epochs=2.5, whiten_bias_epochs=1,
                                                lookahead_every=3), (200, 100, 2)),
    }


def data_for(shape):
    from fastseed.data.cifar import to_tensors
    from fastseed.data.synthetic import make_cifar_like
    n_train, n_test, seed = shape
    return to_tensors(make_cifar_like(n_train, n_test, seed=seed), "cpu")


def outcome(record) -> dict:
    return {"seed": record.seed, "status": record.status, "test_acc": record.test_acc, "test_loss": record.test_loss,
            "headline_epoch": record.headline_epoch, "eval_curve": record.eval_curve,
            "train_curve": record.train_curve, "predictions": bytes(record.predictions).hex(),
            "protocol_hash": record.protocol_hash}


def main():
    from fastseed.engine.train import train_pack
    from fastseed.recipe.presets import PRESETS
    golden = {"preset_hashes": {name: p.hash for name, p in PRESETS.items()}, "cases": {}}
    for name, (protocol, shape) in cases().items():
        records = train_pack(protocol, SEEDS, data_for(shape), "cpu", dtype="float64", strategy="fused")
        golden["cases"][name] = {"protocol_hash": protocol.hash, "records": [outcome(r) for r in records]}
        print(name, [round(100 * r.test_acc, 2) for r in records], flush=True)
    FILE.write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()
