"""Chapter 23 — The training pipeline, and where the time goes.

The CNN chapter's small CNN, trained the ordinary way: a `Dataset` that augments each image as
it is read, a `DataLoader` (batch size, workers, pinned memory), and a loop with the usual
switches (channels-last memory, mixed precision, `torch.compile`). Every step is timed in four
parts, the wait for data, forward (with the loss), backward and the optimizer, and now and then
a few steps run under `torch.profiler` for a table of the operators that took the time.

A checkpoint is saved at the end of a chosen epoch: weights, optimizer, gradient scaler, and
every random state the rest of the run will draw from. Resuming from it (`train(...,
resume=checkpoint)`) continues exactly as if the run had never stopped. The sweeps (batch size,
workers) are labs/pipeline_sweeps.py; the data path labs/pipeline_data.py.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from labs import convnets, pipeline_data, pipeline_sweeps
from labs.core import budget
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, clock, cpu_state_dict

PREFERS_GPU = True  # the page is also about what a GPU changes: CUDA time, memory, pinned copies
PHASES = ("data", "forward", "backward", "optimizer")
PROFILED_STEPS = 4  # steps per profiler window; their times stay out of the live split
# The profiler slows the steps it watches, and reading its table costs more than they do: a
# window opens (after a snapshot) only once the last one is at most this share of the time since.
PROFILE_SHARE = 0.05
COMPILE_SECONDS = 25.0  # torch.compile's first step on 2 cores (Inductor writes and builds C++)
PRECISIONS = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast (GPU)"}


@dataclass(frozen=True)
class Config:
    augmentation: str = knob(
        "affine",
        "Augmentation",
        "What each image goes through as it is read.",
        choices=tuple(pipeline_data.AUGMENTATIONS),
        labels=pipeline_data.AUGMENTATIONS,
    )
    workers: int = knob(
        0, "num_workers", "DataLoader worker processes (0: the training loop reads).", lo=0, hi=4, step=1
    )
    batch_size: int = knob(64, "Batch size", "Images per step.", lo=8, hi=1024, step=8)
    precision: str = knob(
        "fp32",
        "Precision",
        "Autocast's lower precision for the forward pass (fp16 needs a GPU; on a CPU it runs as bf16).",
        choices=tuple(PRECISIONS),
        labels=PRECISIONS,
    )
    channels_last: bool = knob(False, "channels_last", "Images and weights stored pixel-major (NHWC).")
    pin_memory: bool = knob(
        False, "pin_memory", "Batches copied into page-locked memory (matters with a GPU)."
    )
    compile: bool = knob(
        False, "torch.compile", f"Compile the model first (~{COMPILE_SECONDS:.0f} s on 2 cores)."
    )
    checkpoint_epoch: int = knob(
        2,
        "Checkpoint after epoch",
        "Save everything needed to resume at the end of this epoch (0: none).",
        lo=0,
        hi=50,
        step=1,
    )
    epochs: int = knob(4, "Epochs", "Passes over the 4,000 training digits.", lo=1, hi=50, step=1)
    learning_rate: float = knob(3e-3, "Learning rate", "Adam's step size.", lo=1e-4, hi=0.05, log=True)
    seed: int = knob(
        0, "Seed", "Same seed, same batches, same augmentations, same run.", lo=0, hi=9999, step=1
    )


def cost(cfg: Config) -> budget.Cost:
    cnn = convnets.cost(convnets.Config(batch_size=cfg.batch_size, epochs=cfg.epochs, train_size=4000))
    augment = {"none": 0.0, "crop": 0.04e-3, "affine": 0.16e-3, "elastic": 1.2e-3}[cfg.augmentation]
    per_step_wait = augment * cfg.batch_size / (1 + cfg.workers)  # workers share it, roughly
    per_step_wait += COMPILE_SECONDS / cnn.steps if cfg.compile else 0.0
    return budget.Cost(
        cnn.params,
        cnn.activations,
        cnn.steps,
        cnn.step_flops,
        cnn.step_ops + 20,
        data=cnn.data,
        evaluation=cnn.evaluation,
        wait=per_step_wait,
        kind=cnn.kind,
    )


# ---------------------------------------------------------------- the loop


def precision_of(cfg: Config, device: torch.device) -> tuple[torch.dtype | None, list[str]]:
    """Autocast's dtype (None: fp32) and a note when the device cannot do what was asked."""
    if cfg.precision == "fp16" and device.type != "cuda":
        return torch.bfloat16, ["fp16 autocast needs a GPU: this run uses bf16 on the CPU."]
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision], []


class Timer:
    """Wall time of each phase of a step; on a GPU it waits for the queued kernels first, or
    the time would land on whichever phase happens to wait."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.steps = self.images = 0
        self.counting = True  # off while the profiler watches: its own cost is not the step's
        self._last = self.now()

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def lap(self, phase: str) -> None:
        now = self.now()
        if self.counting:
            self.totals[phase] += now - self._last
        self._last = now

    def skip(self) -> None:
        """Time since the last lap counted nowhere (a snapshot, a profiled step)."""
        self._last = self.now()

    def window(self) -> dict:
        """ms per step of each phase and images/s since the last window; starts a new one."""
        n = max(self.steps, 1)
        out = {p: 1e3 * t / n for p, t in self.totals.items()}
        busy = sum(self.totals.values())
        out["images/s"] = self.images / busy if busy else 0.0
        self.totals, self.steps, self.images = dict.fromkeys(PHASES, 0.0), 0, 0
        return out


def train(cfg: Config, device: torch.device, resume: dict | None = None, reference: dict | None = None):
    """The loop every training script has, timed. `resume`: a checkpoint of this same Config
    to continue from; `reference`: the uninterrupted run's curve and final weights, to compare."""
    check(cfg)
    seed_everything(cfg.seed)
    images = pipeline_data.digits(cfg.seed)
    dataset = pipeline_data.Digits(images.X_train, images.y_train, cfg.augmentation)
    loader_g = torch.Generator().manual_seed(cfg.seed)
    pin = cfg.pin_memory and device.type == "cuda"
    loader = pipeline_data.loader(dataset, cfg.batch_size, cfg.workers, pin, loader_g)
    model = pipeline_data.cnn(device, cfg.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    dtype, notes = precision_of(cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if cfg.pin_memory and not pin:
        notes.append("pin_memory only speeds copies to a GPU: there is none here, so it is off.")
    start_epoch = 0
    if resume is not None:
        start_epoch = restore(resume, model, opt, scaler, loader_g, device)
        notes.append(f"Resumed from the checkpoint saved after epoch {start_epoch}.")
    net = torch.compile(model) if cfg.compile else model
    per_epoch = len(loader)
    total = per_epoch * cfg.epochs
    X_test, y_test = images.X_test.to(device), images.y_test.to(device)
    cadence, watch, timer = Cadence(total, max_snaps=60, min_seconds=0.3), LossWatch(), Timer(device)
    profiling, checkpoint, batches, step = None, None, None, 0
    now, profile_at = clock(), -float("inf")  # when the next profiler window may open
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    for step in steps(total):
        if step <= start_epoch * per_epoch:
            continue  # resumed: these steps were trained before the checkpoint
        at = (step - 1) % per_epoch
        timer.counting = profiling is None
        with record_function("data"):
            if at == 0:
                batches = pipeline_data.epoch_batches(loader)
            x, y = next(batches)
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        timer.lap("data")
        with record_function("forward"), autocast:
            loss = F.cross_entropy(net(x), y)
        timer.lap("forward")
        with record_function("backward"):
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
        timer.lap("backward")
        with record_function("optimizer"):
            scaler.step(opt)
            scaler.update()
        timer.lap("optimizer")
        if timer.counting:
            timer.steps, timer.images = timer.steps + 1, timer.images + len(y)
        log(step, train_loss=loss)
        watch.see(loss=loss)
        if profiling is not None and step >= profiling[1]:
            profiling[0].__exit__(None, None, None)
            operators = top_operators(profiling[0], PROFILED_STEPS, device)
            began, ended = profiling[2], now()
            profile_at = ended + (ended - began) * (1 - PROFILE_SHARE) / PROFILE_SHARE
            profiling = None
            timer.skip()
            yield Snapshot(step, total, view={"operators": operators})
        if at == per_epoch - 1 and step // per_epoch == cfg.checkpoint_epoch < cfg.epochs and resume is None:
            checkpoint = save(model, opt, scaler, loader_g, step // per_epoch)
            notes.append(f"Checkpoint saved after epoch {cfg.checkpoint_epoch} (step {step}).")
        if cadence.due(step):
            watch.check(step)
            metrics = {
                "test_acc": accuracy(model, X_test, y_test),
                "epoch": step / per_epoch,
                **timer.window(),
            }
            if device.type == "cuda":  # the most the run has held at once: weights, batches, activations
                metrics["GPU MB"] = torch.cuda.max_memory_allocated(device) / 2**20
            yield Snapshot(step, total, metrics, notes=notes)
            notes = []
            if profiling is None and step < total - PROFILED_STEPS and now() >= profile_at:
                profiling = (_profiler(device), step + PROFILED_STEPS, now())
                profiling[0].__enter__()
            timer.skip()
    if profiling is not None:
        profiling[0].__exit__(None, None, None)
    final = {"model": cpu_state_dict(model)}
    if checkpoint is not None:
        final["checkpoint"] = checkpoint
    yield Snapshot(step, total, view=compared(reference, final["model"], start_epoch))
    yield Snapshot(step, total, final=True, state_dict=final)


def _profiler(device: torch.device):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    return profile(activities=activities, record_shapes=False)


def top_operators(prof, n_steps: int, device: torch.device, k: int = 10) -> list[dict]:
    """The operators that took the most time of their own, per step: PyTorch's ops (aten::…),
    not the four phase labels, which only group them."""
    if device.type == "cuda":  # a kernel's time is found through its launch: PyTorch's own table
        times = {
            e.key: (e.count, e.self_cpu_time_total, e.self_device_time_total) for e in prof.key_averages()
        }
    else:
        times = cpu_self_times(prof.profiler.kineto_results.events())
    rows = {
        name: t for name, t in times.items() if name not in PHASES and not name.startswith("ProfilerStep")
    }
    total = sum(t[1] for t in rows.values()) or 1.0
    table = []
    for name, (count, cpu_us, device_us) in sorted(rows.items(), key=lambda r: r[1][1], reverse=True)[:k]:
        row = {
            "operator": name,
            "calls per step": count / n_steps,
            "CPU ms per step": cpu_us / 1e3 / n_steps,
            "share of CPU time": cpu_us / total,
        }
        if device.type == "cuda":
            row["CUDA ms per step"] = device_us / 1e3 / n_steps
        table.append(row)
    return table


def cpu_self_times(events) -> dict[str, tuple[int, float, float]]:
    """{operator: (calls, µs of its own, 0)} from a profiler's raw CPU events, as `key_averages()`
    counts them: each event's time less its children's (the events nested inside it on its
    thread), an event that is the only child of one of its own name merged into it (aten::mean
    calls aten::mean). The same table, read ~15x faster: key_averages builds an object per event
    in Python (a window of 4 pipeline steps with their augmentation holds ~25,000 events: 1.3 s,
    a quarter of a default run)."""
    names, durations, parents = [], [], []
    by_thread: dict[int, list] = {}
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU and not e.is_async():
            by_thread.setdefault(e.start_thread_id(), []).append((e.start_ns(), -e.duration_ns(), e.name()))
    for spans in by_thread.values():
        spans.sort()  # by start; of two that start together, the longer (the parent) first
        around: list[tuple[int, int]] = []  # (end, index) of the spans this one is inside
        for start, minus_duration, name in spans:
            while around and around[-1][0] <= start:
                around.pop()
            parents.append(around[-1][1] if around else -1)
            names.append(name)
            durations.append(-minus_duration)
            around.append((start - minus_duration, len(names) - 1))
    children: list[list[int]] = [[] for _ in names]
    for child, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(child)
    merged = set()
    for child in range(len(names)):  # parents come first: a chain of one name merges at once
        parent = parents[child]
        if parent >= 0 and names[parent] == names[child] and children[parent] == [child]:
            children[parent] = children[child]
            for grandchild in children[child]:
                parents[grandchild] = parent
            merged.add(child)
    times: dict[str, list] = {}
    for i, name in enumerate(names):
        if i not in merged:
            entry = times.setdefault(name, [0, 0])
            entry[0] += 1
            entry[1] += durations[i] - sum(durations[c] for c in children[i])
    return {name: (count, ns / 1e3, 0.0) for name, (count, ns) in times.items()}


@torch.no_grad()
def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    right = sum(
        (model(X[i : i + 500]).argmax(1) == y[i : i + 500]).sum().item() for i in range(0, len(X), 500)
    )
    model.train()
    return right / len(X)


# ---------------------------------------------------------------- checkpoint and resume


def save(model, opt, scaler, loader_g: torch.Generator, epoch: int) -> dict:
    """What the rest of the run depends on: weights, Adam's moments and step counts, the scaler,
    the loader's generator (the next epochs' order and worker seeds) and the process's own
    random state (augmentations drawn in the loop when there are no workers)."""
    state = {
        "epoch": epoch,
        "model": cpu_state_dict(model),
        "optimizer": copy.deepcopy(_to_cpu(opt.state_dict())),
        "scaler": scaler.state_dict(),
        "loader_generator": loader_g.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict, model, opt, scaler, loader_g: torch.Generator, device: torch.device) -> int:
    """Put everything back as it was at the checkpoint; returns the epoch it was saved after."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])  # moves the moments to the weights' device
    scaler.load_state_dict(state["scaler"])
    loader_g.set_state(state["loader_generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return int(state["epoch"])


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj


def compared(reference: dict | None, final: dict, start_epoch: int) -> dict:
    """A resumed run against the uninterrupted one: the largest difference of any final weight."""
    if reference is None:
        return {}
    apart = max((final[k].float() - reference["final"][k].float()).abs().max().item() for k in final)
    return {"resumed": {"from_epoch": start_epoch, "weights_apart": apart, "curve": reference["curve"]}}


# ---------------------------------------------------------------- questions


def _slowest_phase(view) -> tuple[str, str]:
    times = {p: view.last(p, 0.0) for p in PHASES}
    slowest = max(times, key=times.get)
    answer = "waiting for data" if slowest == "data" else slowest
    split = ", ".join(f"{p} {t:.1f}" for p, t in times.items())
    return answer, f"ms per step in the last window: {split}."


def _sweep_shape(view) -> tuple[str, str]:
    rows = view.view["rows"]
    speeds = [r["images/s"] for r in rows]
    rise, last = max(speeds) / speeds[0], speeds[-1] / max(speeds[:-1])
    answer = (
        "rises, then flattens"
        if rise > 1.3 and last < 1.2
        else "rises all the way"
        if rise > 1.3
        else "stays the same"
    )
    steps_ = ", ".join(f"{r['setting']}: {r['images/s']:,.0f}" for r in rows)
    return answer, f"Images per second by batch size: {steps_}."


def _waiting_without_workers(view) -> tuple[str, str]:
    share = view.view["rows"][0]["data wait share"]
    answer = "more than half" if share > 0.5 else "about a quarter" if share > 0.1 else "almost none"
    return answer, f"With no workers, {share:.0%} of the time went to waiting for the next batch."


QUESTIONS = [
    Question(
        "Each image is rotated, shifted and scaled as it is read, and there are no workers. Which "
        "part of a training step takes the longest?",
        ("waiting for data", "forward", "backward", "optimizer"),
        {"augmentation": "affine", "workers": 0},
        _slowest_phase,
        "Augmenting 64 images one by one in Python costs more than the CNN's whole forward and "
        "backward pass on them: the model waits for its data. Workers make the next batches "
        "while the model trains on this one.",
    ),
]

SWEEP_QUESTIONS = [
    Question(
        "From 8 images a step to 512, how do the images trained per second change?",
        ("rises, then flattens", "rises all the way", "stays the same"),
        {"sweep": "batch"},
        _sweep_shape,
        "Every operation costs a fixed few microseconds whatever its size: with 8 images that "
        "fixed cost is most of the step. Larger batches spread it over more images until the "
        "arithmetic itself is the cost, and then a bigger batch is no faster per image.",
    ),
    Question(
        "The whole data path with the affine augmentation and no workers: how much of the time "
        "goes to waiting for the next batch?",
        ("more than half", "about a quarter", "almost none"),
        {"sweep": "workers", "augmentation": "affine"},
        _waiting_without_workers,
        "With no workers the loop augments every image itself, between two steps. Each worker "
        "is a process that does it in parallel; with as many as the cores allow, the wait "
        "shrinks to the hand-over.",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
SWEEP = Experiment(
    pipeline_sweeps.SweepConfig, pipeline_sweeps.sweep, pipeline_sweeps.sweep_cost, PREFERS_GPU
)
EXPERIMENTS = {"train": EXPERIMENT, "sweep": SWEEP}  # the page's two buttons
