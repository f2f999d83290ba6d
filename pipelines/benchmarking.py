"""Publication statistics over the indicator table: intervals, England comparison, funnels, SPC, disclosure.

The statistical methods themselves live in pipelines.stats, pipelines.spc and
pipelines.disclosure (each pinned to published reference values); this module
applies them to whole tables, choosing the method each indicator's catalogue
entry names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines import disclosure, spc, stats
from pipelines.catalogue import Indicator

FUNNEL_POINTS = 100
SPC_DIRECTIONS = {"high": "increase", "low": "decrease", "neutral": "neutral"}
INTERVAL_COLUMNS = ("lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8")


def _intervals(indicator: Indicator, numerator: np.ndarray, denominator: np.ndarray) -> dict[str, np.ndarray]:
    """Intervals for one indicator's rows; NaN where there is no value."""
    n = np.asarray(numerator, dtype=float)
    d = np.asarray(denominator, dtype=float)
    usable = np.isfinite(n) & np.isfinite(d) & (d > 0)
    if indicator.method == "wilson":
        usable &= n <= d
    out = {c: np.full(len(n), np.nan) for c in INTERVAL_COLUMNS}
    if not usable.any():
        return out
    if indicator.method == "wilson":
        computed = stats.proportion_with_intervals(n[usable], d[usable], multiplier=indicator.multiplier)
    else:
        computed = stats.rate_with_intervals(n[usable], d[usable], multiplier=indicator.multiplier)
    for column in INTERVAL_COLUMNS:
        out[column][usable] = computed[column]
    return out


def add_statistics(values: pd.DataFrame, catalogue: dict[str, Indicator], gaps: pd.DataFrame) -> pd.DataFrame:
    """Fill the interval and comparison columns of `indicators.indicator_values` rows."""
    values = values.copy()
    for code, rows in values.groupby("indicator_id").groups.items():
        indicator = catalogue[code]
        if indicator.method == "newcombe":
            continue
        filled = _intervals(indicator, values.loc[rows, "numerator"], values.loc[rows, "denominator"])
        for column, array in filled.items():
            values.loc[rows, column] = array
    if len(gaps):
        _fill_gaps(values, catalogue, gaps)
    keys = ["indicator_id", "period_type", "period_start"]
    england = values.loc[values["level"] == "england", [*keys, "value"]].rename(columns={"value": "england_value"})
    merged = values.merge(england, on=keys, how="left")
    comparison = np.full(len(values), "not_compared", dtype=object)
    for code, index in merged.groupby("indicator_id").indices.items():
        indicator = catalogue[code]
        part = merged.iloc[index]
        polarity = None if indicator.method == "newcombe" else indicator.polarity
        comparison[index] = stats.compare_with_benchmark(
            part["value"].to_numpy(float), part["lower_ci_95"].to_numpy(float), part["upper_ci_95"].to_numpy(float),
            part["england_value"].to_numpy(float), polarity, is_benchmark=(part["level"] == "england").to_numpy())
    values["comparison"] = comparison
    return values


def _fill_gaps(values: pd.DataFrame, catalogue: dict[str, Indicator], gaps: pd.DataFrame) -> None:
    """Newcombe's interval for gap indicators (P04a: PFI minus public), England rows."""
    for gap in gaps.itertuples():
        mask = ((values["indicator_id"] == gap.indicator_id) & (values["period_type"] == gap.period_type)
                & (values["period_start"] == gap.period_start) & (values["level"] == "england"))
        if not mask.any() or not (gap.denominator_a > 0 and gap.denominator_b > 0):
            continue
        multiplier = catalogue[gap.indicator_id].multiplier
        for confidence, low, high in ((0.95, "lower_ci_95", "upper_ci_95"), (0.998, "lower_ci_99_8", "upper_ci_99_8")):
            _, lower, upper = stats.newcombe_difference_interval(
                gap.numerator_a, gap.denominator_a, gap.numerator_b, gap.denominator_b,
                confidence=confidence, multiplier=multiplier)
            values.loc[mask, low] = lower
            values.loc[mask, high] = upper


def funnel_limits(values: pd.DataFrame, catalogue: dict[str, Indicator], points: int = FUNNEL_POINTS) -> pd.DataFrame:
    """95% and 99.8% funnel limits around England's value, over the prisons' denominators."""
    frames = []
    prisons = values[(values["level"] == "prison") & (values["denominator"] > 0)]
    england = values[values["level"] == "england"].set_index(["indicator_id", "period_type", "period_start"])
    for (code, period_type, start), rows in prisons.groupby(["indicator_id", "period_type", "period_start"]):
        indicator = catalogue[code]
        key = (code, period_type, start)
        if indicator.method == "newcombe" or key not in england.index:
            continue
        centre = england.loc[key, "value"]
        if not np.isfinite(centre):
            continue
        top = float(rows["denominator"].max()) * 1.1
        x = np.unique(np.round(np.geomspace(1, max(top, 2), points), 3))
        limits = {}
        for confidence, suffix in ((0.95, "95"), (0.998, "99_8")):
            if indicator.method == "wilson":
                lower, upper = stats.proportion_funnel_limits(x, centre, confidence, indicator.multiplier)
            else:
                lower, upper = stats.rate_funnel_limits(x, centre, confidence, indicator.multiplier)
            limits[f"lower_{suffix}"], limits[f"upper_{suffix}"] = lower, upper
        frames.append(pd.DataFrame({
            "indicator_id": code, "period_type": period_type, "period_start": start,
            "period_end": rows["period_end"].iloc[0], "denominator": x, "england_value": centre, **limits}))
    columns = ["indicator_id", "period_type", "period_start", "period_end", "denominator", "england_value",
               "lower_95", "upper_95", "lower_99_8", "upper_99_8"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def spc_charts(values: pd.DataFrame, catalogue: dict[str, Indicator]) -> pd.DataFrame:
    """XmR charts of the final (not provisional) monthly series of England and each prison.

    Each series is charted over its values present (`spc.xmr_columns` of the series), but the
    series with as many values present and the same improvement direction are charted together,
    one row each, by `spc.xmr_rows`: one call per group instead of one per series."""
    monthly = values[(values["period_type"] == "month") & values["level"].isin(["england", "prison"])
                     & ~values["provisional"].astype(bool)].sort_values(["indicator_id", "level", "area_code",
                                                                          "period_start"])
    columns = ["indicator_id", "level", "area_code", "month", "value", "mean", "lower_process_limit",
               "upper_process_limit", "special_cause", "variation", "rules", "target", "assurance"]
    if monthly.empty:
        return pd.DataFrame(columns=columns)
    keys = monthly[["indicator_id", "level", "area_code"]].to_numpy()
    raw = monthly["value"].to_numpy(float)
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(axis=1)])
    series = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(keys)]))  # each row's series
    present = np.isfinite(raw)
    counts = np.bincount(series, weights=present, minlength=len(starts)).astype(int)
    indicator = [catalogue[code] for code in keys[starts, 0]]
    direction = np.array([SPC_DIRECTIONS[i.polarity] for i in indicator])
    # each series' present rows, in order: series s's are present_rows[first[s]:first[s] + counts[s]]
    present_rows = np.flatnonzero(present)
    first = np.r_[0, np.cumsum(counts)[:-1]]
    limits = {name: np.full(len(starts), np.nan) for name in ("mean", "lpl", "upl")}
    rules = np.full(len(raw), None, dtype=object)
    variation = np.full(len(raw), None, dtype=object)
    charted = counts >= 2
    for count, way in {(c, d) for c, d in zip(counts[charted], direction[charted], strict=True)}:
        group = np.flatnonzero(charted & (counts == count) & (direction == way))
        rows = present_rows[first[group][:, None] + np.arange(count)]
        chart = spc.xmr_rows(raw[rows])
        for name in limits:
            limits[name][group] = chart[name]
        rules[rows] = chart["special_cause_type"]
        variation[rows] = spc.variation(chart["special_cause_type"], way)
    target = np.array([np.nan if i.target is None else i.target for i in indicator])
    assurance = np.array([spc.assurance(lower, upper, i.target, way) for lower, upper, i, way
                          in zip(limits["lpl"], limits["upl"], indicator, direction, strict=True)], dtype=object)
    kept = charted[series]
    frame = pd.DataFrame({
        "indicator_id": keys[:, 0], "level": keys[:, 1], "area_code": keys[:, 2],
        "month": monthly["period_start"].to_numpy(), "value": raw, "mean": limits["mean"][series],
        "lower_process_limit": limits["lpl"][series], "upper_process_limit": limits["upl"][series],
        "special_cause": present & (rules != "Common Cause"), "variation": variation, "rules": rules,
        "target": target[series], "assurance": assurance[series],
    })
    return frame[kept].reset_index(drop=True)[columns]


def published_values(values: pd.DataFrame, prisons: pd.DataFrame,
                     policy: disclosure.DisclosurePolicy | None = None) -> pd.DataFrame:
    """Disclosure-controlled copy of the indicator values (the public figures)."""
    parents = prisons.set_index("prison_code")[["region", "operator", "function"]].to_dict("index")
    return disclosure.apply_disclosure_control(values, parents, policy or disclosure.DisclosurePolicy())
