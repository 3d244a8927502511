"""The ImageNet data path on the CPU: the index (layout, file lists, classes, broken files, image sizes,
cache) and the DALI pipelines (shapes, dtypes, values, labels, the documented order, the drawn crop
windows, seeding, starting mid-phase, eval coverage)."""

import os
import subprocess
import sys

import nvidia.dali  # noqa: F401  (DALI is part of CI: without it these tests fail, never skip)
import numpy as np
import pytest
import torch
from PIL import Image

import fastseed.data.imagenet as imagenet
import fastseed.data.jpeg as jpeg
from fastseed import FastseedError
from fastseed.data.crops import step_augment
from fastseed.data.imagenet import (IMAGENET_MEAN, IMAGENET_STD, ImageIndex, TrainOrder, batches_per_epoch,
                                    eval_batches, index_imagenet, train_batches, train_order)
from fastseed.data.synthetic import write_imagenet_folder
from fastseed.seeds import Seed

CPU = torch.device("cpu")
MEAN, STD = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """4 classes x 6 train / 2 val images, each class one constant colour, plus 3 broken files per split."""
    root = tmp_path_factory.mktemp("flat")
    out = write_imagenet_folder(root, classes=4, train_per_class=6, val_per_class=2, size=(160, 120),
                                content="flat", corrupt=3)
    return root, out


@pytest.fixture(scope="module")
def train_index(flat):
    return index_imagenet(flat[0], "train")


def batches(index, seed=Seed(1), phase=1, batch_size=4, steps=3, **kw):
    return list(train_batches(index, seed, phase, batch_size, steps, CPU, kw.pop("dtype", torch.float32), **kw))


def pixels(x):
    """Normalized NCHW float images back to 0..255 RGB."""
    return (x.float() * STD[:, None, None] + MEAN[:, None, None]) * 255


# --- the index -----------------------------------------------------------------------------------------

def test_index_lists_folder_sorted_by_class_and_name(flat, train_index):
    root, out = flat
    assert isinstance(train_index, ImageIndex) and len(train_index) == 24
    assert train_index.wnids == tuple(out["wnids"])
    assert train_index.labels.dtype == np.int64 and train_index.labels.tolist() == sorted([0, 1, 2, 3] * 6)
    for path, label in zip(train_index.files, train_index.labels):
        assert os.path.isabs(path) and os.path.basename(os.path.dirname(path)) == out["wnids"][label]
    assert list(train_index.files) == sorted(train_index.files)  # wnids sort like their labels here


def test_broken_files_are_skipped_with_a_reason(flat, train_index):
    skipped = dict(train_index.skipped)
    assert sorted(skipped) == sorted(str(p) for p in flat[1]["corrupt"] if "/train/" in str(p))
    assert sorted(r.split(" (")[0] for r in skipped.values()) == ["empty file", "not a JPEG", "truncated JPEG"]
    assert not set(skipped) & set(train_index.files)
    assert "3 skipped" in train_index.summary()


def test_non_jpeg_names_and_odd_suffixes(tmp_path):
    write_imagenet_folder(tmp_path, classes=2, train_per_class=2, val_per_class=0, size=(64, 48))
    folder = tmp_path / "train" / "n00000001"
    good = (folder / "n00000001_0.JPEG").read_bytes()
    (folder / "lower.jpg").write_bytes(good)
    (folder / "mixed.JpEg").write_bytes(good)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden").write_text("ignored")
    index = index_imagenet(tmp_path, "train")
    assert len(index) == 6 and sum(index.labels == 1) == 4
    assert [(os.path.basename(p), r) for p, r in index.skipped] == [("notes.txt", "not a .JPEG/.jpg file name")]


def test_classes_keeps_first_n_and_val_agrees_with_train(tmp_path):
    write_imagenet_folder(tmp_path, classes=5, train_per_class=2, val_per_class=2, size=(64, 48))
    train = index_imagenet(tmp_path, "train", classes=3)
    assert train.wnids == ("n00000000", "n00000001", "n00000002") and set(train.labels) == {0, 1, 2}
    # val lacks a class folder and has one train has not: its labels still come from train's folders
    os.rename(tmp_path / "val" / "n00000000", tmp_path / "val" / "zz_extra")
    val = index_imagenet(tmp_path, "val", classes=3)
    assert val.wnids == train.wnids and val.labels.tolist() == [1, 1, 2, 2]
    assert all(f"/val/{val.wnids[c]}/" in p for p, c in zip(val.files, val.labels))
    assert index_imagenet(tmp_path, "val", wnids=train.wnids).labels.tolist() == [1, 1, 2, 2]
    with pytest.raises(FastseedError, match="asked for 9 classes"):
        index_imagenet(tmp_path, "train", classes=9)


def test_file_list_input(tmp_path):
    out = write_imagenet_folder(tmp_path, classes=3, train_per_class=2, val_per_class=0, size=(64, 48),
                                content="flat", corrupt=1)
    lines = [f"train/{w}/{w}_{i}.JPEG {c}" for c, w in enumerate(out["wnids"]) for i in range(2)]
    lines += ["# a comment", "", f"{out['corrupt'][0]} 0", "train/missing.JPEG 1"]
    (tmp_path / "train.txt").write_text("\n".join(lines[::-1]) + "\n")  # any order in the file
    index = index_imagenet(tmp_path, "train")
    assert index.wnids == ("0", "1", "2") and index.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert all(f"/{out['wnids'][c]}/" in p for p, c in zip(index.files, index.labels))
    assert sorted(r.split(" (")[0] for _, r in index.skipped) == ["missing or unreadable", "truncated JPEG"]
    assert index_imagenet(tmp_path, "train", classes=2).labels.tolist() == [0, 0, 1, 1]
    (tmp_path / "train.txt").write_text("train/x.JPEG not-a-label\n")
    with pytest.raises(FastseedError, match="train.txt:1"):
        index_imagenet(tmp_path, "train")


def test_missing_split_empty_classes_or_no_valid_image_raise(tmp_path):
    with pytest.raises(FastseedError, match="no ImageNet split"):
        index_imagenet(tmp_path, "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FastseedError, match="no classes"):
        index_imagenet(tmp_path, "train")
    (tmp_path / "train" / "n0").mkdir()
    (tmp_path / "train" / "n0" / "a.JPEG").write_bytes(b"")
    with pytest.raises(FastseedError, match="no valid JPEG"):
        index_imagenet(tmp_path, "train")


def test_check_results_are_cached_and_follow_file_changes(tmp_path, monkeypatch):
    write_imagenet_folder(tmp_path, classes=2, train_per_class=3, val_per_class=0, size=(64, 48))
    first = index_imagenet(tmp_path, "train", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir())
    checked, real = [], jpeg.inspect_jpeg
    monkeypatch.setattr(jpeg, "inspect_jpeg", lambda p: checked.append(p) or real(p))
    again = index_imagenet(tmp_path, "train", cache_dir=tmp_path / "cache")
    assert checked == [] and again.files == first.files
    victim = first.files[2]
    with open(victim, "r+b") as f:  # cut it short: new size, so the cached verdict no longer applies
        f.truncate(os.path.getsize(victim) // 2)
    third = index_imagenet(tmp_path, "train", cache_dir=tmp_path / "cache")
    assert checked == [victim] and dict(third.skipped)[victim].startswith("truncated")


def test_index_keeps_each_image_size_from_its_header(tmp_path, monkeypatch):
    write_imagenet_folder(tmp_path, classes=2, train_per_class=5, val_per_class=0, size=(90, 60), corrupt=2)
    first = index_imagenet(tmp_path, "train", cache_dir=tmp_path / "cache")
    expected = [Image.open(p).size[::-1] for p in first.files]  # PIL says (width, height)
    assert first.sizes.dtype == np.int32 and first.sizes.tolist() == [list(hw) for hw in expected]
    assert len({tuple(hw) for hw in expected}) > 5  # the sizes vary, portrait ones included
    monkeypatch.setattr(jpeg, "inspect_jpeg", lambda p: pytest.fail("the cache should answer"))
    assert index_imagenet(tmp_path, "train", cache_dir=tmp_path / "cache").sizes.tolist() == first.sizes.tolist()


# --- training batches ----------------------------------------------------------------------------------

def test_train_shapes_dtype_range_and_step_count(train_index):
    out = batches(train_index, batch_size=4, steps=8)  # 32 samples: crosses into a second epoch of 24
    assert len(out) == 8
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    for x, y in out:
        assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and x.device == CPU
        assert y.shape == (4,) and y.dtype == torch.int64
        assert (x >= low[:, None, None] - 1e-4).all() and (x <= high[:, None, None] + 1e-4).all()
    assert batches_per_epoch(train_index, 4) == 6 and batches_per_epoch(train_index, 5) == 4
    assert list(train_batches(train_index, Seed(1), 1, 4, 0, CPU, torch.float32)) == []


def test_train_order_is_the_documented_randperm_rule(train_index):
    seed, n = Seed(7), len(train_index)
    expected = torch.cat([torch.randperm(n, generator=seed.generator("order", 2, e)) for e in range(3)])[:60]
    assert torch.equal(train_order(n, seed, 2, 60), expected)
    labels = torch.cat([y for _, y in batches(train_index, seed, phase=2, batch_size=5, steps=12)])
    assert labels.tolist() == train_index.labels[expected.numpy()].tolist()


def test_train_pixels_match_their_labels(flat, train_index):
    colours = torch.tensor(flat[1]["colours"], dtype=torch.float32)
    for x, y in batches(train_index, batch_size=6, steps=4):
        rgb = pixels(x)  # flat images stay flat under any crop, resize or flip
        assert (rgb.mean((2, 3)) - colours[y]).abs().max() < 4
        assert rgb.std((2, 3)).max() < 3


def test_train_order_can_start_anywhere(train_index):
    seed, n = Seed(7), len(train_index)
    whole = train_order(n, seed, 1, 100).numpy()
    order = TrainOrder(n, seed, 1)
    assert np.array_equal(order.rows(70, 30), whole[70:])  # epoch 2 first, then 3 and 4
    assert np.array_equal(order.rows(5, 50), whole[5:55]) and np.array_equal(order.rows(55, 0), whole[:0])


def test_a_pipeline_started_at_step_s_yields_the_uninterrupted_batches_from_s(train_index, monkeypatch):
    """What a resumed seed needs: step s's batch is a function of (seed, phase, s), and the files of the
    steps before s are never read (let alone decoded)."""
    seed = Seed(3)
    whole = batches(train_index, seed, phase=1, batch_size=5, steps=9, size=48)  # 45 samples: two epochs
    read, real = [], imagenet._read_file
    monkeypatch.setattr(imagenet, "_read_file", lambda p: read.append(p) or real(p))
    late = batches(train_index, seed, phase=1, batch_size=5, steps=9, size=48, start=6)
    assert len(late) == 3
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(whole[6:], late))
    rows = train_order(len(train_index), seed, 1, 45).numpy()[30:]
    assert sorted(read) == sorted(train_index.files[r] for r in rows)
    assert batches(train_index, seed, steps=9, start=9) == []
    with pytest.raises(FastseedError, match="start"):
        train_batches(train_index, seed, 1, 5, 9, CPU, torch.float32, start=-1)


def test_crops_are_torchvision_crops_of_the_drawn_windows(tmp_path):
    """The decoder cuts exactly the drawn window (anchor (x, y), shape (w, h)) and flips as drawn: DALI's
    output equals torchvision's resized_crop + hflip of that window to within decoder rounding, and is
    far from the window with height and width swapped or the flip ignored."""
    from torchvision.transforms import functional as TF  # the reference; only these tests need torchvision
    write_imagenet_folder(tmp_path, classes=2, train_per_class=4, val_per_class=0, size=(160, 120), noise=0.0)
    index, seed, b, size = index_imagenet(tmp_path, "train"), Seed(2), 4, 64
    got = batches(index, seed, phase=0, batch_size=b, steps=2, size=size)

    def reference(rows, windows, flips, swap=False, flip=True):
        out = []
        for r, (top, left, h, w), f in zip(rows, windows.tolist(), flips.tolist()):
            if swap:
                top, left, h, w = left, top, w, h
            crop = TF.resized_crop(Image.open(index.files[r]).convert("RGB"), top, left, h, w, [size, size],
                                   antialias=True)
            crop = TF.hflip(crop) if f and flip else crop
            out.append(TF.normalize(TF.to_tensor(crop), IMAGENET_MEAN, IMAGENET_STD))
        return torch.stack(out)
    for step, (x, _) in enumerate(got):
        rows = train_order(len(index), seed, 0, 2 * b).numpy()[step * b:(step + 1) * b]
        windows, flips = step_augment(seed, 0, step, index.sizes[rows, 0], index.sizes[rows, 1])
        assert flips.any()
        error = (x - reference(rows, windows, flips)).abs().mean(dim=(1, 2, 3))
        assert error.max() < 0.01
        assert ((x - reference(rows, windows, flips, swap=True)).abs().mean(dim=(1, 2, 3)) > 0.05).all()
        assert ((x - reference(rows, windows, flips, flip=False)).abs().mean(dim=(1, 2, 3))[flips] > 0.05).all()


def test_same_seed_same_batches_other_seed_or_phase_differs(train_index):
    a, b = batches(train_index, Seed(3)), batches(train_index, Seed(3), num_threads=1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    for other in (batches(train_index, Seed(4)), batches(train_index, Seed(3), phase=2)):
        assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in other]))


def test_crops_and_flips_are_seeded_from_the_augment_stream(tmp_path):
    # Order fixed, augment free: same labels, other pixels. Textured images, so crops show.
    write_imagenet_folder(tmp_path, classes=2, train_per_class=4, val_per_class=0, size=(96, 72))
    index = index_imagenet(tmp_path, "train")
    a = batches(index, Seed(3, fixed=frozenset({"order"})), size=64)
    b = batches(index, Seed(4, fixed=frozenset({"order"})), size=64)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    assert all(not torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    c = batches(index, Seed(5, fixed=frozenset({"augment"}), fix_seed=3), size=64)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in c]))


def test_nhwc_and_low_precision_outputs(train_index):
    nchw = batches(train_index, steps=2)
    nhwc = batches(train_index, steps=2, layout="NHWC")
    assert nhwc[0][0].shape == (4, 224, 224, 3)
    assert all(torch.equal(a.permute(0, 2, 3, 1), b) for (a, _), (b, _) in zip(nchw, nhwc))
    for dtype in (torch.float16, torch.bfloat16):
        low = batches(train_index, steps=2, dtype=dtype)
        assert low[0][0].dtype == dtype
        assert (low[0][0].float() - nchw[0][0]).abs().max() < 0.02  # bf16 spacing near 2.6 is 0.016
    with pytest.raises(FastseedError, match="layout"):  # at the call, before any batch is asked for
        train_batches(train_index, Seed(1), 1, 4, 3, CPU, torch.float32, layout="CHW")
    with pytest.raises(FastseedError, match="float dtype"):
        eval_batches(train_index, 4, CPU, torch.uint8)


def test_corrupt_data_inside_a_sound_jpeg_does_not_crash(tmp_path):
    write_imagenet_folder(tmp_path, classes=2, train_per_class=3, val_per_class=0, size=(96, 72))
    victim = tmp_path / "train" / "n00000000" / "n00000000_1.JPEG"
    data = bytearray(victim.read_bytes())
    for k in range(len(data) // 3, len(data) - 64, 37):  # scribble over the entropy-coded data only
        data[k] = 0xFF
    victim.write_bytes(bytes(data))
    index = index_imagenet(tmp_path, "train")
    assert len(index) == 6  # the structure is intact, so the check passes it: the decoder must cope
    assert len(list(eval_batches(index, 4, CPU, torch.float32, size=32))) == 2
    assert len(batches(index, batch_size=3, steps=4, size=32)) == 4


# --- evaluation batches --------------------------------------------------------------------------------

def test_eval_covers_each_image_once_in_order_deterministically(flat):
    root, out = flat
    val = index_imagenet(root, "val")
    assert len(val) == 8 and len(val.skipped) == 3
    runs = [list(eval_batches(val, 3, CPU, torch.float32)) for _ in range(2)]
    assert [x.shape[0] for x, _ in runs[0]] == [3, 3, 2]  # the last batch is partial, no padding left in
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(*runs))
    x, y = torch.cat([x for x, _ in runs[0]]), torch.cat([y for _, y in runs[0]])
    assert x.shape == (8, 3, 224, 224) and y.tolist() == val.labels.tolist()
    colours = torch.tensor(out["colours"], dtype=torch.float32)
    assert (pixels(x).mean((2, 3)) - colours[y]).abs().max() < 4
    nhwc = torch.cat([x for x, _ in eval_batches(val, 8, CPU, torch.float16, layout="NHWC")])
    assert nhwc.dtype == torch.float16 and (nhwc.float() - x.permute(0, 2, 3, 1)).abs().max() < 0.01


def test_eval_is_resize_255_then_center_crop_224(tmp_path):
    from torchvision import transforms  # the reference; only this test needs torchvision
    write_imagenet_folder(tmp_path, classes=2, train_per_class=0, val_per_class=2, noise=0.0)
    val = index_imagenet(tmp_path, "val")
    got = torch.cat([x for x, _ in eval_batches(val, 4, CPU, torch.float32)])
    def reference(resize):
        tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(224), transforms.ToTensor(),
                                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        return torch.stack([tf(Image.open(p).convert("RGB")) for p in val.files])
    error = {size: (got - reference(size)).abs().mean().item() for size in (224, 250, 255, 256)}
    assert error[255] < 0.008  # decoders and resamplers differ by a fraction of a level
    assert error[255] < min(error[250], error[256]) / 2 and error[224] > 10 * error[255]


# --- DALI stays optional -------------------------------------------------------------------------------

@pytest.mark.slow
def test_module_imports_without_dali_and_pipelines_say_how_to_install(train_index, monkeypatch):
    code = ("import sys; sys.modules['nvidia.dali'] = None; import fastseed.data.imagenet; "
            "assert not any(m.startswith('nvidia.dali') for m in sys.modules if sys.modules[m])")
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(FastseedError, match=r"pip install 'fastseed\[imagenet\]'"):
        batches(train_index)
    with pytest.raises(FastseedError, match="DALI"):
        eval_batches(train_index, 4, CPU, torch.float32)
