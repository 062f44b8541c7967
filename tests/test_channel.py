"""The live channel: frames are plain JSON built in the worker; the hub hands each viewer only
what changed, newest first, never builds a lag, and forgets a run shortly after it ended."""

import asyncio
import json
import time

import numpy as np
import pytest
import torch

from labs import playground
from labs.core import frames as live_frames
from labs.core.frames import HEAVY_BYTES, FrameMaker, light_first, to_json
from labs.core.runner import TrainingRun
from server import channel as live
from server.channel import Hub

CPU = torch.device("cpu")


class FakeRun:
    """What the hub needs of a TrainingRun: frames, a status and listeners."""

    def __init__(self):
        self.frames: dict[str, bytes] = {}
        self.listeners = []
        self.state = "running"
        self.step = 0

    def status(self) -> dict:
        return {"state": self.state, "step": self.step}

    def steps_done(self) -> int:
        return self.step

    def publish(self, **parts) -> None:
        self.frames = {**self.frames, **{k: to_json(v) for k, v in parts.items()}}
        for listener in self.listeners:
            listener(self)


def decode(frame: bytes) -> dict:
    return json.loads(frame)["parts"]


def test_numpy_arrays_travel_as_typed_arrays_and_nan_never_breaks_json():
    z = np.arange(6, dtype=np.float64).reshape(2, 3)
    data = json.loads(to_json({"z": z, "x": np.int64(3), "bad": float("nan"), "m": np.float32("inf")}))
    assert data["z"] == {"dtype": "f8", "bdata": data["z"]["bdata"], "shape": "2, 3"}
    assert np.frombuffer(__import__("base64").b64decode(data["z"]["bdata"])).tolist() == [0, 1, 2, 3, 4, 5]
    assert data["x"] == 3 and data["bad"] is None and data["m"] is None


def test_a_frame_holds_only_what_changed_since_the_last_one():
    run = FakeRun()
    hub = Hub()
    ch = hub.open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        run.publish(loss={"data": [1]}, boundary={"data": [2]})
        first = decode(await viewer.next_frame())
        assert set(first) == {"loss", "boundary", "status"}
        run.publish(loss={"data": [3]})  # only the loss moved
        second = decode(await viewer.next_frame())
        assert set(second) <= {"loss", "status"} and second["loss"] == {"data": [3]}
        ch.leave(viewer)
        assert ch.viewers == 0

    asyncio.run(scenario())


def test_latest_wins_a_viewer_that_was_busy_gets_only_the_newest_part():
    run = FakeRun()
    ch = Hub().open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        await viewer.next_frame()
        for i in range(100):  # a hundred frames arrive while the browser is still drawing
            run.publish(loss={"data": [i]})
        newest = decode(await viewer.next_frame())
        assert newest["loss"] == {"data": [99]}

    asyncio.run(scenario())


def test_a_viewer_that_never_reads_costs_nothing():
    run = FakeRun()
    ch = Hub().open(run, owner=None)

    async def scenario():
        ch.join(asyncio.get_running_loop())  # joined, never asks for a frame
        for i in range(2000):
            run.publish(curve={"data": list(range(i % 50))})
        # nothing queued anywhere: the channel holds one part of each kind
        assert set(run.frames) == {"curve"} and ch.viewers == 1

    asyncio.run(scenario())


def test_with_nothing_new_a_viewer_still_gets_the_progress_line_a_few_times_a_second():
    run = FakeRun()
    ch = Hub().open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        await viewer.next_frame()
        run.step = 5  # the step count moved, no figure did
        start = time.monotonic()
        parts = decode(await asyncio.wait_for(viewer.next_frame(), 2))
        assert parts == {"status": {"state": "running", "step": 5}}
        assert time.monotonic() - start < 1.0

    asyncio.run(scenario())


def test_a_moving_step_count_goes_out_at_a_browsers_pace_without_waiting_for_the_clock(monkeypatch):
    monkeypatch.setattr(live, "STATUS_SECONDS", 30.0)  # the clock's own refresh would take 30 s
    run = FakeRun()
    ch = Hub().open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        await viewer.next_frame()
        run.step = 1  # moved in "shared memory": no event, as a worker's step count
        parts = decode(await asyncio.wait_for(viewer.next_frame(), 5))
        assert parts["status"]["step"] == 1

        async def train():  # a step every millisecond, for half a second
            for _ in range(500):
                run.step += 1
                await asyncio.sleep(0.001)

        loop = asyncio.get_running_loop()
        trainer = asyncio.ensure_future(train())
        sent, began = [], loop.time()
        while not trainer.done():
            sent.append(decode(await asyncio.wait_for(viewer.next_frame(), 5))["status"]["step"])
        took = loop.time() - began  # however slow the machine: frames are STEP_SECONDS apart
        assert len(sent) <= took / live.STEP_SECONDS + 2  # a browser's pace, not every step
        assert sent == sorted(set(sent))  # each frame a newer state

    asyncio.run(scenario())


def test_a_run_that_leaves_the_queue_says_so_at_once_not_at_the_clocks_pace(monkeypatch):
    monkeypatch.setattr(live, "STATUS_SECONDS", 30.0)  # the clock's own refresh would take 30 s
    run = FakeRun()
    run.state = "queued"
    ch = Hub().open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        assert decode(await viewer.next_frame())["status"]["state"] == "queued"
        run.state = "running"  # its turn came; no step, no figure yet
        for listener in run.listeners:
            listener(run)
        parts = decode(await asyncio.wait_for(viewer.next_frame(), 5))
        assert parts["status"]["state"] == "running"

    asyncio.run(scenario())


def test_a_token_expires_shortly_after_its_run_ends_and_unknown_ones_are_not_found(monkeypatch):
    monkeypatch.setattr(live, "EXPIRE_SECONDS", 0.2)
    hub = Hub()
    run = FakeRun()
    ch = hub.open(run, owner="me")
    assert hub.find(ch.token) is ch and hub.find("guess") is None
    assert len(ch.token) >= 32  # unguessable: 24 random bytes
    run.state = "done"
    run.publish(loss={"data": [0]})
    assert hub.find(ch.token) is ch  # the final frame is still served for a moment
    time.sleep(0.3)
    assert hub.find(ch.token) is None


def test_a_panel_connected_before_any_run_gets_the_runs_first_frame_as_soon_as_it_is_attached():
    hub = Hub()
    ch = hub.open(None, owner="me")  # drawn with the page, before Train

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        assert decode(await viewer.next_frame()) == {"status": {"state": "idle", "run": None}}
        waiting = asyncio.ensure_future(viewer.next_frame())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # an idle page is sent nothing, not even a progress line
        run = FakeRun()
        run.frames = {"loss": to_json({"data": [1]})}
        ch.attach(run)  # Train pressed: the viewer is woken at once
        parts = decode(await asyncio.wait_for(waiting, 2))
        assert parts == {"loss": {"data": [1]}, "status": {"state": "running", "step": 0}}

    asyncio.run(scenario())


def test_the_next_run_on_a_channel_is_sent_whole_even_where_its_parts_equal_the_last_runs():
    ch = Hub().open(None, owner=None)
    first, second = FakeRun(), FakeRun()
    for run in (first, second):
        run.frames = {"fixed": to_json({"data": [0]})}

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        ch.attach(first)
        assert "fixed" in decode(await viewer.next_frame())
        ch.attach(second)  # a new run replaces the stopping one
        assert "fixed" in decode(await asyncio.wait_for(viewer.next_frame(), 2))
        first.publish(loss={"data": [9]})  # the old run is no longer heard
        assert first.listeners == []

    asyncio.run(scenario())


def test_when_the_browser_session_ends_its_channels_close_and_their_viewers_are_let_go():
    hub = Hub()
    ch = hub.open(None, owner="me")

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        await viewer.next_frame()
        waiting = asyncio.ensure_future(viewer.next_frame())
        await asyncio.sleep(0.05)
        ch.close()
        assert await asyncio.wait_for(waiting, 2) is None

    asyncio.run(scenario())
    assert hub.find(ch.token) is None


def test_a_real_run_publishes_its_worker_drawn_frames_through_the_channel():
    from figures.views import playground as views

    run = TrainingRun(playground.train, playground.Config(epochs=20), CPU, views=views.VIEWS.draw)
    ch = Hub().open(run, owner=None)

    async def scenario():
        viewer = ch.join(asyncio.get_running_loop())
        run.start()
        seen = set()
        while run.view().alive or not seen:
            parts = decode(await asyncio.wait_for(viewer.next_frame(), 60))
            seen |= set(parts)
            if parts.get("status", {}).get("state") == "done":
                break
        assert {"boundary", "loss", "neurons", "numbers", "status"} <= seen

    asyncio.run(scenario())


def test_the_frame_maker_sends_figures_only_when_they_change_and_keeps_its_pace():
    views = lambda run: {"fixed": {"data": [1]}, "steps": {"data": [len(run.history)]}}  # noqa: E731
    maker = FrameMaker(views, cfg=None)
    first = maker.frame(force=True)
    assert set(first) == {"fixed", "steps"}
    assert maker.frame() == {}  # too soon after the last
    maker.history.history.append({"step": 1})
    assert set(maker.frame(force=True)) == {"steps"}  # "fixed" did not change


def test_frames_between_snapshots_wait_longer_for_their_cost_than_a_snapshots():
    """A frame of a new snapshot is part of that snapshot's cost (its share is Cadence's): it waits
    FRAME_SHARE times what the last frame cost. One between snapshots (new curve points) waits
    CURVE_FRAME_SHARE times: those stay a small share of the run however often points come."""
    from labs.core import frames
    from labs.core.snapshot import Snapshot

    now = [0.0]

    def views(run):
        now[0] += 0.004  # every frame costs 4 ms to draw
        return {"loss": {"data": [len(run.curve)]}, "map": {"data": [run.view.get("n", 0)]}}

    maker = FrameMaker(views, cfg=None, clock=lambda: now[0])
    assert maker.frame(force=True)
    points_only = 0.004 * frames.CURVE_FRAME_SHARE
    now[0] += points_only - 0.01
    maker.history.add_points([{"step": 1, "loss": 1.0}])
    assert maker.frame() == {}  # points alone: not yet
    maker.history.add(Snapshot(2, 10, view={"n": 1}))
    assert set(maker.frame()) == {"loss", "map", "numbers"}  # a new snapshot: 9x its cost has passed
    now[0] += max(frames.MIN_FRAME_SECONDS, 0.004 * frames.FRAME_SHARE) + 0.001
    maker.history.add_points([{"step": 3, "loss": 0.5}])
    assert maker.frame() == {}  # points alone wait longer
    now[0] += points_only
    assert set(maker.frame()) == {"loss", "numbers"}  # the map did not change


def test_light_parts_travel_ahead_of_heavy_ones():
    frame = {"numbers": b"[1]", "mosaic": b"0" * (HEAVY_BYTES + 1), "loss": b"{}"}
    first, second = light_first(frame)
    assert set(first) == {"numbers", "loss"} and set(second) == {"mosaic"}
    assert light_first({"loss": b"{}"}) == [{"loss": b"{}"}] and light_first({}) == []


@pytest.mark.parametrize("size", [0, 1, 3])
def test_frames_concatenate_parts_into_valid_json(size):
    parts = {f"p{i}": to_json({"data": [i]}) for i in range(size)}
    assert decode(live.frame(parts)) == {f"p{i}": {"data": [i]} for i in range(size)}


def test_a_runs_first_loss_leaves_at_its_first_step_before_its_first_evaluation():
    """The first number a learner sees is the first step's loss: it leaves with the step, as a
    frame of headline numbers, while the first snapshot is still being measured."""
    from figures.views import playground as views
    from labs.core.budget import Limits
    from labs.core.control import Control
    from labs.core.driver import Job, drive

    got = []
    job = Job(playground.train, playground.Config(epochs=5), CPU, Limits(), views.VIEWS.draw)
    drive(job, Control(), lambda kind, payload: got.append((kind, payload)))
    kinds = [kind for kind, _ in got]
    first_snap = kinds.index("snap")
    assert kinds[0] == "points" and got[0][1][0]["step"] == 1
    early = [json.loads(p["numbers"]) for kind, p in got[:first_snap] if kind == "frame" and "numbers" in p]
    assert early and early[0][0][0] == "train loss" and float(early[0][0][1]) > 0


def test_curve_numbers_are_each_curves_latest_value():
    curve = [{"step": 1, "a_loss": 1.0}, {"step": 1, "b": 5.0}, {"step": 10, "a_loss": 0.25}]
    assert live_frames.curve_numbers(curve) == [["a loss", "0.25"], ["b", "5"]]
    assert live_frames.curve_numbers([]) == []
