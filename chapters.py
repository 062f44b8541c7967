"""The chapter registry: one list drives the navigation, the home page, the page tests and
the README's chapter list, so none of them can drift from the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PAGES = Path(__file__).resolve().parent / "pages"  # one Streamlit page per chapter
HOME = str(PAGES / "home.py")

PARTS = (
    "Foundations",
    "Training technique",
    "Convolutions",
    "Tables & recommendations",
    "Sequences",
    "Generative models",
    "Reinforcement learning",
    "Interpretability & production",
)


KEY_SEPARATOR = "--"


def run_key(slug: str, part: str = "") -> str:
    """The key of one experiment of a page: its runs, widgets and session state live under it.
    A page with one experiment uses its slug; several use "<slug>--<part>"."""
    return f"{slug}{KEY_SEPARATOR}{part}" if part else slug


def page_of(key: str) -> str:
    """The page a run key belongs to (a learner has one live run per page)."""
    return key.split(KEY_SEPARATOR, 1)[0]


def part_of(key: str) -> str:
    """The experiment's part name within its page ("" on a one-experiment page)."""
    return key.split(KEY_SEPARATOR, 1)[1] if KEY_SEPARATOR in key else ""


def link_prefix(part: str) -> str:
    """How a page with several experiments names one's settings in a shared link: "<part>."."""
    return f"{part}." if part else ""


@dataclass(frozen=True)
class Chapter:
    number: int
    slug: str  # pages/<slug>.py, labs/<slug>.py, content/<slug>.md, and the URL path
    title: str
    part: str
    summary: str
    icon: str
    smoke: dict = field(default_factory=dict)  # URL settings for a quick run (tests, demos)
    parts: tuple[str, ...] = ("",)  # the lab's EXPERIMENTS, in the order of the page's Train buttons
    long_run: dict = field(default_factory=dict)  # URL settings for a run long enough to Stop
    suffix: str = ""  # "b" for 12b: a chapter added beside another, after it

    @property
    def code(self) -> str:
        """The chapter's number as the course writes it: 12, 12b."""
        return f"{self.number}{self.suffix}"

    @property
    def order(self) -> tuple[int, str]:
        return self.number, self.suffix

    @property
    def run_keys(self) -> tuple[str, ...]:
        return tuple(run_key(self.slug, part) for part in self.parts)

    @property
    def page(self) -> str:
        """The page's file, as an absolute path (the navigation script, pages/navigation.py,
        hands Streamlit absolute paths)."""
        return str(PAGES / f"{self.slug}.py")

    @property
    def label(self) -> str:
        return f"{self.code}. {self.title}"


CHAPTERS = (
    Chapter(
        1,
        "autograd",
        "Tensors, autograd & gradient descent",
        "Foundations",
        "Fit a curve by gradient descent three ways; the loss surface, each gradient, the graph.",
        "📉",
        {"steps": "50"},
        long_run={"steps": "100000", "learning_rate": "0.01", "speed": "full"},
    ),
    Chapter(
        2,
        "playground",
        "Neural network playground",
        "Foundations",
        "A fully connected net on 2-D data: boundary, every neuron, gradient flow, IG.",
        "🧠",
        {"epochs": "20"},
        long_run={"epochs": "1000"},
    ),
    Chapter(
        3,
        "optimizers",
        "Optimizers & learning rate",
        "Training technique",
        "SGD to AdamW racing on surfaces and on a real net; LR range test; schedules.",
        "🏁",
        {"surface.steps": "60", "net.steps": "60", "finder.steps": "40"},
        ("surface", "finder", "net"),
        long_run={"surface.steps": "10000", "surface.surface": "rosenbrock"},
    ),
    Chapter(
        4,
        "initialization",
        "Initialization, activations & depth",
        "Training technique",
        "Vanishing and exploding gradients, seen layer by layer in a net up to 50 deep.",
        "🌱",
        {"depth": "6", "steps": "30"},
        long_run={"steps": "3000", "depth": "30", "width": "64"},
    ),
    Chapter(
        5,
        "normalization",
        "Normalization & residual connections",
        "Training technique",
        "Plain, BatchNorm, LayerNorm and residual nets side by side under one seed.",
        "🧱",
        {"depth": "4", "steps": "30"},
        long_run={"steps": "3000"},
    ),
    Chapter(
        6,
        "regularization",
        "Overfitting & regularization",
        "Training technique",
        "A big net memorizes few digits; weight decay, dropout, augmentation, early stopping.",
        "🛡️",
        {"epochs": "5"},
        long_run={"epochs": "200", "train_size": "2000"},
    ),
    Chapter(
        23,
        "pipeline",
        "The training pipeline: where the time goes",
        "Training technique",
        "A CNN through a real DataLoader: workers, batch size, precision, profiler; checkpoint and resume.",
        "⏱️",
        {
            "train.epochs": "2",
            "train.checkpoint_epoch": "1",
            "train.augmentation": "crop",
            "sweep.seconds": "0.2",
            "sweep.largest_batch": "32",
        },
        ("train", "sweep"),
        long_run={"train.epochs": "50"},
    ),
    Chapter(
        7,
        "convnets",
        "Convolutional networks",
        "Convolutions",
        "A CNN reads digits: filters, feature maps, mistakes, four Captum methods.",
        "🔍",
        {"dataset": "digits8", "epochs": "2"},
        long_run={"epochs": "30"},
    ),
    Chapter(
        8,
        "transfer",
        "Modern CNNs & transfer learning",
        "Convolutions",
        "Plain, residual and dense blocks; a pre-trained CNN adapted with five labels a digit, three ways.",
        "♻️",
        {
            "adapt.steps": "20",
            "adapt.pretrain_steps": "50",
            "sweep.points": "5,20",
            "sweep.steps": "20",
            "sweep.pretrain_steps": "50",
            "blocks.steps": "20",
            "blocks.depth": "4",
        },
        ("adapt", "sweep", "blocks"),
        long_run={"adapt.steps": "3000", "adapt.labels_per_class": "500"},
    ),
    Chapter(
        9,
        "segmentation",
        "Segmentation",
        "Convolutions",
        "A U-Net labels every pixel of shapes on noisy textures; the same net without skips blurs the edges.",
        "🧩",
        {"steps": "20"},
        long_run={"steps": "3000"},
    ),
    Chapter(
        20,
        "detection",
        "Object detection",
        "Convolutions",
        "A one-stage grid detector finds and boxes shapes; NMS, mAP and precision–recall; GIoU vs L1; IG.",
        "📦",
        {"steps": "20", "train_scenes": "100"},
        long_run={"steps": "10000"},
    ),
    Chapter(
        10,
        "tabular",
        "Tabular data & embeddings",
        "Tables & recommendations",
        "Store ids as learned embeddings beat one-hot; boosted trees beside; ablation, IG, permutation.",
        "🧾",
        {"epochs": "2", "rows": "1000"},
        long_run={"epochs": "500", "rows": "50000"},
    ),
    Chapter(
        11,
        "collaborative",
        "Collaborative filtering",
        "Tables & recommendations",
        "Users and films as learned vectors: ratings alone sort films by a hidden genre; biases vs taste.",
        "🎬",
        {"epochs": "2"},
        long_run={"epochs": "500"},
    ),
    Chapter(
        15,
        "autoencoders",
        "Autoencoders & VAEs",
        "Generative models",
        "An AE, a denoising AE and a VAE map the digits onto a plane; decode any point, walk between "
        "digits; a held-out digit as an anomaly.",
        "🗜️",
        {"steps": "100"},
        long_run={"steps": "20000"},
    ),
    Chapter(
        16,
        "gans",
        "GANs",
        "Generative models",
        "A GAN on the plane, as in GAN Lab: D's verdict, G's push on each point, mode collapse; "
        "a DCGAN draws digits.",
        "🎭",
        {"toy.steps": "100", "digits.steps": "50"},
        ("toy", "digits"),
        long_run={"toy.steps": "50000"},
    ),
    Chapter(
        17,
        "reinforcement",
        "Reinforcement learning",
        "Reinforcement learning",
        "Q-learning walks a grid world to the optimal policy; Bellman backups sweep by sweep; a DQN "
        "balances CartPole.",
        "🕹️",
        {"grid.episodes": "50", "bellman.sweep_ms": "0", "cartpole.steps": "1000"},
        ("grid", "bellman", "cartpole"),
        long_run={"grid.episodes": "20000", "grid.watch_ms": "2"},
    ),
    Chapter(
        12,
        "recurrent",
        "Recurrent networks",
        "Sequences",
        "RNN, LSTM and GRU hold a symbol for 40 steps, or fail to; forecasts; gradients through time.",
        "🔁",
        {"steps": "20", "span": "8"},
        long_run={"steps": "1500", "span": "60"},
    ),
    Chapter(
        12,
        "sentiment",
        "Text classification",
        "Sequences",
        "A bag of words fails every “not bad”; an LSTM reads the order; word maps, hidden states, token IG.",
        "💬",
        {"steps": "20"},
        long_run={"steps": "20000"},
        suffix="b",
    ),
    Chapter(
        13,
        "language",
        "Language models",
        "Sequences",
        "A character model learns Python from its own standard library; bits per char, samples, Captum.",
        "✍️",
        {"steps": "20"},
        long_run={"steps": "1500"},
    ),
    Chapter(
        14,
        "attention",
        "Attention & Transformers",
        "Sequences",
        "A tiny Transformer reverses, sorts and adds; attention maps, positional encodings, IG.",
        "🎯",
        {"steps": "20"},
        long_run={"steps": "4000"},
    ),
    Chapter(
        21,
        "seq2seq",
        "Sequence to sequence with attention",
        "Sequences",
        "Numbers into words: a GRU encoder–decoder with and without attention; beam search; alignment, IG.",
        "🔤",
        {"steps": "20", "max_digits": "4", "example": "4071"},
        long_run={"steps": "20000"},
    ),
    Chapter(
        18,
        "interpretability",
        "Interpretability",
        "Interpretability & production",
        "Eight Captum methods on one set of digits; which pass sanity checks; FGSM, PGD, a net that resists.",
        "🔍",
        {"explain.epochs": "1", "explain.shuffled_epochs": "0", "attack.epochs": "1"},
        ("explain", "attack"),
        long_run={"explain.epochs": "30"},
    ),
    Chapter(
        19,
        "production",
        "Taking a model to production",
        "Interpretability & production",
        "Export with torch.export and ONNX, int8 quantization, pruning, latency; serve a digit you draw.",
        "🚀",
        {"epochs": "1"},
        long_run={"epochs": "30"},
    ),
    Chapter(
        22,
        "ethics",
        "Data ethics: bias and what fixing it costs",
        "Interpretability & production",
        "A net learns a recorded gap between groups; drop the column, reweigh, set thresholds: measure.",
        "⚖️",
        {"bias.epochs": "2", "bias.rows": "2000", "feedback.rounds": "2"},
        ("bias", "feedback"),
        long_run={"bias.epochs": "300", "bias.rows": "50000"},
    ),
)


def by_slug(slug: str) -> Chapter:
    return next(c for c in CHAPTERS if c.slug == slug)


def by_part() -> dict[str, list[Chapter]]:
    parts: dict[str, list[Chapter]] = {}
    for part in PARTS:
        chapters = sorted((c for c in CHAPTERS if c.part == part), key=lambda c: c.order)
        if chapters:
            parts[part] = chapters
    return parts


def readme_table() -> str:
    """The chapter list as it stands in README.md (a test keeps the two identical)."""
    rows = ["| # | Chapter | Part | What you do |", "|---|---|---|---|"]
    rows += [
        f"| {c.code} | {c.title} | {c.part} | {c.summary} |"
        for chapters in by_part().values()
        for c in chapters
    ]
    return "\n".join(rows)
