"""Config knobs: one dataclass field per slider, carrying its range, step and help text.

The page's controls, the share link, validation of untrusted values (URL parameters) and the
tests all read the same metadata, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config value a learner can fix; the message says how."""


@dataclass(frozen=True)
class Knob:
    label: str
    help: str = ""
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    choices: tuple | None = None
    multi: bool = False  # several of `choices` at once (a tuple value)
    may_be_empty: bool = False  # multi: choosing none is a valid setting (no augmentation)
    log: bool = False  # offered on a 1-2-3-5 ladder between lo and hi (learning rates)
    labels: dict | None = None  # how to show each choice, when its key is not for people


def knob(default, label, help="", **kw):
    """A dataclass field that is also a control on the page."""
    return field(default=default, metadata={"knob": Knob(label, help, **kw)})


def knobs(cls) -> list[tuple[str, Knob, Any]]:
    """(name, Knob, default) for every knob field of a Config class, in declaration order."""
    return [(f.name, f.metadata["knob"], f.default) for f in dataclasses.fields(cls) if "knob" in f.metadata]


def log_ladder(lo: float, hi: float) -> list[float]:
    """1-2-3-5 values between lo and hi: the learning rates people actually type."""
    values = []
    for exp in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for mantissa in (1, 2, 3, 5):
            v = float(f"{mantissa}e{exp}")
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                values.append(v)
    return values


def _snap(value: float, options: list[float]) -> float:
    return min(options, key=lambda o: abs(math.log(o) - math.log(value)) if value > 0 else o)


def _parse_bool(raw) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not true/false: {raw!r}")


SHOWN_CHARACTERS = 40  # a bad value is quoted in a notice, cut to this length


def shown(raw) -> str:
    """A value as a notice quotes it: short, whatever was pasted into the link."""
    text = repr(raw)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def _number(raw, integer: bool) -> float | int:
    """A finite number from an untrusted value; ValueError for anything else (inf, nan, 1e309,
    100 KB of digits, '²', words)."""
    if isinstance(raw, bool):
        raise ValueError("a switch is not a number")
    text = raw if isinstance(raw, (int, float)) else str(raw).strip()
    if isinstance(text, str) and len(text) > SHOWN_CHARACTERS:
        raise ValueError("too long to be a setting")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return int(value) if integer else value


def coerce_value(name: str, k: Knob, default, raw, snap: bool = True) -> tuple[Any, str | None]:
    """Turn one untrusted value into a valid one: (value, notice or None). Never raises."""
    try:
        if isinstance(default, bool):
            return _parse_bool(raw), None
        if k.multi:
            return _coerce_multi(k, default, raw)
        if k.choices is not None:
            match = [c for c in k.choices if str(c) == str(raw).strip()]
            if match:
                return match[0], None
            return default, f"{k.label}: {shown(raw)} is not one of {list(k.choices)}, using {default!r}"
        value = _number(raw, isinstance(default, int))
    except (TypeError, ValueError, OverflowError):
        return default, f"{k.label}: {shown(raw)} is not valid, using {default!r}"
    clamped = min(max(value, k.lo), k.hi) if k.lo is not None else value
    if k.log and snap:
        clamped = _snap(clamped, log_ladder(k.lo, k.hi))
    if clamped != value and not math.isclose(clamped, value, rel_tol=1e-6):
        return clamped, f"{k.label}: {value:g} is outside {k.lo:g}–{k.hi:g}, using {clamped:g}"
    return clamped, None


def _coerce_multi(k: Knob, default, raw) -> tuple[tuple, str | None]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    items = [str(i).strip() for i in items if str(i).strip()]
    picked = tuple(c for c in k.choices if c in set(items))
    if not items and k.may_be_empty:
        return (), None
    if not items:
        return default, f"{k.label}: choose at least one; using the default"
    if not picked:
        return default, f"{k.label}: nothing valid in {shown(raw)}, using the default"
    dropped = [i for i in items if i not in k.choices]
    return picked, (f"{k.label}: ignored unknown {shown(dropped)}" if dropped else None)


def from_params(cls, raw: Mapping[str, Any], prefix: str = ""):
    """A Config from untrusted values (a shared link): (config, notices). Unknown keys ignored."""
    values, notices = {}, []
    for name, k, default in knobs(cls):
        if prefix + name in raw:
            values[name], notice = coerce_value(name, k, default, raw[prefix + name])
            if notice:
                notices.append(notice)
    return cls(**values), notices


def to_params(cfg, prefix: str = "") -> dict[str, str]:
    """The config as URL parameters, only where it differs from the defaults (short links)."""
    out = {}
    for name, k, default in knobs(type(cfg)):
        value = getattr(cfg, name)
        if value != default:
            out[prefix + name] = _param_text(k, value)
    return out


def _param_text(k: Knob, value) -> str:
    if k.multi:
        return ",".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(cfg) -> None:
    """Refuse a config with a value out of range (a bug or a hand-built config), in words."""
    for name, k, default in knobs(type(cfg)):
        value = getattr(cfg, name)
        coerced, notice = coerce_value(name, k, default, value, snap=False)
        if notice:
            raise ConfigError(notice)


__all__ = [
    "ConfigError",
    "Knob",
    "knob",
    "knobs",
    "log_ladder",
    "from_params",
    "to_params",
    "check",
    "coerce_value",
]
