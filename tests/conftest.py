"""Shared test set-up: no downloads (the machines have no internet), small thread counts, and
the lesson machinery.

A chapter's lesson (e.g. "a line cannot fit the spiral") is asserted through `lesson.expect`,
which records the measured value beside its threshold. A lesson must hold on any CPU, whose
float rounding differs from this one's: its threshold keeps a margin from what was measured
over seeds and thread counts. To see those margins, run the lessons over several seeds:

    .venv/bin/python -m pytest -m lesson --seeds 0,1,2 --lesson-table   (make lessons)

CI runs seed 0 (the seed the pages open with).
"""

import operator
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DLLAB_ALLOW_DOWNLOAD", "0")
# Runs a test starts without naming an executor are driven on the runner's own thread (the same
# driver as in a worker process: labs/core/driver.py); tests of the workers name POOL, and the
# browser suites' servers use worker processes.
os.environ.setdefault("DLLAB_EXECUTOR", "thread")
os.environ.setdefault("DLLAB_DATA_DIR", str(ROOT / "data"))
# The Ray clusters tests start ask for a token (tests/raycluster.py); Ray reads how to
# authenticate once per process, when it is imported, so it is said here, before any import.
import tests.raycluster  # noqa: E402, F401
from tests.browser import browser, server  # noqa: E402, F401 (the browser suites' fixtures)

COMPARE = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge, "==": operator.eq}
MEASURED: list[tuple[str, int, object, str, object]] = []  # (lesson, seed, value, op, threshold)


def pytest_addoption(parser):
    parser.addoption("--seeds", default="0", help="seeds for the lesson tests, e.g. 0,1,2")
    parser.addoption("--lesson-table", action="store_true", help="print every lesson's measured values")


def pytest_configure(config):
    config.addinivalue_line("markers", "lesson: a chapter's headline lesson, checked on real training")


def pytest_generate_tests(metafunc):
    if "seed" in metafunc.fixturenames:
        seeds = [int(s) for s in metafunc.config.getoption("--seeds").split(",")]
        metafunc.parametrize("seed", seeds, ids=[f"seed{s}" for s in seeds], scope="module")


class Lesson:
    def __init__(self, seed: int | None):
        self.seed = seed

    def expect(self, name: str, value, op: str, threshold, why: str = "") -> None:
        """Assert `value op threshold`, and keep the value for the lesson table."""
        value = value.item() if hasattr(value, "item") else value  # numpy scalars
        MEASURED.append((name, self.seed, value, op, threshold))
        assert COMPARE[op](value, threshold), f"{name}: {value!r} is not {op} {threshold!r}. {why}"


@pytest.fixture
def lesson(request):
    seed = request.getfixturevalue("seed") if "seed" in request.fixturenames else None
    return Lesson(seed)


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("--lesson-table") or not MEASURED:
        return
    seeds = sorted({s for _, s, _, _, _ in MEASURED if s is not None})
    rows: dict[str, dict] = {}
    for name, seed, value, op, threshold in MEASURED:
        rows.setdefault(name, {"rule": f"{op} {_shown(threshold)}"})[seed] = _shown(value)
    header = "| lesson | " + " | ".join(f"seed {s}" for s in seeds) + " | threshold |"
    lines = [header, "|" + "---|" * (len(seeds) + 2)]
    for name, row in rows.items():
        values = [row.get(s, row.get(None, "")) for s in seeds]
        lines.append(f"| {name} | " + " | ".join(values) + f" | {row['rule']} |")
    terminalreporter.write_line("\n".join(["", "Lessons, as measured here:", *lines]))


def _shown(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3f}"
    return str(v)
