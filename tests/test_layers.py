"""The layers, read from the import graph: every module's imports (at the top or inside a
function), assigned to layers by folder, so a new module is held to its folder's rules without
anyone listing it.

    pages -> components (Streamlit UI) -> server (sessions, channel) -> labs (chapters) -> engine
    figures: beside labs, used by the worker and the final draw; it imports nothing of the lab
    chapters.py: the registry, a leaf everyone may read
"""

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each layer and the layers it may import (its own included). app.py is the entry: it may
# name the server's routes and lifespan.
MAY_IMPORT = {
    "app": {"server"},
    "pages": {"pages", "components", "labs", "engine", "figures", "registry"},
    "components": {"components", "server", "labs", "engine", "figures", "registry"},
    "server": {"server", "labs", "engine", "figures", "registry"},
    "labs": {"labs", "engine", "figures"},
    "engine": {"engine", "figures", "registry"},  # the worker reads which chapters to preload
    "figures": {"figures"},
    "registry": set(),
}
STREAMLIT_FREE = {"labs", "engine", "figures", "registry"}
PROJECT = {"app", "chapters", "pages", "components", "server", "labs", "figures"}


def layer_of(module: str) -> str:
    top = module.split(".")[0]
    if top == "labs":
        return "engine" if module.startswith("labs.core") else "labs"
    return "registry" if top == "chapters" else top


@cache
def modules() -> dict[str, Path]:
    """Every module of the app (not tests or benches), by dotted name."""
    found = {"app": ROOT / "app.py", "chapters": ROOT / "chapters.py"}
    for folder in ("pages", "components", "server", "labs", "figures"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports, anywhere in its code: a project module by its full name
    (`from labs.core import data` is labs.core.data), anything else by its full dotted name."""
    names = set()
    for node in ast.walk(ast.parse(modules()[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{module}: relative import"
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in modules() else node.module)
    return frozenset(names)


def project_imports(module: str) -> set[str]:
    return {name for name in imports_of(module) if name.split(".")[0] in PROJECT}


def test_the_graph_covers_the_whole_app():
    layers = {layer_of(m) for m in modules()}
    assert layers == set(MAY_IMPORT), layers
    assert len(modules()) > 100


@pytest.mark.parametrize("module", sorted(modules()))
def test_each_module_imports_only_from_the_layers_below_it(module):
    mine = layer_of(module)
    wrong = {m for m in project_imports(module) if layer_of(m) not in MAY_IMPORT[mine]}
    assert not wrong, f"{module} ({mine}) may not import {sorted(wrong)}"


@pytest.mark.parametrize("module", sorted(m for m in modules() if layer_of(m) in STREAMLIT_FREE))
def test_labs_the_engine_figures_and_the_registry_import_no_streamlit(module):
    assert not {m for m in imports_of(module) if m.split(".")[0] == "streamlit"}


@pytest.mark.parametrize("module", sorted(m for m in modules() if layer_of(m) == "figures"))
def test_figures_never_see_a_model_nor_build_graph_objects(module):
    """Numbers and arrays in, plain dicts out: no torch, no go.Figure (~20x the cost)."""
    names = imports_of(module)
    assert not {m for m in names if m.split(".")[0] == "torch"}, module
    assert not {m for m in names if m.startswith("plotly.graph_objects") or m == "plotly.express"}, module


def test_the_folders_depend_on_each_other_one_way_only():
    edges = {
        (layer_of(m), layer_of(i))
        for m in modules()
        for i in project_imports(m)
        if layer_of(m) != layer_of(i)
    }
    cycles = {(a, b) for a, b in edges if (b, a) in edges}
    assert not cycles, f"folders importing each other: {sorted(cycles)}"


def test_importing_every_figure_module_loads_no_streamlit_torch_or_lab():
    """The same rule at run time, transitively: what a worker imports to draw."""
    figures = sorted(m for m in modules() if layer_of(m) == "figures")
    code = (
        f"import sys; import {', '.join(figures)}; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('streamlit', 'torch', 'labs', 'components', 'server', 'pages', 'chapters')]; "
        "sys.exit(f'loaded {bad[:5]}' if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr or done.stdout


def test_the_engine_holds_only_what_two_or_more_chapters_share():
    """labs/core/ is the run engine and what several chapters share; a piece one chapter uses
    lives beside that chapter. A module counts for a chapter when the chapter's lab imports it,
    directly or through the chapter's own helper modules (labs/backbones.py for transfer)."""
    from chapters import CHAPTERS

    engine = {m for m in modules() if layer_of(m) == "engine" and m != "labs.core"}
    # the engine proper: what runs any lab, whatever it teaches
    runs_labs = {
        f"labs.core.{n}"
        for n in (
            "budget config contract control device divergence driver failures frames history "
            "runner slots snapshot workers worker_process questions cluster class_queue replica usage "
            "batches stackdrive"
        ).split()
    }
    assert runs_labs <= engine
    for module in sorted(engine - runs_labs):
        users = {c.slug for c in CHAPTERS if module in reachable_labs_imports(f"labs.{c.slug}")}
        assert len(users) >= 2, f"{module} serves {sorted(users) or 'no chapter'}: move it beside its chapter"


def reachable_labs_imports(start: str) -> set[str]:
    """Modules of labs/ reached from `start` through chapter-side modules (not through the engine)."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        for name in project_imports(module):
            if name in seen or not name.startswith("labs"):
                continue
            seen.add(name)
            if layer_of(name) == "labs":
                todo.append(name)
    return seen
