"""The CUDA path, checked in one command on a machine with an NVIDIA GPU (under 5 minutes).

    make gpu-check        # or: DLLAB_DEVICE=cuda .venv/bin/python -m bench.gpu_check

1. Every experiment of every chapter trains its smoke config on CUDA through the worker pool,
   as the app runs it, and ends DONE with its weights back on the CPU; chapter 23 once more
   with its GPU switches on (fp16 with a gradient scaler, pinned memory, channels_last).
2. A real CUDA out-of-memory error, raised inside a worker, reaches the learner in words
   ("Out of GPU memory…"), and the worker trains the next run.
3. Each run's memory is its own: a 2 GB run before does not count against the next run's
   512 MB budget, the GPU cache is emptied between runs, a worker that keeps GPU memory after
   its run is replaced, and a CPU run's worker never initialises CUDA.
4. The speed bench of every chapter's default run, on the GPU.
5. A class of 8 and 32 learners pressing Train on the playground, and on chapters 4 and 5
   (deep MLPs: on a GPU one stack is one kernel per layer for every learner), batched against
   separate runs, on the GPU (bench/batched.py).

On a machine without CUDA it says so and exits with status 2: nothing was checked.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from bench.gpu_probes import allocate_too_much, holds_gpu_memory, leaks_gpu_memory, reports_cuda, tiny
from labs.core.budget import Limits
from labs.core.config import from_params
from labs.core.contract import experiments_of, lab_of
from labs.core.runner import RunState, TrainingRun
from labs.core.workers import POOL

CUDA = torch.device("cuda")


def smoke_runs() -> bool:
    from chapters import CHAPTERS, link_prefix

    ok = True
    for chapter in CHAPTERS:
        for part, experiment in experiments_of(lab_of(chapter.slug)).items():
            name = part or "main"
            # a page with several experiments reads "<part>.<knob>" for its run key "<slug>--<part>"
            cfg, _ = from_params(experiment.config, chapter.smoke, link_prefix(part))
            start = time.perf_counter()
            run = TrainingRun(experiment.train, cfg, CUDA, executor=POOL, cost=experiment.cost).start()
            run.wait(300)
            view = run.view()
            # an experiment that keeps no weights (the optimizer race on a surface) has none to move
            weights_on_cpu = view.state_dict is None or _all_on_cpu(view.state_dict)
            good = view.state == RunState.DONE and weights_on_cpu
            ok &= good
            took = time.perf_counter() - start
            mark = "ok " if good else "BAD"
            print(f"  {mark} {chapter.slug}.{name:10} {view.state:8} {took:6.2f} s  {view.message}")
    return ok


def pipeline_switches() -> bool:
    """Chapter 23 with every GPU switch on: fp16 autocast with its gradient scaler, pinned
    batches copied without blocking, channels_last, two DataLoader workers in the CUDA worker;
    the page's GPU memory and each operator's CUDA time."""
    from labs import pipeline

    cfg = pipeline.Config(epochs=1, precision="fp16", pin_memory=True, channels_last=True, workers=2)
    run = TrainingRun(pipeline.train, cfg, CUDA, executor=POOL, cost=pipeline.cost).start()
    run.wait(300)
    view = run.view()
    refused = [n for n in view.notes if "needs a GPU" in n or "only speeds copies" in n]
    cuda_times = any("CUDA ms per step" in row for row in view.view.get("operators", []))
    good = view.state == RunState.DONE and not refused and view.last("GPU MB") is not None and cuda_times
    print(
        f"  {'ok ' if good else 'BAD'} pipeline fp16 + pin_memory + channels_last + 2 workers: "
        f"{view.state}, {view.last('images/s') or 0:,.0f} images/s, peak {view.last('GPU MB') or 0:.0f} MB, "
        f"accuracy {view.last('test_acc') or 0:.1%} {refused or ''} {view.message}"
    )
    return good


def _all_on_cpu(state_dict) -> bool:
    if state_dict is None:
        return False
    values = state_dict.values() if isinstance(state_dict, dict) else []
    return all(
        _all_on_cpu(v) if isinstance(v, dict) else (not torch.is_tensor(v) or v.device.type == "cpu")
        for v in values
    )


def out_of_memory() -> bool:
    run = TrainingRun(allocate_too_much, None, CUDA, executor=POOL).start()
    run.wait(120)
    view = run.view()
    said = view.message
    good = view.state == RunState.FAILED and said.startswith("Out of GPU memory")
    print(f"  {'ok ' if good else 'BAD'} a real CUDA out-of-memory error reads: {said!r}")
    after = TrainingRun(tiny, None, CUDA, executor=POOL).start()
    after.wait(120)
    recovered = after.view().state == RunState.DONE
    print(f"  {'ok ' if recovered else 'BAD'} the next GPU run trains")
    return good and recovered


def hygiene() -> bool:
    """Each run's memory is its own: measured from its start, the GPU cache emptied between
    runs, a worker that keeps GPU memory replaced, CPU workers never touching CUDA."""
    checks = []
    big = TrainingRun(holds_gpu_memory, 2048, CUDA, executor=POOL).start()
    big.wait(120)
    after = TrainingRun(reports_cuda, None, CUDA, executor=POOL, limits=Limits(memory_mb=512)).start()
    after.wait(120)
    view = after.view()
    checks.append((view.state == RunState.DONE, "a 2 GB run before does not count against a 512 MB budget"))
    checks.append((view.last("reserved", 1e12) < 64 * 2**20, "the GPU cache was emptied after it"))
    leak = TrainingRun(leaks_gpu_memory, 512, CUDA, executor=POOL).start()
    leak.wait(120)
    fresh = TrainingRun(reports_cuda, None, CUDA, executor=POOL).start()
    fresh.wait(120)
    replaced = fresh.process_id != leak.process_id and fresh.view().last("reserved", 1e12) < 64 * 2**20
    checks.append((replaced, "a worker that kept 512 MB reserved was replaced"))
    cpu = TrainingRun(reports_cuda, None, torch.device("cpu"), executor=POOL).start()
    cpu.wait(120)
    checks.append((cpu.view().last("cuda") == 0.0, "a CPU run's worker never initialised CUDA"))
    for good, what in checks:
        print(f"  {'ok ' if good else 'BAD'} {what}")
    return all(good for good, _ in checks)


def main(steps: list[str] | None = None) -> int:
    """Every check (or only the numbered ones: `python -m bench.gpu_check 1 2 3 5`)."""
    steps = steps or ["1", "2", "3", "4", "5"]
    if not torch.cuda.is_available():
        print("No CUDA device here: nothing was checked. Run `make gpu-check` on a GPU machine.")
        return 2
    os.environ.setdefault("DLLAB_DEVICE", "cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    POOL.prestart(1, "cuda")
    POOL.prestart(1, "cpu")
    POOL.wait_ready()
    passed = True
    if "1" in steps:
        print("1. every chapter's smoke config on CUDA, through a worker:")
        passed &= smoke_runs()
        passed &= pipeline_switches()
    if "2" in steps:
        print("2. a real CUDA out-of-memory error:")
        passed &= out_of_memory()
    if "3" in steps:
        print("3. each run's memory is its own:")
        passed &= hygiene()
    if "4" in steps:
        print("4. the speed bench on the GPU:")
        from bench import speed

        speed.main([])
    if "5" in steps:
        from bench import batched

        for chapter in ("playground", "initialization", "normalization"):
            print(f"5. a class pressing Train on {chapter}, on the GPU:")
            batched.main(["--device", "cuda", "--slots", "4", "--chapter", chapter])
    print("\nGPU check:", "passed" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
