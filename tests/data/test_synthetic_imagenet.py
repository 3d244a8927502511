"""The synthetic ImageNet-layout generator: real JPEGs in the official folder layout, deterministic,
class-dependent content, and the broken files a real crawl has."""

import io

import numpy as np
from PIL import Image

from fastseed.data.imagenet import jpeg_problem
from fastseed.data.synthetic import imagenet_wnids, write_imagenet_folder


def files_of(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_layout_names_and_counts(tmp_path):
    out = write_imagenet_folder(tmp_path, classes=3, train_per_class=4, val_per_class=2, size=(120, 90))
    assert out["wnids"] == imagenet_wnids(3) == ["n00000000", "n00000001", "n00000002"]
    assert out["train"] == 12 and out["val"] == 6 and out["corrupt"] == []
    for split, per_class in (("train", 4), ("val", 2)):
        for wnid in out["wnids"]:
            names = sorted(p.name for p in (tmp_path / split / wnid).iterdir())
            assert names == sorted(f"{wnid}_{i}.JPEG" for i in range(per_class))


def test_images_are_jpegs_of_varied_realistic_sizes(tmp_path):
    write_imagenet_folder(tmp_path, classes=2, train_per_class=8, val_per_class=0, quality=90)
    sizes = set()
    for path in (tmp_path / "train").rglob("*.JPEG"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
            assert 250 <= min(im.size) and max(im.size) <= 625  # 500x375 +-25 %, either orientation
        assert jpeg_problem(str(path)) is None
    assert len(sizes) > 8 // 2  # sizes vary from image to image


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 5), (b, 5), (c, 6)):
        write_imagenet_folder(root, classes=2, train_per_class=2, val_per_class=1, size=(64, 48), seed=seed,
                              corrupt=3)
    assert files_of(a) == files_of(b) == files_of(c)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_of(a))
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files_of(a))


def test_corrupt_files_are_truncated_png_and_empty(tmp_path):
    out = write_imagenet_folder(tmp_path, classes=2, train_per_class=2, val_per_class=1, size=(64, 48), corrupt=3)
    assert len(out["corrupt"]) == 6 and all(p.suffix == ".JPEG" for p in out["corrupt"])
    reasons = sorted(jpeg_problem(str(p)).split(" (")[0] for p in out["corrupt"] if "/train/" in str(p))
    assert reasons == ["empty file", "not a JPEG", "truncated JPEG"]
    png = next(p for p in out["corrupt"] if "_png_" in p.name)
    assert Image.open(io.BytesIO(png.read_bytes())).format == "PNG"


def test_flat_content_is_the_class_colour(tmp_path):
    out = write_imagenet_folder(tmp_path, classes=4, train_per_class=2, val_per_class=0, size=(80, 60),
                                content="flat")
    for c, wnid in enumerate(out["wnids"]):
        for path in (tmp_path / "train" / wnid).iterdir():
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
            assert np.abs(pixels.mean((0, 1)) - out["colours"][c]).max() < 3
    distances = np.linalg.norm(out["colours"][:, None] - out["colours"][None], axis=-1)
    assert distances[~np.eye(4, dtype=bool)].min() > 60  # classes are told apart at a glance


def test_field_content_is_learnable_from_mean_colour(tmp_path):
    out = write_imagenet_folder(tmp_path, classes=5, train_per_class=4, val_per_class=4, size=(96, 72), seed=2)
    def features(split):
        xs, ys = [], []
        for c, wnid in enumerate(out["wnids"]):
            for path in sorted((tmp_path / split / wnid).iterdir()):
                xs.append(np.asarray(Image.open(path).convert("RGB").resize((8, 8)), dtype=np.float64).ravel())
                ys.append(c)
        return np.array(xs), np.array(ys)
    train_x, train_y = features("train")
    val_x, val_y = features("val")
    means = np.stack([train_x[train_y == c].mean(0) for c in range(5)])
    predicted = ((val_x[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == val_y).mean() >= 0.8  # chance is 0.2
