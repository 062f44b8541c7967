"""A small, safe parser for expressions in x, evaluated with torch so autograd can
differentiate them. Never `eval`: the text becomes a tree of a few known operations.

Grammar (usual precedence; ^ binds tighter than unary minus, so -x^2 = -(x^2)):
    expr  := term (("+" | "-") term)*
    term  := unary (("*" | "/" | implicit) unary)*      2x, 3sin(x), (x+1)(x-1)
    unary := ("-" | "+") unary | power
    power := atom ("^" unary)?                           right-associative: 2^3^2 = 2^9
    atom  := number | x | pi | e | name "(" expr ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re

import torch

MAX_LENGTH = 120
MAX_DEPTH = 25  # nesting: keeps the recursive parser (and the learner) out of trouble
MAX_NUMBER = 1e6
MAX_VALUE = 1e6  # |f(x)| beyond this counts as undefined there (a pole such as 1/x at 0)
FUNCTIONS = {
    "sin": torch.sin,
    "cos": torch.cos,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "tanh": torch.tanh,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
SYNONYMS = {"×": "*", "·": "*", "÷": "/", "−": "-", "**": "^", "π": "pi"}
TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z]+)|(.))")


class ExpressionError(ValueError):
    """What is wrong with the text, and where (a learner-facing message)."""


def tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) with kind in num, name, op; positions count from 1."""
    for old, new in SYNONYMS.items():
        text = text.replace(old, new)
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m.group(0).strip() == "":
            break
        number, name, op = m.groups()
        at = m.start(m.lastindex) + 1
        if number is not None:
            out.append(("num", number, at))
        elif name is not None:
            out.append(("name", name.lower(), at))
        elif op in "+-*/^()":
            out.append(("op", op, at))
        else:
            raise ExpressionError(
                f"'{op}' at position {at} is not allowed: use numbers, x, + − × ÷ ^ and ( )."
            )
        pos = m.end()
    return out


def parse(text: str):
    """The expression as a tree of tuples; raises ExpressionError with a clear message."""
    if not text or not text.strip():
        raise ExpressionError("The expression is empty: type something in x, such as x^2 * sin(x).")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"The expression is {len(text)} characters long; at most {MAX_LENGTH}.")
    parser = _Parser(tokens(text))
    tree = parser.expr(0)
    if parser.peek() is not None:
        kind, tok, at = parser.peek()
        raise ExpressionError(f"Unexpected '{tok}' at position {at}.")
    return tree


class _Parser:
    def __init__(self, toks):
        self.toks, self.i = toks, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def expr(self, depth):
        if depth > MAX_DEPTH:
            raise ExpressionError(f"The expression nests deeper than {MAX_DEPTH} levels.")
        node = self.term(depth)
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "op":
            self.take()
            node = ("add" if tok[1] == "+" else "sub", node, self.term(depth))
        return node

    def term(self, depth):
        node = self.unary(depth)
        while (tok := self.peek()) and (tok[0] != "op" or tok[1] in "*/("):
            if tok[0] == "op" and tok[1] in "*/":
                self.take()
                node = ("mul" if tok[1] == "*" else "div", node, self.unary(depth))
            else:  # implicit multiplication: 2x, 3sin(x), (x+1)(x-1)
                node = ("mul", node, self.unary(depth))
        return node

    def unary(self, depth):
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in "+-":
            self.take()
            inner = self.unary(depth + 1)
            return ("neg", inner) if tok[1] == "-" else inner
        return self.power(depth)

    def power(self, depth):
        base = self.atom(depth)
        tok = self.peek()
        if tok and tok == ("op", "^", tok[2]):
            self.take()
            return ("pow", base, self.unary(depth + 1))
        return base

    def atom(self, depth):
        tok = self.take()
        if tok is None:
            raise ExpressionError("The expression ends too early: something is missing at the end.")
        kind, text, at = tok
        if kind == "num":
            value = float(text)
            if value > MAX_NUMBER:
                raise ExpressionError(f"{text} at position {at} is too large (at most {MAX_NUMBER:g}).")
            return ("num", value)
        if kind == "name":
            if text == "x":
                return ("x",)
            if text in CONSTANTS:
                return ("num", CONSTANTS[text])
            if text in FUNCTIONS:
                opening = self.take()
                if opening is None or opening[1] != "(":
                    raise ExpressionError(f"{text} at position {at} needs parentheses: {text}(x).")
                return self._closed(("call", text, self.expr(depth + 1)), opening[2])
            known = ", ".join(["x", *CONSTANTS, *FUNCTIONS])
            raise ExpressionError(f"Unknown name '{text}' at position {at}. Known: {known}.")
        if text == "(":
            return self._closed(self.expr(depth + 1), at)
        raise ExpressionError(f"Unexpected '{text}' at position {at}.")

    def _closed(self, node, opened_at):
        tok = self.take()
        if tok is None or tok[1] != ")":
            raise ExpressionError(f"The '(' at position {opened_at} is never closed.")
        return node


def evaluate(tree, x: torch.Tensor) -> torch.Tensor:
    """The tree's value at every x, as torch operations (so autograd records them)."""
    op = tree[0]
    if op == "num":
        return torch.full_like(x, tree[1])
    if op == "x":
        return x
    if op == "neg":
        return -evaluate(tree[1], x)
    if op == "call":
        return FUNCTIONS[tree[1]](evaluate(tree[2], x))
    a, b = evaluate(tree[1], x), evaluate(tree[2], x)
    return {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow}[op](
        a, b
    )


def derivative(text: str, lo: float = -3.0, hi: float = 3.0, n: int = 301) -> dict:
    """f, its derivative from autograd and a central difference, on n points of [lo, hi].

    Autograd gives the exact derivative of the operations (up to float64 rounding); the
    central difference (f(x+h) − f(x−h)) / 2h is an approximation with error ~h². Where f is
    undefined (log of a negative number, 1/0) the values are NaN and the reply says so."""
    tree = parse(text)
    x = torch.linspace(lo, hi, n, dtype=torch.float64, requires_grad=True)
    y = evaluate(tree, x)
    if y.requires_grad:  # each y_i depends on x_i only, so d(sum)/dx_i = f'(x_i)
        y.sum().backward()
    else:  # no x in it: a constant, whose derivative is 0 everywhere
        x.grad = torch.zeros_like(x)
    h = 1e-5
    with torch.no_grad():
        numeric = (evaluate(tree, x + h) - evaluate(tree, x - h)) / (2 * h)
    f, auto, num = (t.detach() for t in (y, x.grad, numeric))
    defined = torch.isfinite(f) & (f.abs() < MAX_VALUE)  # near a pole both methods break down
    both = defined & torch.isfinite(auto) & torch.isfinite(num)
    gap = float((auto - num)[both].abs().max()) if both.any() else math.nan
    undefined = int((~defined).sum())
    f, auto, num = (torch.where(defined, t, torch.nan).numpy() for t in (f, auto, num))
    return {
        "x": x.detach().numpy(),
        "f": f,
        "autograd": auto,
        "numeric": num,
        "max_gap": gap,
        "undefined": undefined,
    }


def graph_at(text: str, x0: float) -> dict:
    """The autograd graph of f at one point, with the gradient along every edge."""
    from labs.autograd_graph import autograd_graph

    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = evaluate(parse(text), x)
    if not y.requires_grad:  # a constant: autograd records nothing
        return {"nodes": [], "edges": [], "value": y.item(), "slope": 0.0}
    graph = autograd_graph(y, {id(x): f"x = {x0:g}"})
    slope = x.grad.item() if x.grad is not None else 0.0
    return {**graph, "value": y.detach().item(), "slope": slope}
