"""A seed study of a scikit-learn estimator, a random forest, on scikit-learn's handwritten digits (1,797
real 8×8 images that ship with scikit-learn, 10 classes): the same study as digits_mlp.py in another
framework. A training function for `python -m fastseed.scan --train examples.digits_sklearn:train`:

    python -m fastseed.scan --train examples.digits_sklearn:train --seeds 300 --workers 2 --until-ci 0.1
    python -m fastseed.scan --train examples.digits_sklearn:train --keep logits --seeds 100   # + calibration

The seed reaches the forest as an integer (`seed.integer("forest")`: scikit-learn's random_state), so
it decides each tree's bootstrap sample and the features each split tries; the split is fixed (every
fifth image for the test set, the same for every seed). The forest's class probabilities go to the
store with `--keep logits` (calibration, soft votes); `n_jobs=1`, so `--workers` decides the parallelism.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np


@lru_cache(maxsize=1)
def digits() -> tuple:
    """(train images, train labels, test images, test labels): every fifth image a test image."""
    from sklearn.datasets import load_digits
    data = load_digits()
    test = np.arange(len(data.target)) % 5 == 0
    return data.data[~test], data.target[~test], data.data[test], data.target[test]


def train(seed, device, n_estimators: int = 30, max_features: Literal["sqrt", "log2"] = "sqrt",
          max_depth: int | None = None, bootstrap: bool = True):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import log_loss
    x_train, y_train, x_test, y_test = digits()
    forest = RandomForestClassifier(n_estimators=n_estimators, max_features=max_features, max_depth=max_depth,
                                    bootstrap=bootstrap, random_state=seed.integer("forest"), n_jobs=1)
    forest.fit(x_train, y_train)
    probabilities = forest.predict_proba(x_test)  # columns: forest.classes_, the digits 0..9
    predictions = forest.classes_[probabilities.argmax(1)]
    return {"metric": 100 * float((predictions == y_test).mean()), "name": "test accuracy", "unit": "%",
            "bounds": (0, 100), "predictions": predictions, "labels": y_test, "probabilities": probabilities,
            "extra": {"log_loss": log_loss(y_test, probabilities, labels=forest.classes_),
                      "mean_depth": float(np.mean([t.get_depth() for t in forest.estimators_]))}}
