"""CIFAR models, by name (`create_model(protocol)`, the registry of registry.py), and the dtype policy
every model follows. Each built-in model is one module that registers itself on import."""

import torch
from torch import nn

from fastseed.models.registry import MODEL_KNOBS, MODELS, create_model, model_reads, register_model
from fastseed.models import airbench, resnet9, resnet18  # noqa: F401,E402  (they register themselves)


def set_dtype(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast the model to `dtype` but keep BatchNorm parameters and statistics in float32 (float64 when
    the whole net is float64, for exact CPU tests): Picard's fp16/fp32 split, applied to any net."""
    model.to(dtype)
    bn_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.to(bn_dtype)
    return model


__all__ = ["MODEL_KNOBS", "MODELS", "create_model", "model_reads", "register_model", "set_dtype"]
