"""Chapter 15 — Autoencoders & VAEs.

An autoencoder, a denoising autoencoder and a VAE learn the 28×28 digits side by side under
one seed, each squeezing a digit through a latent code of 2 numbers by default (up to 16).
The learner watches the test set's codes spread out on the latent plane, coloured by digit,
the reconstructions of clean and corrupted digits, and the VAE's reconstruction and KL terms.
After training, a point on the plane (or a grid of them) is decoded, and two digits are
interpolated: the VAE's plane decodes to digits between the clusters, the plain AE's has holes.

Anomaly detection: with one digit held out of training, each model's reconstruction error
becomes an anomaly score; every snapshot draws the error histograms of the digits it knows and
of the held-out one, the ROC curve and its AUC, and the test digits it reconstructs worst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import metrics as skm
from torch import nn
from torch.nn import functional as F

from figures.variants import metric
from labs.core import budget, data
from labs.core.compare import side_by_side
from labs.core.config import check, knob
from labs.core.contract import Experiment
from labs.core.control import log, steps
from labs.core.device import seed_everything
from labs.core.divergence import LossWatch
from labs.core.questions import Question
from labs.core.snapshot import Cadence, Snapshot, cpu_state_dict, to_numpy

PREFERS_GPU = True
MODELS = {"ae": "AE", "dae": "denoising AE", "vae": "VAE"}
SHOWN = 8  # test digits whose reconstructions are drawn
MAPPED = 1000  # test digits placed on the latent map
GRID = 12  # decoded points per side of the latent grid
HELD_OUT = {"none": "none: train on every digit"} | {
    str(d): f"{d}: never shown in training" for d in range(10)
}
ERROR_BINS = 30  # bins of the reconstruction-error histograms
WORST = 8  # the test digits with the largest error, drawn


@dataclass(frozen=True)
class Config:
    models: tuple = knob(
        tuple(MODELS),
        "Compare",
        "Trained side by side from one seed, on the same batches.",
        choices=tuple(MODELS),
        multi=True,
        labels=MODELS,
    )
    latent_dim: int = knob(
        2, "Latent dimensions", "The code each digit is squeezed into.", lo=2, hi=16, step=1
    )
    noise: float = knob(
        0.5,
        "Corruption",
        "Std of the Gaussian noise added to the denoising AE's inputs, and to the test "
        "digits it is judged on.",
        lo=0.0,
        hi=1.0,
        step=0.05,
    )
    beta: float = knob(
        1.0, "β (VAE)", "Weight of the KL term: 0 is an AE with noise.", lo=0.0, hi=8.0, step=0.1
    )
    width: int = knob(
        256, "Width", "Hidden units of the encoder and of the decoder.", lo=32, hi=1024, step=32
    )
    learning_rate: float = knob(1e-3, "Learning rate", "Adam's step size.", lo=1e-5, hi=0.03, log=True)
    batch_size: int = knob(128, "Batch size", "Digits per step.", lo=16, hi=512, step=16)
    steps: int = knob(1000, "Steps", "For each model.", lo=50, hi=20000, step=50)
    held_out: str = knob(
        "none",
        "Held-out digit (anomalies)",
        "Train without this digit, then score every test digit by its reconstruction error: "
        "is the digit never seen the worst reconstructed?",
        choices=tuple(HELD_OUT),
        labels=HELD_OUT,
    )
    seed: int = knob(0, "Seed", "Same seed, same run.", lo=0, hi=9999, step=1)


class AutoEncoder(nn.Module):
    """784 → width → latent (for the VAE: a mean and a log-variance) → width → 784 in [0, 1]."""

    def __init__(self, latent_dim: int, width: int, variational: bool):
        super().__init__()
        self.variational = variational
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU())
        self.mean = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim) if variational else None
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, 784))

    def encode(self, x) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x)
        return self.mean(h), (self.log_var(h) if self.variational else None)

    def decode_logits(self, z) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)

    def decode(self, z) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x):
        mean, log_var = self.encode(x)
        z = mean
        if self.variational and self.training:  # the reparameterization trick
            z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        return self.decode_logits(z), mean, log_var


def build(kind: str, cfg: Config) -> AutoEncoder:
    return AutoEncoder(cfg.latent_dim, cfg.width, variational=kind == "vae")


def corrupt(x: torch.Tensor, noise: float, g: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise of std `noise`, clipped back to [0, 1]."""
    return (x + noise * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)


def losses(model: AutoEncoder, x_in: torch.Tensor, target: torch.Tensor, beta: float):
    """(total, reconstruction, KL), each per digit: binary cross-entropy summed over pixels,
    and for the VAE the KL divergence of the code's Gaussian from N(0, I)."""
    logits, mean, log_var = model(x_in)
    recon = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / len(x_in)
    if log_var is None:
        return recon, recon, torch.zeros((), device=x_in.device)
    kl = -0.5 * (1 + log_var - mean**2 - log_var.exp()).sum() / len(x_in)
    return recon + beta * kl, recon, kl


def cost(cfg: Config) -> budget.Cost:
    one = []
    for _ in cfg.models:
        p, f, kept = budget.mlp([784, cfg.width, 2 * cfg.latent_dim, cfg.width, 784], cfg.batch_size)
        one.append(
            budget.Cost(p, kept, cfg.steps, f, 60, data=5000 * 784, evaluation=MAPPED * (784 * 3 + cfg.width))
        )
    return budget.total(one)


def digits(seed: int) -> data.ImageSet:
    return data.image_set("mnist_subset", seed=seed)


def train(cfg: Config, device: torch.device):
    """Each chosen model, side by side: same seed, same batches."""
    check(cfg)
    yield from side_by_side({MODELS[k]: train_one(k, cfg, device) for k in cfg.models}, device)


def train_one(kind: str, cfg: Config, device: torch.device):
    g = seed_everything(cfg.seed)
    ds = digits(cfg.seed)
    X, X_test, y_test = ds.X_train.to(device), ds.X_test.to(device), ds.y_test
    held = None if cfg.held_out == "none" else int(cfg.held_out)
    if held is not None:  # the normal data: every digit but the held-out one
        X = X[(ds.y_train != held).to(device)]
    shown = X_test[:SHOWN]
    shown_noisy = corrupt(shown, cfg.noise, torch.Generator().manual_seed(cfg.seed + 1))
    test_noisy = corrupt(X_test, cfg.noise, torch.Generator().manual_seed(cfg.seed + 2))
    model = build(kind, cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    cadence = Cadence(cfg.steps, max_snaps=50, min_seconds=0.15)
    beta = cfg.beta if kind == "vae" else 0.0
    view = {
        "labels": y_test[:MAPPED].numpy(),
        "originals": to_numpy(shown[:, 0]),
        "corrupted": to_numpy(shown_noisy[:, 0]),
    }
    step = 0
    watch = LossWatch()
    for step in steps(cfg.steps):
        x = X[torch.randint(0, len(X), (cfg.batch_size,), generator=g).to(device)]
        x_in = corrupt(x, cfg.noise, g) if kind == "dae" else x
        total, recon, kl = losses(model, x_in, x, beta)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        log(step, train_loss=total, **({"recon": recon, "kl": kl} if kind == "vae" else {}))
        if cadence.due(step):
            watch.check(step, loss=total)
            metrics, picture = measure(model, X_test, test_noisy, shown, shown_noisy)
            if held is not None:
                more, drawn = anomalies(model, X_test, y_test, held)
                metrics, picture = metrics | more, picture | drawn
            yield Snapshot(step, cfg.steps, metrics, view={**view, **picture})
            view = {}
    yield Snapshot(step, cfg.steps, final=True, state_dict=cpu_state_dict(model))


@torch.no_grad()
def measure(model: AutoEncoder, X_test, test_noisy, shown, shown_noisy) -> tuple[dict, dict]:
    """Test reconstruction error of clean and of corrupted digits (mean squared error per pixel
    against the clean digit), the codes of the mapped test digits, the shown reconstructions."""
    model.eval()
    clean_mse = F.mse_loss(model.decode(model.encode(X_test)[0]), X_test).item()
    noisy_mse = F.mse_loss(model.decode(model.encode(test_noisy)[0]), X_test).item()
    codes = model.encode(X_test[:MAPPED])[0]
    picture = {
        "plane": to_numpy(plane_of(codes)),
        "from_clean": to_numpy(model.decode(model.encode(shown)[0])[:, 0]),
        "from_corrupted": to_numpy(model.decode(model.encode(shown_noisy)[0])[:, 0]),
    }
    model.train()
    return {"test_mse": clean_mse, "corrupted_mse": noisy_mse}, picture


@torch.no_grad()
def anomalies(model: AutoEncoder, X_test, y_test, held: int) -> tuple[dict, dict]:
    """Reconstruction error as an anomaly score for the held-out digit: its AUC (the chance that
    a held-out digit scores above a known one), the ROC curve, both histograms over one range,
    and the WORST reconstructed test digits."""
    model.eval()
    rebuilt = model.decode(model.encode(X_test)[0])
    model.train()
    error = ((rebuilt - X_test) ** 2).mean((1, 2, 3)).cpu().numpy()
    novel = y_test.numpy() == held
    edges = np.linspace(0.0, float(np.quantile(error, 0.995)), ERROR_BINS + 1)
    worst = np.argsort(-error)[:WORST]
    fpr, tpr = roc_points(error, novel)
    return {"anomaly AUC": float(skm.roc_auc_score(novel, error))}, {
        "error_edges": edges,
        "error_known": np.histogram(np.clip(error[~novel], 0, edges[-1]), edges)[0] / max(1, (~novel).sum()),
        "error_held": np.histogram(np.clip(error[novel], 0, edges[-1]), edges)[0] / max(1, novel.sum()),
        "roc": np.stack([fpr, tpr]),
        "worst": to_numpy(X_test[worst][:, 0]),
        "worst_rebuilt": to_numpy(rebuilt[worst][:, 0]),
        "worst_labels": y_test.numpy()[worst],
        "held_out": held,
    }


def roc_points(score: np.ndarray, positive: np.ndarray, most: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's ROC curve (false and true positive rates as the threshold falls), thinned
    to at most `most` points for drawing."""
    fpr, tpr, _ = skm.roc_curve(positive, score)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(most, len(fpr))).astype(int))
    return fpr[keep], tpr[keep]


def plane_of(codes: torch.Tensor) -> torch.Tensor:
    """2-D coordinates of the codes: themselves for a 2-D latent, else their top two principal
    components (so a 16-D code still has a map)."""
    if codes.shape[1] == 2:
        return codes
    centred = codes - codes.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


# ---------------------------------------------------------------- after training


def load(cfg: Config, state_dicts: dict[str, dict]) -> dict[str, AutoEncoder]:
    by_label = {label: kind for kind, label in MODELS.items()}
    models = {}
    for label, state in state_dicts.items():
        model = build(by_label[label], cfg)
        model.load_state_dict(state)
        models[label] = model.eval()
    return models


@torch.no_grad()
def decode(model: AutoEncoder, z: np.ndarray) -> np.ndarray:
    """Images (n, 28, 28) for codes (n, latent_dim)."""
    return to_numpy(model.decode(torch.as_tensor(np.asarray(z), dtype=torch.float32))[:, 0])


@torch.no_grad()
def codes_of(model: AutoEncoder, X: torch.Tensor) -> torch.Tensor:
    return model.encode(X)[0]


def latent_box(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the test codes live: the 1st and 99th percentile of each dimension."""
    return torch.quantile(codes, 0.01, dim=0), torch.quantile(codes, 0.99, dim=0)


def latent_grid(model: AutoEncoder, codes: torch.Tensor, n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Codes on an n×n grid across the first two dimensions of where the test codes live
    (others at their median), and the decoded images: (codes (n*n, d), images (n*n, 28, 28))."""
    lo, hi = latent_box(codes)
    base = codes.median(0).values
    a, b = torch.meshgrid(torch.linspace(lo[0], hi[0], n), torch.linspace(hi[1], lo[1], n), indexing="xy")
    grid = base.repeat(n * n, 1)
    grid[:, 0], grid[:, 1] = a.flatten(), b.flatten()
    return grid.numpy(), decode(model, grid.numpy())


def interpolate(model: AutoEncoder, a: torch.Tensor, b: torch.Tensor, n: int = 10) -> np.ndarray:
    """Decoded images along the straight line between the codes of digits a and b (1, 1, 28, 28)."""
    za, zb = codes_of(model, a)[0], codes_of(model, b)[0]
    t = torch.linspace(0, 1, n)[:, None]
    return decode(model, ((1 - t) * za + t * zb).numpy())


# ---------------------------------------------------------------- a judge for decoded digits


_JUDGE: dict[int, nn.Module] = {}


def judge(seed: int = 0) -> nn.Module:
    """A small MLP digit classifier (~95% on the test digits), trained once per process: it
    scores whether a decoded image looks like any digit at all."""
    if seed not in _JUDGE:
        g = torch.Generator().manual_seed(seed + 30_000)
        torch.manual_seed(seed + 30_000)
        ds = digits(seed)
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        with torch.enable_grad():  # callers may be scoring under no_grad
            _fit_judge(net, opt, ds, g)
        _JUDGE[seed] = net.eval()
    return _JUDGE[seed]


def _fit_judge(net: nn.Module, opt, ds: data.ImageSet, g: torch.Generator) -> None:
    for _ in range(600):
        batch = torch.randint(0, len(ds.X_train), (128,), generator=g)
        loss = F.cross_entropy(net(ds.X_train[batch]), ds.y_train[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def grid_confidence(model: AutoEncoder, codes: torch.Tensor, seed: int = 0, n: int = 16) -> float:
    """How digit-like the latent plane is between the clusters: the judge's mean confidence
    (its top class probability) on images decoded from an n×n grid over where the codes live."""
    _, images = latent_grid(model, codes, n)
    probs = F.softmax(judge(seed)(torch.from_numpy(images)), dim=1)
    return float(probs.max(1).values.mean())


@torch.no_grad()
def decoder_inputs(model: AutoEncoder, X: torch.Tensor, draws: int = 4) -> torch.Tensor:
    """The codes the decoder trains on: an AE's are its codes; a VAE's are samples around each
    mean, μ + σ·ε, `draws` per digit (a fixed stream, so a finished run always measures alike)."""
    mean, log_var = model.encode(X)
    if log_var is None:
        return mean
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(draws, *mean.shape, generator=g)
    return (mean + eps * torch.exp(0.5 * log_var)).reshape(-1, mean.shape[1])


def holes(codes: torch.Tensor, radius: float = 0.1, probes: int = 2000) -> float:
    """The share of the latent plane's probable region the decoder never trained on. Points are
    drawn from a Gaussian fitted to `codes` (how one would sample new digits), and a point is in
    a hole when nothing in `codes` lies within `radius` of it, both measured in units of the
    codes' own spread (whitened), so an AE's and a VAE's planes compare at any scale."""
    c = codes[:, :2].double()
    centre, spread = c.mean(0), torch.linalg.cholesky(torch.cov(c.T))
    whitened = torch.linalg.solve_triangular(spread, (c - centre).T, upper=False).T
    probe = torch.randn(probes, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return float((torch.cdist(probe, whitened).min(1).values > radius).double().mean())


# ---------------------------------------------------------------- questions


def _mse(view, kind: str, which: str) -> float:
    return view.last(metric(MODELS[kind], which), math.inf)


def _denoiser_wins(view) -> tuple[str, str]:
    ae, dae = _mse(view, "ae", "corrupted_mse"), _mse(view, "dae", "corrupted_mse")
    answer = "the denoising AE" if dae < ae else "the plain AE"
    return answer, f"Error on corrupted test digits (MSE per pixel): AE {ae:.4f}, denoising AE {dae:.4f}."


def _clean_error_close(view) -> tuple[str, str]:
    ae, dae = _mse(view, "ae", "test_mse"), _mse(view, "dae", "test_mse")
    answer = "the denoising AE" if dae < ae else "the plain AE"
    return answer, f"Error on clean test digits (MSE per pixel): AE {ae:.4f}, denoising AE {dae:.4f}."


def _ones_found(view) -> tuple[str, str]:
    auc = view.last(metric(MODELS["ae"], "anomaly AUC"), 0.5)
    answer = "yes, better than chance" if auc > 0.5 else "no, worse than chance"
    return answer, f"AUC of the AE's reconstruction error for the 1s: {auc:.2f} (0.5 is chance)."


QUESTIONS = [
    Question(
        "Corrupt the test digits with noise of std 0.5. Whose reconstruction is closer to the clean digit?",
        ("the plain AE", "the denoising AE"),
        {"models": ("ae", "dae"), "noise": 0.5},
        _denoiser_wins,
        "The denoising AE was trained to map noisy digits to clean ones, so it learned to ignore "
        "what noise looks like; the plain AE faithfully encodes the noise too.",
    ),
    Question(
        "And on clean test digits, with a 2-D code: who reconstructs better?",
        ("the plain AE", "the denoising AE"),
        {"models": ("ae", "dae"), "noise": 0.5},
        _clean_error_close,
        "The plain AE spends its two numbers on exactly the digits it sees; the denoising AE "
        "learned a harder task, and its code is tuned to noisy inputs.",
    ),
    Question(
        "Train the AE without any 1s, then score every test digit by its reconstruction error. Will "
        "the 1s, never seen, score higher than the digits it knows (AUC above 0.5)?",
        ("yes, better than chance", "no, worse than chance"),
        {"models": ("ae",), "held_out": "1", "latent_dim": 8},
        _ones_found,
        "A 1 is a single stroke: few pixels, easy to draw for a decoder that learned the strokes of "
        "every other digit, so its error is low even though it is new. Reconstruction error finds "
        "what is hard to draw, not what is new; held-out 5s, drawn with strokes the others lack, "
        "are found (AUC near 0.9).",
    ),
]

EXPERIMENT = Experiment(Config, train, cost, PREFERS_GPU)
EXPERIMENTS = {"": EXPERIMENT}  # one experiment on its page (labs/core/contract.py)
