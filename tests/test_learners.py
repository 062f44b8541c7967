"""What one learner may hold of a shared server (server/learners.py): their runs beyond the
per-learner limits are refused naming the runs to stop, and a spent training-time quota says
when it comes back."""

from labs.core.driver import IN_THREAD
from labs.core.runner import RunState, TrainingRun
from labs.core.slots import Slots
from server.learners import Ledger, Rules
from tests import synthetic
from tests.runs import CPU


def endless(slots: Slots, learner: str) -> TrainingRun:
    return TrainingRun(synthetic.endless, None, CPU, slots=slots, executor=IN_THREAD, learner=learner).start()


def test_a_learner_past_their_runs_is_refused_naming_the_runs_to_stop():
    ledger, slots = Ledger(Rules(training=1, waiting=1, quota_s=0)), Slots(4, per_learner=1)
    training, waiting = endless(slots, "A"), endless(slots, "A")
    ledger.track("A", "playground", training)
    ledger.track("A", "convnets", waiting)
    try:
        assert training.wait_for_first_snapshot(10) and waiting.status()["state"] == "queued"
        refusal = ledger.refusal("A")
        assert "You already have 2 runs going" in refusal
        assert (
            "2. Neural network playground: running" in refusal
            and "7. Convolutional networks: queued" in refusal
        )
        assert ledger.refusal("A", replacing=(training,)) == ""  # the new run stops that one
        assert ledger.refusal("B") == ""  # another learner is not held to A's runs
    finally:
        training.stop()
        waiting.stop()
        assert training.wait(10) and waiting.wait(10)
    assert ledger.alive("A") == [] and ledger.refusal("A") == ""


class _EndedRun:
    """A run that trained `seconds` and has ended (the ledger reads only these)."""

    def __init__(self, seconds: float):
        self.running_seconds, self.listeners = seconds, []

    def status(self) -> dict:
        return {"state": RunState.DONE.value}


def test_a_spent_quota_says_when_it_comes_back_and_then_it_has():
    now = [0.0]
    ledger = Ledger(Rules(quota_s=600, half_life_s=3600), clock=lambda: now[0])
    assert "used of 10 min" in ledger.quota_line("A")
    ledger.track("A", "playground", _EndedRun(900))  # 15 minutes trained, over a 10-minute quota
    refusal = ledger.refusal("A")
    assert "spent" in refusal and "train again in about 35 min" in refusal  # 60 min x log2(15/10)
    assert ledger.refusal("B") == ""
    now[0] += 30 * 60
    assert "spent" in ledger.refusal("A")  # half an hour on: 10.6 min, still over
    now[0] += 6 * 60
    assert ledger.refusal("A") == ""  # 36 minutes on: under 10 minutes again


class _User(dict):
    """Stands in for st.user: a mapping of claims, with is_logged_in only when login is configured."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def test_a_logged_in_user_is_the_learner_whatever_browser_they_use():
    from types import SimpleNamespace

    from server.learners import _logged_in_user

    assert _logged_in_user(SimpleNamespace(user=_User())) == ""  # login not configured
    assert _logged_in_user(SimpleNamespace(user=_User(is_logged_in=False))) == ""
    ada = SimpleNamespace(user=_User(is_logged_in=True, email="ada@example.edu", sub="42"))
    assert _logged_in_user(ada) == "ada@example.edu"
    assert _logged_in_user(SimpleNamespace(user=_User(is_logged_in=True, sub="42"))) == "42"
