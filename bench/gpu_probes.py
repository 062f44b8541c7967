"""Runs that probe the CUDA path (bench/gpu_check.py). They live in a module of their own
because a worker process imports each run's function by its module, never from __main__."""

from __future__ import annotations

import torch

from labs.core.snapshot import Snapshot


def allocate_too_much(cfg, device):
    """One snapshot, then a step that asks the GPU for far more than it has."""
    yield Snapshot(1, 2, {"loss": 1.0})
    free, _ = torch.cuda.mem_get_info(device)
    torch.empty(int(free * 4), dtype=torch.uint8, device=device)  # raises OutOfMemoryError
    yield Snapshot(2, 2, final=True)


_LEAKED: list = []  # GPU memory a run leaves behind in its worker (a leak, a global cache)


def holds_gpu_memory(cfg, device):
    """Takes `cfg` MB of GPU memory while it runs; frees it when it ends."""
    x = torch.ones(cfg * 2**20 // 4, device=device)
    yield Snapshot(1, 1, {"loss": float(x[0])}, final=True, state_dict={})


def leaks_gpu_memory(cfg, device):
    """Leaves `cfg` MB of GPU memory allocated in its worker after it ends."""
    _LEAKED.append(torch.ones(cfg * 2**20 // 4, device=device))
    yield Snapshot(1, 1, {"loss": 1.0}, final=True, state_dict={})


def reports_cuda(cfg, device):
    """What a run finds as it begins: GPU memory reserved, and whether CUDA is initialised."""
    initialised = torch.cuda.is_initialized()
    reserved = torch.cuda.memory_reserved() if initialised else 0
    yield Snapshot(1, 1, {"reserved": float(reserved), "cuda": float(initialised)}, final=True, state_dict={})


def tiny(cfg, device):
    x = torch.randn(64, 64, device=device)
    yield Snapshot(1, 1, {"loss": float(x.square().mean())}, final=True, state_dict={"x": x.cpu()})
