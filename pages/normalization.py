"""Chapter 5 — Normalization & residual connections. UI only: the lab is labs/normalization.py."""

from components import page
from figures.views import normalization as views
from labs import normalization as lab
from labs.core import compare as core_compare
from labs.core import mlp

KEY = "normalization"
cfg = page.chapter(KEY, lab, views.VIEWS)


page.results(KEY, lab, views.VIEWS)
page.show_code(lab.train, core_compare.side_by_side, mlp.Block, mlp.train_digits)
