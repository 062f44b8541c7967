"""The lab contract (labs/core/contract.py) holds for every registered chapter, and the loops keep
its two rules: Stop is heard only through the Control (nothing reads a yield's value), and a
run that blew up is ended only by LossWatch."""

import ast
import dataclasses
from pathlib import Path

import pytest

from chapters import CHAPTERS, page_of, part_of, run_key
from figures.views import Views, views_of
from labs.core.config import knobs
from labs.core.contract import Experiment, experiments_of, lab_of
from labs.core.questions import Question

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted((ROOT / "labs").rglob("*.py"))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda c: c.slug)
def test_every_chapter_provides_its_experiments_and_questions(chapter):
    lab = lab_of(chapter.slug)
    found = experiments_of(lab)
    assert tuple(found) == chapter.parts, "the registry's parts are the lab's EXPERIMENTS, in order"
    assert lab.QUESTIONS and all(isinstance(q, Question) for q in lab.QUESTIONS)
    views = __import__(f"figures.views.{chapter.slug}", fromlist=["views"])
    for part, experiment in found.items():
        assert isinstance(experiment, Experiment)
        params = dataclasses.fields(experiment.config)
        assert experiment.config.__dataclass_params__.frozen, f"{part}: Config must be frozen"
        assert knobs(experiment.config) and len(knobs(experiment.config)) == len(params)
        assert callable(experiment.train) and callable(experiment.cost)
        assert experiment.cost(experiment.config()).steps > 0
        assert isinstance(views_of(views, part), Views), f"no views for part {part!r}"


def test_a_lab_without_experiments_is_told_what_the_contract_wants():
    with pytest.raises(TypeError, match="EXPERIMENTS"):
        experiments_of(dataclasses)


def test_run_keys_name_their_page_and_part():
    assert run_key("gans", "toy") == "gans--toy" and run_key("playground") == "playground"
    assert page_of("gans--toy") == "gans" and part_of("gans--toy") == "toy" and part_of("gans") == ""
    keys = [k for c in CHAPTERS for k in c.run_keys]
    assert len(set(keys)) == len(keys)


def yields_whose_value_is_read(tree: ast.AST) -> list[int]:
    """Lines where a yield is used as a value (`if (yield snap):`, `x = yield snap`): a loop
    that listens for something sent into it, beside its Control."""
    read = []
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Yield) and not isinstance(node, ast.Expr):
                read.append(child.lineno)
    return read


@pytest.mark.parametrize("path", LABS, ids=lambda p: str(p.relative_to(ROOT)))
def test_loops_hear_stop_through_their_control_only(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert not yields_whose_value_is_read(tree), "a loop hears Stop through steps()/Plan/stop_requested()"
    sends = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "send"]
    if path.name not in ("workers.py", "worker_process.py", "batches.py"):  # a pipe's or worker's send
        assert not sends, f"something is sent into a generator at lines {sends}"


@pytest.mark.parametrize("path", LABS, ids=lambda p: str(p.relative_to(ROOT)))
def test_divergence_is_raised_by_loss_watch_only(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    raised = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Raise)
        and isinstance(n.exc, ast.Call)
        and getattr(n.exc.func, "id", getattr(n.exc.func, "attr", "")) == "Diverged"
    ]
    assert path.name == "divergence.py" or not raised, f"raise Diverged at lines {raised}: use LossWatch"


def test_the_panel_takes_run_states_from_the_runner():
    """The state names live in RunState; the panel's script compares against what it is sent,
    and its stylesheet colours only states that exist."""
    import re

    from labs.core.runner import RunState
    from server.channel import IDLE

    script = (ROOT / "components" / "panel.js").read_text(encoding="utf-8")
    style = (ROOT / "components" / "panel.css").read_text(encoding="utf-8")
    names = {s.value for s in RunState}
    assert not {n for n in names if f'"{n}"' in script}, "panel.js spells out a run state"
    assert set(re.findall(r'data-state="(\w+)"', style)) <= names | {IDLE}
