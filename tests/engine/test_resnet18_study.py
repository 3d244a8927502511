"""The ResNet-18 study at smoke scale: Adam, a last partial batch, packs that change nothing, and the
report's factor table from the three experiments' stores."""


import pytest
import torch
import torch.nn.functional as F

from fastseed.report import __main__ as report
from fastseed.data.cifar import to_tensors
from fastseed.data.synthetic import make_cifar_like
from fastseed.engine import train_pack
from fastseed.engine.pack import Single
from fastseed.engine.train import evaluate, init_model
from fastseed.recipe.presets import get_preset
from fastseed.store import Store

SMALL = dict(train_size=150, test_size=100, epochs=2, eval_batch_size=100)  # 2 batches: 128, 22


@pytest.fixture(scope="module")
def data():
    return to_tensors(make_cifar_like(150, 100, seed=5), "cpu")


@pytest.mark.slow
def test_adam_pack_equals_seeds_alone_with_a_partial_last_batch(data):
    p = get_preset("resnet18-exp1").variant(**SMALL)
    packed = train_pack(p, [3, 8], data, "cpu", strategy="fused", dtype="float64")
    alone = [train_pack(p, [s], data, "cpu", strategy="sequential", dtype="float64")[0] for s in (3, 8)]
    for a, b in zip(packed, alone):
        assert a.status == b.status == "ok" and a.predictions == b.predictions
        assert sum(a.train_curve, []) == pytest.approx(sum(b.train_curve, []), rel=1e-9)
        assert sum(a.eval_curve, []) == pytest.approx(sum(b.eval_curve, []), rel=1e-9)
    assert packed[0].train_curve != packed[1].train_curve


@pytest.mark.slow
def test_report_gives_the_factor_table_from_three_stores(data, tmp_path):
    stores = []
    for i in (1, 2, 3):
        p = get_preset(f"resnet18-exp{i}").variant(**{**SMALL, "epochs": 1})
        path = tmp_path / f"exp{i}.sqlite"
        with Store(path, p.name, p.hash, p.to_json()) as store:
            store.set_test_labels(data.test_y.numpy())
            for record in train_pack(p, [0, 1, 2], data, "cpu", strategy="fused"):
                store.add(record)
        stores.append(str(path))
    out = tmp_path / "report"
    assert report.main([*stores, "--label", "exp1", "exp2", "exp3", "--out", str(out)]) == 0
    table = (out / "factors.csv").read_text()
    assert "init" in table and "order" in table
    assert "factors" in (out / "report.md").read_text()


def test_test_loss_is_the_mean_of_per_batch_means_as_the_original(data):
    """The original averages the per-batch mean losses over test batches of 128, so the images of the last,
    partial batch weigh more: here 150 test images = 128 + 22. Computed independently below."""
    p = get_preset("resnet18-exp1").variant(test_size=150)
    assert (p.test_loss, p.eval_batch_size) == ("batch_mean", 128)
    images = torch.from_numpy(make_cifar_like(10, 150, seed=9).test_x)
    labels = (torch.arange(150) * 7) % 10
    model = init_model(p, p.seed(0)).double().eval()
    (acc, loss, _), = evaluate(Single(model), p, images, labels, torch.float64)
    x = (images.double() / 255 - 0.5) / 0.5
    model.eval()  # evaluate() leaves the pack in train mode
    with torch.no_grad():
        per_image = F.cross_entropy(model(x), labels, reduction="none")
    batch_means = [per_image[:128].mean(), per_image[128:].mean()]
    assert loss == pytest.approx(torch.stack(batch_means).mean().item(), rel=1e-12)
    image_mean = per_image.mean().item()
    assert abs(loss - image_mean) > 1e-4  # a case where the two rules differ
    (_, loss_images, _), = evaluate(Single(model), p.variant(test_loss="image_mean"), images, labels, torch.float64)
    assert loss_images == pytest.approx(image_mean, rel=1e-12)
