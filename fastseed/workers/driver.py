"""The driver of a scan on a Ray cluster (fastseed/workers/ray.py connects and starts it): the one
process that writes the store. It claims packs of seeds under its own worker id, hands them to the
actors (fastseed/workers/actor.py), IN_FLIGHT at a time each, commits every record that comes back,
and hands out again the packs of an actor that died while Ray restarts it. A training function that
raised in an actor (`--train`) stops the scan: its traceback is written, no pack goes out after it.

Every call to an actor is an ObjectRef the driver waits on with the others (`ray.wait`): a pack to
train, a prepare or a hello, and one long-held `news` call per actor that answers with the lines it
said (pace, autopack), so they reach the bar while its pack trains.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

from fastseed import FastseedError, UserCodeError

IN_FLIGHT = 2       # packs queued at an actor: the next one is there the moment one ends
RESTARTS = 3        # Ray restarts a dead actor this many times, then it is gone
ATTEMPTS = 3        # a pack in flight on this many actors that died is left for a rerun, not tried again
POLL_S = 1.0        # how often the driver looks at the store when it waits for other workers' seeds
NEWS_WAIT_S = 10.0  # an actor holds a request for its lines this long before answering "none"
PLACE_WAIT_S = 60.0  # with no actor placed after this long, say what they ask of the cluster
HELLO_S = 2.0       # how often a restarting actor is asked whether it is back


@dataclass
class Actor:
    """One actor as the driver knows it."""
    name: str                 # actor 3
    handle: object
    pack: int = 0             # seeds it trains at once; 0 until prepared
    up: bool = False          # it takes packs
    gone: str | None = None   # why it trains no more
    life: int = 0             # deaths seen: a failure from an earlier life was handled already
    busy: int = 0             # its packs in flight
    hello_at: float | None = None  # when to ask a restarting actor whether it is back
    where: str = ""           # pid P on HOST


@dataclass
class Call:
    """A call in flight and what it was for."""
    kind: str                 # prepare, hello, train, news
    actor: Actor
    seeds: list = field(default_factory=list)
    attempts: int = 0         # actors that died with this pack in flight
    life: int = 0
    back: bool = False        # asks a restarting actor whether it is back


class Driver:
    """The one process that writes the store: it claims packs, hands them to actors, commits what
    comes back, and hands out again what a dead actor held."""

    def __init__(self, ray, store, start: int, end: int, *, worker: str, lease_s: float, progress,
                 stop_flag, remaining: int, data, until=None):
        from ray.exceptions import ActorDiedError, RayActorError, RayTaskError
        self.ray, self.store, self.start, self.end, self.worker, self.lease_s = ray, store, start, end, worker, lease_s
        self.progress, self.stop_flag, self.write = progress, stop_flag, progress.write
        self.died, self.gone_for_good, self.task_error = RayActorError, ActorDiedError, RayTaskError
        self.actors: list[Actor] = []
        self.calls: dict = {}           # ObjectRef → Call
        self.retry: deque = deque()     # (seeds, attempts) still claimed, to hand out again
        self.abandoned: set[int] = set()  # claimed until the end, never handed out again
        self.remaining, self.data, self.ask = remaining, data, {}
        self.failed, self.committed, self.refusals, self.deaths = 0, 0, [], []
        self.training = self.halted = False
        self.until = until  # a stopping rule: once it has decided, no new pack is claimed
        self.user_error = None  # the user's training function raised (UserCodeError): the scan stops

    # ---- calls ----

    def call(self, kind: str, actor: Actor, *args, seeds=(), attempts=0, back=False):
        method = getattr(actor.handle, kind)
        if kind in ("hello", "news", "halt"):
            method = method.options(concurrency_group="side")
        ref = method.remote(*args)
        if kind != "halt":
            self.calls[ref] = Call(kind, actor, list(seeds), attempts, actor.life, back)
        return ref

    def launch(self, count: int, ask: dict, args: tuple) -> None:
        """Start `count` actors, each asking `ask` of Ray, and ask each to prepare."""
        import secrets
        from fastseed.workers.actor import Trainer
        remote, run = self.ray.remote(concurrency_groups={"side": 3})(Trainer), secrets.token_hex(4)
        self.ask = ask
        for i in range(count):
            handle = remote.options(max_restarts=RESTARTS, max_task_retries=0, name=f"fastseed-{run}-{i}",
                                    **ask).remote(*args)
            actor = Actor(f"actor {i}", handle)
            self.actors.append(actor)
            self.call("prepare", actor, self.remaining, self.data)

    def run(self) -> None:
        """Until the range is stored, a stop, or no actor is left."""
        t0, told = time.monotonic(), False
        while True:
            stopping = bool(self.stop_flag) or self.user_error is not None
            if stopping and not self.halted:
                self.halted = True  # the packs queued behind the ones training come back empty
                for actor in self.actors:
                    if not actor.gone:
                        self.call("halt", actor)
            self.greet()
            answered = self.until is not None and self.until()
            if not stopping and not answered:
                self.feed()
            if not any(c.kind == "train" for c in self.calls.values()):
                if stopping or answered or all(a.gone for a in self.actors) or self.finished():
                    return
            if not told and not any(a.pack for a in self.actors) and time.monotonic() - t0 > PLACE_WAIT_S:
                told = True
                self.write(f"waiting for Ray to place the actors: each asks {self.ask}; free in the cluster: "
                           f"{self.ray.available_resources()}")
            if not self.calls:
                self.stop_flag.wait(POLL_S)
                continue
            ready, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=POLL_S)
            for ref in ready:
                self.answer(ref, self.calls.pop(ref))

    def finished(self) -> bool:
        """Nothing left to hand out: every seed stored, or stored but those left for a rerun. (With
        seeds claimed by other workers, not yet: they may die, and their seeds come back.)"""
        if self.retry or not any(a.up for a in self.actors):
            return False
        return self.store.progress(self.start, self.end)[0] + len(self.abandoned) >= self.end - self.start

    def feed(self) -> None:
        """A pack at every actor that takes packs (packs to hand out again first), then a second one
        queued behind it while free seeds remain for a pack each: near the end of the range, and
        after a death, a seed goes to the first actor free, not behind the pack of a busy one."""
        up = [a for a in self.actors if a.up]
        for level in range(IN_FLIGHT):
            for actor in up:
                if actor.busy > level:
                    continue
                if level and (self.retry or not self.plenty(up)):
                    return  # a pack to hand out again goes to the first actor free
                if self.retry:
                    seeds, attempts = self.retry.popleft()
                else:
                    seeds, attempts = self.store.claim(self.start, self.end, actor.pack, self.worker,
                                                       self.lease_s), 0
                    if not seeds:
                        return
                self.call("train", actor, seeds, self.data, seeds=seeds, attempts=attempts)
                actor.busy += 1
                if not self.training:
                    self.training = True
                    self.stop_flag.start_training()

    def plenty(self, up: list[Actor]) -> bool:
        stored, claimed = self.store.progress(self.start, self.end)
        return self.end - self.start - stored - claimed >= sum(a.pack for a in up)

    # ---- answers ----

    def answer(self, ref, call: Call) -> None:
        if call.kind == "train":
            call.actor.busy -= 1
        try:
            value = self.ray.get(ref)
        except self.task_error as e:  # the call raised, in the actor
            self.raised(call, e.cause if e.cause is not None else e, e)
            return
        except self.died as e:
            self.lost(call, e)
            return
        getattr(self, f"on_{call.kind}")(call.actor, call, value)

    def on_prepare(self, actor: Actor, call: Call, value: dict) -> None:
        from fastseed.engine.provenance import code_version
        if value["labels"] is not None:  # (a training function's come with its records)
            self.store.set_test_labels(value["labels"])  # every actor's data set must be the same
        actor.pack, actor.up = value["pack"], True
        actor.where = f"pid {value['pid']} on {value['host']}"
        self.write(f"[{actor.name}] {actor.where}: {value['device']}, {value['describe']}")
        if value["code"] != code_version():
            self.write(f"[{actor.name}] runs other code ({_code(value['code'])}) than this driver "
                       f"({_code(code_version())}): its records name their own")
        self.call("news", actor, NEWS_WAIT_S)

    def on_hello(self, actor: Actor, call: Call, value: dict) -> None:
        actor.up, actor.where = True, f"pid {value['pid']} on {value['host']}"
        self.write(f"[{actor.name}] restarted: {actor.where}")
        self.call("news", actor, NEWS_WAIT_S)

    def on_news(self, actor: Actor, call: Call, lines: list) -> None:
        for line in lines:
            self.write(f"[{actor.name}] {line}")
        if not actor.gone and call.life == actor.life:  # (after a death, its hello asks again)
            self.call("news", actor, NEWS_WAIT_S)

    def on_train(self, actor: Actor, call: Call, value: dict) -> None:
        from fastseed.store.record import Record
        if value["pack"] is not None:  # it ran out of memory: its packs are this size from now on
            actor.pack = max(1, min(actor.pack, value["pack"]))
        left = set(call.seeds)
        for row in value["records"]:
            record = Record(**row)
            if record.seed not in left:
                raise RuntimeError(f"record of seed {record.seed} arrived, not one of the pack {call.seeds}")
            left.discard(record.seed)
            if self.store.add(record, self.worker):
                self.committed += 1
                self.progress.add(record)
            else:
                self.write(f"seed {record.seed}: already stored by another worker (it took the seed over when "
                           f"this scan's lease ran out); the first record is kept")
        if left:  # halted before these
            self.release(left)

    # ---- failures ----

    def lost(self, call: Call, error) -> None:
        """The actor died, or cannot be reached, with the call in flight."""
        actor = call.actor
        if call.kind == "train":
            self.again(call.seeds, call.attempts + 1)
        if actor.gone:
            return
        if isinstance(error, self.gone_for_good):  # no restart left, or it could not start at all
            self.failed += 1
            self.deaths.append(_last_line(error))
            self.gone(actor, f"{actor.where or 'starting'}: died for good: {self.deaths[-1]}")
        elif call.back:  # not back yet
            self.back(actor)
        elif call.life == actor.life:  # the first word of this death (the calls queued behind fail too)
            actor.life, actor.up = actor.life + 1, False
            self.write(f"[{actor.name}] {actor.where or 'starting'}: lost (its process or its node died); Ray "
                       f"restarts it, and its packs go out again")
            self.back(actor)

    def back(self, actor: Actor) -> None:
        """Ask a restarting actor, in a moment, who it is now (prepare it, if it never got that far)."""
        actor.hello_at = time.monotonic() + HELLO_S

    def greet(self) -> None:
        now = time.monotonic()
        for actor in self.actors:
            if actor.hello_at is not None and actor.hello_at <= now and not actor.gone:
                actor.hello_at = None
                if actor.pack:
                    self.call("hello", actor, back=True)
                else:
                    self.call("prepare", actor, self.remaining, self.data, back=True)

    def raised(self, call: Call, cause: BaseException, error) -> None:
        """The call raised in the actor: a refusal (this node lacks the data, …) or a bug."""
        if isinstance(cause, UserCodeError):  # the user's function raised: its traceback, then stop the scan
            self.failed += 1
            self.user_error = str(cause)
            self.write(f"[{call.actor.name}] {cause.traceback_text.rstrip()}")
            self.write(f"[{call.actor.name}] {cause}: stopping once the packs in training are committed")
            return
        if isinstance(cause, FastseedError):
            self.refusals.append(str(cause))
            if call.kind == "train":
                self.again(call.seeds, call.attempts + 1)  # another node may have what this one lacks
            self.gone(call.actor, f"refused: {cause}")
            return
        self.failed += 1
        if call.kind == "train":
            self.abandoned.update(call.seeds)  # the same bug would strike again elsewhere
        self.gone(call.actor, f"failed: {error}")

    def again(self, seeds: list[int], attempts: int) -> None:
        if attempts < ATTEMPTS:
            self.retry.append((seeds, attempts))
            return
        self.abandoned.update(seeds)  # still claimed by this driver until its end: nobody hands them out
        self.write(f"seeds {', '.join(map(str, seeds))} were in flight on {attempts} actors that died or "
                   f"refused: left for a rerun")

    def gone(self, actor: Actor, why: str) -> None:
        actor.gone, actor.up = why, False
        self.write(f"[{actor.name}] {why}")
        self._kill(actor)

    def _kill(self, actor: Actor) -> None:
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 (dead already, or its node is: nothing to free)
            pass

    def release(self, seeds) -> None:
        try:
            self.store.release(self.worker, sorted(seeds))
        except FastseedError:
            pass  # (a full disk) their lease runs out instead

    def close(self) -> None:
        """Every actor killed (a pack in flight is dropped: nothing of it was committed), every claim
        of this driver released."""
        for actor in self.actors:
            self._kill(actor)
        try:
            self.store.release(self.worker)
        except FastseedError:
            pass

    def refusal(self) -> str | None:
        """The one line to exit with when no actor ever trained: each refused (this node has no
        data), or none could start (fastseed missing on the nodes)."""
        if self.committed or not all(a.gone for a in self.actors):
            return None
        if self.refusals:
            return self.refusals[0]
        if self.deaths and not any(a.pack for a in self.actors):
            return (f"no Ray actor could start: {self.deaths[0]} (every node needs fastseed, the version of this "
                    f"driver, and its dependencies)")
        return None


def _code(version: dict) -> str:
    commit = version.get("commit")
    return f"fastseed {version.get('fastseed')}" + (f" at {commit[:12]}" if commit else "") + \
        (" modified" if version.get("dirty") else "")


def _last_line(error: BaseException) -> str:
    """The line that says why, at the end of a remote traceback (`ModuleNotFoundError: …`)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
