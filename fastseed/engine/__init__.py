"""The training engine: a pack of seeds in, one Record per seed out."""

from fastseed.engine.train import compute_dtype, resolve_device, train_pack, train_seed

__all__ = ["compute_dtype", "resolve_device", "train_pack", "train_seed"]
