"""The expression box: a parser (never eval), autograd's derivative against a finite
difference, and a clear message for every bad input."""

import math

import numpy as np
import pytest

from labs import expression as E


@pytest.mark.parametrize(
    "text, at, value",
    [
        ("x^2*sin(x)", 1.0, math.sin(1.0)),
        ("2x + 1", 2.0, 5.0),
        ("-x^2", 3.0, -9.0),  # ^ binds tighter than unary minus
        ("2^3^2", 0.0, 512.0),  # right-associative
        ("(x+1)(x-1)", 3.0, 8.0),  # implicit multiplication
        ("3 × x ÷ 2 − 1", 2.0, 2.0),  # the symbols a learner may type
        ("e^x", 1.0, math.e),
        ("π*x", 1.0, math.pi),
        ("exp(log(x))", 2.5, 2.5),
        ("7", 4.0, 7.0),
    ],
)
def test_expressions_evaluate_with_the_usual_precedence(text, at, value):
    import torch

    got = E.evaluate(E.parse(text), torch.tensor([at], dtype=torch.float64))
    assert got.item() == pytest.approx(value)


def test_autograd_matches_the_analytic_derivative_and_the_finite_difference():
    d = E.derivative("x^2*sin(x)")
    x = d["x"]
    assert np.allclose(d["autograd"], 2 * x * np.sin(x) + x**2 * np.cos(x), atol=1e-10)
    assert d["max_gap"] < 1e-6
    assert d["undefined"] == 0


def test_a_constant_has_derivative_zero_and_an_empty_graph():
    d = E.derivative("3")
    assert np.all(d["autograd"] == 0)
    assert E.graph_at("3", 1.0)["nodes"] == []


def test_undefined_points_are_counted_not_crashing():
    d = E.derivative("log(x)")
    assert d["undefined"] > 100  # x <= 0 on [-3, 3]
    assert np.isnan(d["f"][0]) and np.isfinite(d["f"][-1])
    assert E.derivative("1/x")["undefined"] >= 1  # the pole at 0


def test_the_graph_at_a_point_holds_each_operation_and_the_slope():
    g = E.graph_at("x^2*sin(x)", 1.0)
    assert {n["label"] for n in g["nodes"]} >= {"×", "power", "sin", "x = 1"}
    assert g["slope"] == pytest.approx(2 * math.sin(1) + math.cos(1))
    assert len(g["edges"]) == 4  # × -> power, × -> sin, power -> x, sin -> x


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 200, "at most"),
        ("exp(", "ends too early"),
        ("3 +", "ends too early"),
        ("(x", "never closed"),
        ("x)", "Unexpected ')' at position 2"),
        ("foo(x)", "Unknown name 'foo'"),
        ("sin x", "needs parentheses"),
        ("x; import os", "';' at position 2 is not allowed"),
        ('__import__("os")', "not allowed"),
        ("1e9", "too large"),
        ("(" * 30 + "x" + ")" * 30, "nests deeper"),
    ],
)
def test_bad_expressions_are_refused_with_a_clear_message(text, says):
    with pytest.raises(E.ExpressionError, match=None) as err:
        E.derivative(text)
    assert says in str(err.value)
