"""Chapter 22 — Data ethics: bias a model learns, and what fixing it costs. UI only: the lab is
labs/ethics.py."""

from components import page
from figures.views import ethics as views
from labs import ethics as lab

KEY = "ethics"
cfg = page.chapter(KEY, lab, views.VIEWS)


page.results(KEY, lab, views.VIEWS)
page.show_code(lab.deliveries, lab.train_one, lab.reweighing, lab.b_threshold, lab.measure, lab.group_signal)
