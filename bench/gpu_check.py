"""The CUDA path, checked in one command on a machine with an NVIDIA GPU (under 5 minutes).

    make gpu-check        # or: DLLAB_DEVICE=cuda .venv/bin/python -m bench.gpu_check

1. Every experiment of every chapter trains its smoke config on CUDA through the worker pool,
   as the app runs it, and ends DONE with its weights back on the CPU.
2. A real CUDA out-of-memory error, raised inside a worker, reaches the learner in words
   ("Out of GPU memory…"), and the worker trains the next run.
3. Each run's memory is its own: a 2 GB run before does not count against the next run's
   512 MB budget, the GPU cache is emptied between runs, a worker that keeps GPU memory after
   its run is replaced, and a CPU run's worker never initialises CUDA.
4. The speed bench of every chapter's default run, on the GPU.

On a machine without CUDA it says so and exits with status 2: nothing was checked.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from labs.core.budget import Limits
from labs.core.config import from_params
from labs.core.contract import experiments_of, lab_of
from labs.core.runner import RunState, TrainingRun
from labs.core.snapshot import Snapshot
from labs.core.workers import POOL

CUDA = torch.device("cuda")


def allocate_too_much(cfg, device):
    """One snapshot, then a step that asks the GPU for far more than it has."""
    yield Snapshot(1, 2, {"loss": 1.0})
    free, _ = torch.cuda.mem_get_info(device)
    torch.empty(int(free * 4), dtype=torch.uint8, device=device)  # raises OutOfMemoryError
    yield Snapshot(2, 2, final=True)


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
            weights_on_cpu = _all_on_cpu(view.state_dict)
            good = view.state == RunState.DONE and weights_on_cpu
            ok &= good
            took = time.perf_counter() - start
            mark = "ok " if good else "BAD"
            print(f"  {mark} {chapter.slug}.{name:10} {view.state:8} {took:6.2f} s  {view.message}")
    return ok


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
    after = TrainingRun(_tiny, None, CUDA, executor=POOL).start()
    after.wait(120)
    recovered = after.view().state == RunState.DONE
    print(f"  {'ok ' if recovered else 'BAD'} the next GPU run trains")
    return good and recovered


_LEAKED: list = []  # GPU memory a run leaves behind in its worker (a leak, a global cache)


def _holds_gpu_memory(cfg, device):
    """Takes `cfg` MB of GPU memory while it runs; frees it when it ends."""
    x = torch.ones(cfg * 2**20 // 4, device=device)
    yield Snapshot(1, 1, {"loss": float(x[0])}, final=True, state_dict={})


def _leaks_gpu_memory(cfg, device):
    """Leaves `cfg` MB of GPU memory allocated in its worker after it ends."""
    _LEAKED.append(torch.ones(cfg * 2**20 // 4, device=device))
    yield Snapshot(1, 1, {"loss": 1.0}, final=True, state_dict={})


def _reports_cuda(cfg, device):
    """What a run finds as it begins: GPU memory reserved, and whether CUDA is initialised."""
    initialised = torch.cuda.is_initialized()
    reserved = torch.cuda.memory_reserved() if initialised else 0
    yield Snapshot(1, 1, {"reserved": float(reserved), "cuda": float(initialised)}, final=True, state_dict={})


def hygiene() -> bool:
    """Each run's memory is its own: measured from its start, the GPU cache emptied between
    runs, a worker that keeps GPU memory replaced, CPU workers never touching CUDA."""
    checks = []
    big = TrainingRun(_holds_gpu_memory, 2048, CUDA, executor=POOL).start()
    big.wait(120)
    after = TrainingRun(_reports_cuda, None, CUDA, executor=POOL, limits=Limits(memory_mb=512)).start()
    after.wait(120)
    view = after.view()
    checks.append((view.state == RunState.DONE, "a 2 GB run before does not count against a 512 MB budget"))
    checks.append((view.last("reserved", 1e12) < 64 * 2**20, "the GPU cache was emptied after it"))
    leak = TrainingRun(_leaks_gpu_memory, 512, CUDA, executor=POOL).start()
    leak.wait(120)
    fresh = TrainingRun(_reports_cuda, None, CUDA, executor=POOL).start()
    fresh.wait(120)
    replaced = fresh.process_id != leak.process_id and fresh.view().last("reserved", 1e12) < 64 * 2**20
    checks.append((replaced, "a worker that kept 512 MB reserved was replaced"))
    cpu = TrainingRun(_reports_cuda, None, torch.device("cpu"), executor=POOL).start()
    cpu.wait(120)
    checks.append((cpu.view().last("cuda") == 0.0, "a CPU run's worker never initialised CUDA"))
    for good, what in checks:
        print(f"  {'ok ' if good else 'BAD'} {what}")
    return all(good for good, _ in checks)


def _tiny(cfg, device):
    x = torch.randn(64, 64, device=device)
    yield Snapshot(1, 1, {"loss": float(x.square().mean())}, final=True, state_dict={"x": x.cpu()})


def main() -> int:
    if not torch.cuda.is_available():
        print("No CUDA device here: nothing was checked. Run `make gpu-check` on a GPU machine.")
        return 2
    os.environ.setdefault("DLLAB_DEVICE", "cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    POOL.prestart(1, "cuda")
    POOL.prestart(1, "cpu")
    POOL.wait_ready()
    print("1. every chapter's smoke config on CUDA, through a worker:")
    smoke = smoke_runs()
    print("2. a real CUDA out-of-memory error:")
    oom = out_of_memory()
    print("3. each run's memory is its own:")
    clean = hygiene()
    print("4. the speed bench on the GPU:")
    from bench import speed

    speed.main()
    passed = smoke and oom and clean
    print("\nGPU check:", "passed" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
