"""Per-image counts against plain loops, in chunks or not, and the images the seed decides most."""

from collections import Counter

import numpy as np

from fastseed.stats import examples
from fastseed.stats.examples import count_examples, image_table, kinds, most_seed_dependent
from fastseed.stats.synthetic import balanced_labels, predictions_for


def test_counts_match_a_loop_over_images():
    rng = np.random.default_rng(0)
    labels = balanced_labels(300)
    preds = np.stack([predictions_for(p, labels, rng) for p in rng.uniform(0.3, 0.9, 25)])
    rows = np.array([0, 2, 3, 5, 7, 11, 13, 17, 19, 23, 24])  # finished runs only
    c = count_examples(preds, labels, rows, blocks=4)
    sub = preds[rows]
    np.testing.assert_array_equal(c.run_right, (sub == labels).sum(axis=1))
    np.testing.assert_array_equal(c.right, (sub == labels).sum(axis=0))
    np.testing.assert_array_equal(c.block_runs, [2, 3, 3, 3])
    np.testing.assert_array_equal(c.block_right[0], (sub[:2] == labels).sum(axis=0))
    for i in range(300):
        wrong = Counter(int(p) for p in sub[:, i] if p != labels[i])
        if not wrong:
            assert (c.wrong_class[i], c.wrong_runs[i]) == (-1, 0)
            continue
        top = max(wrong.values())
        assert c.wrong_runs[i] == top and c.wrong_class[i] == min(k for k, v in wrong.items() if v == top)


def test_chunks_change_nothing(monkeypatch):
    rng = np.random.default_rng(1)
    labels = balanced_labels(500)
    preds = np.stack([predictions_for(0.6, labels, rng) for _ in range(40)])
    whole = count_examples(preds, labels, blocks=7)
    monkeypatch.setattr(examples, "CHUNK", 700)  # one run (500 images) per chunk
    small = count_examples(preds, labels, blocks=7)
    for name in ("run_right", "block_runs", "block_right", "wrong_class", "wrong_runs"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(small, name), err_msg=name)


def test_a_wrong_class_the_labels_never_use_is_counted():
    labels = np.array([0, 1, 0, 1], dtype=np.uint8)
    preds = np.array([[0, 7, 0, 1], [0, 7, 3, 1], [2, 1, 3, 1]], dtype=np.uint8)
    c = count_examples(preds, labels)
    assert list(c.wrong_class) == [2, 7, 3, -1] and list(c.wrong_runs) == [1, 2, 2, 0]
    t = image_table(c)
    assert list(t.columns[:4]) == ["image", "label", "fraction_right", "most_common_wrong"]
    np.testing.assert_allclose(t["fraction_right"], [2 / 3, 1 / 3, 1 / 3, 1])


def test_kinds_and_the_most_seed_dependent_images():
    f = np.array([0, 0, 0.1, 0.25, 0.5, 0.625, 0.75, 0.9, 1, 1, 1, 0.375])
    k = kinds(f).set_index("kind")["images"]
    assert dict(k) == {"always wrong": 2, "mostly wrong": 1, "coin flip": 5, "mostly right": 1,
                       "always right": 3}
    assert list(most_seed_dependent(f, 4)) == [4, 5, 11, 3]  # equally far from 1/2: lower index first
