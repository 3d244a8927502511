"""What a Ray actor runs (fastseed/workers/ray.py starts them): the scan's job, built once on a node of
the cluster, turning packs of seeds into records sent back as plain data. Nothing here imports Ray or
opens a store: the driver alone writes the store, and this class runs in a test as it is."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading

from fastseed import FastseedError


class Stop(threading.Event):
    """Set by the driver's first Ctrl-C: a pack not started yet returns at once, a one-after-another
    pack stops between seeds (a job polls `bool(stop_flag)`)."""

    def __bool__(self) -> bool:
        return self.is_set()


class Trainer:
    """The body of one actor: the job built from the protocol and the options, its data loaded on the
    first call that needs it — again after a restart (Ray reruns __init__ and nothing else). The data
    comes with each such call (`data`: what the driver's job read, from Ray's object store, where a
    node holds one copy; None: each actor reads its own); being no constructor argument, a restart
    needs nothing of the object store. A refusal (no weights file on this node) is kept and raised
    by every call, so the driver hears one line rather than an actor that never starts.

    `prepare` and `train` run in the actor's default group, one at a time (the next pack queued);
    `hello`, `news` and `halt` in the `side` group, beside them. Returns are plain data."""

    def __init__(self, protocol_json: str, options: dict, threads: int | None, seeds_left: int, workers: int):
        from fastseed.jobs import Options, make_job
        from fastseed.recipe.protocol import protocol_from_json
        from fastseed.workers.progress import Pace
        self._news, self.lines = threading.Condition(), []
        self.stop_flag, self.training, self.labels, self.error = Stop(), None, None, None
        if threads:
            import torch
            torch.set_num_threads(threads)
        try:
            self.job = make_job(protocol_from_json(protocol_json), Options(**options), log=self.say)
        except FastseedError as e:
            self.error = str(e)
            return
        self.pace = Pace(self.job.device, seeds_left, workers, log=self.say)

    def say(self, line: str) -> None:
        with self._news:
            self.lines.append(line)
            self._news.notify_all()

    def _ready(self, data=None, *, load: bool = True) -> None:
        if self.error is not None:
            raise FastseedError(self.error)
        if load and self.labels is None:
            self.labels = self.job.load(data)

    def prepare(self, remaining: int, data) -> dict:
        """On the first start: the test labels, and the pack this actor trains (`--pack auto`
        measures its GPU)."""
        from fastseed.engine.provenance import code_version
        self._ready(data)
        k = self.job.pack_size(remaining, self.say)
        return dict(self.hello(), labels=self.labels, pack=k, describe=self.job.describe(k), code=code_version())

    def hello(self) -> dict:
        """Who this actor is now (a restart changes its pid, maybe its node), and what it trains."""
        self._ready(load=False)
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.job.device),
                "training": self.training}

    def train(self, seeds: list[int], data) -> dict:
        """The records of `seeds` as plain dicts (fewer once halted). Out of memory halves the pack
        and goes on with the seeds not trained; `pack` tells the driver the size that fitted (None:
        the pack as it came)."""
        from fastseed.engine.autopack import is_oom
        from fastseed.engine.checkpoint import SeedStopped
        from fastseed.workers.local import back_off
        self._ready(data)
        records, left, k = [], list(seeds), len(seeds)
        self.training = list(seeds)
        try:
            while left and not self.stop_flag:
                part = left[:k]
                self.pace.start(len(part) if self.job.together else 1)
                try:
                    self.job.train(part, records.append, self.stop_flag, self.pace.step)
                except SeedStopped:
                    break  # halted mid-seed (a long seed): its state is in its checkpoint; the seed goes back
                except RuntimeError as e:
                    if not (is_oom(e) and k > 1):
                        raise
                    k = back_off(self.job, k, self.say)
                    continue
                finally:
                    done = {r.seed for r in records}
                    left = [s for s in left if s not in done]
                if any(s in part for s in left):
                    break  # stopped between the seeds of a one-after-another pack
        finally:
            self.training = None
        return {"records": [dataclasses.asdict(r) for r in records], "pack": k if k < len(seeds) else None}

    def news(self, wait_s: float) -> list[str]:
        """The lines said since the last call (pace, autopack, back-offs); waits up to `wait_s` for one."""
        with self._news:
            self._news.wait_for(lambda: self.lines, wait_s)
            lines, self.lines = self.lines, []
        return lines

    def halt(self) -> None:
        self.stop_flag.set()
