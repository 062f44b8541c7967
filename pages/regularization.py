"""Chapter 6 — Overfitting & regularization. UI only: the lab is labs/regularization.py."""

from components import page
from figures.views import regularization as views
from labs import regularization as lab
from labs.core import compare as core_compare

KEY = "regularization"
cfg = page.chapter(KEY, lab, views.VIEWS)


page.results(KEY, lab, views.VIEWS)
page.show_code(lab.train_one, lab.augment, core_compare.side_by_side)
