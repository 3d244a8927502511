"""Model builders, keyed by the Protocol's `model` field."""

from fastseed.models.resnet9 import ResNet9


def build_model(protocol, classes: int = 10):
    if protocol.model == "resnet9":
        return ResNet9(width=protocol.width, classes=classes, celu_alpha=protocol.celu_alpha,
                       logit_scale=protocol.logit_scale, bn_eps=protocol.bn_eps,
                       bn_momentum=protocol.bn_momentum)
    raise ValueError(f"unknown model {protocol.model!r}")
