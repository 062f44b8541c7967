"""Chapter 18 — Interpretability. UI only: the methods and sanity checks are labs/saliency.py,
the attacks labs/adversarial.py, what they show figures/views/interpretability.py."""

import dataclasses

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures import images
from figures.views import interpretability as views
from labs import adversarial, saliency
from labs import interpretability as lab

PAGE = "interpretability"
EXPLAIN, ATTACK = run_key(PAGE, "explain"), run_key(PAGE, "attack")
page.intro(PAGE, chapters.by_slug(PAGE).label)
explain_tab, attack_tab = st.tabs(["Eight methods, and their sanity checks", "Adversarial examples"])


def another_digit(view) -> None:
    """Any test digit, any baseline, all eight methods: without training again."""
    ds = saliency.digits(view.cfg.seed)
    model = page.memo(
        ("explained", view.id),
        lambda: saliency.load(view.cfg, view.state_dict, view.view.get("pretrained_cfg")),
    )
    st.subheader("Explain another digit")
    left, right = st.columns([1, 4])
    index = left.number_input("Test image", 0, len(ds.X_test) - 1, 0, key=f"{EXPLAIN}-digit")
    baseline = left.selectbox("Baseline", saliency.BASELINES, key=f"{EXPLAIN}-baseline-again")
    cfg = dataclasses.replace(view.cfg, baseline=baseline)
    image = ds.X_test[index : index + 1]
    shown = page.memo(
        ("explain-one", view.id, index, baseline), lambda: saliency.explain_one(model, image, cfg)
    )
    predicted = int(shown["probs"].argmax())
    left.caption(
        f"True: **{int(ds.y_test[index])}**, predicted **{predicted}** ({shown['probs'][predicted]:.0%}). "
        f"IG's convergence delta from the {baseline} baseline: {shown['delta']:.1e}."
    )
    grid = [[image[0, 0].numpy(), *shown["maps"].values()]]
    right.plotly_chart(
        images.map_grid_figure(grid, [""], ["input", *(views.SHORT[m] for m in shown["maps"])], cell_px=110),
        key=f"{EXPLAIN}-one",
        theme=None,
    )


def attacked_examples(view) -> None:
    """Both nets attacked again at any ε, by either attack: what the perturbation looks like,
    what it does to the prediction, and to the model's evidence."""
    ds = saliency.digits(view.cfg.seed)
    models = page.memo(("attack-models", view.id), lambda: adversarial.load(view.cfg, view.state_dict))
    st.subheader("Attack them again")
    left, right = st.columns([1, 3])
    eps = left.slider("ε", 0.0, 0.3, float(view.cfg.epsilon), 0.01, key=f"{ATTACK}-eps")
    method = left.radio("Attack", adversarial.ATTACKS, index=1, key=f"{ATTACK}-method", horizontal=True)
    first = left.number_input(
        "First test image", 0, len(ds.X_test) - adversarial.SHOWN, 0, key=f"{ATTACK}-first"
    )
    x = ds.X_test[first : first + adversarial.SHOWN]
    y = ds.y_test[first : first + adversarial.SHOWN]
    left.caption(
        "The perturbation is drawn at ±ε (blue brightens a pixel, red darkens it). Each row: true "
        "class, the prediction and its confidence before → after the attack."
    )
    for name, model in models.items():
        shown = page.memo(
            ("attack", view.id, name, eps, method, first),
            lambda m=model: adversarial.examples(m, x, y, eps, method, view.cfg.pgd_steps),
        )
        right.plotly_chart(views.examples_figure(shown, name), key=f"{ATTACK}-again-{name}", theme=None)


with explain_tab:
    e_cfg = controls.config_controls(saliency.Config, EXPLAIN, st.container())
    controls.link_notices(EXPLAIN)
    explaining = page.with_cnn_from_cnn_chapter(lab.EXPLAIN, e_cfg, "Explaining", "Conv layers and epochs")
    live.run_buttons(EXPLAIN, explaining, e_cfg, views.EXPLAIN)
    explain_view = live.show(EXPLAIN, views.EXPLAIN)
    if explain_view is not None and explain_view.state_dict:
        another_digit(explain_view)
    page.downloads(explain_view, EXPLAIN)
    page.questions(lab.EXPLAIN_QUESTIONS, EXPLAIN, lab.EXPLAIN, views.EXPLAIN)

with attack_tab:
    a_cfg = controls.config_controls(adversarial.Config, ATTACK, st.container())
    controls.link_notices(ATTACK)
    live.run_buttons(ATTACK, lab.ATTACK, a_cfg, views.ATTACK)
    attack_view = live.show(ATTACK, views.ATTACK)
    if attack_view is not None and attack_view.state_dict:
        attacked_examples(attack_view)
    page.downloads(attack_view, ATTACK)
    page.questions(lab.ATTACK_QUESTIONS, ATTACK, lab.ATTACK, views.ATTACK)

controls.share_link((e_cfg, EXPLAIN), (a_cfg, ATTACK))
page.show_code(
    saliency.train, saliency.all_maps, saliency.cascade_layers, adversarial.fgsm_step, adversarial.attack
)
