"""Adding knobs to Protocol must not change the hash of any existing protocol: the hash keys the results
stores, so a changed hash would orphan every store already written. Golden values of the CIFAR presets computed
from the code before the airbench knobs (fast94) were added; the later presets' as they were introduced."""

import dataclasses
import json

import pytest

from fastseed.presets import PRESETS, Protocol, get_preset

GOLDEN = {
    "picard-short": "8b6190beff4876d742a14a1de98fa23ffc2b725961c10dff7958a6d7999179e2",
    "picard-long": "aff63c92d3efd491be3b88123c525f338b1517525f1e301d1e04f3d3475950b3",
    "smoke": "f422b6bd17d3e44b402ea55baade0fd01bcfcccba335772a501dad2f87e5fdfe",
    "resnet18-exp1": "e0e474436dba5a4585ac826a3e74666827b7edae3a32a495984b9cbf8cff4ccd",
    "resnet18-exp2": "9e0debf5d206ba4d3e249c1a47d9f6bb8c5549357b18e5c5258f023031a5b669",
    "resnet18-exp3": "d7541926f3590efad0d28b2047dad372b03cd5a56053a54e257d6956c5643a33",
    # pinned when they were introduced (fast94, the ImageNet fine-tunes)
    "fast94": "6bffd5b9660adc9c8092e32d85d142f0089a7410889c1b00c6a894361e0ee20f",
    "imagenet-rn50": "bc5c57543b850ae821d95915e883fa75ba552508b8e4ee24ac62b61073913083",
    "imagenet-dino-rn50": "b2e83e4b40a8176436be18e67847ae7d75b1d8bf38f78286c7b0fc1917c6dacb",
    "imagenet-dino-vits16": "d433b0abcd70ad27142de4dca9a427274bded555c418a488a9cd55db3643c350",
}
LATER = [f.name for f in dataclasses.fields(Protocol) if f.metadata.get("since", 1) > 1]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_existing_protocol_hashes_are_unchanged(name):
    assert get_preset(name).hash == GOLDEN[name]


def test_variants_of_existing_protocols_keep_their_hashes_too():
    # a --fix scan of picard-short, as stored before the new knobs: the same JSON, field for field
    p = get_preset("picard-short").variant(fixed=("init",), fix_seed=3)
    v1 = {k: v for k, v in dataclasses.asdict(p).items() if k not in LATER}
    assert p.to_json() == json.dumps(v1, sort_keys=True, separators=(",", ":"))


def test_later_knobs_appear_only_when_set():
    assert {"train_epochs", "bias_scaler", "lr_triangle", "lookahead_every", "tta"} <= set(LATER)
    p = get_preset("picard-short")
    assert not set(json.loads(p.to_json())) & set(LATER)
    q = p.variant(tta=1)
    assert json.loads(q.to_json())["tta"] == 1 and q.hash != p.hash
    assert set(LATER) <= set(json.loads(get_preset("fast94").to_json()))  # fast94 sets every one


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip_keeps_the_hash(name):
    p = PRESETS[name]
    if isinstance(p, Protocol):
        q = Protocol.from_json(p.to_json())
        assert q == p and q.hash == p.hash
