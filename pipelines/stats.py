"""Pure statistical methods for the prison-health indicators.

Every function here is pure (no I/O, no globals), works element-wise on numpy
arrays and also accepts plain Python scalars (scalars in -> Python floats/str out).
Invalid *data* does not crash: a denominator of zero (or a missing input) gives NaN.
Impossible data (negative counts, a numerator above its denominator for a
proportion) raises ``ValueError`` because it is a bug upstream, not a statistic.

Confidence levels may be given as a fraction (``0.95``, ``0.998``) or as a
percentage (``95``, ``99.8``), as in PHEindicatormethods.

Methods and sources
-------------------
* Proportions: Wilson score interval without continuity correction.
  Wilson EB (1927) J Am Stat Assoc 22:209-212; Newcombe RG, Altman DG (2000)
  "Proportions and their differences", Statistics with Confidence, pp 46-48.
  Same formula as ``PHEindicatormethods::wilson_lower`` / ``wilson_upper``.
* Rates: exact Poisson limits from the chi-squared distribution when the count is
  below 10 (Armitage P, Berry G (2002) Statistical Methods in Medical Research),
  Byar's approximation otherwise (Breslow NE, Day NE (1987) Statistical Methods in
  Cancer Research vol II). This is the Fingertips / ``PHEindicatormethods::phe_rate``
  rule ("exact CI method for numerators <10 and Byar's CI method for numerators >=10").
* Difference of two proportions: Newcombe's hybrid score interval, method 10 of
  Newcombe RG (1998) "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Stat Med 17:873-890.
* Comparison with England: the Fingertips rule (an area is significantly higher /
  lower than England when its 95% interval excludes England's value).
* Funnel plots: ``PHEindicatormethods::calculate_funnel_limits`` (formerly
  ``phe_funnels``) and ``assign_funnel_significance``. Proportion limits invert the
  Wilson score interval (``sigma_adjustment``); rate limits use the exact Poisson
  funnel (``poisson_funnel``, a bisection over the Poisson series taken from the
  Fingertips Excel macro) and significance uses Byar's/exact limits
  (``funnel_ratio_significance``). The 95% limits use p = 0.975 / 0.025 and the
  99.8% limits p = 0.999 / 0.001, as PHE does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy.stats import chi2, norm

__all__ = [
    "FUNNEL_LABELS",
    "byars_interval",
    "compare_with_benchmark",
    "exact_poisson_interval",
    "funnel_limits_table",
    "funnel_ratio_significance",
    "newcombe_difference_interval",
    "poisson_funnel",
    "proportion",
    "proportion_funnel_limits",
    "proportion_funnel_significance",
    "proportion_with_intervals",
    "rate",
    "rate_funnel_limits",
    "rate_funnel_significance",
    "rate_interval",
    "rate_with_intervals",
    "sigma_adjustment",
    "wilson_interval",
    "z_value",
]

ArrayLike = float | int | Sequence[float] | np.ndarray

#: Significance labels used by ``PHEindicatormethods::assign_funnel_significance``.
FUNNEL_LABELS = (
    "High (0.001)",
    "High (0.025)",
    "Low (0.001)",
    "Low (0.025)",
    "Not significant",
)

_EXACT_BELOW = 10  # Fingertips: exact Poisson limits below 10 events, Byar's from 10


# --------------------------------------------------------------------------- helpers
def _confidence(confidence: float) -> float:
    """Normalise a confidence level given as 0.95 or 95 to a fraction."""
    c = float(confidence)
    if 1.0 < c <= 100.0:
        c = c / 100.0
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1) or (1, 100], got {confidence!r}")
    return c


def z_value(confidence: float = 0.95) -> float:
    """Two-sided standard normal critical value, ``qnorm(conf + (1 - conf) / 2)``.

    Written exactly as ``PHEindicatormethods`` computes it (95% -> 1.959963984540054).
    """
    c = _confidence(confidence)
    return float(norm.ppf(c + (1.0 - c) / 2.0))


def _arrays(*values: ArrayLike) -> tuple[list[np.ndarray], bool]:
    """Broadcast inputs to float arrays; report whether every input was a scalar."""
    scalar = all(np.ndim(v) == 0 for v in values)
    arrays = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values])
    return [np.array(a, dtype=float) for a in arrays], scalar


def _out(value: np.ndarray, scalar: bool):
    """Return a Python float for scalar input, else the array."""
    value = np.asarray(value, dtype=float)
    if scalar:
        return float(value.reshape(-1)[0]) if value.size else math.nan
    return value


def _out_labels(value: np.ndarray, scalar: bool):
    if scalar:
        return value.reshape(-1)[0]
    return value


def _check_counts(name: str, values: np.ndarray) -> None:
    if np.any(values[np.isfinite(values)] < 0):
        raise ValueError(f"{name} must be >= 0")


# --------------------------------------------------------------------------- proportions
def proportion(numerator: ArrayLike, denominator: ArrayLike, multiplier: float = 100.0):
    """Proportion ``numerator / denominator * multiplier`` (percent by default).

    Denominator 0 or missing -> NaN.
    """
    (x, n), scalar = _arrays(numerator, denominator)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(n > 0, x / np.where(n > 0, n, 1.0) * multiplier, np.nan)
    value = np.where(np.isfinite(x), value, np.nan)
    return _out(value, scalar)


def wilson_interval(
    numerator: ArrayLike,
    denominator: ArrayLike,
    confidence: float = 0.95,
    multiplier: float = 100.0,
):
    """Wilson score interval (no continuity correction) for ``numerator / denominator``.

    Source: Wilson (1927); Newcombe & Altman (2000) pp 46-48; identical to
    ``PHEindicatormethods::wilson_lower``/``wilson_upper``::

        (2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / 2 / (n + z^2)

    Returns ``(lower, upper)`` scaled by ``multiplier`` (percent by default).
    ``numerator == 0`` gives a lower limit of exactly 0 and ``numerator ==
    denominator`` an upper limit of exactly ``multiplier``. Denominator 0 or a
    missing input gives NaN. Raises ``ValueError`` for negative counts or a numerator
    above its denominator.
    """
    (x, n), scalar = _arrays(numerator, denominator)
    _check_counts("numerator", x)
    _check_counts("denominator", n)
    ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
    if np.any(x[ok] > n[ok]):
        raise ValueError("numerator must not exceed denominator for a proportion")
    z = z_value(confidence)
    xs = np.where(ok, x, 0.0)
    ns = np.where(ok, n, 1.0)
    z2 = z * z
    root = z * np.sqrt(z2 + 4.0 * xs * (1.0 - (xs / ns)))
    lower = (2.0 * xs + z2 - root) / 2.0 / (ns + z2)
    upper = (2.0 * xs + z2 + root) / 2.0 / (ns + z2)
    lower = np.where(xs == 0, 0.0, np.clip(lower, 0.0, 1.0))
    upper = np.where(xs == ns, 1.0, np.clip(upper, 0.0, 1.0))
    lower = np.where(ok, lower * multiplier, np.nan)
    upper = np.where(ok, upper * multiplier, np.nan)
    return _out(lower, scalar), _out(upper, scalar)


def proportion_with_intervals(
    numerator: ArrayLike, denominator: ArrayLike, multiplier: float = 100.0
) -> dict[str, np.ndarray | float]:
    """Value plus 95% and 99.8% Wilson limits, keyed by the output-contract column names.

    Returns ``{"value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8"}``.
    """
    lo95, hi95 = wilson_interval(numerator, denominator, 0.95, multiplier)
    lo998, hi998 = wilson_interval(numerator, denominator, 0.998, multiplier)
    return {
        "value": proportion(numerator, denominator, multiplier),
        "lower_ci_95": lo95,
        "upper_ci_95": hi95,
        "lower_ci_99_8": lo998,
        "upper_ci_99_8": hi998,
    }


def newcombe_difference_interval(
    numerator_1: ArrayLike,
    denominator_1: ArrayLike,
    numerator_2: ArrayLike,
    denominator_2: ArrayLike,
    confidence: float = 0.95,
    multiplier: float = 100.0,
):
    """Newcombe's hybrid score interval for ``p1 - p2`` (Newcombe 1998, method 10).

    With Wilson limits ``(l1, u1)`` and ``(l2, u2)`` of the two proportions::

        lower = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
        upper = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)

    Returns ``(difference, lower, upper)`` scaled by ``multiplier`` (percentage points
    by default). A zero denominator in either group gives NaN for all three.
    """
    (x1, n1, x2, n2), scalar = _arrays(numerator_1, denominator_1, numerator_2, denominator_2)
    p1 = proportion(x1, n1, 1.0)
    p2 = proportion(x2, n2, 1.0)
    l1, u1 = wilson_interval(x1, n1, confidence, 1.0)
    l2, u2 = wilson_interval(x2, n2, confidence, 1.0)
    d = p1 - p2
    lower = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (
        _out(d * multiplier, scalar),
        _out(lower * multiplier, scalar),
        _out(upper * multiplier, scalar),
    )


# --------------------------------------------------------------------------- rates
def rate(numerator: ArrayLike, denominator: ArrayLike, multiplier: float):
    """Crude rate ``numerator / denominator * multiplier``; denominator <= 0 -> NaN."""
    return proportion(numerator, denominator, multiplier)


def _count_limits_exact(o: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact Poisson limits for counts (Armitage & Berry): chi2 quantiles / 2."""
    lower = np.where(o > 0, chi2.ppf((1.0 - c) / 2.0, 2.0 * np.where(o > 0, o, 1.0)) / 2.0, 0.0)
    upper = chi2.ppf(c + (1.0 - c) / 2.0, 2.0 * o + 2.0) / 2.0
    return lower, upper


def _count_limits_byars(o: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Byar's approximation to the Poisson limits (Breslow & Day 1987)."""
    z = norm.ppf(c + (1.0 - c) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = o * (1.0 - 1.0 / (9.0 * o) - z / (3.0 * np.sqrt(o))) ** 3
        o1 = o + 1.0
        upper = o1 * (1.0 - 1.0 / (9.0 * o1) + z / (3.0 * np.sqrt(o1))) ** 3
    lower = np.where(lower < 0, np.nan, lower)  # PHEindicatormethods sets negatives to NA
    return lower, upper


def _scaled(limits, n: np.ndarray, x: np.ndarray, multiplier: float, scalar: bool):
    ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
    ns = np.where(ok, n, 1.0)
    return tuple(_out(np.where(ok, lim / ns * multiplier, np.nan), scalar) for lim in limits)


def exact_poisson_interval(
    count: ArrayLike,
    denominator: ArrayLike = 1.0,
    confidence: float = 0.95,
    multiplier: float = 1.0,
):
    """Exact Poisson (chi-squared) limits, ``chi2(a/2, 2O)/2`` and ``chi2(1-a/2, 2O+2)/2``.

    Source: Armitage & Berry (2002); Fingertips rates guidance. Limits are divided by
    ``denominator`` and multiplied by ``multiplier`` (leave both at 1 for limits on the
    count itself). Count 0 has a lower limit of 0. Returns ``(lower, upper)``.
    """
    (x, n), scalar = _arrays(count, denominator)
    _check_counts("count", x)
    c = _confidence(confidence)
    xs = np.where(np.isfinite(x), x, 0.0)
    return _scaled(_count_limits_exact(xs, c), n, x, multiplier, scalar)


def byars_interval(
    count: ArrayLike,
    denominator: ArrayLike = 1.0,
    confidence: float = 0.95,
    multiplier: float = 1.0,
):
    """Byar's approximation, ``PHEindicatormethods::byars_lower``/``byars_upper``::

        lower = O (1 - 1/(9O) - z/(3 sqrt(O)))^3
        upper = (O+1) (1 - 1/(9(O+1)) + z/(3 sqrt(O+1)))^3

    Scaled by ``multiplier / denominator``. A negative (or undefined, O = 0) lower limit
    is NaN, as in PHEindicatormethods. Returns ``(lower, upper)``.
    """
    (x, n), scalar = _arrays(count, denominator)
    _check_counts("count", x)
    c = _confidence(confidence)
    xs = np.where(np.isfinite(x), x, 0.0)
    return _scaled(_count_limits_byars(xs, c), n, x, multiplier, scalar)


def _count_limits(o: np.ndarray, c: float, exact_below: float) -> tuple[np.ndarray, np.ndarray]:
    el, eu = _count_limits_exact(o, c)
    bl, bu = _count_limits_byars(np.where(o >= exact_below, o, 1.0), c)
    use_exact = o < exact_below
    return np.where(use_exact, el, bl), np.where(use_exact, eu, bu)


def rate_interval(
    count: ArrayLike,
    denominator: ArrayLike,
    confidence: float = 0.95,
    multiplier: float = 100_000.0,
    exact_below: float = _EXACT_BELOW,
):
    """Rate limits: exact Poisson below ``exact_below`` (10) events, Byar's otherwise.

    This is the Fingertips / ``PHEindicatormethods::phe_rate`` rule. Returns
    ``(lower, upper)`` per ``multiplier`` units of denominator (e.g. per 1,000 or per
    100,000 person-years). Denominator 0 -> NaN.
    """
    (x, n), scalar = _arrays(count, denominator)
    _check_counts("count", x)
    c = _confidence(confidence)
    xs = np.where(np.isfinite(x), x, 0.0)
    return _scaled(_count_limits(xs, c, exact_below), n, x, multiplier, scalar)


def rate_with_intervals(count: ArrayLike, denominator: ArrayLike, multiplier: float) -> dict[str, np.ndarray | float]:
    """Rate plus 95% and 99.8% limits keyed by the output-contract column names."""
    lo95, hi95 = rate_interval(count, denominator, 0.95, multiplier)
    lo998, hi998 = rate_interval(count, denominator, 0.998, multiplier)
    return {
        "value": rate(count, denominator, multiplier),
        "lower_ci_95": lo95,
        "upper_ci_95": hi95,
        "lower_ci_99_8": lo998,
        "upper_ci_99_8": hi998,
    }


# --------------------------------------------------------------------------- comparison
def compare_with_benchmark(
    value: ArrayLike,
    lower_ci_95: ArrayLike,
    upper_ci_95: ArrayLike,
    benchmark: ArrayLike,
    polarity: str | None = "neutral",
    is_benchmark: ArrayLike | bool = False,
):
    """Fingertips comparison of each area with a benchmark (England's value).

    * ``lower_ci_95 > benchmark`` -> ``higher``; ``upper_ci_95 < benchmark`` ->
      ``lower``; otherwise ``similar`` (a limit equal to the benchmark is similar).
    * ``polarity="high"`` (higher is better) maps higher/lower to better/worse;
      ``polarity="low"`` maps them to worse/better; ``"neutral"`` keeps
      higher/lower/similar.
    * ``not_compared`` for the benchmark's own rows (``is_benchmark``), rows with no
      value or no interval, rows with no benchmark, and ``polarity=None`` (used for
      indicators that are never compared, e.g. P04a).

    Returns an array of strings (a ``str`` for scalar input).
    """
    if polarity not in ("high", "low", "neutral", None):
        raise ValueError(f"polarity must be 'high', 'low', 'neutral' or None, got {polarity!r}")
    (v, lo, hi, b, own), scalar = _arrays(value, lower_ci_95, upper_ci_95, benchmark, is_benchmark)
    higher, lower = {
        "high": ("better", "worse"),
        "low": ("worse", "better"),
        "neutral": ("higher", "lower"),
        None: ("higher", "lower"),
    }[polarity]
    out = np.full(v.shape, "similar", dtype=object)
    with np.errstate(invalid="ignore"):
        out[lo > b] = higher
        out[hi < b] = lower
    missing = ~(np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi) & np.isfinite(b))
    out[missing | (own != 0)] = "not_compared"
    if polarity is None:
        out[...] = "not_compared"
    return _out_labels(out, scalar)


# --------------------------------------------------------------------------- funnels
def sigma_adjustment(
    p: float,
    population: ArrayLike,
    average_proportion: float,
    side: str,
    multiplier: float,
):
    """Funnel limit for a proportion: ``PHEindicatormethods`` ``sigma_adjustment``.

    The observed proportion whose Wilson score interval (one-sided probability ``p``,
    e.g. 0.975 for 95%, 0.999 for 99.8%) just reaches ``average_proportion``, for a
    sample of size ``population``; ``side`` is ``"low"`` or ``"high"``. Transcribed
    term by term from the R source so that published values are reproduced exactly.
    """
    (n,), scalar = _arrays(population)
    q2 = norm.ppf(p) ** 2
    av = average_proportion
    with np.errstate(invalid="ignore", divide="ignore"):
        first_part = av * (n / q2 + 1)
        adj = np.sqrt(
            (-8 * av * (n / q2 + 1)) ** 2 - 64 * (1 / q2 + 1 / n) * av * (n * (av * (n / q2 + 2) - 1) + q2 * (av - 1))
        )
        last_part = 1 / q2 + 1 / n
        if side == "low":
            result = (first_part - adj / 8) / last_part
        elif side == "high":
            result = (first_part + adj / 8) / last_part
        else:
            raise ValueError("side must be 'low' or 'high'")
        result = (result / n) * multiplier
    return _out(result, scalar)


def _funnel_probabilities(confidence: float) -> float:
    """One-sided probability for a two-sided funnel level (95% -> 0.975)."""
    c = _confidence(confidence)
    return 1.0 - (1.0 - c) / 2.0


def proportion_funnel_limits(
    denominator: ArrayLike,
    centre_value: float,
    confidence: float = 0.95,
    multiplier: float = 100.0,
):
    """Funnel-plot control limits for a proportion at each ``denominator``.

    ``centre_value`` is the benchmark (England's value) in output units (percent with
    the default ``multiplier``). Uses PHE's Wilson-based ``sigma_adjustment``; limits are
    clipped to ``[0, multiplier]``. Returns ``(lower, upper)``; denominator <= 0 -> NaN.
    """
    (n,), scalar = _arrays(denominator)
    p = _funnel_probabilities(confidence)
    av = float(centre_value) / multiplier
    ok = np.isfinite(n) & (n > 0)
    ns = np.where(ok, n, 1.0)
    lo = np.asarray(sigma_adjustment(p, ns, av, "low", multiplier), dtype=float)
    hi = np.asarray(sigma_adjustment(p, ns, av, "high", multiplier), dtype=float)
    lo = np.where(ok, np.clip(np.nan_to_num(lo, nan=0.0), 0.0, multiplier), np.nan)
    hi = np.where(ok, np.clip(np.nan_to_num(hi, nan=multiplier), 0.0, multiplier), np.nan)
    return _out(lo, scalar), _out(hi, scalar)


def proportion_funnel_significance(
    numerator: ArrayLike,
    denominator: ArrayLike,
    centre_value: float | None = None,
    multiplier: float = 100.0,
):
    """Funnel significance label per area, as ``assign_funnel_significance`` (proportion).

    ``centre_value`` (output units) defaults to ``sum(numerator) / sum(denominator)``,
    PHE's default. Labels: ``"High (0.001)"``, ``"High (0.025)"``, ``"Low (0.001)"``,
    ``"Low (0.025)"``, ``"Not significant"``; ``None`` where the denominator is 0 or a
    value is missing.
    """
    (x, n), scalar = _arrays(numerator, denominator)
    ok = np.isfinite(x) & np.isfinite(n) & (n > 0)
    if centre_value is None:
        av = float(np.sum(x[ok]) / np.sum(n[ok]))
    else:
        av = float(centre_value) / multiplier
    ns = np.where(ok, n, 1.0)
    prop = np.where(ok, x, 0.0) / ns
    with np.errstate(invalid="ignore"):
        out = np.full(x.shape, "Not significant", dtype=object)
        conditions = (
            [(prop > np.asarray(sigma_adjustment(0.975, ns, av, "high", 1))), "High (0.025)"],
            [(prop > np.asarray(sigma_adjustment(0.999, ns, av, "high", 1))), "High (0.001)"],
            [(prop < np.asarray(sigma_adjustment(0.975, ns, av, "low", 1))), "Low (0.025)"],
            [(prop < np.asarray(sigma_adjustment(0.999, ns, av, "low", 1))), "Low (0.001)"],
        )
        # apply in reverse order of PHE's case_when so the first matching rule wins
        for cond, label in conditions:
            out[cond] = label
    out[~ok] = None
    return _out_labels(out, scalar)


def _poisson_cis(z: np.ndarray, x_a: np.ndarray, x_b: np.ndarray) -> np.ndarray:
    """Vectorised transcription of PHE's ``poisson_cis``: P(x_a <= X <= x_b), X ~ Po(z).

    Sums the Poisson series term by term with the same operations, in the same order,
    as the R source (including its 1e30 rescaling and 1e-10 stopping rule), so that
    the bisection in :func:`poisson_funnel` takes exactly the same branches.
    """
    z = np.asarray(z, dtype=float)
    q = np.ones_like(z)
    tot = np.zeros_like(z)
    s = np.zeros_like(z)
    k = 0.0
    active = np.ones(z.shape, dtype=bool)
    while True:
        active = active & ((k <= z) | (q > tot * 1e-10))
        if not active.any():
            break
        tot = np.where(active, tot + q, tot)
        inside = active & (k >= x_a) & (k <= x_b)
        s = np.where(inside, s + q, s)
        big = active & (tot > 1e30)
        if big.any():
            s = np.where(big, s / 1e30, s)
            tot = np.where(big, tot / 1e30, tot)
            q = np.where(big, q / 1e30, q)
        k += 1.0
        q = np.where(active, q * z / k, q)
    return s / tot


def poisson_funnel(obs: ArrayLike, p: float, side: str):
    """Expected count at which ``obs`` sits on a Poisson funnel limit (PHE ``poisson_funnel``).

    ``side="low"``: the mean ``m`` with ``P(X >= obs | m) = p`` (used for upper limits);
    ``side="high"``: the mean with ``P(X <= obs | m) = p`` (used for lower limits).
    Found, as in the Fingertips macro, by bisection on ``v = m / (1 + obs + m)`` to a
    step of 1e-7, so the values differ from the exact chi-squared quantile in the 7th
    significant figure; they are kept for exact reproduction of PHE's funnel tables.
    """
    (o,), scalar = _arrays(obs)
    o = np.atleast_1d(o)
    v = np.full(o.shape, 0.5)
    dv = 0.5
    if side == "low":
        x_a, x_b = o, np.full(o.shape, 10000000000.0)
    elif side == "high":
        x_a, x_b = np.zeros_like(o), o
    else:
        raise ValueError("side must be 'low' or 'high'")
    while dv > 1e-7:
        dv = dv / 2
        z = (1 + o) * v / (1 - v)
        # Fast, accurate tail probability; the R series (accurate to ~1e-10) is only
        # summed where the two could fall on different sides of p.
        if side == "low":
            prob = np.where(o > 0, special.gammainc(np.where(o > 0, o, 1.0), z), 1.0)
        else:
            prob = special.gammaincc(o + 1, z)
        prob = np.array(prob, dtype=float)
        close = np.abs(prob - p) <= 1e-8
        if close.any():
            prob[close] = _poisson_cis(z[close], x_a[close], x_b[close])
        go_down = prob > p if side == "low" else prob < p
        v = np.where(go_down, v - dv, v + dv)
    result = (1 + o) * v / (1 - v)
    return _out(result, scalar)


def _continuous_count(target: np.ndarray, quantile: float, shift: float) -> np.ndarray:
    """Solve ``gammaincinv(O + shift, quantile) = target`` for a real count ``O >= 0``."""
    out = np.full(target.shape, np.nan)
    for i, t in np.ndenumerate(target):
        if not np.isfinite(t) or t <= 0:
            continue

        def f(o: float, t: float = t) -> float:
            return special.gammaincinv(o + shift, quantile) - t

        lo_o = 0.0 if shift > 0 else 1e-300
        if f(lo_o) > 0:
            out[i] = 0.0
            continue
        hi_o = max(1.0, 2.0 * t)
        while f(hi_o) < 0:
            hi_o *= 2.0
        out[i] = optimize.brentq(f, lo_o, hi_o, xtol=1e-12, rtol=1e-14, maxiter=500)
    return out


def rate_funnel_limits(
    denominator: ArrayLike,
    centre_value: float,
    confidence: float = 0.95,
    multiplier: float = 1000.0,
):
    """Funnel-plot control limits for a crude rate at each ``denominator``.

    ``centre_value`` is the benchmark rate per ``multiplier``. With expected count
    ``E = centre * denominator``, the upper limit is ``O / denominator`` where ``O``
    solves ``chi2(a/2, 2O)/2 = E`` (the count whose exact lower limit equals E), and the
    lower limit uses ``chi2(1-a/2, 2O+2)/2 = E`` (0 when no such O >= 0 exists). This is
    the continuous form of the curve that PHE's ``calculate_funnel_limits`` traces with
    ``poisson_funnel`` (statistic = "rate"), evaluated at the prison's own denominator.
    Returns ``(lower, upper)`` per ``multiplier``; denominator <= 0 -> NaN.
    """
    (n,), scalar = _arrays(denominator)
    c = _confidence(confidence)
    ok = np.isfinite(n) & (n > 0)
    expected = np.where(ok, n, np.nan) * float(centre_value) / multiplier
    o_upper = _continuous_count(expected, (1.0 - c) / 2.0, 0.0)
    o_lower = _continuous_count(expected, c + (1.0 - c) / 2.0, 1.0)
    ns = np.where(ok, n, 1.0)
    lower = np.where(ok, o_lower / ns * multiplier, np.nan)
    upper = np.where(ok, o_upper / ns * multiplier, np.nan)
    if float(centre_value) == 0.0:
        lower = np.where(ok, 0.0, np.nan)
    return _out(lower, scalar), _out(upper, scalar)


def funnel_ratio_significance(obs: ArrayLike, expected: ArrayLike, p: float, side: str):
    """PHE ``funnel_ratio_significance``: a limit of the observed count over ``expected``.

    ``side="low"`` gives the lower limit (0 for no events), ``"high"`` the upper limit,
    at confidence ``p`` (0.95 or 0.998): exact chi-squared limits below 10 events,
    Byar's approximation from 10. Used for funnel significance of rates and ratios.
    """
    (o, e), scalar = _arrays(obs, expected)
    _check_counts("obs", o)
    c = _confidence(p)
    lower, upper = _count_limits(np.where(np.isfinite(o), o, 0.0), c, _EXACT_BELOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        if side == "low":
            stat = np.where(o == 0, 0.0, lower) / e
        elif side == "high":
            stat = upper / e
        else:
            raise ValueError("side must be 'low' or 'high'")
    return _out(np.where(np.isfinite(o), stat, np.nan), scalar)


def rate_funnel_significance(
    numerator: ArrayLike,
    denominator: ArrayLike | None = None,
    *,
    multiplier: float,
    rate: ArrayLike | None = None,
    rate_type: str = "crude",
    centre_value: float | None = None,
):
    """Funnel significance label per area for rates (``assign_funnel_significance``).

    Follows PHEindicatormethods for ``statistic = "rate"``: when ``rate`` is given the
    denominator is derived as ``numerator / rate * multiplier`` (for ``crude`` rates a
    zero count falls back to ``denominator``; for ``dsr`` it is missing and areas with
    fewer than 10 events are labelled "Not applicable for events less than 10 for
    dsrs"). Without ``rate`` the denominator is used as is. The area is "High" when the
    lower limit of its count (exact below 10 events, Byar's otherwise, at 99.8% / 95%)
    divided by its denominator exceeds the centre, and "Low" when the upper limit is
    below it. ``centre_value`` (per ``multiplier``) defaults to the pooled rate.
    """
    if rate_type not in ("crude", "dsr"):
        raise ValueError("rate_type must be 'crude' or 'dsr'")
    x = np.asarray(numerator, dtype=float)
    scalar = np.ndim(numerator) == 0
    x = np.atleast_1d(x)
    den = None if denominator is None else np.atleast_1d(np.asarray(denominator, dtype=float))
    if rate is not None:
        r = np.atleast_1d(np.asarray(rate, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            derived = x / r * multiplier
        if rate_type == "dsr":
            derived = np.where(x == 0, np.nan, derived)
        else:
            if den is None and np.any(x == 0):
                raise ValueError("a denominator is needed for areas with 0 events")
            if den is not None:
                derived = np.where(x == 0, den, derived)
    else:
        if den is None:
            raise ValueError("give a denominator or a rate")
        derived = den
    ok = np.isfinite(x) & np.isfinite(derived) & (derived > 0)
    if centre_value is None:
        average = float(np.sum(x[np.isfinite(x)]) / np.nansum(derived))
    else:
        average = float(centre_value) / multiplier
    xs = np.where(ok, x, 0.0)
    ds = np.where(ok, derived, 1.0)
    out = np.full(x.shape, "Not significant", dtype=object)
    with np.errstate(invalid="ignore"):
        rules = [
            (average > np.asarray(funnel_ratio_significance(xs, ds, 0.95, "high")), "Low (0.025)"),
            (average > np.asarray(funnel_ratio_significance(xs, ds, 0.998, "high")), "Low (0.001)"),
            (average < np.asarray(funnel_ratio_significance(xs, ds, 0.95, "low")), "High (0.025)"),
            (average < np.asarray(funnel_ratio_significance(xs, ds, 0.998, "low")), "High (0.001)"),
        ]
    for cond, label in rules:  # reverse of PHE's case_when order: first match wins
        out[cond & ok] = label
    if rate_type == "dsr":
        out[x < 10] = "Not applicable for events less than 10 for dsrs"
    out[~np.isfinite(x)] = None
    return _out_labels(out, scalar)


def _r_nchar(value: float) -> int:
    """``nchar(as.character(x))`` for a whole number, including R's choice of e-notation."""
    v = float(value)
    digits = str(int(abs(v)))
    sign = 1 if v < 0 else 0
    significant = digits.rstrip("0") or "0"
    exponent = len(digits) - 1
    mantissa = 1 if len(significant) == 1 else len(significant) + 1
    sci = mantissa + (4 if exponent < 100 else 5)
    return sign + (len(digits) if len(digits) <= sci else sci)


def _signif_floor(x: float, percentage_down: float = 0.95) -> float:
    if x == 0:
        return 0.0
    n = _r_nchar(math.floor(x * percentage_down)) - 1
    return math.floor(x * percentage_down / 10**n) * 10**n


def _signif_ceiling(x: float, percentage_up: float = 1.05) -> float:
    if x == 0:
        return 0.0
    n = _r_nchar(math.ceil(x * percentage_up)) - 2
    return math.ceil(x * percentage_up / 10**n) * 10**n


def funnel_limits_table(
    numerator: ArrayLike,
    denominator: ArrayLike | None = None,
    *,
    statistic: str,
    multiplier: float,
    rate: ArrayLike | None = None,
    rate_type: str | None = None,
    years_of_data: float | None = None,
) -> pd.DataFrame:
    """The 100-point funnel table of ``PHEindicatormethods::calculate_funnel_limits``.

    For charting: the x axis runs from a rounded minimum to a rounded maximum of the
    (derived) denominators in 100 geometric steps, and the limits are evaluated at each
    step around the pooled average. ``statistic="proportion"`` returns columns
    ``Population, lower_2s_limit, upper_2s_limit, lower_3s_limit, upper_3s_limit,
    baseline``; ``statistic="rate"`` (``rate_type`` "crude" or "dsr", ``rate`` and
    ``years_of_data`` required) returns ``Events`` and the ``*_population_1_year`` and
    ``*_limit`` columns, as the R function does with ``type = "standard"``.
    """
    x = np.atleast_1d(np.asarray(numerator, dtype=float))
    if statistic == "proportion":
        if denominator is None:
            raise ValueError("proportions need a denominator")
        derived = np.atleast_1d(np.asarray(denominator, dtype=float))
    elif statistic == "rate":
        if rate is None or rate_type not in ("crude", "dsr") or years_of_data is None:
            raise ValueError("rates need rate, rate_type ('crude' or 'dsr') and years_of_data")
        r = np.atleast_1d(np.asarray(rate, dtype=float))
        with np.errstate(divide="ignore", invalid="ignore"):
            derived = multiplier * x / r
        if rate_type == "dsr":
            derived = np.where(x == 0, np.nan, derived)
        elif denominator is not None:
            derived = np.where(x == 0, np.asarray(denominator, dtype=float), derived)
        elif np.any(x == 0):
            raise ValueError("rates with 0 events need the denominator")
    else:
        raise ValueError("statistic must be 'proportion' or 'rate'")

    av = float(np.sum(x) / np.nansum(derived))
    min_den = float(np.nanmin(derived))
    max_den = float(np.nanmax(derived))
    if statistic == "rate":
        assert years_of_data is not None
        if max_den > 2 * min_den:
            axis_min = 0.0
        else:
            axis_min = _signif_floor(min_den / years_of_data) * years_of_data
        axis_max = _signif_ceiling(max_den / years_of_data) * years_of_data
        axis_min = float(math.floor(axis_min * av))
        axis_max = float(math.ceil(axis_max * av))
    else:
        axis_min = 0.0 if max_den > 2 * min_den else _signif_floor(min_den)
        axis_max = _signif_ceiling(max_den)

    first = [max(1.0, axis_min)]
    for j in range(2, 101):
        prev = first[-1]
        step = round((axis_max / prev) ** (1 / (101 - j)) * prev)
        first.append(float(max(step, prev + 1)))
    col = np.array(first)

    if statistic == "proportion":
        table = pd.DataFrame({"Population": col})
        for name, p, side, clip in (
            ("lower_2s_limit", 0.975, "low", "max"),
            ("upper_2s_limit", 0.975, "high", "min"),
            ("lower_3s_limit", 0.999, "low", "max"),
            ("upper_3s_limit", 0.999, "high", "min"),
        ):
            values = np.asarray(sigma_adjustment(p, col, av, side, multiplier), dtype=float)
            # R's max(0, NaN) / min(100, NaN) are NaN; PHE clips at 0 and 100
            table[name] = np.maximum(0.0, values) if clip == "max" else np.minimum(100.0, values)
        table["baseline"] = av * multiplier
        return table

    table = pd.DataFrame({"Events": col})
    pf = {
        ("lower", "2s"): poisson_funnel(col, 0.025, "high"),
        ("upper", "2s"): poisson_funnel(col, 0.025, "low"),
        ("lower", "3s"): poisson_funnel(col, 0.001, "high"),
        ("upper", "3s"): poisson_funnel(col, 0.001, "low"),
    }
    assert years_of_data is not None
    for level in ("2s", "3s"):
        for side in ("lower", "upper"):
            population = np.asarray(pf[(side, level)]) / av
            table[f"{side}_{level}_population_1_year"] = population / years_of_data
            table[f"{side}_{level}_limit"] = col / population * multiplier
    table = table[
        [
            "Events",
            "lower_2s_population_1_year",
            "lower_2s_limit",
            "upper_2s_population_1_year",
            "upper_2s_limit",
            "lower_3s_population_1_year",
            "lower_3s_limit",
            "upper_3s_population_1_year",
            "upper_3s_limit",
        ]
    ].copy()
    table["baseline"] = av * multiplier
    return table
