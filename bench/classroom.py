"""A simulated class, without browsers: K learners who speak Streamlit's own WebSocket protocol
(the protobuf messages of the installed `streamlit` package) and the live channel's, as a
browser does (printed, never asserted).

    make bench-class        # or: .venv/bin/python -m bench.classroom [--learners 8,32,64]

Each learner asks for the page's health (Streamlit's XSRF cookie, nginx's route cookie), opens
Streamlit's socket and runs the chapter's page, opens the live channel the page announces
(token first, then "ready" after every frame, as the panel does), presses Train by sending the
button's trigger, and reads the run's frames to its end. Most learners train a light chapter,
some a second one; a quarter keep moving a slider (a rerun of their page) every few seconds
while the others train. Learners arrive within ARRIVAL_SECONDS, as a class that is told "press
Train now".

Per learner: page ready (first script run finished), click -> first queue position or state,
click -> first frame with a chart or number, states per second while training, run end; and
errors, lost runs (no end within the scenario's time), runs past their budget. Per replica,
from /proc: CPU per page run (while the class opens its pages, before anyone trains) and CPU
per training state delivered while the class trains (an upper bound: the reruns of Train and
of the sliders moved fall in the same window).

Two set-ups: one replica on the local backend (`streamlit run`, its worker pool), and two
replicas on Ray behind nginx (`deploy/serve_class.py`). Loopback only; bounded in learners and
in time (SCENARIO_SECONDS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from bench.class_hosts import OneReplica, TwoReplicasJoiningACluster, TwoReplicasOnRay, cpu_seconds
from bench.learner import ARRIVAL_SECONDS, Barrier, Learner

SCENARIO_SECONDS = 150.0  # a scenario ends by then, runs or not (a run not ended by then is lost)
# (chapter, query, share of learners): light chapters, as a class mostly opens them
MIX = [("playground", "epochs=40", 3), ("tabular", "epochs=6", 1)]
BUDGET_WORDS = ("budget", "past its time", "too much memory")


# -- a scenario --------------------------------------------------------------------------------


def learners_for(k: int, base: str) -> list[Learner]:
    chapters = [c for c in MIX for _ in range(c[2])]
    return [
        Learner(i, base, *chapters[i % len(chapters)][:2], mover=(i % 4 == 3), route=f"learner-{i}")
        for i in range(k)
    ]


async def class_of(learners: list[Learner], host) -> dict:
    """The class opens its pages (as they walk in), then presses Train within ARRIVAL_SECONDS.
    The replicas' CPU is read when every page is open and when the scenario ends."""
    clock = time.monotonic
    deadline = clock() + SCENARIO_SECONDS
    seated = Barrier(len(learners))
    start = {name: cpu_seconds(pid) for name, pid in host.pids.items()}

    async def arrive(learner: Learner) -> None:
        await asyncio.sleep(random.uniform(0, ARRIVAL_SECONDS))
        await learner.attend(clock, deadline, seated)

    async def read_cpu_when_seated() -> tuple[float, dict]:
        await seated.event.wait()
        return clock(), {name: cpu_seconds(pid) for name, pid in host.pids.items()}

    reading = asyncio.create_task(read_cpu_when_seated())
    await asyncio.gather(*(arrive(learner) for learner in learners))
    seated_at, seated_cpu = await reading
    training_s = clock() - seated_at
    end = {name: cpu_seconds(pid) for name, pid in host.pids.items()}
    return {
        name: (seated_cpu[name] - start[name], end[name] - seated_cpu[name], training_s) for name in start
    }


def p(values: list[float], q: float) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def scenario(host, k: int) -> dict:
    random.seed(k)
    learners = learners_for(k, host.base)
    cpu = asyncio.run(class_of(learners, host))
    per_replica = {}
    for name, (opening, training, training_s) in cpu.items():
        mine = [lr for lr in learners if lr.replica == name]
        pages = sum(lr.page_ready_s is not None for lr in mine)
        per_page = opening / max(1, pages)  # a page's first script run (while the class sits down)
        reruns = sum(len(lr.reruns) + 1 for lr in mine if lr.page_ready_s is not None)  # + Train's
        frames = sum(lr.training_states for lr in mine)
        # an upper bound: everything the replica did while the class trained (Train's reruns,
        # the sliders moved, the runs' threads) over the training states it delivered
        per_frame = training / max(1, frames)
        per_replica[name] = {
            "learners": len(mine),
            "cpu ms per page run": round(1000 * per_page, 1),
            "cpu ms per frame (at most)": round(1000 * per_frame, 2),
            # the replica's CPU over the wall time while the class trained: near 1.0, its one
            # interpreter (the GIL) is the ceiling; well below, something else is
            "busy share while training": round(training / max(1e-9, training_s), 2),
            "frames": frames,
            "reruns": reruns,
        }
    trained = [lr for lr in learners if lr.training_seconds > 0.5]
    return {
        "set-up": host.name,
        "K": k,
        # a learner's error: the bench's own (refused, a socket dropped) or a run that failed
        "errors": sum(bool(lr.errors) or lr.end_state == "failed" for lr in learners),
        "lost": sum(lr.end_s is None and not lr.errors for lr in learners),
        "past budget": sum(any(w in lr.end_message for w in BUDGET_WORDS) for lr in learners),
        "page ready p50": p([lr.page_ready_s for lr in learners], 0.5),
        "page ready p95": p([lr.page_ready_s for lr in learners], 0.95),
        "first state p95": p([lr.first_state_s for lr in learners], 0.95),
        "first frame p50": p([lr.first_frame_s for lr in learners], 0.5),
        "first frame p95": p([lr.first_frame_s for lr in learners], 0.95),
        "began -> first frame p95": p(
            [
                lr.first_frame_s - lr.began_s
                for lr in learners
                if lr.first_frame_s is not None and lr.began_s is not None
            ],
            0.95,
        ),
        "states/s p50": p([lr.training_states / lr.training_seconds for lr in trained], 0.5),
        "end p95": p([lr.end_s for lr in learners], 0.95),
        "rerun p50": p([r for lr in learners for r in lr.reruns], 0.5),
        "replicas": per_replica,
        "sample errors": [
            lr.errors[0] if lr.errors else lr.end_message
            for lr in learners
            if lr.errors or lr.end_state == "failed"
        ][:3],
    }


def show(row: dict) -> str:
    def f(v):
        return "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    keys = ["K", "errors", "lost", "past budget", "page ready p95", "first state p95", "first frame p50",
            "first frame p95", "began -> first frame p95", "states/s p50", "end p95",
            "rerun p50"]  # fmt: skip
    return "| " + row["set-up"] + " | " + " | ".join(f(row[k]) for k in keys) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", default="8,32,64")
    parser.add_argument("--setups", default="one,ray", help="of one, ray, cluster")
    args = parser.parse_args()
    sizes = [int(k) for k in args.learners.split(",")]
    hosts = {"one": OneReplica, "ray": TwoReplicasOnRay, "cluster": TwoReplicasJoiningACluster}
    rows = []
    for name in args.setups.split(","):
        with hosts[name]() as host:
            for k in sizes:
                row = scenario(host, k)
                rows.append(row)
                print(json.dumps(row), flush=True)
                time.sleep(5)  # the last runs wind down before the next class arrives
    print(
        "\n| set-up | K | errors | lost | past budget | page ready p95 (s) | first state p95 (s) | "
        "first frame p50 (s) | first frame p95 (s) | out of the queue -> first frame p95 (s) | "
        "states/s p50 | end p95 (s) | rerun p50 (s) |"
    )
    print("|---" * 13 + "|")
    for row in rows:
        print(show(row))


if __name__ == "__main__":
    main()
