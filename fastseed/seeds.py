"""A seed expands into named, independent, counter-based random streams.

Every random draw of a run is keyed by (seed, stream, counter…) — e.g. ("order", epoch) for the
epoch's permutation, ("augment", epoch) for its crops/flips/cutouts, ("init",) for the weights —
and hashed into a fresh generator. Nothing is drawn from a global generator, so a seed's
randomness is the same whether it trains alone or beside any other seeds, and any stream can be
held at a reference seed while the others vary (`fixed`).

FROZEN: changing SCHEME, the key derivation or the order of draws in the engine changes every
result ever stored. tests/test_seeds.py pins golden values; bump SCHEME if you must change it.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

SCHEME = "fastseed-seeds-v1"
STREAMS = ("init", "order", "augment", "head", "dropout")
STREAM_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")  # a user's stream: never holds the key's separator "|"


@dataclass(frozen=True)
class Seed:
    """One run's seed. `fixed` streams draw from `fix_seed` instead of `value`."""

    value: int
    fixed: frozenset = frozenset()
    fix_seed: int = 0

    def __post_init__(self):
        if not isinstance(self.value, int) or self.value < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.value!r}")
        unknown = set(self.fixed) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown stream(s) {sorted(unknown)}; streams are {STREAMS}")
        object.__setattr__(self, "fixed", frozenset(self.fixed))

    def source(self, stream: str) -> int:
        """The seed a stream actually draws from."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; streams are {STREAMS}")
        return self.fix_seed if stream in self.fixed else self.value

    def key(self, stream: str, *counter: int) -> int:
        """64-bit key of (stream, counter): blake2b, so nearby seeds give unrelated keys."""
        text = "|".join([SCHEME, stream, str(self.source(stream)), *map(str, counter)])
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")

    def generator(self, stream: str, *counter: int) -> torch.Generator:
        """A CPU torch generator for one (stream, counter) cell: draws are cheap, then moved to the device."""
        g = torch.Generator(device="cpu")
        g.manual_seed(self.key(stream, *counter))
        return g

    def numpy(self, stream: str, *counter: int) -> np.random.Generator:
        return np.random.Generator(np.random.Philox(key=self.key(stream, *counter)))

    @contextmanager
    def torch_default(self, stream: str, *counter: int):
        """Run code that uses torch's global generator (e.g. nn.Module default init) on this stream,
        restoring the global state afterwards so nothing leaks in or out."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.key(stream, *counter))
            yield


class Streams(Seed):
    """The seed a user's training function gets (`--train`): streams of any name it chooses (lowercase
    letters, digits, _), each keyed and drawn exactly as `Seed` keys and draws its own, so "init" here
    is the engine's init stream and `--fix` holds any of them. It hands a stream out in the form a
    library takes, and notes which it handed out (`used`: a `--fix` of a stream never drawn is refused).

        g = seed.torch("order", epoch)        # a torch.Generator (CPU, or device=...)
        rng = seed.numpy("noise")             # a numpy Generator (Philox)
        RandomForestClassifier(random_state=seed.integer("forest"))   # an int in [0, 2**31)
        with seed.torch_default("init"):      # torch's global generator, e.g. nn.Linear's own init
            model = make_model()
    """

    def __post_init__(self):
        if not isinstance(self.value, int) or self.value < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.value!r}")
        bad = sorted(s for s in self.fixed if not STREAM_NAME.match(s))
        if bad:
            raise ValueError(f"stream name(s) {bad}: lowercase letters, digits and _, a letter first")
        object.__setattr__(self, "fixed", frozenset(self.fixed))
        object.__setattr__(self, "used", set())

    def source(self, stream: str) -> int:
        if not isinstance(stream, str) or not STREAM_NAME.match(stream):
            raise ValueError(f"stream name {stream!r}: lowercase letters, digits and _, a letter first")
        self.used.add(stream)
        return self.fix_seed if stream in self.fixed else self.value

    def torch(self, stream: str, *counter: int, device="cpu") -> torch.Generator:
        """A torch generator for (stream, counter), on `device` (a CUDA generator draws CUDA tensors)."""
        g = torch.Generator(device=device)
        g.manual_seed(self.key(stream, *counter))
        return g

    @contextmanager
    def torch_default(self, stream: str, *counter: int, device=None):
        """torch's global generators draw from (stream, counter) inside, and are as they were after: the
        CPU's (nn.Module's default init) and, for a CUDA `device`, that GPU's (dropout on the GPU)."""
        device = None if device is None else torch.device(device)
        gpus = [device.index or 0] if device is not None and device.type == "cuda" else []
        with torch.random.fork_rng(devices=gpus):
            key = self.key(stream, *counter)
            torch.random.default_generator.manual_seed(key)
            for index in gpus:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(key)
            yield

    def integer(self, stream: str, *counter: int) -> int:
        """An integer seed in [0, 2**31) for a library that takes one (scikit-learn's random_state, …):
        the top 31 bits of the stream's key, so every library's int32 accepts it."""
        return self.key(stream, *counter) >> 33
