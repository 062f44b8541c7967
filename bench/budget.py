"""The budget's estimates against what runs really take (printed, never asserted).

    make bench-budget        # or: .venv/bin/python -m bench.budget

For every experiment of every chapter, two configs: the default, and the heaviest one a link
can ask for within the sliders' ranges (labs/core/budget.heaviest). Each is trained in a fresh
process for a few seconds (or to its end): peak resident memory above the process's idle
size, and seconds per step, beside what `cost(cfg)` estimated before it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from labs.core import budget
from labs.core.budget import Limits
from labs.core.config import from_params, to_params
from labs.core.contract import experiments_of, lab_of
from labs.core.control import Control
from labs.core.driver import Job, drive

MEASURE_SECONDS = 8.0  # a heavy config is measured over its first steps only
FIXED = {"language": {"corpus": "python"}}


def experiments():
    """(slug, part, Experiment) for every Train button of every registered chapter."""
    from chapters import CHAPTERS

    for chapter in CHAPTERS:
        for part, experiment in experiments_of(lab_of(chapter.slug)).items():
            yield chapter.slug, part, experiment


def peak_bytes() -> int:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure_one(slug: str, part: str, params: dict) -> dict:
    """In this (fresh) process: train until MEASURE_SECONDS or the end; report peak and pace."""
    import torch

    from labs.core.device import configure_threads, warm_up

    configure_threads()
    experiment = experiments_of(lab_of(slug))[part]
    cfg, _ = from_params(experiment.config, params)
    warm_up()
    idle = peak_bytes()
    control = Control(seconds=MEASURE_SECONDS)
    start = time.perf_counter()
    job = Job(experiment.train, cfg, torch.device("cpu"), Limits(seconds=MEASURE_SECONDS))
    drive(job, control, lambda kind, payload: None)  # the app's driver, without live views
    elapsed = time.perf_counter() - start
    done = max(control.progress[0], 1)
    return {"peak": peak_bytes() - idle, "seconds_per_step": elapsed / done, "steps": done}


def measure(slug: str, part: str, cfg) -> dict:
    """`measure_one` in a fresh Python, so each peak is that config's alone."""
    call = f"b.measure_one({slug!r}, {part!r}, {to_params(cfg)!r})"
    code = f"import json, bench.budget as b; print(json.dumps({call}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd(), timeout=900
    )
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="chapters (slugs, comma-separated); default all")
    parser.add_argument("--configs", default="default,heaviest", help="of default, heaviest")
    args = parser.parse_args(argv)
    only, wanted = set(filter(None, args.only.split(","))), args.configs.split(",")
    from labs.core.device import configure_threads

    configure_threads()  # as the server does before measuring: the runs' own thread count
    speed = budget.measured_speed("cpu")
    rates = ", ".join(f"{kind} {rate / 1e9:.1f}" for kind, rate in speed.rates)
    print(
        f"measured here: {speed.flops_per_second / 1e9:.1f} GFLOP/s ({rates}), "
        f"{speed.seconds_per_op * 1e6:.1f} µs/op"
    )
    columns = ("memory est.", "measured", "s/step est.", "measured")
    print(f"\n{'experiment':28} {'config':8} " + " ".join(f"{c:>11}" for c in columns))
    for slug, part, experiment in experiments():
        if only and slug not in only:
            continue
        name = f"{slug}.{part or 'main'}"
        for label in wanted:
            if label == "default":
                cfg = experiment.config()
            else:
                cfg = budget.heaviest(experiment.config, experiment.cost, FIXED.get(slug))
            cost = experiment.cost(cfg)
            per_step = budget.seconds(cost, speed) / cost.steps
            got = measure(slug, part, cfg)
            if "error" in got:
                print(f"{name:28} {label:8} {budget.size(cost.memory_bytes()):>11}  {got['error']}")
                continue
            print(
                f"{name:28} {label:8} {budget.size(cost.memory_bytes()):>11} "
                f"{budget.size(got['peak']):>11} {per_step:11.4f} {got['seconds_per_step']:11.4f}"
            )


if __name__ == "__main__":
    main()
