"""Issue #14 item 3, the storage side: `--keep logits` makes each record keep the headline evaluation's
logits (float16, test images × classes), whose argmax is the stored prediction; the report then shows
the soft votes and the calibration; a store where only some seeds kept them reports too. Keeping logits
changes no result, so it is an option, not part of the protocol."""

import numpy as np
import pandas as pd
import pytest

from fastseed import scan
from fastseed.report import __main__ as report
from fastseed.data import cifar
from fastseed.store import Store
from fastseed.store.record import decode_logits

TINY = ["--set", "train_size=500", "--set", "epochs=1"]  # one step; the whole test set is evaluated
IMAGES = 10_000


@pytest.fixture(scope="module")
def mixed_store(real_cifar_root, tmp_path_factory):
    """Seeds 0 and 1 scanned with --keep logits, then seed 2 without, into one store."""
    out = tmp_path_factory.mktemp("logits") / "s.sqlite"
    argv = ["--preset", "smoke", "--device", "cpu", "--data-dir", str(real_cifar_root), "--out", str(out),
            "--no-progress", *TINY]
    data = cifar.load_cifar10(real_cifar_root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cifar, "load_cifar10", lambda *a, **kw: data)  # read once (jobs reads through cifar)
        assert scan.main(argv + ["--seeds", "2", "--keep", "logits"]) == 0
        assert scan.main(argv + ["--seeds", "3"]) == 0  # the same protocol: the same store
    return out


def test_kept_logits_decode_to_the_test_set_and_their_argmax_is_the_prediction(mixed_store):
    with Store.open(mixed_store) as store:
        records = store.records()
    assert [r.seed for r in records] == [0, 1, 2] and records[2].logits is None
    for record in records[:2]:
        logits = decode_logits(record.logits, IMAGES)
        assert logits.shape == (IMAGES, 10) and logits.dtype == np.float16 and np.isfinite(logits).all()
        predicted = record.predictions_array()
        top = logits.max(axis=1, keepdims=True)
        tied = (logits == top).sum(axis=1) > 1  # rounding to float16 may tie two classes, never swap them
        assert tied.mean() < 0.01
        assert np.array_equal(logits.argmax(axis=1)[~tied], predicted[~tied])
        assert (logits[np.arange(IMAGES), predicted] == top[:, 0]).all()  # a tie includes the prediction
    assert records[0].logits != records[1].logits
    assert 100_000 < len(records[0].logits) < 200_000  # float16 compresses a little: 200 kB raw


def test_the_report_of_a_store_with_and_without_logits_soft_votes_and_calibrates(mixed_store, tmp_path, capsys):
    assert report.main([str(mixed_store), "--out", str(tmp_path / "r"), "--boot", "200"]) == 0
    page = (tmp_path / "r" / "report.md").read_text()
    assert "## Calibration (from stored logits)" in page
    assert "Soft vote (class of the highest mean softmax probability" in page
    assert (tmp_path / "r" / "soft_ensembles.csv").exists() and (tmp_path / "r" / "calibration.csv").exists()
    ece = pd.read_csv(tmp_path / "r" / "seeds.csv")["ece"]
    assert ece.notna().tolist() == [True, True, False]  # calibrated where the logits were kept


@pytest.mark.parametrize("argv,phrase", [
    (["--preset", "imagenet-rn50", "--keep", "logits"], "--keep logits: not for imagenet-rn50: 1,000 classes"),
    (["--preset", "smoke", "--checkpoint-every", "5"], "--checkpoint-every: only for the imagenet-* presets"),
    (["--preset", "smoke", "--checkpoint-every", "0"], "--checkpoint-every must be a positive number"),
    (["--preset", "smoke", "--keep", "weights"], "invalid choice: 'weights'"),
])
def test_options_a_protocol_cannot_keep_are_refused_in_one_line(argv, phrase, tmp_path, capsys):
    code = scan.main(argv + ["--device", "cpu", "--out", str(tmp_path / "s.sqlite"), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and phrase in err[0], err
    assert list(tmp_path.iterdir()) == []
