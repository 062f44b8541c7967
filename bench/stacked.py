"""Playground runs trained one by one against the same runs stacked (labs/playground_stacked.py),
as when a class presses Train together (printed, never asserted).

    .venv/bin/python -m bench.stacked [--learners 8,32]

On one thread, as a worker trains: a default run as one nn.Module (`train`, what the runner
trains today), the same run as a stack of one, and K learners' default runs (seeds
0..K-1) as one stack, with every member's snapshots. Reports aggregate training steps per
second, each learner's time to Done, and the largest relative difference of a member's final
training loss from its run alone.
"""

from __future__ import annotations

import argparse
import time

import torch

from labs import playground
from labs.playground_stacked import train_together

CPU = torch.device("cpu")


def timed(run) -> tuple[float, list]:
    start = time.perf_counter()
    out = list(run())
    return time.perf_counter() - start, out


def last_loss(snapshots) -> float:
    return [s for s in snapshots if not s.final][-1].metrics["train_loss"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", default="8,32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = playground.Config()
    module_s, _ = timed(lambda: playground.train(cfg, CPU))
    solo_s, solo = timed(lambda: [s for _, s in train_together([cfg], CPU)])
    steps = solo[-1].step
    print(f"one default run: {steps} steps; as an nn.Module {module_s:.2f} s, stacked alone {solo_s:.2f} s")
    print("\n| K | one by one (s) | stacked (s) | steps/s one by one | steps/s stacked | speed-up "
          "| each learner's Done, stacked / solo | max rel. diff of final loss |")  # fmt: skip
    print("|---" * 8 + "|")
    for k in [int(k) for k in args.learners.split(",")]:
        cfgs = [playground.Config(seed=s) for s in range(k)]
        alone = {}
        for i, c in enumerate(cfgs[: min(k, 4)]):  # a few members' runs alone, for the difference
            alone[i] = last_loss([s for _, s in train_together([c], CPU)])
        together_s, out = timed(lambda cfgs=cfgs: train_together(cfgs, CPU))
        members = {i: [s for j, s in out if j == i] for i in alone}
        diff = max(abs(last_loss(members[i]) - loss) / abs(loss) for i, loss in alone.items())
        one_by_one = k * solo_s
        print(
            f"| {k} | {one_by_one:.1f} | {together_s:.1f} | {k * steps / one_by_one:.0f} | "
            f"{k * steps / together_s:.0f} | {one_by_one / together_s:.1f}x | {together_s / solo_s:.1f} | "
            f"{diff:.1e} |"
        )


if __name__ == "__main__":
    main()
