"""Analysis in the web server takes turns: at most a few at once, and a learner whose turn does
not come soon is told the server is busy."""

import threading
import time

import pytest

from server.analysis import Busy, Gate


def test_analyses_take_turns_never_more_than_the_gate_allows():
    gate, lock, now, peak = Gate(2), threading.Lock(), [0], [0]

    def work():
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)
        with lock:
            now[0] -= 1

    threads = [threading.Thread(target=gate.run, args=(work,)) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert peak[0] == 2


def test_a_learner_whose_turn_does_not_come_is_told_the_server_is_busy():
    gate, held, release = Gate(1), threading.Event(), threading.Event()

    def hold():
        held.set()
        release.wait(10)

    holder = threading.Thread(target=gate.run, args=(hold,))
    holder.start()
    held.wait(10)
    with pytest.raises(Busy, match="busy"):
        gate.run(lambda: None, wait=0.2)
    release.set()
    holder.join()
    assert gate.run(lambda: 42) == 42  # the turn is free again
