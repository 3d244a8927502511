"""`--set KEY=VALUE` and protocol files: any knob of a preset, parsed to its type, validated in one line,
recorded in the JSON (so the hash and the store follow) and named for what changed; a change equal to the
base's value is no change; `--show-protocol` lists every knob and where its value came from."""

import pytest

from fastseed import FastseedError
from fastseed.recipe.overrides import describe_protocol, protocol_variant, resolve, resolve_protocol
from fastseed.recipe.presets import get_preset
from fastseed.recipe.protocol import CifarProtocol, Finetune, protocol_from_json

PICARD = get_preset("picard-short")
SMOKE = get_preset("smoke")


def test_set_parses_each_knob_to_its_type():
    p = resolve_protocol("picard-short", ["lr=0.3", "epochs=20", "nesterov=false", "augment=image", "cutout=0",
                                          "lr_floor_from=18", "mean=0.5,0.5,0.5", "lr_decay_end=20"])
    assert (p.lr, p.epochs, p.nesterov, p.augment, p.cutout, p.lr_floor_from) == (0.3, 20, False, "image", 0, 18)
    assert p.mean == (0.5, 0.5, 0.5) and isinstance(p.epochs, int) and isinstance(p.lr, float)
    q = resolve_protocol("fast94", ["lr_triangle=0.2,0.25,0.07", "whiten_bias_epochs=none", "train_epochs=8.5",
                                    "epochs=9"])
    assert q.lr_triangle == (0.2, 0.25, 0.07) and q.whiten_bias_epochs is None and q.train_epochs == 8.5


@pytest.mark.parametrize("sets", [["lr=0.2"], ["lr=0.20"], ["lr=2e-1"], ["epochs=22", "nesterov=true"],
                                  ["lr=0.3", "lr=0.2"], ["tta=0"], ["fixed="], ["width=1"]])
def test_a_set_equal_to_the_base_value_is_the_base_protocol(sets):
    p = resolve_protocol("picard-short", sets)
    assert p is PICARD and p.name == "picard-short" and p.hash == PICARD.hash


def test_the_name_says_what_changed_sorted_and_the_json_records_it():
    a = resolve_protocol("picard-short", ["width=0.5", "lr=0.3"])
    b = resolve_protocol("picard-short", ["lr=0.3", "width=0.5"])
    assert a.name == b.name == "picard-short+lr=0.3,width=0.5" and a.hash == b.hash != PICARD.hash
    assert '"lr":0.3' in a.to_json() and '"width":0.5' in a.to_json()
    assert resolve_protocol("picard-short", ["lr=0.3"]).name == "picard-short+lr=0.3"


@pytest.mark.parametrize("preset,sets", [
    ("picard-short", ["lr=0.3", "cutout=0"]),
    ("fast94", ["lr_triangle=0.2,0.3,0.05", "tta=1"]),
    ("smoke", ["fixed=order,init", "fix_seed=4", "order_rule=once"]),
    ("resnet18-exp1", ["test_loss=image_mean", "eval_batch_size=1000"]),
    ("imagenet-rn50", ["head.lr=0.05", "full.steps=1000", "head_init=kaiming-a-sqrt5", "classes=10"]),
])
def test_resolved_json_comes_back_with_the_same_hash(preset, sets):
    p = resolve_protocol(preset, sets)
    q = protocol_from_json(p.to_json())
    assert q == p and q.hash == p.hash and type(q) is type(p)


def test_flag_knobs_keep_the_names_their_flags_gave():
    """`--set augment=image` is the protocol `--augment image` always made: one recipe, one name, one store."""
    smoke = get_preset("smoke")
    for sets, flags in [(["augment=image"], dict(augment="image")),
                        (["fixed=order,init", "fix_seed=7"], dict(fixed=("init", "order"), fix_seed=7)),
                        (["deterministic=true"], dict(deterministic=True))]:
        p, v = resolve_protocol("smoke", sets), smoke.variant(**flags)
        assert p.name == v.name and p.hash == v.hash
    assert resolve_protocol("smoke", ["augment=image"]).name == "smoke[augment=image]"
    both = resolve_protocol("smoke", ["lr=0.3", "augment=image"])
    assert both.name == "smoke+lr=0.3[augment=image]"
    assert both == resolve_protocol("smoke", ["lr=0.3"]).variant(augment="image")  # --set, then the flag


@pytest.mark.parametrize("sets,message", [
    (["lr=-0.1"], "--set lr=-0.1: lr must be > 0, got -0.1"),
    (["lr=fast"], "--set lr=fast: lr must be a number, got 'fast'"),
    (["lrate=0.3"], "unknown knob 'lrate' of picard-short \\(did you mean lr"),
    (["widht=2"], "did you mean width"),
    (["batch_size=60000"], "--set batch_size=60000: batch_size must be <= the 50,000 training images"),
    (["epochs=0"], "epochs must be >= 1, got 0"),
    (["epochs=30"], "--set epochs=30: lr_decay_end must be >= 29"),
    (["nesterov=maybe"], "nesterov must be true or false"),
    (["augment=sideways"], "augment must be one of chunk, image, none"),
    (["fixed=init,head"], "fixed must be streams among augment, init, order"),
    (["lr"], "--set lr: expected KEY=VALUE"),
    (["=3"], "expected KEY=VALUE"),
    (["name=mine"], "name is filled in by fastseed"),
    (["model_digest=abc"], "model_digest is filled in by fastseed"),
    (["lr_triangle=0.2,0.3"], "lr_triangle is only for schedule triangle"),
])
def test_each_bad_set_is_one_line(sets, message):
    with pytest.raises(FastseedError, match=message) as e:
        resolve_protocol("picard-short", sets)
    assert "\n" not in str(e.value)


def test_imagenet_phase_knobs_are_set_as_phase_dot_knob():
    p = resolve_protocol("imagenet-dino-rn50", ["head.lr=0.05", "full.steps=1000"])
    assert isinstance(p, Finetune) and p.phases[0].lr == 0.05 and p.phases[1].steps == 1000
    assert p.name == "imagenet-dino-rn50+full.steps=1000,head.lr=0.05"
    assert p.phases[0].steps == 4000  # the rest of the phase is the preset's
    with pytest.raises(FastseedError, match="did you mean head.lr"):
        resolve_protocol("imagenet-rn50", ["hed.lr=0.05"])
    with pytest.raises(FastseedError, match="head.lr must be > 0"):
        resolve_protocol("imagenet-rn50", ["head.lr=0"])
    with pytest.raises(FastseedError, match="no model knob; its network is `backbone`"):
        resolve_protocol("imagenet-rn50", model="pkg.mod:make")


PROTOCOL_FILE = '''
base = "picard-short"
name = "wide-picard"

[set]
width = 2.0
cutout = 0
lr = 0.3
'''


def test_a_protocol_file_is_the_same_recipe_as_its_sets_under_its_own_name(tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text(PROTOCOL_FILE)
    p = resolve_protocol("smoke", protocol_file=path)  # the file's base wins over the preset argument
    q = resolve_protocol("picard-short", ["width=2", "cutout=0", "lr=0.3"])
    assert p.name == "wide-picard" and q.name == "picard-short+cutout=0,lr=0.3,width=2.0"
    assert {k: v for k, v in vars(p).items() if k != "name"} == {k: v for k, v in vars(q).items() if k != "name"}
    assert CifarProtocol.from_json(p.to_json()).hash == p.hash
    later = resolve(None, ["lr=0.4", "augment=image"], protocol_file=path)
    assert later.protocol.lr == 0.4 and later.protocol.name == "wide-picard+lr=0.4[augment=image]"
    assert later.origins == {"width": "file wide.toml", "cutout": "file wide.toml", "lr": "--set",
                             "augment": "--set"}
    same = resolve(None, ["lr=0.3"], protocol_file=path).protocol  # the file's own value: no change to it
    assert same.name == "wide-picard" and same.hash == p.hash


def test_a_protocol_file_without_a_name_is_named_for_its_changes_and_takes_top_level_keys(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('base = "fast94"\nlr_triangle = [0.2, 0.25, 0.07]\ntta = 1\nwhiten_bias_epochs = "none"\n')
    p = resolve_protocol("picard-short", protocol_file=path)
    assert p.name == "fast94+lr_triangle=(0.2,0.25,0.07),tta=1,whiten_bias_epochs=none"
    assert p.lr_triangle == (0.2, 0.25, 0.07) and p.whiten_bias_epochs is None
    finetune = tmp_path / "f.toml"
    finetune.write_text('base = "imagenet-rn50"\n[set.head]\nlr = 0.05\n[set]\n"full.steps" = 100\n')
    f = resolve_protocol("picard-short", protocol_file=finetune)
    assert (f.phases[0].lr, f.phases[1].steps) == (0.05, 100)


@pytest.mark.parametrize("text,message", [
    ('name = "x"\n', "needs base = \"<preset>\""),
    ('base = "picard-shrt"\n', "unknown preset 'picard-shrt' \\(did you mean picard-short"),
    ('base = "picard-short"\nlr = -1\n', "lr: lr must be > 0"),
    ('base = "picard-short"\nepochs = 2.5\n', "epochs must be an integer, got 2.5"),
    ('base = "picard-short"\n[set]\nlearning_rate = 0.1\n', "unknown knob 'learning_rate'"),
    ('base = "picard-short"\nname = "smoke"\nlr = 0.3\n', "name 'smoke' is a preset's name"),
    ('base = "picard-short"\nlr = 0.3\n[[oops\n', "not valid TOML"),
    ('base = "picard-short"\nmean = [0.5, "a", 0.5]\n', "mean must be"),
])
def test_each_bad_protocol_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FastseedError, match=message) as e:
        resolve_protocol("picard-short", protocol_file=path)
    assert "\n" not in str(e.value)
    with pytest.raises(FastseedError, match="no such file"):
        resolve_protocol("picard-short", protocol_file=tmp_path / "absent.toml")


def test_show_protocol_lists_every_knob_its_value_and_where_it_came_from(tmp_path):
    path = tmp_path / "wide.toml"
    path.write_text(PROTOCOL_FILE)
    r = resolve(None, ["lr=0.4"], protocol_file=path)
    text = r.describe()
    lines = {line.split()[0]: line for line in text.splitlines()[3:]}
    assert set(lines) == {f for f, field in CifarProtocol.__dataclass_fields__.items() if field.metadata["settable"]}
    assert "--set (preset: 0.2)" in lines["lr"] and "0.4" in lines["lr"]
    assert "file wide.toml (preset: 1.0)" in lines["width"] and lines["momentum"].endswith("preset")
    assert text.startswith(f"protocol wide-picard+lr=0.4  (hash {r.protocol.hash[:12]})")
    assert "based on preset picard-short" in text
    plain = describe_protocol(PICARD)
    assert all(line.endswith("preset") for line in plain.splitlines()[3:])
    imagenet = describe_protocol(resolve_protocol("imagenet-rn50", ["head.lr=0.05"]), get_preset("imagenet-rn50"))
    assert "head.lr" in imagenet and "full.steps" in imagenet


# --- the scan's variation flags (--augment, --fix, …): the same protocols as the --set of their knobs ---
def test_flags_vary_a_preset_into_the_protocols_they_always_made():
    """Same names, same hashes, same stores as before the flags left the command line."""
    assert protocol_variant(SMOKE) is SMOKE
    image = protocol_variant(SMOKE, augment="image")
    assert image == SMOKE.variant(augment="image") and image.name == "smoke[augment=image]"
    fixed = protocol_variant(SMOKE, fix=("order", "init"), fix_seed=7)
    assert fixed == SMOKE.variant(fixed=("init", "order"), fix_seed=7)
    exp2 = get_preset("resnet18-exp2")
    assert protocol_variant(exp2, fix_seed=5) is exp2  # no --fix: the preset's own fixed streams and seed
    assert protocol_variant(SMOKE, deterministic=True).deterministic
    rn50 = protocol_variant(get_preset("imagenet-rn50"), classes=3, limit_steps=1, fix=("head",))
    assert (rn50.classes, rn50.limit_steps, rn50.fixed) == (3, 1, ("head",))


@pytest.mark.parametrize("preset,changes,phrase", [
    ("smoke", dict(fix=("head",)), "--fix head: smoke draws no head stream; its streams are augment, init, order"),
    ("imagenet-rn50", dict(fix=("init", "order")),
     "--fix init: imagenet-rn50 draws no init stream; its streams are augment, head, order"),
    ("smoke", dict(limit_batch=4), "--limit-batch: not a knob of smoke (a CIFAR-10 protocol)"),
    ("imagenet-rn50", dict(augment="image"), "--augment: not a knob of imagenet-rn50 (an ImageNet fine-tune)"),
])
def test_variations_a_protocol_has_no_knob_for_are_refused_in_one_line(preset, changes, phrase):
    with pytest.raises(FastseedError) as e:
        protocol_variant(get_preset(preset), **changes)
    assert str(e.value) == phrase or str(e.value).startswith(phrase)


def test_a_protocol_file_that_is_a_folder_or_names_an_unknown_base_says_which_file(tmp_path):
    """Issue #23.9 and .10: `--protocol DIR` said "no such file"; an unknown `base` did not name the file."""
    with pytest.raises(FastseedError) as e:
        resolve_protocol("picard-short", protocol_file=tmp_path)
    assert str(e.value) == f"--protocol {tmp_path}: a folder, not a protocol file (TOML)"
    path = tmp_path / "mine.toml"
    path.write_text('base = "picard-shrt"\n')
    with pytest.raises(FastseedError) as e:
        resolve_protocol("picard-short", protocol_file=path)
    assert str(e.value).startswith(f"--protocol {path}: base = 'picard-shrt': unknown preset 'picard-shrt' (did you "
                                   f"mean picard-short")
