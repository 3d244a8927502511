"""The training engine: a pack of seeds in, one Record per seed out."""

from fastseed.engine.train import STRATEGIES, compute_dtype, resolve_device, train_pack

__all__ = ["STRATEGIES", "compute_dtype", "resolve_device", "train_pack"]
