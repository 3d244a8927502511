"""How a pack's training step becomes one CUDA graph: the capture, the rule that decides when steps are
captured at all, and a stand-in of CUDA's graph API with the same semantics on the CPU.

The engine reaches CUDA's streams and graphs through an object with the names of `torch.cuda`
(`Stream`, `current_stream`, `set_stream`, `stream`, `synchronize`, `device`, `CUDAGraph`,
`graph_pool_handle`): the module itself on a GPU, `RecordedGraphs` in a CPU test. The stand-in keeps what
matters about a CUDA graph: a capture runs nothing (the state after it is the state before), a replay
runs the recorded kernels with the arguments they were recorded with (a Python number read while
capturing, such as a learning rate, is baked in), a host sync while capturing is an error, and a
memory pool whose graphs are all gone cannot take a new capture (the caching allocator's assertion in
`create_or_incref_pool`). It counts captures and replays, so a test can hold a preset to one capture
per pack for the whole run.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error)


def inductor_graphs(compile: str | None) -> bool:
    """Whether torch.compile's `compile` mode captures CUDA graphs of its own (Inductor's cudagraph trees:
    "reduce-overhead" and "max-autotune" do; "default" and "max-autotune-no-cudagraphs" do not)."""
    if not compile or compile == "default":
        return False
    try:
        from torch._inductor import list_mode_options
        return bool(list_mode_options(compile).get("triton.cudagraphs", False))
    except (ImportError, RuntimeError):  # an unknown mode: torch.compile refuses it, not us
        return compile in ("reduce-overhead", "max-autotune")


def use_graphs(device: torch.device, strategy_graphs: bool, asked: bool = True, compile: str | None = None) -> bool:
    """THE rule: a pack's step is captured as one CUDA graph on a GPU, for a strategy that captures
    (fused, streams), unless turned off (--no-graphs) or the compile mode brings Inductor's own CUDA
    graphs (graphs inside a graph capture do not nest: that mode runs without fastseed's)."""
    return torch.device(device).type == "cuda" and strategy_graphs and asked and not inductor_graphs(compile)


def on_device(device: torch.device, api=torch.cuda):
    """The context everything of a pack runs in: its own GPU current (Triton launches on the current
    device, graphs and synchronize default to it), nothing on the CPU."""
    device = torch.device(device)
    return api.device(device) if device.type == "cuda" else contextlib.nullcontext()


def capture(api, body, device: torch.device, stream):
    """`body()` captured on `stream` as one graph into a fresh memory pool; returns (graph, what body
    returned: the graph's static outputs). The caller's current stream is current again afterwards,
    whether the capture succeeded or failed (torch.cuda.graph enters its stream before capture_begin
    and would leave the capture stream current when the capture fails). A fresh pool each time: a pool
    whose graph was dropped while its outputs live trips the allocator's assertion on reuse."""
    api.synchronize(device)
    caller = api.current_stream(device)
    stream.wait_stream(caller)
    graph = api.CUDAGraph()
    api.set_stream(stream)
    try:
        graph.capture_begin(pool=api.graph_pool_handle())
        try:
            out = body()
        except BaseException:
            with contextlib.suppress(RuntimeError):  # out of capture mode; the capture is void anyway
                graph.capture_end()
            raise
        graph.capture_end()
    finally:
        api.set_stream(caller)
    caller.wait_stream(stream)
    return graph, out


# ---- the stand-in ---------------------------------------------------------------------------------

HOST_SYNCS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::equal"}  # they read a value back
# ops that write arguments their schema does not mark as written (BatchNorm's running statistics)
UNMARKED_WRITES = {name: ("running_mean", "running_var")
                   for name in ("aten::native_batch_norm", "aten::cudnn_batch_norm", "aten::miopen_batch_norm")}


class _Recorder(TorchDispatchMode):
    """Every op a capture runs: the op, its arguments and results; the tensors it writes that existed
    before the capture are saved first, to be restored when the capture ends."""

    def __init__(self):
        super().__init__()
        self.ops, self.made, self.saved = [], set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._schema.name in HOST_SYNCS:
            raise RuntimeError(f"CUDA error: operation not permitted when stream is capturing ({func._schema.name} "
                               f"reads a value back to the host)")
        unmarked = UNMARKED_WRITES.get(func._schema.name, ())
        for arg, value in zip(func._schema.arguments, list(args) + [kwargs.get(a.name) for a in
                                                                     func._schema.arguments[len(args):]]):
            if arg.name in unmarked or (arg.alias_info is not None and arg.alias_info.is_write):
                for t in tree_flatten(value)[0]:
                    if isinstance(t, torch.Tensor) and id(t) not in self.made:
                        self.saved.append((t, t.detach().clone()))
        out = func(*args, **kwargs)
        self.ops.append((func, args, kwargs, out))
        self.made.update(id(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        return out


class RecordedGraph:
    def __init__(self, api: "RecordedGraphs"):
        self.api, self.recorder, self.pool = api, None, None

    def capture_begin(self, pool=None, capture_error_mode: str = "global"):
        pool = self.api.graph_pool_handle() if pool is None else pool
        if self.api.pools.get(pool) == 0:
            raise RuntimeError("INTERNAL ASSERT FAILED in create_or_incref_pool: it->second->use_count() > 0 "
                               "(a pool whose graphs were all freed is reused)")
        self.api.on_capture_begin()
        self.pool = pool
        self.api.pools[pool] = self.api.pools.get(pool, 0) + 1
        self.recorder = _Recorder()
        self.recorder.__enter__()

    def capture_end(self):
        self.recorder.__exit__(None, None, None)
        with torch.no_grad():
            for t, before in reversed(self.recorder.saved):  # a capture runs nothing: the state is as before
                t.copy_(before)
        self.api.capturing = False

    @torch.no_grad()
    def replay(self):
        self.api.replays += 1
        now, produced = {}, []
        swap = lambda x: now.get(id(x), x) if isinstance(x, torch.Tensor) else x
        for func, args, kwargs, out in self.recorder.ops:
            result = func(*tree_map(swap, args), **tree_map(swap, kwargs))
            for old, new in zip(tree_flatten(out)[0], tree_flatten(result)[0]):
                if isinstance(old, torch.Tensor):
                    now[id(old)] = new
                    produced.append((old, new))
        for old, new in produced:  # the static outputs hold this replay's values, as a graph's memory does
            if old is not new and not old._is_view():  # (a view's memory is its base's, copied itself)
                old.copy_(new)

    def __del__(self):
        if self.pool is not None and self.api.pools.get(self.pool):
            self.api.pools[self.pool] -= 1


class RecordedStream:
    def __init__(self, device=None):
        self.device = device

    def wait_stream(self, other):
        pass


class RecordedGraphs:
    """torch.cuda's streams and graphs on the CPU, with a CUDA graph's semantics (see the module's
    docstring); counts `captures` and `replays`, and lists the devices it was asked about. `fail_capture`:
    an exception the next capture raises at capture_begin (a test's failed capture)."""

    def __init__(self):
        self.captures = self.replays = 0
        self.pools: dict[int, int] = {}  # pool → live graphs captured into it
        self.devices: list = []
        self.capturing, self.fail_capture = False, None
        self.default = RecordedStream()
        self.current = self.default
        self._next_pool = 0

    def on_capture_begin(self):
        if self.fail_capture is not None:
            error, self.fail_capture = self.fail_capture, None
            raise error
        self.captures += 1
        self.capturing = True

    def CUDAGraph(self):  # noqa: N802 (torch.cuda's name)
        return RecordedGraph(self)

    def graph_pool_handle(self):
        self._next_pool += 1
        return self._next_pool

    def Stream(self, device=None):  # noqa: N802
        self.devices.append(device)
        return RecordedStream(device)

    def current_stream(self, device=None):
        self.devices.append(device)
        return self.current

    def set_stream(self, stream):
        self.current = stream

    @contextlib.contextmanager
    def stream(self, stream):
        saved, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = saved

    def synchronize(self, device=None):
        self.devices.append(device)
        if self.capturing:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    @contextlib.contextmanager
    def device(self, device):
        self.devices.append(device)
        yield
