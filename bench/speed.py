"""Speed of every chapter's default run, printed as a table (never asserted in tests).

    make bench        # or: .venv/bin/python -m bench.speed

Per experiment: time to the first snapshot (what a learner waits for after Train), time to
finish, and the final metric, run in a thread and through a warm worker process (how the app
runs it). For the CNN, the same model, data and epochs trained by a textbook DataLoader loop,
as ratios: the lab's loop without live views (its data path) and with them. Every run is timed
at full speed (a watchable pace waits on purpose). What live views cost every experiment is
bench/drawing.py (`make bench` runs it next); what the browser sees of a run, and what it costs
the server, bench/live.py.
"""

from __future__ import annotations

import sys
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from bench.drawing import full_speed
from labs import (
    adversarial,
    attention,
    autoencoders,
    autograd,
    bellman,
    blocks,
    collaborative,
    convnets,
    detection,
    dqn,
    ethics,
    feedback_loop,
    gans,
    initialization,
    language,
    normalization,
    optimizers,
    pipeline,
    pipeline_sweeps,
    playground,
    production,
    qlearning,
    recurrent,
    regularization,
    saliency,
    segmentation,
    sentiment,
    seq2seq,
    tabular,
    transfer,
)
from labs.core import mlp
from labs.core.device import configure_threads, pick_device, warm_up
from labs.core.driver import IN_THREAD
from labs.core.runner import TrainingRun
from labs.core.snapshot import Cadence
from labs.core.workers import POOL

EXPERIMENTS = [
    ("autograd", autograd.train, autograd.Config(), "loss", autograd.PREFERS_GPU),
    ("playground", playground.train, playground.Config(), "test_acc", playground.PREFERS_GPU),
    ("convnets", convnets.train, convnets.Config(), "test_acc", convnets.PREFERS_GPU),
    ("optimizers race", optimizers.race_on_surface, optimizers.SurfaceConfig(), None, False),
    ("optimizers net", optimizers.train, optimizers.Config(), "adam test acc", False),
    ("optimizers LR test", optimizers.lr_range_test, optimizers.FinderConfig(), None, False),
    (
        "pipeline (CNN through a DataLoader)",
        pipeline.train,
        pipeline.Config(),
        "test_acc",
        pipeline.PREFERS_GPU,
    ),
    (
        "pipeline sweep (batch size)",
        pipeline_sweeps.sweep,
        pipeline_sweeps.SweepConfig(),
        "images/s",
        pipeline.PREFERS_GPU,
    ),
    (
        "pipeline sweep (workers)",
        pipeline_sweeps.sweep,
        pipeline_sweeps.SweepConfig(sweep="workers"),
        "data wait share",
        pipeline.PREFERS_GPU,
    ),
    ("initialization", initialization.train, initialization.Config(), "test_acc", initialization.PREFERS_GPU),
    ("normalization (3 nets)", normalization.train, normalization.Config(), "residual: test_acc", True),
    ("regularization (2 nets)", regularization.train, regularization.Config(), "regularized: val_acc", True),
    ("recurrent (3 cells)", recurrent.train, recurrent.Config(), "LSTM: test_acc", False),
    ("sentiment (BoW + LSTM)", sentiment.train, sentiment.Config(), "LSTM: acc negated", False),
    ("language (LSTM)", language.train, language.Config(), "val_bits_per_char", True),
    (
        "language (Transformer)",
        language.train,
        language.Config(model="transformer"),
        "val_bits_per_char",
        True,
    ),
    ("attention (reverse)", attention.train, attention.Config(), "greedy_sequence_acc", False),
    ("seq2seq (plain + attention)", seq2seq.train, seq2seq.Config(), "with attention: longest right", False),
    ("transfer (3 ways)", transfer.train, transfer.Config(), "fine-tuned: test_acc", True),
    ("transfer sweep", transfer.sweep, transfer.SweepConfig(), "fine-tuned: test_acc", True),
    ("transfer blocks", blocks.train_blocks, blocks.BlocksConfig(), "residual: test_acc", True),
    ("detection (GIoU + L1)", detection.train, detection.Config(), "GIoU loss, 8×8 grid: mAP@0.5", True),
    ("segmentation (2 nets)", segmentation.train, segmentation.Config(), "U-Net: boundary IoU", True),
    ("tabular (MLP + 2 baselines)", tabular.train, tabular.Config(), "MLP + embeddings: val RMSE", False),
    ("collaborative (3 models)", collaborative.train, collaborative.Config(), "dot product: val RMSE", False),
    ("ethics (4 ways)", ethics.train, ethics.Config(), "no remedy: parity gap", False),
    (
        "ethics feedback loop (2 loops)",
        feedback_loop.train,
        feedback_loop.FeedbackConfig(),
        "own picks only: click concentration (Gini)",
        False,
    ),
    ("autoencoders (3 nets)", autoencoders.train, autoencoders.Config(), "VAE: test_mse", True),
    ("GAN on the plane", gans.train, gans.Config(), "modes_covered", gans.PREFERS_GPU),
    ("Q-learning grid world", qlearning.train_grid, qlearning.GridConfig(), "optimal policy share", False),
    ("Bellman sweeps", bellman.train, bellman.BellmanConfig(), "optimal policy share", False),
    ("DQN on CartPole", dqn.train, dqn.CartPoleConfig(), "greedy mean return", False),
    ("DCGAN on the digits", gans.train_digits, gans.DigitsConfig(), "g_grad_norm", True),
    ("interpretability (8 methods + checks)", saliency.train, saliency.Config(), "digits test_acc", True),
    (
        "adversarial (2 nets)",
        adversarial.train,
        adversarial.Config(),
        "adversarial training: fgsm_acc_at_eps",
        True,
    ),
    ("production (export, int8, prune)", production.train, production.Config(), "test_acc", False),
]


def timed_run(train, cfg, device, remote: bool = False) -> tuple[float, float, dict]:
    cfg = full_speed(cfg)  # a watchable pace would time its waits
    start = time.perf_counter()
    run = TrainingRun(train, cfg, device, executor=POOL if remote else IN_THREAD).start()
    run.wait_for_first_snapshot(600)
    first = time.perf_counter() - start
    run.wait()
    view = run.view()
    latest = {k: v for row in view.history for k, v in row.items()}  # comparisons: each variant's last
    return first, time.perf_counter() - start, latest


def textbook_cnn_seconds(cfg: convnets.Config, device) -> float:
    """The same CNN, data and epochs, trained the way most tutorials do: a DataLoader over a
    TensorDataset, no snapshots, evaluation only at the end."""
    torch.manual_seed(cfg.seed)
    ds = convnets.images(cfg)
    model = convnets.build_model(cfg, ds.X_train.shape[-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loader = DataLoader(TensorDataset(ds.X_train, ds.y_train), batch_size=cfg.batch_size, shuffle=True)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            loss = F.cross_entropy(model(X), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    convnets.evaluate(model, ds.X_test.to(device))
    return time.perf_counter() - start


def textbook_mlp_seconds(r: mlp.Recipe, device) -> float:
    """The deep MLP of chapters 4-5 trained by a DataLoader loop: no snapshots, same steps."""
    torch.manual_seed(r.seed)
    X, y, X_test, _ = mlp.digits(r.seed)
    model = mlp.build(r).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=r.learning_rate, momentum=0.9)
    loader = DataLoader(TensorDataset(X, y), batch_size=r.batch_size, shuffle=True, drop_last=True)
    start, step = time.perf_counter(), 0
    while step < r.steps:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == r.steps:
                break
    model(X_test.to(device)).argmax(1)
    return time.perf_counter() - start


def textbook_char_lm_seconds(cfg: language.Config, device) -> float:
    """The chapter-13 LSTM trained the tutorial way: every window of the text as a dataset,
    a shuffling DataLoader, the same number of steps, no samples or snapshots."""
    from labs.text import stdlib

    torch.manual_seed(cfg.seed)
    corpus = stdlib(cfg.corpus)
    ids = corpus.encode(corpus.text)
    train_ids = ids[: int(0.9 * len(ids))]
    chunks = train_ids.unfold(0, cfg.context + 1, 1)  # a view: (windows, context + 1)
    loader = DataLoader(TensorDataset(chunks), batch_size=cfg.batch_size, shuffle=True)
    model = language.build_model(cfg, len(corpus.vocab)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    start, step = time.perf_counter(), 0
    for (chunk,) in loader:
        chunk = chunk.to(device)
        loss = F.cross_entropy(model(chunk[:, :-1]).flatten(0, 1), chunk[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step == cfg.steps:
            break
    return time.perf_counter() - start


class _FinalOnly(Cadence):
    """A cadence that snapshots only at the last step: the lab's loop without live views."""

    def due(self, step: int) -> bool:
        return step == self.total


def lab_loop_without_live_views(cfg: convnets.Config, device) -> float:
    real = convnets.Cadence
    convnets.Cadence = _FinalOnly  # the same loop and data path, minus the snapshots
    try:
        return timed_run(convnets.train, cfg, device)[1]
    finally:
        convnets.Cadence = real


def main(only: list[str] | None = None) -> None:
    threads = configure_threads()
    warm_up()
    print(f"torch {torch.__version__}, {threads} threads, cuda: {torch.cuda.is_available()}")
    POOL.prestart(1)
    POOL.wait_ready()  # the app starts its workers at the first page load, before any Train
    print(f"\n{'experiment':22} {'mode':8} {'device':7} {'first (s)':>10} {'done (s)':>9}  metric")
    # e.g. `python -m bench.speed adversarial production`: just those rows
    only = sys.argv[1:] if only is None else only
    for name, train, cfg, metric, prefers_gpu in EXPERIMENTS:
        if only and not any(word in name for word in only):
            continue
        device = pick_device(prefers_gpu)
        for mode in ("thread", "worker"):
            first, done, last = timed_run(train, cfg, device, remote=mode == "worker")
            value = f"{metric} {last[metric]:.3f}" if metric and metric in last else ""
            print(f"{name:22} {mode:8} {device.type:7} {first:10.3f} {done:9.2f}  {value}")
    if only:
        return  # the textbook comparisons below are for a full run
    cfg = convnets.Config()
    device = pick_device(convnets.PREFERS_GPU)
    textbook = textbook_cnn_seconds(cfg, device)
    _, ours, _ = timed_run(convnets.train, cfg, device)
    bare = lab_loop_without_live_views(cfg, device)
    print(
        f"\nCNN, {cfg.epochs} epochs on {device.type}: textbook DataLoader loop {textbook:.2f} s; "
        f"lab loop without live views {bare:.2f} s (ratio {bare / textbook:.2f}); "
        f"with live views {ours:.2f} s (ratio {ours / textbook:.2f})"
    )
    r = initialization.recipe(initialization.Config(activation="relu", init="kaiming"))
    textbook = textbook_mlp_seconds(r, device)
    _, ours, _ = timed_run(
        initialization.train, initialization.Config(activation="relu", init="kaiming"), device
    )
    real = mlp.Cadence
    mlp.Cadence = _FinalOnly
    try:
        bare = timed_run(
            initialization.train, initialization.Config(activation="relu", init="kaiming"), device
        )[1]
    finally:
        mlp.Cadence = real
    print(
        f"Deep MLP (20 layers, {r.steps} steps) on {device.type}: textbook DataLoader loop {textbook:.2f} s; "
        f"lab loop without live views {bare:.2f} s (ratio {bare / textbook:.2f}); "
        f"with live views {ours:.2f} s (ratio {ours / textbook:.2f})"
    )
    cfg = language.Config()
    device = pick_device(language.PREFERS_GPU)
    textbook = textbook_char_lm_seconds(cfg, device)
    _, ours, _ = timed_run(language.train, cfg, device)
    real = language.Cadence
    language.Cadence = _FinalOnly
    try:
        bare = timed_run(language.train, cfg, device)[1]
    finally:
        language.Cadence = real
    print(
        f"Char LSTM ({cfg.steps} steps) on {device.type}: textbook DataLoader loop {textbook:.2f} s; "
        f"lab loop without live views {bare:.2f} s (ratio {bare / textbook:.2f}); "
        f"with live views {ours:.2f} s (ratio {ours / textbook:.2f})"
    )
    print("\nHow the live views reach the browser (states per second, server CPU per frame): make bench-live")
    print("What they cost each experiment's run: bench/drawing.py, next")


if __name__ == "__main__":
    main()
