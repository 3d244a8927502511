"""One worker process for tests/workers/test_local.py: `work()` over a seed range exactly as a scan runs
it, on the tiny protocol and the 200 images the test hands over in an .npz file.

A fresh interpreter (fork + exec), never a fork of the test process: a fork of a process whose other
threads have used OpenMP can hang in its first parallel region, and by the time these tests run pytest
has run others that train in threads.

    python local_worker.py SPEC.json

SPEC: data (the .npz), pack, lease_s, pause_s, poll_s, and rounds: one or more runs of `work()`, one
after another in this process (the data loaded once), each with store, start, stop, report (where its
outcome goes), started (a file to write its first pack's seeds to, or null), ready and go (files: say
"ready", then wait for the go before touching the store; null for neither)."""

import json
import sys
import time
from pathlib import Path

import numpy as np

from fastseed.data.cifar import Cifar10
from fastseed.jobs import Options, make_job
from fastseed.recipe.presets import get_preset
from fastseed.store import Store
from fastseed.store.claims import worker_id
from fastseed.workers.local import StopFlag, work

TINY = get_preset("smoke").variant(width=0.0625, train_size=100, test_size=100, batch_size=50, chunk_size=50,
                                   epochs=1, eval_batch_size=100)


class Recording:
    """The job as a worker sees it, noting the seeds this process trains; `pause_s` makes each pack
    slow, and the first pack's seeds go to `started` once it is under way."""

    def __init__(self, job, pause_s: float, started: Path | None):
        self.job, self.pause_s, self.started, self.trained = job, pause_s, started, []
        self.protocol, self.device, self.together = job.protocol, job.device, job.together

    def train(self, seeds, commit, stop_flag, on_progress=None):
        self.trained += seeds
        if self.started is not None:
            partial = self.started.with_suffix(".part")
            partial.write_text(json.dumps(seeds))
            partial.rename(self.started)  # whole or absent: the test never reads half a list
            self.started = None
        time.sleep(self.pause_s)
        self.job.train(seeds, commit, stop_flag, on_progress)


def main(spec: dict) -> None:
    arrays = np.load(spec["data"])
    data = Cifar10(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], source="test")
    job = make_job(TINY, Options(device="cpu"))
    labels = job.load(data)
    job.train([0], lambda record: None, stop_flag=False)  # first-call costs before the race, not in it
    for run in spec["rounds"]:
        if run["ready"] is not None:
            Path(run["ready"]).touch()
            while not Path(run["go"]).exists():
                time.sleep(0.005)
        store = Store(run["store"], TINY.name, TINY.hash, TINY.to_json())  # the first worker's call creates it
        store.set_test_labels(labels)
        recording, committed = Recording(job, spec["pause_s"], Path(run["started"]) if run["started"] else None), []
        complete = work(recording, store, run["start"], run["end"], pack=spec["pack"], worker=worker_id(),
                        stop_flag=StopFlag(), lease_s=spec["lease_s"],
                        on_record=lambda r, new, committed=committed: committed.append(r.seed) if new else None,
                        log=lambda line: print(line, flush=True), poll_s=spec["poll_s"])
        store.close()
        Path(run["report"]).write_text(json.dumps({"trained": recording.trained, "committed": committed,
                                                   "complete": complete}))


if __name__ == "__main__":
    main(json.loads(Path(sys.argv[1]).read_text()))
