"""K seeds behind one interface: `forward_train(x (K,B,C,H,W)) -> logits (K,B,classes)` and
`forward_eval(x (B,C,H,W)) -> (K,B,classes)`, over parameters that an elementwise optimiser can step
as one list. Three ways to hold them:

- `Single`: one plain model (K = 1): the reference every other way is tested against.
- `Replicas`: K plain models; on a GPU each runs on its own CUDA stream so small kernels overlap.
- `Fused`: the K models as ONE model: every conv a grouped conv (groups = K), every BatchNorm over
  K·C channels, the head a batched matmul. One kernel launch serves all K seeds. BatchNorm statistics
  stay per seed because BN normalises per channel and each channel belongs to one seed; the optimiser
  state stays per seed because SGD is elementwise. A NaN in one seed's channels never reaches another's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fastseed import FastseedError


class Single(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.k = model, 1

    def forward_train(self, x):
        return self.model(x[0])[None]

    def forward_eval(self, x):
        return self.model(x)[None]

    def unpack(self, k: int) -> nn.Module:
        return self.model


class Replicas(nn.Module):
    def __init__(self, models: list[nn.Module], device: torch.device):
        super().__init__()
        self.models, self.k = nn.ModuleList(models), len(models)
        self.streams = [torch.cuda.Stream(device) for _ in models] if device.type == "cuda" else None

    def _each(self, inputs):
        if self.streams is None:  # CPU: the replicas run one after another
            return torch.stack([m(x) for m, x in zip(self.models, inputs)])
        main, outs = torch.cuda.current_stream(), []
        for m, x, s in zip(self.models, inputs, self.streams):
            s.wait_stream(main)
            with torch.cuda.stream(s):
                x.record_stream(s)  # x was made on the main stream; keep it alive for this one
                outs.append(m(x))
        for s in self.streams:
            main.wait_stream(s)
        return torch.stack(outs)

    def forward_train(self, x):
        return self._each(x.unbind(0))

    def forward_eval(self, x):
        return self._each([x] * self.k)

    def unpack(self, k: int) -> nn.Module:
        return self.models[k]


class PackedLinear(nn.Module):
    """K linear heads: (B, K·F) -> (K, B, out)."""

    def __init__(self, heads: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]))  # (K, out, F)
        self.weight.requires_grad_(heads[0].weight.requires_grad)
        has_bias = heads[0].bias is not None
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]),
                                 requires_grad=heads[0].bias.requires_grad) if has_bias else None  # (K, out)

    def forward(self, x):
        k, _, f = self.weight.shape
        y = torch.einsum("bkf,kof->kbo", x.reshape(x.shape[0], k, f), self.weight)
        return y if self.bias is None else y + self.bias[:, None, :]


def stacked(tensors: list[torch.Tensor], like: torch.Tensor) -> nn.Parameter:
    """K seeds' parameters as one, frozen exactly when theirs are (airbench's whitening weights, its
    BatchNorm weights): a frozen parameter gets no gradient, so the optimiser never touches it."""
    return nn.Parameter(torch.cat([t.detach() for t in tensors]), requires_grad=like.requires_grad)


def grouped_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    c = convs[0]
    assert c.groups == 1
    fused = nn.Conv2d(len(convs) * c.in_channels, len(convs) * c.out_channels, c.kernel_size,
                      stride=c.stride, padding=c.padding, dilation=c.dilation, bias=c.bias is not None,
                      groups=len(convs))
    fused.weight = stacked([m.weight for m in convs], c.weight)
    if c.bias is not None:
        fused.bias = stacked([m.bias for m in convs], c.bias)
    return fused


def stacked_batchnorm(bns: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = bns[0]
    fused = nn.BatchNorm2d(len(bns) * b.num_features, eps=b.eps, momentum=b.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(fused, name).copy_(torch.cat([getattr(m, name) for m in bns]))
        fused.num_batches_tracked.copy_(b.num_batches_tracked)
    fused.weight.requires_grad_(b.weight.requires_grad)
    fused.bias.requires_grad_(b.bias.requires_grad)
    return fused.to(b.weight.dtype)


def fuse(models: list[nn.Module]) -> nn.Module:
    """One module computing all K models side by side (channels seed-major: seed k owns channels
    k·C … (k+1)·C−1 of every layer). Works for nets of convs, BNs, elementwise ops, pools and a
    final Linear head — the vocabulary of ResNet9, torchvision's ResNets and airbench94's net (whose
    frozen weights stay frozen). Functional layers (F.gelu, a logit scale) need nothing: elementwise."""
    fused = copy.deepcopy(models[0])

    def walk(target: nn.Module, sources: list[nn.Module]):
        for name, child in target.named_children():
            parts = [getattr(s, name) for s in sources]
            if isinstance(child, nn.Conv2d):
                setattr(target, name, grouped_conv(parts))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(target, name, stacked_batchnorm(parts))
            elif isinstance(child, nn.Linear):
                setattr(target, name, PackedLinear(parts))
            elif any(True for _ in child.parameters()):
                walk(child, parts)

    walk(fused, models)
    return fused


class Fused(nn.Module):
    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.k, self.model = len(models), fuse(models)
        self._heads = {n: m for n, m in self.model.named_modules() if isinstance(m, PackedLinear)}
        self._template = [copy.deepcopy(models[0])]  # in a list: not a registered submodule

    def forward_train(self, x):  # (K, B, C, H, W) -> (B, K·C, H, W): seed k's images in its channels
        k, b, c, h, w = x.shape
        x = x.permute(1, 0, 2, 3, 4).reshape(b, k * c, h, w)
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def forward_eval(self, x):
        return self.model(x.repeat(1, self.k, 1, 1).contiguous(memory_format=torch.channels_last))

    def unpack(self, k: int) -> nn.Module:
        """Seed k's weights as a plain model (for checks and for saving one seed)."""
        plain, state = copy.deepcopy(self._template[0]), {}
        for name, tensor in self.model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                state[name] = tensor
            elif isinstance(self._heads.get(name.rsplit(".", 1)[0]), PackedLinear):
                state[name] = tensor[k]
            else:
                n = tensor.shape[0] // self.k
                state[name] = tensor[k * n: (k + 1) * n]
        plain.load_state_dict(state)
        return plain.to(next(self.model.parameters()).device)


# ---- the strategies: how a pack of K seeds is held, decided here and nowhere else -----------------

@dataclass(frozen=True)
class Strategy:
    """A way to hold a pack. `together`: the K seeds train at once as one pack model (else one after
    another, each as a pack of one). `graphs`: its training step is replayed as a CUDA graph by default
    on a GPU (worth it only when a step is many small kernels launched for several seeds)."""
    name: str
    make: Callable[[list, torch.device], nn.Module]  # (K initial models, device) -> the pack model
    together: bool
    graphs: bool


STRATEGIES: dict[str, Strategy] = {}
DEFAULT_STRATEGY = "fused"  # the scan's and train_pack's default: one kernel launch serves K seeds


def register_strategy(name: str, *, together: bool, graphs: bool):
    """Decorator: `@register_strategy("fused", together=True, graphs=True)` on a (models, device) ->
    pack-model function makes `--strategy fused` exist everywhere (scan, replay, autopack, bench)."""
    def register(make):
        STRATEGIES[name] = Strategy(name, make, together, graphs)
        return make
    return register


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise FastseedError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


@register_strategy("sequential", together=False, graphs=False)
def _sequential(models, device):
    if len(models) != 1:
        raise ValueError("strategy 'sequential' trains one seed at a time")
    return Single(models[0])


@register_strategy("fused", together=True, graphs=True)
def _fused(models, device):
    return Fused(models)


@register_strategy("streams", together=True, graphs=True)
def _streams(models, device):
    return Replicas(models, torch.device(device))
