"""Numeric bounds of drafted rules: the roundest threshold between the failures and ok traffic."""

from __future__ import annotations

import math
from typing import Any


def nice_threshold(value: float, below: list[float], above: list[float], *, failures_above: bool = True) -> float:
    """The roundest bound t with every `below` value at or under it and every `above` value over it,
    rounded toward covering the failures, never away from them.

    The data only says the fault's true bound lies somewhere in [max(below), min(above)).
    Real bounds are round (2 GiB, 8 MB, 100 rows) and the failures nearest to them are the
    rarest in a sample, so a bound drawn at the failures' edge leaves the true failures
    between the two uncovered. With failures above (`x > t`) the smallest round number in
    the gap is taken; with failures below (`x <= t`) the largest.
    """
    lo = max(below) if below else -math.inf
    hi = min(above) if above else math.inf
    if lo >= hi:
        return value
    if not math.isfinite(lo) or not math.isfinite(hi):
        edge = hi if failures_above else lo
        if not math.isfinite(edge):
            return value
        # no ok value on the far side: the edge of the failures themselves, rounded outward
        for digits in range(1, 10):
            c = _floor(edge, digits) if failures_above else _ceil(edge, digits)
            if lo <= c < hi:
                return c
        return value
    # when nothing rounder fits (a gap of a few ulps), the ok side's edge: `value` itself, the
    # midpoint, may round onto a failure
    found = value if lo <= value < hi else lo
    for digits in range(1, 16):
        c = _ceil(lo, digits) if failures_above else _floor(hi, digits)
        if not failures_above and c >= hi:
            c = _step_down(hi, digits)
        if lo <= c < hi:
            found = c
            break
    # Limits in software are as often binary as decimal (2 GiB, 8 MiB, 64 KiB): a power of two in
    # the gap is as round as the decimal found, and the one nearer the ok side covers more.
    powers = [float(2**n) for n in range(4, 64) if lo <= 2**n < hi]
    candidates = [found, *powers]
    return min(candidates) if failures_above else max(candidates)


def _to_digits(x: float, digits: int, how: Any) -> float:
    """x rounded by `how` (math.ceil or math.floor) to `digits` significant digits, exactly for integers."""
    if x == 0 or not math.isfinite(x):
        return x
    e = digits - 1 - math.floor(math.log10(abs(x)))
    try:
        if e >= 0:
            return float(how(x * 10**e)) / 10**e
        unit = 10 ** (-e)
        return float(how(x / unit) * unit)
    except OverflowError:  # subnormal or huge magnitudes: leave the value as it is
        return x


def _ceil(x: float, digits: int) -> float:
    return _to_digits(x, digits, math.ceil)


def _floor(x: float, digits: int) -> float:
    return _to_digits(x, digits, math.floor)


def _step_down(x: float, digits: int) -> float:
    return _to_digits(x, digits, lambda v: math.ceil(v) - 1)
