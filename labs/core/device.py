"""Device choice, thread count and seeds: passed explicitly, never hidden in globals."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def configure_threads() -> int:
    """Set torch's intra-op threads for this process (DLLAB_TORCH_THREADS).

    The default shares the cores among the runs allowed at once (DLLAB_CPU_RUNS): more threads
    than cores makes OpenMP threads spin-wait for each other and every run crawls.
    """
    cores = os.cpu_count() or 1
    runs = int(os.environ.get("DLLAB_CPU_RUNS", "0") or 0) or max(2, cores // 2)
    wanted = int(os.environ.get("DLLAB_TORCH_THREADS", "0") or 0) or max(1, cores // runs)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def pick_device(prefers_gpu: bool = True) -> torch.device:
    """The device for one run. Tiny, overhead-bound nets stay on the CPU even on a GPU server.

    DLLAB_DEVICE=cpu forces the CPU everywhere; =cuda uses the GPU even for tiny nets.
    """
    forced = os.environ.get("DLLAB_DEVICE", "auto").lower()
    if forced == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if forced == "cuda" or prefers_gpu:
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and return a generator for this run's own draws."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def hardware_summary() -> str:
    """What runs the models, in one line for the home page."""
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"GPU: {', '.join(names)} (tiny nets stay on the CPU, {torch.get_num_threads()} threads)"
    return f"CPU only: {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads"


def warm_up(device: torch.device | str = "cpu") -> None:
    """Pay a process's one-time costs before a learner's first Train click does: the first
    conv forward/backward sets up kernels (~1 s, oneDNN or cuDNN), and the first optimizer
    built imports torch._dynamo (~2 s, through torch.optim's dynamo guard). On CUDA it also
    creates the CUDA context and loads cuBLAS and cuDNN (seconds, and ~1 GB of the process's
    resident memory that must not count against the first run's memory budget)."""
    conv = torch.nn.Conv2d(1, 4, 3, padding=1).to(device)
    conv(torch.zeros(2, 1, 8, 8, device=device)).sum().backward()
    torch.optim.Adam(conv.parameters()).step()
    if torch.device(device).type == "cuda":
        (torch.ones(8, 8, device=device) @ torch.ones(8, 8, device=device)).sum().item()  # cuBLAS
