"""Statistical process control: NHS England "Making Data Count" XmR charts.

Pure functions over a series of values (one value per month, in time order), or over many
series of one length at once, one per row, the rules running along the last axis (`xmr_rows`:
the publication charts thousands of series, and the rules of one are a few small numpy calls). The
calculations and the special-cause rules are those of the NHS-R community package
``NHSRplotthedots`` (``ptd_spc``; source files ``ptd_spc_standard.R``,
``ptd_calculate_point_type.R`` and ``ptd_calculate_assurance_type.R``, version 0.2),
which implements the NHS England / NHS Improvement "Making Data Count" (plot the
dots) methodology. We follow that package rather than re-deriving the rules because
it is the reference implementation NHS analysts use and it publishes test
expectations we can reproduce (see ``tests/test_spc.py``).

Chart (XmR / individuals chart)
-------------------------------
* ``mean`` = mean of the values (of the first ``fix_after_n_points`` values when
  the limits are fixed, ``fix_after_n_points`` in NHSRplotthedots).
* moving ranges ``mR_i = |x_i - x_(i-1)|`` over the same points; ``mean_moving_range``
  is their mean. With ``screen_outliers`` (the default, as in NHSRplotthedots) moving
  ranges of at least ``3.267 x`` the mean moving range are dropped and the mean is
  recomputed.
* process limits ``mean +/- 2.66 x mean_moving_range``; "near" limits (2 sigma)
  ``mean +/- 2 x (2.66 / 3) x mean_moving_range``.

Special-cause rules (a point is special cause if any rule marks it)
-------------------------------------------------------------------
1. **Outside limits** - a single point above the upper or below the lower process limit.
2. **Trend** - 7 consecutive points each strictly higher (or each strictly lower)
   than the one before (6 consecutive increases); equal neighbours break a trend. All
   7 points are marked. NHSRplotthedots uses 7 (MDC's Excel tool also offers 6; the
   package's maintainers keep 7 for SPC - issue #202), so we use 7.
3. **Two out of three near the limits** - in any window of 3 consecutive points, at
   least 2 lie between the 2-sigma and 3-sigma limits and all 3 lie on the same side
   of the mean; the points beyond 2 sigma are marked (not the third one).
4. **Shift** - 7 consecutive points on the same side of the mean (a point exactly on
   the mean breaks the run). All 7 (or more) points are marked.

When a point meets several rules the first in the order above decides its direction
(NHSRplotthedots' ``ptd_special_cause_type``): outside limits and the 2-in-3 / shift
rules use the side of the mean; a trend uses the direction of the trend (the step to
the next point when the next point is part of the same trend, else the step from the
previous point).

Variation per point
-------------------
``common_cause``; for ``improvement_direction`` "increase"/"high" or "decrease"/"low"
a high-side signal is ``special_cause_improvement`` or ``special_cause_concern``
accordingly; for "neutral" every signal is ``special_cause_neither`` (NHSRplotthedots
labels these ``special_cause_neutral_high``/``_low``; the side is kept in the
``signal_side`` column).

Assurance against a target (``ptd_calculate_assurance_type``)
------------------------------------------------------------
Using the limits of the latest point: for improvement by increase, a target above the
upper limit is ``consistent_fail`` and one below the lower limit ``consistent_pass``
(reversed for improvement by decrease); otherwise ``inconsistent``. No target, or a
neutral indicator, gives ``None``.

Missing values
--------------
NHSRplotthedots requires a series without gaps. Here missing values (NaN/None) are
removed, the chart is computed over the remaining points in order, and the missing
positions are returned with NaN values and a ``None`` variation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "LIMIT",
    "LIMIT_CLOSE",
    "SCREEN_OUTLIERS_FACTOR",
    "assurance",
    "part_of_run",
    "seven_point_one_side_mean",
    "seven_point_trend",
    "special_cause_type",
    "spc_summary",
    "two_in_three",
    "variation",
    "xmr_chart",
    "xmr_columns",
    "xmr_limits",
    "xmr_rows",
]

LIMIT = 2.66  # 3 sigma for an XmR chart (3 / d2, d2 = 1.128)
LIMIT_CLOSE = 2 * (LIMIT / 3)  # 2 sigma, computed as NHSRplotthedots does
SCREEN_OUTLIERS_FACTOR = 3.267  # D4 for n = 2: upper limit of the moving range
RUN = 7

_DIRECTIONS = {
    "increase": 1,
    "high": 1,
    "decrease": -1,
    "low": -1,
    "neutral": 0,
}


def _direction(improvement_direction: str) -> int:
    try:
        return _DIRECTIONS[improvement_direction]
    except KeyError:
        raise ValueError("improvement_direction must be one of increase/high, decrease/low, neutral") from None


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    return math.fsum(values) / values.size


def _row_means(rows: np.ndarray) -> np.ndarray:
    """`_mean` of each row: summed exactly, so a series' limits do not depend on its neighbours."""
    return np.array([_mean(row) for row in rows], dtype=float)


def _pad(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """Zeros before and after the points of each series (the last axis)."""
    return np.pad(values, [(0, 0)] * (values.ndim - 1) + [(before, after)])


# --------------------------------------------------------------------------- limits
def xmr_limits(
    values: Sequence[float] | np.ndarray,
    fix_after_n_points: int | None = None,
    screen_outliers: bool = True,
) -> dict[str, float]:
    """Mean, mean moving range and process limits of an XmR chart (``ptd_spc_standard``).

    ``values`` must be in time order without missing values. Returns a dict with
    ``mean, mean_moving_range, lpl, upl, near_lpl, near_upl`` (NaN when fewer than 2
    values are available).
    """
    return {name: float(limit[0]) for name, limit in
            _row_limits(np.asarray(values, dtype=float)[None, :], fix_after_n_points, screen_outliers).items()}


def _row_limits(y: np.ndarray, fix_after_n_points: int | None, screen_outliers: bool) -> dict[str, np.ndarray]:
    """`xmr_limits` of each row of y."""
    fix_y = y if fix_after_n_points is None else y[:, : int(fix_after_n_points)]
    mean = _row_means(fix_y)
    mr = np.abs(np.diff(fix_y, axis=-1))
    amr = _row_means(mr)
    if screen_outliers and mr.shape[-1]:
        mr = np.where(mr < SCREEN_OUTLIERS_FACTOR * amr[:, None], mr, np.nan)
        amr = _row_means(mr)
    return {
        "mean": mean,
        "mean_moving_range": amr,
        "lpl": mean - (LIMIT * amr),
        "upl": mean + (LIMIT * amr),
        "near_lpl": mean - (LIMIT_CLOSE * amr),
        "near_upl": mean + (LIMIT_CLOSE * amr),
    }


# --------------------------------------------------------------------------- rules
def seven_point_one_side_mean(relative_to_mean: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 where a point and the 6 before it are all on the same (non-zero) side of the mean.

    ``ptd_seven_point_one_side_mean``: only the 7th and later points of a run are 1;
    use :func:`part_of_run` to mark the whole run.
    """
    v = np.asarray(relative_to_mean, dtype=float)
    if v.shape[-1] == 0:
        return np.zeros(v.shape)
    windows = sliding_window_view(_pad(v, RUN - 1, 0), RUN, axis=-1)  # each point and the 6 before
    return (np.all(windows == windows[..., -1:], axis=-1) & (windows[..., -1] != 0)).astype(float)


def seven_point_trend(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """+1/-1 where a point ends 7 strictly increasing/decreasing points (``ptd_seven_point_trend``)."""
    y = np.asarray(values, dtype=float)
    out = np.zeros(y.shape)
    if y.shape[-1] < RUN:
        return out
    steps = sliding_window_view(np.sign(np.diff(y, axis=-1)), RUN - 1, axis=-1)  # the 6 steps ending at each point
    out[..., RUN - 1 :] = np.where(np.all(steps == 1, axis=-1), 1.0,
                                   np.where(np.all(steps == -1, axis=-1), -1.0, 0.0))
    return out


def part_of_run(flags: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 for every point of a flagged run of 7: the point or one of the next 6 is flagged.

    ``ptd_part_of_seven_trend`` (with the ``abs()`` fix of NHSRplotthedots issue #167, so
    decreasing trends count too).
    """
    v = np.abs(np.asarray(flags, dtype=float))
    if v.shape[-1] == 0:
        return np.zeros(v.shape)
    windows = sliding_window_view(_pad(v, 0, RUN - 1), RUN, axis=-1)  # each point and the 6 after
    return np.any(windows == 1, axis=-1).astype(float)


def two_in_three(
    close_to_limits: Sequence[float] | np.ndarray,
    relative_to_mean: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """1 where a point belongs to a window of 3 with >= 2 near-limit points, all on one side.

    ``ptd_two_in_three``; combine with ``close_to_limits`` (as
    ``ptd_part_of_two_in_three``) to mark only the near-limit points themselves.
    """
    v = np.asarray(close_to_limits, dtype=float)
    rtm = np.asarray(relative_to_mean, dtype=float)
    if v.shape[-1] == 0:
        return np.zeros(v.shape)
    near = sliding_window_view(_pad(v, 2, 2), 3, axis=-1).sum(axis=-1)
    side = sliding_window_view(_pad(rtm, 2, 2), 3, axis=-1).sum(axis=-1)
    window_hit = (near >= 2) & (np.abs(side) == 3)  # window k covers points k-2 .. k
    return (window_hit[..., :-2] | window_hit[..., 1:-1] | window_hit[..., 2:]).astype(float)


def special_cause_type(
    values: Sequence[float] | np.ndarray,
    relative_to_mean: Sequence[float] | np.ndarray,
    close_to_limits: Sequence[float] | np.ndarray,
    outside_limits: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Which rule marks each point (``ptd_special_cause_type``), in order of precedence.

    Returns strings: ``"Above UCL"``/``"Below LCL"``, ``"7 Point Trend (Increasing)"``/
    ``"(Decreasing)"``, ``"2 in 3 Above CL"``/``"Below CL"``, ``"7 Points Above CL"``/
    ``"Below CL"`` or ``"Common Cause"``.
    """
    y = np.asarray(values, dtype=float)
    rtm = np.asarray(relative_to_mean, dtype=float)
    close = np.asarray(close_to_limits, dtype=float)
    outside = np.asarray(outside_limits, dtype=float)
    n = y.shape[-1]
    trend = part_of_run(seven_point_trend(y))
    two3 = ((two_in_three(close, rtm) == 1) & (np.abs(close) == 1)).astype(float)
    shift = part_of_run(seven_point_one_side_mean(rtm))

    sdy = np.sign(np.diff(y, axis=-1))
    right = np.concatenate([sdy, sdy[..., -1:]], axis=-1) if n > 1 else np.zeros(y.shape)
    left = _pad(sdy, 1, 0)
    next_in_trend = _pad(trend[..., 1:], 0, 1) != 0
    step = np.where(next_in_trend & (trend != 0), right, left)

    above = rtm > 0
    return np.select(  # the first rule that marks a point names it
        [outside != 0, trend != 0, two3 != 0, shift != 0],
        [np.where(rtm == 1, "Above UCL", "Below LCL"),
         np.where(step == 1, "7 Point Trend (Increasing)", "7 Point Trend (Decreasing)"),
         np.where(above, "2 in 3 Above CL", "2 in 3 Below CL"),
         np.where(above, "7 Points Above CL", "7 Points Below CL")],
        default="Common Cause",
    ).astype(object)


def variation(special_cause: Sequence[str] | np.ndarray, improvement_direction: str) -> np.ndarray:
    """Variation signal per point from its special-cause type (``ptd_point_type``).

    ``common_cause``, ``special_cause_improvement``, ``special_cause_concern``; for a
    neutral indicator every signal is ``special_cause_neither``.
    """
    direction = _direction(improvement_direction)
    types = np.asarray(special_cause, dtype=object)

    def of(t: str | None) -> str | None:
        if t is None:
            return None
        v = _signal(t)
        if v == 0:
            return "common_cause"
        if direction == 0:
            return "special_cause_neither"
        return "special_cause_improvement" if v * direction > 0 else "special_cause_concern"

    return _each_distinct(types, of)


def _signal(special_cause: str) -> int:
    """+1 for a signal above the mean or rising, -1 below or falling, 0 for common cause."""
    if "Above" in special_cause or "Increasing" in special_cause:
        return 1
    return -1 if ("Below" in special_cause or "Decreasing" in special_cause) else 0


def _each_distinct(values: np.ndarray, function) -> np.ndarray:
    """function of each value, called once per distinct value (a chart has a handful of types)."""
    flat = values.ravel().tolist()
    results = {value: function(value) for value in set(flat)}
    return np.array([results[value] for value in flat], dtype=object).reshape(values.shape)


# --------------------------------------------------------------------------- chart
def xmr_chart(
    values: Sequence[float | None] | np.ndarray | pd.Series,
    improvement_direction: str = "increase",
    fix_after_n_points: int | None = None,
    screen_outliers: bool = True,
) -> pd.DataFrame:
    """XmR chart of a time-ordered series with NHSRplotthedots' special-cause rules.

    Returns one row per input value (same order, default RangeIndex) with columns
    ``value, mean, mean_moving_range, lpl, upl, outside_limits, relative_to_mean,
    close_to_limits, special_cause_type, special_cause_flag, variation, signal_side``.
    ``signal_side`` is ``"high"``/``"low"`` for special-cause points, else ``None``.
    Missing values are skipped (see module docstring); with fewer than 2 values the
    limits are NaN and every point is ``common_cause``.
    """
    return pd.DataFrame(xmr_columns(values, improvement_direction, fix_after_n_points, screen_outliers))


def xmr_columns(
    values: Sequence[float | None] | np.ndarray | pd.Series,
    improvement_direction: str = "increase",
    fix_after_n_points: int | None = None,
    screen_outliers: bool = True,
) -> dict[str, np.ndarray]:
    """The columns of :func:`xmr_chart` as numpy arrays: the publication charts every prison's
    series of every indicator, thousands of them, and a DataFrame each was most of that time."""
    _direction(improvement_direction)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        raw = values.astype(float)
    else:
        raw = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype=float)
    present = np.isfinite(raw)
    chart = xmr_rows(raw[present][None, :], fix_after_n_points, screen_outliers)
    limits = {name: float(chart[name][0]) for name in ("mean", "mean_moving_range", "lpl", "upl")}
    outside, rtm, close, types = (chart[name][0] for name in ("outside_limits", "relative_to_mean",
                                                              "close_to_limits", "special_cause_type"))
    var = variation(types, improvement_direction)
    side = _each_distinct(types, lambda t: None if t == "Common Cause" else ("high" if _signal(t) > 0 else "low"))

    n = raw.size

    def spread(part: np.ndarray, fill, dtype) -> np.ndarray:
        full = np.full(n, fill, dtype=dtype)
        full[present] = part
        return full

    return {
        "value": raw,
        "mean": np.full(n, limits["mean"]),
        "mean_moving_range": np.full(n, limits["mean_moving_range"]),
        "lpl": np.full(n, limits["lpl"]),
        "upl": np.full(n, limits["upl"]),
        "outside_limits": spread(outside, False, bool),
        "relative_to_mean": spread(rtm, np.nan, float),
        "close_to_limits": spread(close, False, bool),
        "special_cause_type": spread(types, None, object),
        "special_cause_flag": spread(types != "Common Cause", False, bool),
        "variation": spread(var, None, object),
        "signal_side": spread(side, None, object),
    }


def assurance(
    lpl: float,
    upl: float,
    target: float | None,
    improvement_direction: str = "increase",
) -> str | None:
    """Assurance of meeting a target (``ptd_calculate_assurance_type``).

    ``consistent_pass`` / ``consistent_fail`` when the target lies outside the process
    limits (on the failing / passing side), ``inconsistent`` when it lies within them
    (a target equal to a limit is ``inconsistent``). ``None`` without a target, for a
    neutral indicator, or when the limits are unknown.
    """
    direction = _direction(improvement_direction)
    if target is None or direction == 0:
        return None
    if not (np.isfinite(lpl) and np.isfinite(upl) and np.isfinite(target)):
        return None
    if target > upl:
        return "consistent_fail" if direction == 1 else "consistent_pass"
    if target < lpl:
        return "consistent_pass" if direction == 1 else "consistent_fail"
    return "inconsistent"


def spc_summary(
    chart: pd.DataFrame,
    target: float | None = None,
    improvement_direction: str = "increase",
) -> dict[str, object]:
    """Summary of an :func:`xmr_chart` result (``summary.ptd_spc_df``).

    Returns ``{"mean", "lpl", "upl", "n", "common_cause", "special_cause_improvement",
    "special_cause_concern", "special_cause_neither", "variation_type",
    "assurance_type"}``; ``variation_type`` is the variation of the latest non-missing
    point and ``assurance_type`` comes from :func:`assurance`.
    """
    present = chart[chart["variation"].notna()]
    counts = present["variation"].value_counts()
    last = present["variation"].iloc[-1] if len(present) else None
    mean = float(chart["mean"].iloc[0]) if len(chart) else math.nan
    lpl = float(chart["lpl"].iloc[0]) if len(chart) else math.nan
    upl = float(chart["upl"].iloc[0]) if len(chart) else math.nan
    return {
        "mean": mean,
        "lpl": lpl,
        "upl": upl,
        "n": int(len(present)),
        "common_cause": int(counts.get("common_cause", 0)),
        "special_cause_improvement": int(counts.get("special_cause_improvement", 0)),
        "special_cause_concern": int(counts.get("special_cause_concern", 0)),
        "special_cause_neither": int(counts.get("special_cause_neither", 0)),
        "variation_type": last,
        "assurance_type": assurance(lpl, upl, target, improvement_direction),
    }


def xmr_rows(
    y: np.ndarray,
    fix_after_n_points: int | None = None,
    screen_outliers: bool = True,
) -> dict[str, np.ndarray]:
    """XmR charts of many series at once, one per row of `y` (each in time order, all of one
    length, without missing values): the publication charts thousands of series, and numpy's
    per-call overhead on each alone was most of that time.

    Returns each row's limits (``mean, mean_moving_range, lpl, upl, near_lpl, near_upl``, one
    value per row) and each point's ``outside_limits, relative_to_mean, close_to_limits`` and
    ``special_cause_type`` (the shape of `y`). A row whose limits are unknown is common cause."""
    y = np.asarray(y, dtype=float)
    limits = _row_limits(y, fix_after_n_points, screen_outliers)
    lpl, upl, near_lpl, near_upl, mean = (limits[name][:, None] for name in
                                          ("lpl", "upl", "near_lpl", "near_upl", "mean"))
    with np.errstate(invalid="ignore"):
        outside = (y > upl) | (y < lpl)
        rtm = np.sign(y - mean)
        close = ~outside & ((y < near_lpl) | (y > near_upl))
    types = np.full(y.shape, "Common Cause", dtype=object)
    charted = np.isfinite(limits["upl"])
    if y.shape[-1] >= 2 and charted.any():
        types[charted] = special_cause_type(y[charted], rtm[charted], close[charted].astype(float),
                                            outside[charted].astype(float))
    return {**limits, "outside_limits": outside, "relative_to_mean": rtm, "close_to_limits": close,
            "special_cause_type": types}
