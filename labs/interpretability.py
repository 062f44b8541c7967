"""Chapter 18 — Interpretability: the page's two experiments, in tabs.

Eight attribution methods on the same digits and the sanity checks that tell which of them
explain the model (labs/saliency.py); adversarial examples with `captum.robust`, and a short
adversarial training that resists them (labs/adversarial.py).
"""

from __future__ import annotations

from labs import adversarial, saliency
from labs.core.contract import Experiment
from labs.core.questions import Question

EXPLAIN = Experiment(saliency.Config, saliency.train, saliency.cost, saliency.PREFERS_GPU)
ATTACK = Experiment(adversarial.Config, adversarial.train, adversarial.cost, adversarial.PREFERS_GPU)
# by part, in the order of the page's Train buttons (labs/core/contract.py)
EXPERIMENTS = {"explain": EXPLAIN, "attack": ATTACK}


def _after_head(view, method: str) -> float:
    rho = view.view.get("cascade", {}).get("rho", {}).get(method, [])
    return rho[1] if len(rho) > 1 else float("nan")


def _which_changes_more(view):
    saliency_rho, gbp_rho = _after_head(view, "Saliency"), _after_head(view, "Guided Backprop")
    answer = "Saliency" if saliency_rho < gbp_rho else "Guided Backprop"
    evidence = f"Saliency {saliency_rho:.2f}, Guided Backprop {gbp_rho:.2f}."
    return answer, "Rank correlation with the trained model's map: " + evidence


def _pgd_stronger(view):
    robust = view.view.get("variants", {}).get(adversarial.VARIANTS["standard"], {}).get("robustness", {})
    eps = robust.get("eps", [])
    if 0.1 not in eps:
        return "no", "The run ended before it attacked at ε = 0.1."
    i = eps.index(0.1)
    fgsm, pgd = robust["FGSM"][i], robust["PGD"][i]
    return (
        "yes" if pgd < fgsm else "no"
    ), f"At ε = 0.1 the standard CNN keeps {fgsm:.0%} under FGSM, {pgd:.0%} under PGD."


EXPLAIN_QUESTIONS = [
    Question(
        "Re-initialise only the classifier head; the trained conv layers stay. Whose map "
        "changes more: Saliency's or Guided Backprop's?",
        ("Saliency", "Guided Backprop"),
        {"shuffled_epochs": 0, "model": "train here"},
        _which_changes_more,
        "Guided Backprop zeroes every negative gradient on the way back, so what reaches the "
        "image is mostly the input's own edges, whatever the head computes: it fails the sanity check.",
    )
]
ATTACK_QUESTIONS = [
    Question(
        "At ε = 0.1, does PGD (10 small steps) fool the standard CNN more often than FGSM (one step)?",
        ("yes", "no"),
        {"variants": ("standard",)},
        _pgd_stronger,
        "FGSM trusts the gradient at the image for the whole step; PGD re-reads it after each small "
        "step and stays inside the same ε-ball, so it finds perturbations FGSM's straight line misses.",
    )
]
QUESTIONS = EXPLAIN_QUESTIONS

__all__ = ["ATTACK", "ATTACK_QUESTIONS", "EXPLAIN", "EXPLAIN_QUESTIONS", "QUESTIONS"]
