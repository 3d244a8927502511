"""K seeds behind one interface: `forward_train(x (K,B,C,H,W)) -> logits (K,B,classes)` and
`forward_eval(x (B,C,H,W)) -> (K,B,classes)`, over parameters that an elementwise optimiser can step
as one list. Three ways to hold them:

- `Single`: one plain model (K = 1): the reference every other way is tested against.
- `Replicas`: K plain models; on a GPU each runs on its own CUDA stream so small kernels overlap.
- `Fused`: the K models as ONE model: every conv a grouped conv (groups = K), every BatchNorm over
  K·C channels, the head a batched matmul. One kernel launch serves all K seeds. BatchNorm statistics
  stay per seed because BN normalises per channel and each channel belongs to one seed; the optimiser
  state stays per seed because SGD is elementwise. A NaN in one seed's channels never reaches another's.
  It packs the layers it knows and refuses a model with any other parameterised layer (fuse()).

Every way computes each seed's same function of the seed's same draws. In float64 a seed's record is
the same in any pack to ~1e-9; in float32/fp16 grouped and plain kernels round differently, training
amplifies it, and a packed seed's result is another sample of the same distribution -- exact replay
needs the recorded layout (strategy, size, slot, partners).
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
    """K linear layers side by side: (…, K·F) -> (…, K·out), seed k's features in block k, as every
    fused layer lays out its channels; Fused turns the last layer's (B, K·classes) into (K, B, classes)."""

    def __init__(self, heads: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]))  # (K, out, F)
        self.weight.requires_grad_(heads[0].weight.requires_grad)
        has_bias = heads[0].bias is not None
        self.bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]),
                                 requires_grad=heads[0].bias.requires_grad) if has_bias else None  # (K, out)

    def forward(self, x):
        k, out, f = self.weight.shape
        y = torch.einsum("...kf,kof->...ko", x.reshape(*x.shape[:-1], k, f), self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], k * out)


def stacked(tensors: list[torch.Tensor], like: torch.Tensor) -> nn.Parameter:
    """K seeds' parameters as one, frozen exactly when theirs are (airbench's whitening weights, its
    BatchNorm weights): a frozen parameter gets no gradient, so the optimiser never touches it."""
    return nn.Parameter(torch.cat([t.detach() for t in tensors]), requires_grad=like.requires_grad)


def grouped_conv(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """K convolutions as one with K times the groups: seed k's group j is group k·g + j."""
    c, k = convs[0], len(convs)
    fused = type(c)(k * c.in_channels, k * c.out_channels, c.kernel_size, stride=c.stride, padding=c.padding,
                    dilation=c.dilation, groups=k * c.groups, bias=c.bias is not None, padding_mode=c.padding_mode)
    fused.weight = stacked([m.weight for m in convs], c.weight)
    if c.bias is not None:
        fused.bias = stacked([m.bias for m in convs], c.bias)
    return fused


def stacked_batchnorm(bns: list[nn.modules.batchnorm._BatchNorm]) -> nn.modules.batchnorm._BatchNorm:
    """K BatchNorms as one over K·C channels: statistics are per channel, so they stay per seed."""
    b = bns[0]
    like = next(iter(b.parameters()), b.running_mean)  # made in the seeds' dtype: no rounding on the way
    fused = type(b)(len(bns) * b.num_features, eps=b.eps, momentum=b.momentum, affine=b.affine,
                    track_running_stats=b.track_running_stats,
                    **({} if like is None else {"dtype": like.dtype, "device": like.device}))
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(b, name) is not None:
                getattr(fused, name).copy_(torch.cat([getattr(m, name) for m in bns]))
        if b.num_batches_tracked is not None:
            fused.num_batches_tracked.copy_(b.num_batches_tracked)
    if b.affine:
        fused.weight.requires_grad_(b.weight.requires_grad)
        fused.bias.requires_grad_(b.bias.requires_grad)
    return fused


def stacked_groupnorm(gns: list[nn.GroupNorm]) -> nn.GroupNorm:
    """K GroupNorms as one with K times the groups: a group never spans two seeds' channels."""
    g = gns[0]
    fused = nn.GroupNorm(len(gns) * g.num_groups, len(gns) * g.num_channels, eps=g.eps, affine=g.affine)
    if g.affine:
        fused.weight, fused.bias = stacked([m.weight for m in gns], g.weight), stacked([m.bias for m in gns], g.bias)
    return fused


# The layers fuse() knows, by exact type: a subclass may compute something else in its forward.
FUSERS = {nn.Conv1d: grouped_conv, nn.Conv2d: grouped_conv, nn.Conv3d: grouped_conv,
          nn.BatchNorm1d: stacked_batchnorm, nn.BatchNorm2d: stacked_batchnorm, nn.BatchNorm3d: stacked_batchnorm,
          nn.GroupNorm: stacked_groupnorm, nn.Linear: PackedLinear}
# Parameter-free layers that pool over channels, so over seeds once the seeds' channels sit side by side.
CHANNEL_POOLING = (nn.LayerNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d, nn.ChannelShuffle)
KNOWN = "Conv1d/2d/3d, BatchNorm1d/2d/3d, GroupNorm, Linear and parameter-free layers"


def refusal(name: str, module: nn.Module, why: str) -> FastseedError:
    return FastseedError(f"the fused strategy cannot pack layer {name} ({type(module).__name__}): {why}; it packs "
                         f"{KNOWN}. Use --strategy streams (or sequential) for this model")


def check_own_state(name: str, parts: list[nn.Module]):
    """A layer fuse() does not know may hold no parameter of its own (it would silently stay seed 0's
    copy in every seed), nor a buffer that differs between seeds (a random projection drawn at init)."""
    module = parts[0]
    if isinstance(module, CHANNEL_POOLING):
        raise refusal(name, module, "it pools over channels, which would mix the seeds")
    own = [n for n, p in module.named_parameters(recurse=False) if p is not None]
    if own:
        raise refusal(name, module, f"it has parameters of its own ({', '.join(own)})")
    for n, buf in module.named_buffers(recurse=False):
        if buf is not None and not all(torch.equal(buf, getattr(m, n)) for m in parts[1:]):
            raise refusal(name, module, f"its buffer {n} differs between seeds")


def fuse(models: list[nn.Module]) -> nn.Module:
    """One module computing all K models side by side (channels seed-major: seed k owns channels
    k·C … (k+1)·C−1 of every layer). It packs the layers in FUSERS (the vocabulary of ResNet9,
    torchvision's ResNets and airbench94's net, whose frozen weights stay frozen) inside any containers
    and parameter-free layers; a model with any other layer holding parameters is refused in one line
    (FastseedError naming the first such layer) instead of training seed 0's copy of it for everyone.
    Functional code in `forward` (F.gelu, a logit scale, pooling, flattening) must act per channel or
    per image, as it does in those nets: `fusion_problem` checks that numerically."""
    fused = copy.deepcopy(models[0])

    def walk(target: nn.Module, sources: list[nn.Module], prefix: str):
        for name, child in list(target.named_children()):
            parts, qual = [getattr(s, name) for s in sources], prefix + name
            if type(child) in FUSERS:
                setattr(target, name, FUSERS[type(child)](parts))
                continue
            check_own_state(qual, parts)
            walk(child, parts, qual + ".")

    check_own_state("(the model itself)", models)
    walk(fused, models, "")
    return fused


def fusion_problem(model: nn.Module, image_shape: tuple = (3, 32, 32)) -> str | None:
    """Why the fused strategy cannot train `model` (one line, naming the layer when it can), or None.
    Besides fuse()'s refusals, checks the fused model numerically: two different copies of `model`
    (float64, CPU, eval mode) fused must give each copy's own logits on random images, which fails when
    code in `forward` mixes channels (a softmax or a norm over them). Used by `--pack auto` to pick the
    strategy, and worth calling before a scan with `--strategy fused`."""
    first = copy.deepcopy(model).to("cpu", torch.float64).eval()
    second = copy.deepcopy(first)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a different seed: every weight moved, so mixing seeds shows in the outputs
        for p in second.parameters():
            p.mul_(1 + 0.5 * torch.rand(p.shape, generator=g, dtype=p.dtype))
    try:
        pack = Fused([first, second]).eval()
    except FastseedError as e:
        return str(e)
    x = torch.randn((4, *image_shape), generator=g, dtype=torch.float64)
    with torch.no_grad():
        try:
            got = pack.forward_eval(x)
        except Exception as e:  # noqa: BLE001 -- any failure of the fused forward means "do not fuse"
            return f"the fused strategy fails on {type(model).__name__}: {type(e).__name__}: {e}".splitlines()[0]
        want = torch.stack([first(x), second(x)])
    if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-6, atol=1e-9 * want.abs().max().item()):
        return (f"the fused strategy does not keep the seeds of {type(model).__name__} apart (code in its forward "
                f"mixes channels); use --strategy streams (or sequential) for this model")
    return None


def draws_in_training(model: nn.Module, image_shape: tuple = (3, 32, 32)) -> bool:
    """Whether `model`'s training forward draws random numbers (dropout, stochastic depth): the same
    images under two seeds of torch's global generator give different outputs. A pack draws them for
    all its seeds from one generator, so such a model's seeds cannot share a pack."""
    model = copy.deepcopy(model).to("cpu", torch.float64).train()
    x = torch.randn((4, *image_shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outputs = []
    with torch.no_grad():
        for seed in (1, 2):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                try:
                    outputs.append(model(x))
                except Exception:  # noqa: BLE001 -- a model that fails here fails in fusion_problem, said there
                    return False
    return not torch.equal(*outputs)


def choose_strategy(protocol, asked: str | None, log: Callable[[str], None]):
    """The pack strategy: the one asked, else the default. A user's model is built (its seed-0 init)
    and checked: a model that draws random numbers while training (dropout) trains its seeds one after
    another (each from its own `dropout` stream; a pack would share one generator), and a strategy that
    packs is refused for it; otherwise with no --strategy it trains fused only if it fuses (else streams,
    said in one line), and `--strategy fused` for a model that cannot fuse is refused in one line naming
    the layer. The built-in models all fuse and draw nothing (tests/engine/test_pack.py)."""
    strategy = get_strategy(asked or DEFAULT_STRATEGY)
    if ":" not in protocol.model or (asked is not None and not strategy.together):
        return strategy
    from fastseed.engine.train import init_model
    model = init_model(protocol, protocol.seed(0))
    if draws_in_training(model):
        why = "it draws random numbers while training (dropout?), so its seeds cannot share a pack"
        if asked is not None:
            raise FastseedError(f"--strategy {asked}: {protocol.model} {why}; use --strategy sequential")
        log(f"{protocol.model} trains with strategy sequential: {why}")
        return get_strategy("sequential")
    if asked is not None and strategy.name != "fused":
        return strategy
    problem = fusion_problem(model)
    if asked is None:
        if problem is not None:
            log(f"{protocol.model} trains with strategy streams: {problem}")
        return get_strategy("fused" if problem is None else "streams")
    if problem:
        raise FastseedError(f"--strategy fused: {problem}")
    return strategy


class Fused(nn.Module):
    def __init__(self, models: list[nn.Module]):
        super().__init__()
        self.k, self.model = len(models), fuse(models)
        self._heads = {n: m for n, m in self.model.named_modules() if isinstance(m, PackedLinear)}
        self._template = [copy.deepcopy(models[0])]  # in a list: not a registered submodule

    def forward_train(self, x):  # (K, B, C, H, W) -> (B, K·C, H, W): seed k's images in its channels
        k, b, c, h, w = x.shape
        x = x.permute(1, 0, 2, 3, 4).reshape(b, k * c, h, w)
        return self.seeds_first(self.model(x.contiguous(memory_format=torch.channels_last)))

    def forward_eval(self, x):
        return self.seeds_first(self.model(x.repeat(1, self.k, 1, 1).contiguous(memory_format=torch.channels_last)))

    def seeds_first(self, logits):  # (B, K·classes), seed-major -> (K, B, classes)
        return logits.view(logits.shape[0], self.k, -1).transpose(0, 1)

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
