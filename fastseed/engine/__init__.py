"""The training engine: a pack of seeds in, one Record per seed out."""

from fastseed.engine.pack import DEFAULT_STRATEGY, STRATEGIES
from fastseed.engine.train import compute_dtype, resolve_device, train_pack

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "compute_dtype", "resolve_device", "train_pack"]
