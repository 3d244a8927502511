"""The model registry: a name → a builder `(protocol, classes) -> nn.Module`, as timm's `register_model`.

Adding a model is one file and one decorator, which names the protocol knobs the model reads:

    @register_model("mynet", reads=("width",))
    def mynet(protocol, classes: int = 10) -> nn.Module:
        return MyNet(width=protocol.width, classes=classes)

A `--set` of a model knob (MODEL_KNOBS: one some model reads) that the protocol's model does not read is
refused (fastseed.recipe.protocol: CifarProtocol.unread): it would make another protocol and another
store for the same training.

A user's own model needs no registration: a protocol whose `model` is "package.module:factory" is built
by calling that factory (fastseed/models/user.py). Built-in and user models take the same path, and the
engine knows none by name. A model that needs more than its init draws carries hooks the engine calls:

    fit_to_data(images, protocol) -> {name: tensor}
        weights that come from the training images (uint8, N×C×H×W), not from a seed -- airbench's
        whitening conv. Computed once per pack on one model and loaded into every seed's model.
    frozen_parameters(epoch, protocol) -> set of parameter names
        parameters that do not train in `epoch` (airbench's whitening bias after a few epochs): they get
        no gradient, so no update, no weight decay, no momentum. Names as in `model.named_parameters()`.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from fastseed import FastseedError

MODELS: dict[str, Callable[..., nn.Module]] = {}
READS: dict[str, frozenset] = {}  # model name → the protocol knobs its builder and hooks read
MODEL_KNOBS = ("width", "celu_alpha", "logit_scale", "bn_eps", "bn_momentum", "whiten_bias_epochs")


def register_model(name: str, reads: tuple = ()):
    """Decorator: make `fn(protocol, classes) -> nn.Module` the builder of model `name`, which reads the
    protocol knobs `reads` (among MODEL_KNOBS)."""
    if ":" in name:
        raise ValueError(f"model name {name!r}: ':' marks a user's package.module:factory")
    if not set(reads) <= set(MODEL_KNOBS):
        raise ValueError(f"model {name!r} reads {sorted(set(reads) - set(MODEL_KNOBS))}: not among {MODEL_KNOBS}")

    def add(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name], READS[name] = fn, frozenset(reads)
        return fn
    return add


def model_reads(model: str) -> frozenset:
    """The model knobs model `model` reads: none for a user's package.module:factory (it is called with
    no arguments)."""
    return READS.get(model, frozenset())


def create_model(protocol, classes: int = 10) -> nn.Module:
    """The protocol's model, freshly initialised from torch's default generator (the engine calls this
    inside the seed's "init" stream)."""
    if ":" in protocol.model:
        from fastseed.models.user import build_user_model
        return build_user_model(protocol.model, protocol.model_digest, classes)
    try:
        builder = MODELS[protocol.model]
    except KeyError:
        raise FastseedError(f"unknown model {protocol.model!r}; choose one of {', '.join(MODELS)} "
                            f"or give package.module:factory") from None
    return builder(protocol, classes)
