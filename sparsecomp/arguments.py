"""Checking what callers pass: one helper per kind of value, one message style.

Every message names the argument and the value received (the Keras API guidelines' habit), and
every failure is a :class:`~sparsecomp.errors.BadArgumentError` with rule ``argument.<name>``.
"""

from __future__ import annotations

import math

from .errors import BadArgumentError

__all__ = ["check_number", "check_count", "check_fraction", "check_choice", "require_model"]


def check_number(name: str, value, lo: float = 0.0, hi: float | None = None, *, open_lo: bool = False) -> float:
    """A finite real number in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > lo if open_lo else value >= lo) and (hi is None or value <= hi)
    if not ok:
        bounds = f"{'(' if open_lo else '['}{lo}, {hi if hi is not None else 'inf'}]"
        raise BadArgumentError(f"`{name}` must be a finite number in {bounds}. Received: {name}={value!r}",
                               rule=f"argument.{name}")
    return float(value)


def check_count(name: str, value, lo: int = 0) -> int:
    """An integer ``>= lo``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise BadArgumentError(f"`{name}` must be an integer >= {lo}. Received: {name}={value!r}",
                               rule=f"argument.{name}")
    return value


def check_fraction(name: str, value, *, allow_zero: bool = True, allow_one: bool = True) -> float:
    """A fraction: one convention for "how much" everywhere (0.9 = 90%), never a percentage."""
    lo_ok = value >= 0 if allow_zero else value > 0
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo_ok \
        and (value <= 1 if allow_one else value < 1)
    if not ok:
        rng = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise BadArgumentError(f"`{name}` must be a fraction in {rng} (0.9 means 90%). Received: {name}={value!r}",
                               rule=f"argument.{name}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise BadArgumentError(f"`{name}` must be one of {list(choices)}. Received: {name}={value!r}",
                               rule=f"argument.{name}")
    return value


def require_model(model) -> None:
    import keras
    if not isinstance(model, keras.Model):
        raise BadArgumentError(f"`model` must be a keras.Model. Received: {type(model).__name__}",
                               rule="argument.model")
