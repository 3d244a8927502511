"""ECE with 15 equal-width bins: exact on constructed runs, near zero for a calibrated model, and the
same as a plain loop over bins."""

import numpy as np
import pytest

from fastseed.stats.calibration import BINS, calibrate, reliability, softmax


def logits_with_confidence(confidence, predicted, n_classes: int = 10) -> np.ndarray:
    """Logits whose softmax gives `predicted` probability `confidence` and spreads the rest evenly."""
    confidence = np.asarray(confidence, dtype=float)
    rest = (1 - confidence) / (n_classes - 1)
    logits = np.tile(np.log(rest)[:, None], (1, n_classes))
    logits[np.arange(len(confidence)), predicted] = np.log(confidence)
    return logits


def test_softmax_rows_sum_to_one_and_float16_does_not_overflow():
    z = np.array([[60000, 0, -60000], [1, 2, 3]], dtype=np.float16)
    p = softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert p[0, 0] == pytest.approx(1) and p[1].argmax() == 2


def test_known_miscalibration():
    # 600 images at confidence 0.95, 80 % right; 400 at 0.55, 55 % right:
    # ECE = 0.6 · |0.80 − 0.95| + 0.4 · |0.55 − 0.55| = 0.09
    labels = np.zeros(1000, dtype=np.int64)
    predicted = np.r_[np.zeros(480), np.ones(120), np.zeros(220), np.ones(180)].astype(int)
    conf = np.r_[np.full(600, 0.95), np.full(400, 0.55)]
    r = reliability(logits_with_confidence(conf, predicted), labels)
    assert r.ece == pytest.approx(0.09, abs=1e-6)
    assert r.count.sum() == 1000 and r.count[14] == 600 and r.count[8] == 400  # (14/15, 1], (8/15, 9/15]
    assert r.accuracy[14] == pytest.approx(0.8) and r.confidence[8] == pytest.approx(0.55, abs=1e-6)
    assert np.isnan(r.accuracy[0])


def test_a_calibrated_model_has_a_small_ece():
    # confidence c drawn uniformly, right with probability c: ECE only from sampling noise
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 200_000)
    right = rng.random(len(conf)) < conf
    labels = np.zeros(len(conf), dtype=np.int64)
    r = reliability(logits_with_confidence(conf, np.where(right, 0, 1)), labels)
    assert r.ece < 0.005


def test_ece_equals_a_loop_over_bins():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (5000, 10)).astype(np.float16)
    labels = rng.integers(0, 10, 5000)
    r = reliability(logits, labels)
    p = softmax(logits)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    ece = 0.0
    for m in range(1, BINS + 1):
        inside = (conf > (m - 1) / BINS) & (conf <= m / BINS)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    assert r.ece == pytest.approx(ece, rel=1e-6)


def test_calibrate_streams_runs_in_the_order_given():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 400)
    runs = {i: rng.normal(0, 1 + i, (400, 10)) for i in (3, 5, 9)}
    cal = calibrate(iter(runs.items()), labels)
    assert list(cal.rows) == [3, 5, 9] and cal.accuracy.shape == (3, BINS)
    np.testing.assert_allclose(cal.ece, [reliability(runs[i], labels).ece for i in (3, 5, 9)])
    empty = calibrate(iter([]), labels)
    assert len(empty.ece) == 0 and empty.count.shape == (0, BINS)
