"""A seed study of a small MLP in plain PyTorch on scikit-learn's handwritten digits: 1,797 real 8×8
images that ship with scikit-learn (nothing to download), 10 classes. A training function for
`python -m fastseed.scan --train examples.digits_mlp:train` (run from the repository's root):

    python -m fastseed.scan --train examples.digits_mlp:train --seeds 300 --workers 2 --until-ci 0.1
    python -m fastseed.scan --train examples.digits_mlp:train --set lr=0.1 --seeds 300 \\
        --versus results/examples.digits_mlp_train.sqlite
    python -m fastseed.report results/examples.digits_mlp_train.sqlite

What varies with the seed, each from its own stream (so `--fix init` studies the data order alone):
the initial weights ("init"), the order of the training images in every epoch ("order", keyed by the
epoch) and dropout's masks ("dropout"). What does not: the split, every fifth image for the test set
(360 images, the same for every seed, so the report can compare seeds image by image). Every keyword
argument is a knob (`--set lr=0.1`). This file is self-contained on purpose: the protocol hashes this
one file, not what it imports.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import torch
from torch import nn


@lru_cache(maxsize=1)
def digits() -> tuple:
    """(train images, train labels, test images, test labels): pixels scaled to [0, 1], every fifth
    image a test image."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x, y = torch.tensor(data.data, dtype=torch.float32) / 16, torch.tensor(data.target)
    test = torch.arange(len(y)) % 5 == 0
    return x[~test], y[~test], x[test], y[test]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(logits, accuracy in %, mean cross-entropy) on (x, y)."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return logits, 100 * (logits.argmax(1) == y).float().mean().item(), nn.functional.cross_entropy(logits, y).item()


def train(seed, device, lr: float = 0.05, epochs: int = 10, hidden: int = 64, dropout: float = 0.2,
          batch_size: int = 64, momentum: float = 0.9, optimizer: Literal["sgd", "adam"] = "sgd"):
    if device.type == "cpu":  # a net this small is fastest on one thread, and one thread sums the same way
        torch.set_num_threads(1)  # every run (a replay is bit-identical whatever the machine's cores)
    x_train, y_train, x_test, y_test = (t.to(device) for t in digits())
    with seed.torch_default("init"):  # nn.Linear's own initialisation, drawn on the CPU: the same on any device
        model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))
    model.to(device)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    eval_curve, train_curve = [], []
    with seed.torch_default("dropout", device=device):  # dropout's masks, on the device they are drawn on
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(y_train), generator=seed.torch("order", epoch)).to(device)
            seen, loss_sum, right = 0, 0.0, 0
            for i in range(0, len(order), batch_size):
                batch = order[i: i + batch_size]
                logits = model(x_train[batch])
                loss = nn.functional.cross_entropy(logits, y_train[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                seen += len(batch)
                loss_sum += loss.item() * len(batch)
                right += (logits.argmax(1) == y_train[batch]).sum().item()
            logits, accuracy, test_loss = evaluate(model, x_test, y_test)
            eval_curve.append((epoch, accuracy, test_loss))
            train_curve.append((epoch, loss_sum / seen, 100 * right / seen))
    return {"metric": accuracy, "name": "test accuracy", "unit": "%", "bounds": (0, 100), "loss": test_loss,
            "predictions": logits.argmax(1), "labels": y_test, "logits": logits,
            "eval_curve": eval_curve, "train_curve": train_curve,
            "extra": {"train_accuracy": train_curve[-1][2]}}
