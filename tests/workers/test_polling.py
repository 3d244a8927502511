"""What a scan reads from its store per seed stays small however many seeds are stored: the running
accuracy is tallied, not re-summed; a poller reads only the accuracies committed since its last read;
claims and counts skip the stored prefix — and all of it gives the answers the full reads give."""

import math

import numpy as np
import pytest

from fastseed.stats.synthetic import make_record, protocol_identity
from fastseed.store import Store
from fastseed.workers.progress import Tally, summary


def test_tally_is_the_mean_std_min_max_of_the_finite_accuracies():
    rng = np.random.default_rng(0)
    x = rng.normal(0.9, 0.0023, 5000)
    x[[3, 70, 4000]] = np.nan  # diverged seeds: left out
    tally = Tally(x[:10])
    for value in x[10:100]:
        tally.add(value)
    tally.extend(x[100:])
    finite = x[np.isfinite(x)]
    assert tally.n == finite.size == 4997
    assert tally.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert math.sqrt(tally.m2 / (tally.n - 1)) == pytest.approx(finite.std(ddof=1), rel=1e-9)
    assert (tally.lo, tally.hi) == (finite.min(), finite.max())
    assert tally.summary() == (f"acc {100 * finite.mean():.2f}±{100 * finite.std(ddof=1):.2f}% "
                               f"min {100 * finite.min():.2f} max {100 * finite.max():.2f} (n=4997)")


@pytest.mark.parametrize("accs,want", [([], "acc n/a"), ([math.nan, math.nan], "acc n/a"),
                                       ([0.5], "acc 50.00±0.00% min 50.00 max 50.00 (n=1)"),
                                       ([0.25, 0.25, 0.25], "acc 25.00±0.00% min 25.00 max 25.00 (n=3)")])
def test_tally_of_few_or_tied_accuracies(accs, want):
    assert summary(accs) == want


@pytest.fixture
def store(tmp_path):
    text, digest = protocol_identity("synthetic")
    with Store(tmp_path / "s.sqlite", "synthetic", digest, text) as store:
        yield store


def record(seed: int, acc: float):
    labels = np.zeros(10, dtype=np.uint8)
    r = make_record(seed, labels, labels, protocol="synthetic", epochs=2, diverged=math.isnan(acc),
                    rng=np.random.default_rng(seed))
    r.test_acc = acc
    return r


def test_a_poller_reads_only_what_was_committed_since_and_misses_nothing(store):
    accs, row = store.accuracies_after(0, 100)
    assert accs.size == 0 and row == 0
    for seed in (5, 2, 9, 150):
        store.add(record(seed, seed / 100))
    first, row = store.accuracies_after(0, 100)
    assert first.tolist() == [0.05, 0.02, 0.09]  # commit order; seed 150 is outside the range
    store.add(record(1, math.nan))
    store.add(record(3, 0.03))
    new, row2 = store.accuracies_after(0, 100, row)
    assert np.isnan(new[0]) and new[1] == 0.03 and row2 > row
    assert store.accuracies_after(0, 100, row2)[0].size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([first, new])), np.sort(store.accuracies(0, 100)))


def test_claims_and_counts_skip_the_stored_prefix_and_still_find_every_free_seed(store):
    store.PREFIX_READ = 4  # several reads to follow the prefix
    for seed in [s for s in range(12) if s != 3]:
        store.add(record(seed, 0.5))
    assert store.progress(0, 20) == (11, 0)
    assert store.claim(0, 20, 2, "a", 600) == [3, 12]  # the hole first, then past the prefix
    assert store.progress(0, 20) == (11, 2)
    store.add(record(3, 0.5), "a")
    assert store._prefix[0] == 3  # not moved yet: it follows the stored seeds when asked
    assert store.claim(0, 20, 3, "b", 600) == [13, 14, 15]  # 12 is a's
    assert store._prefix[0] == 12
    store.release("a")
    assert store.claim(0, 20, 1, "c", 600) == [12]  # released: free again, and found
    assert store.progress(0, 20) == (12, 4) and store.progress(5, 8) == (3, 0) and store.progress(14, 16) == (0, 2)
