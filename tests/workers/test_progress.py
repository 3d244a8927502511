"""What a scan shows of a long seed: a second bar of its steps, counted from the step it resumed at
(its rate, hence its ETA, counts only the steps trained in this run), restarted for the next seed."""

import io

from fastseed.workers.progress import Pace, Progress


def test_a_long_seed_gets_a_bar_of_its_steps_from_the_resumed_step(monkeypatch):
    from tqdm import tqdm
    screen, made = io.StringIO(), []
    real = tqdm.__init__

    def keep(self, *a, **kw):  # every bar drawn on a string, noted
        kw["file"] = screen
        real(self, *a, **kw)
        made.append(self)
    monkeypatch.setattr(tqdm, "__init__", keep)

    bars = Progress(total=2, stored=0, accs=[], quiet=False)
    pace = Pace("cpu", 2, log=bars.write, on_progress=bars.seed_steps)
    pace.start(1)
    for done in (41, 42, 43):  # a seed resumed after its step 40 of 100
        pace.step(done, 100)
    step_bar = bars.seed_bar
    assert step_bar.unit == "step" and step_bar.total == 100 and step_bar.n == 43
    assert step_bar.format_dict["initial"] == 40  # the rate counts the 3 steps trained here
    assert pace.done == 43 and pace.total == 100
    pace.start(1)
    pace.step(1, 100)  # the next seed, from its start: a new bar
    assert bars.seed_bar is not step_bar and bars.seed_bar.n == 1 and bars.seed_bar.format_dict["initial"] == 0
    bars.close()
    assert bars.seed_bar is None and len(made) == 3 and "seed in flight" in screen.getvalue()


def test_quiet_progress_draws_no_bar_of_steps():
    bars = Progress(total=1, stored=0, accs=[], quiet=True)
    bars.seed_steps(5, 10)
    assert bars.seed_bar is None
    bars.close()
