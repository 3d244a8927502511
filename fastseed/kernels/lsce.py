"""The protocol loss: ce_weight·CE(logits, y) + lsce_weight·LSCE(logits, y, eps).

LSCE is cross-entropy against smoothed targets (1−eps)·onehot + eps/C, averaged over the batch.
Since Σ_k t_k·(−log p_k) = (1−eps)·CE + eps·mean_k(−log p_k), one log-softmax serves both terms.
This file holds the PyTorch reference; a fused Triton kernel will sit beside it.
"""

import torch
import torch.nn.functional as F


def protocol_loss_reference(logits: torch.Tensor, targets: torch.Tensor, *, eps: float,
                            lsce_weight: float, ce_weight: float = 1.0) -> torch.Tensor:
    """Mean over the batch; computed in at least float32 whatever the logits' dtype."""
    logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    ce = -logp.gather(-1, targets[:, None]).squeeze(-1)
    smooth = -logp.mean(-1)
    lsce = (1.0 - eps) * ce + eps * smooth
    return (ce_weight * ce + lsce_weight * lsce).mean()
