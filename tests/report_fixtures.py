"""A small fake warehouse holding the tables the publication outputs read.

`make_warehouse()` returns an in-memory DuckDB connection with realistic, synthetic figures in:

* `indicators.catalogue` (the real catalogue files, via `pipelines.catalogue`),
* `published.indicator_values` (after a simple disclosure control: primary suppression of
  numerators 1 to 7 below England plus complementary suppression within each parent),
* `indicators.indicator_values` (the FULL figures; it also holds one poison row, area
  `XZZ` "HMP Never Published", that must never reach a public output),
* `indicators.funnel_limits`, `indicators.spc` (England and prisons),
* `quality.summary`, `quality.quarantine` (with original rows that must never be shown),
* `conformed.prisons`,
* `indicators.members` for a few indicators (P01a, P02b, P05a, P11d, P12b): one row per unit
  counted, with its reason, adding up to the full prison-month figures (and a few units of the
  poison prison, which has no published figure), for the "Behind the figure" sections.

Twelve fictional prisons, 24 months (April 2023 to March 2025; the last two months are
provisional). Some prisons are small so that monthly and some quarterly figures are
suppressed. The generator is deterministic (seeded) and independent of the pipeline code
except for the catalogue, so the report can be developed before the indicators exist.
"""

from __future__ import annotations

import atexit
import datetime as dt
import math
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.special import gammaincinv

from pipelines import catalogue as catalogue_module
from pipelines import contract

POISON_CODE = "XZZ"
POISON_NAME = "HMP Never Published"
POISON_ORIGINAL_ROW = "ORIGINAL-ROW-MUST-NOT-BE-PUBLISHED"

PRISONS = [
    # code, name, region, function, operator, has_xray, size (average population)
    ("XAA", "HMP Ashcombe Vale", "London", "reception", "public", True, 1400),
    ("XAB", "HMP Brindle Moor", "Midlands", "training", "pfi", False, 900),
    ("XAC", "HMP Cotterell Fields", "North West", "reception", "public", True, 1100),
    ("XAD", "HMP Dunmere Hollow", "North West", "training", "contracted", False, 650),
    ("XAE", "HMP Eastwick Grange", "South East", "female", "public", False, 380),
    ("XAF", "HMP Fallowmead", "South West", "open", "public", False, 240),
    ("XAG", "HMP Greystone Quay", "North East and Yorkshire", "reception", "pfi", True, 1250),
    ("XAH", "HMP Harrowfield", "Midlands", "high_security", "public", True, 600),
    ("XAI", "HMYOI Ivybridge Marsh", "East of England", "yoi", "public", False, 160),
    ("XAJ", "HMP Juniper Cross", "London", "training", "contracted", True, 820),
    ("XAK", "HMP Kestrel Down", "South East", "reception", "public", True, 1000),
    ("XAL", "HMP Larkspur Heath", "North East and Yorkshire", "training", "public", False, 700),
]
FIRST_MONTH = dt.date(2023, 4, 1)
N_MONTHS = 24
PROVISIONAL_MONTHS = 2
SOURCES = tuple(t.name for t in contract.SOURCES)
REASONS = contract.REASONS

# indicator -> (base probability or rate per unit, denominator per 1,000 population per month)
# For % indicators: p (0-1) and the denominator as a share of the population per month.
PROPORTIONS = {
    "P01a": (0.93, 0.12), "P01b": (0.82, 0.09), "P02a": (0.88, 0.12), "P02b": (0.97, 2.5),
    "P03a": (0.7, 0.08), "P03b": (0.62, 0.03), "P06a": (0.45, 0.11), "P06b": (0.76, 0.05),
    "P07a": (0.6, 0.1), "P07b": (0.8, 0.06), "P07c": (0.35, 0.02), "P08c": (0.9, 0.3),
    "P09a": (0.86, 0.012), "P10a": (0.7, 0.008), "P11a": (0.9, 0.12), "P11b": (0.55, 0.12),
    "P11c": (0.8, 0.006), "P12a": (0.91, 0.11), "P12b": (0.72, 0.11), "P12c": (0.7, 0.11),
    "P12d": (0.71, 0.11), "P12e": (0.18, 0.05), "P12f": (0.65, 0.012),
}
# Rates: expected events per person per month (the unit multiplier is applied later).
RATES = {"P05a": 0.55, "P08a": 0.045, "P08b": 0.012, "P11d": 0.00025}

VALUE_COLUMNS = (
    "indicator_id", "priority", "period_type", "period_start", "period_end", "level", "area_code",
    "area_name", "numerator", "denominator", "value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8",
    "upper_ci_99_8", "comparison", "provisional",
)

DDL = """
CREATE SCHEMA IF NOT EXISTS indicators;
CREATE SCHEMA IF NOT EXISTS published;
CREATE SCHEMA IF NOT EXISTS quality;
CREATE SCHEMA IF NOT EXISTS conformed;
CREATE TABLE indicators.catalogue (
  code VARCHAR, priority INTEGER, priority_name VARCHAR, headline BOOLEAN, name VARCHAR, definition VARCHAR,
  numerator VARCHAR, denominator VARCHAR, unit VARCHAR, multiplier INTEGER, polarity VARCHAR, target DOUBLE,
  method VARCHAR, denominator_kind VARCHAR, aggregation VARCHAR, anchor VARCHAR, derived VARCHAR, sql VARCHAR);
CREATE TABLE indicators.indicator_values (
  indicator_id VARCHAR, priority INTEGER, period_type VARCHAR, period_start DATE, period_end DATE, level VARCHAR,
  area_code VARCHAR, area_name VARCHAR, numerator BIGINT, denominator DOUBLE, value DOUBLE, lower_ci_95 DOUBLE,
  upper_ci_95 DOUBLE, lower_ci_99_8 DOUBLE, upper_ci_99_8 DOUBLE, comparison VARCHAR, provisional BOOLEAN);
CREATE TABLE published.indicator_values AS SELECT *, false AS suppressed FROM indicators.indicator_values;
CREATE TABLE indicators.funnel_limits (
  indicator_id VARCHAR, period_type VARCHAR, period_start DATE, period_end DATE, denominator DOUBLE,
  england_value DOUBLE, lower_95 DOUBLE, upper_95 DOUBLE, lower_99_8 DOUBLE, upper_99_8 DOUBLE);
CREATE TABLE indicators.spc (
  indicator_id VARCHAR, level VARCHAR, area_code VARCHAR, month DATE, value DOUBLE, mean DOUBLE,
  lower_process_limit DOUBLE, upper_process_limit DOUBLE, special_cause BOOLEAN, variation VARCHAR,
  rules VARCHAR, target DOUBLE, assurance VARCHAR);
CREATE TABLE quality.summary (
  source VARCHAR, month VARCHAR, prison_code VARCHAR, rows_read BIGINT, rows_loaded BIGINT,
  rows_quarantined BIGINT, malformed_row BIGINT, missing_required_value BIGINT, invalid_value BIGINT,
  invalid_nhs_number BIGINT, unknown_prison BIGINT, outside_file_month BIGINT, sequence_error BIGINT,
  duplicate_id BIGINT);
CREATE TABLE quality.quarantine (
  source VARCHAR, month VARCHAR, file VARCHAR, line INTEGER, prison_code VARCHAR, reason VARCHAR,
  detail VARCHAR, original_row VARCHAR);
CREATE TABLE indicators.members (
  indicator_id VARCHAR, month DATE, prison_code VARCHAR, unit_type VARCHAR, unit_id VARCHAR, person_key VARCHAR,
  numerator BIGINT, denominator DOUBLE, reason VARCHAR, anchor_datetime TIMESTAMP, event_datetime TIMESTAMP,
  window_end TIMESTAMP, source_file VARCHAR, source_line INTEGER, component VARCHAR);
CREATE TABLE conformed.prisons (
  prison_code VARCHAR, prison_name VARCHAR, region VARCHAR, "function" VARCHAR, operator VARCHAR,
  has_xray BOOLEAN, opened DATE, closed DATE);
"""


def months() -> list[dt.date]:
    out = []
    y, m = FIRST_MONTH.year, FIRST_MONTH.month
    for _ in range(N_MONTHS):
        out.append(dt.date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def month_end(d: dt.date) -> dt.date:
    nxt = dt.date(d.year + 1, 1, 1) if d.month == 12 else dt.date(d.year, d.month + 1, 1)
    return nxt - dt.timedelta(days=1)


def quarter_start(d: dt.date) -> dt.date:
    """Financial quarters: Apr-Jun, Jul-Sep, Oct-Dec, Jan-Mar."""
    return dt.date(d.year, ((d.month - 1) // 3) * 3 + 1, 1)


def year_start(d: dt.date) -> dt.date:
    return dt.date(d.year if d.month >= 4 else d.year - 1, 4, 1)


def period_end(kind: str, start: dt.date) -> dt.date:
    if kind == "month":
        return month_end(start)
    if kind == "quarter":
        m = start.month + 2
        return month_end(dt.date(start.year, m, 1))
    return dt.date(start.year + 1, 3, 31)


# --- statistics (self-contained; the pipeline has its own, tested against references) ------

def wilson(x: float, n: float, z: float) -> tuple[float, float]:
    p = x / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    den = 1 + z * z / n
    return (centre - half) / den, (centre + half) / den


def poisson_exact(x: float, conf: float) -> tuple[float, float]:
    """Exact (chi-squared) limits of a Poisson count: chi2.ppf(q, 2k) / 2 = gammaincinv(k, q)."""
    a = 1 - conf
    lower = 0.0 if x == 0 else float(gammaincinv(x, a / 2))
    upper = float(gammaincinv(x + 1, 1 - a / 2))
    return lower, upper


def figures(numerator, denominator, unit_multiplier, is_rate):
    """(value, l95, u95, l998, u998) or Nones when there is no denominator."""
    if denominator is None or denominator <= 0:
        return (None,) * 5
    if is_rate:
        value = numerator / denominator * unit_multiplier
        l95, u95 = poisson_exact(numerator, 0.95)
        l99, u99 = poisson_exact(numerator, 0.998)
        s = unit_multiplier / denominator
        return value, l95 * s, u95 * s, l99 * s, u99 * s
    value = numerator / denominator * 100
    l95, u95 = wilson(numerator, denominator, 1.959963984540054)
    l99, u99 = wilson(numerator, denominator, 3.090232306167813)
    return value, l95 * 100, u95 * 100, l99 * 100, u99 * 100


def compare(row: dict, england_value: float | None, polarity: str) -> str:
    if row["level"] == "england" or row["value"] is None or england_value is None:
        return "not_compared"
    if row["lower_ci_95"] > england_value:
        side = "higher"
    elif row["upper_ci_95"] < england_value:
        side = "lower"
    else:
        return "similar"
    if polarity == "high":
        return "better" if side == "higher" else "worse"
    if polarity == "low":
        return "better" if side == "lower" else "worse"
    return side


# --- generation ---------------------------------------------------------------------------

def _prison_months(rng: np.random.Generator, code: str, cat: dict) -> dict:
    """{(prison, month): (numerator, denominator)} for one indicator."""
    out = {}
    ms = months()
    kind = cat["denominator_kind"]
    for p_code, _name, _region, _function, operator, has_xray, size in PRISONS:
        pop = [max(50, int(size * (1 + rng.normal(0, 0.03)))) for _ in ms]
        if code in PROPORTIONS:
            p, share = PROPORTIONS[code]
            effect = rng.normal(0, 0.35)
            if operator == "pfi" and code == "P01b":
                effect += 0.6
            for i, m in enumerate(ms):
                if code == "P11b" and not has_xray:
                    out[(p_code, m)] = (0, 0.0)
                    continue
                trend = 0.35 * (i / len(ms)) if code in ("P12b", "P06b") else 0.0
                step = 0.5 if (code == "P01a" and i >= 16) else 0.0
                logit = math.log(p / (1 - p)) + effect + trend + step
                prob = 1 / (1 + math.exp(-logit))
                n = int(rng.poisson(pop[i] * share))
                x = int(rng.binomial(n, prob)) if n else 0
                out[(p_code, m)] = (x, float(n))
        else:
            rate = RATES[code] * math.exp(rng.normal(0, 0.3))
            for i, m in enumerate(ms):
                x = int(rng.poisson(pop[i] * rate))
                out[(p_code, m)] = (x, float(pop[i]))  # population for the month
    return out, kind


def _aggregate(cells: list[tuple[int, float, int]], kind: str) -> tuple[int, float]:
    """cells: (numerator, monthly denominator, months in the cell). Denominator by kind."""
    num = sum(c[0] for c in cells)
    if kind == "units":
        return num, float(sum(c[1] for c in cells))
    if kind == "population_months":
        return num, float(sum(c[1] for c in cells))
    if kind == "person_years":
        return num, float(sum(c[1] for c in cells)) / 12.0
    # mean_population: per prison the mean over the months, summed over prisons
    by_prison = defaultdict(list)
    for c in cells:
        by_prison[c[2]].append(c[1])
    return num, float(sum(sum(v) / len(v) for v in by_prison.values()))


def _values_for_indicator(rng, cat: dict) -> list[dict]:
    code = cat["code"]
    data, kind = _prison_months(rng, code, cat)
    is_rate = cat["unit"] != "%"
    mult = cat["multiplier"]
    ms = months()
    provisional_months = set(ms[-PROVISIONAL_MONTHS:])
    prison_attr = {p[0]: {"region": p[2], "function": p[3], "operator": p[4], "name": p[1]} for p in PRISONS}
    periods: dict[tuple[str, dt.date], list[dt.date]] = defaultdict(list)
    for m in ms:
        periods[("month", m)].append(m)
        periods[("quarter", quarter_start(m))].append(m)
        periods[("financial_year", year_start(m))].append(m)
    rows = []
    for (ptype, start), members in sorted(periods.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        end = period_end(ptype, start)
        expected = {"month": 1, "quarter": 3, "financial_year": 12}[ptype]
        provisional = len(members) < expected or any(m in provisional_months for m in members)
        areas: dict[tuple[str, str, str], list] = defaultdict(list)
        for p_code, attrs in prison_attr.items():
            cells = [(data[(p_code, m)][0], data[(p_code, m)][1], p_code) for m in members]
            areas[("prison", p_code, attrs["name"])] += cells
            areas[("region", attrs["region"], attrs["region"])] += cells
            areas[("operator", attrs["operator"], attrs["operator"].upper() if attrs["operator"] == "pfi"
                   else attrs["operator"].capitalize())] += cells
            areas[("function", attrs["function"], attrs["function"].replace("_", " ").capitalize())] += cells
            areas[("england", "ENG", "England")] += cells
        group = []
        for (level, area_code, area_name), cells in areas.items():
            num, den = _aggregate(cells, kind)
            value, l95, u95, l99, u99 = figures(num, den, mult, is_rate)
            group.append({
                "indicator_id": code, "priority": cat["priority"], "period_type": ptype, "period_start": start,
                "period_end": end, "level": level, "area_code": area_code, "area_name": area_name,
                "numerator": num, "denominator": den, "value": value, "lower_ci_95": l95, "upper_ci_95": u95,
                "lower_ci_99_8": l99, "upper_ci_99_8": u99, "comparison": None, "provisional": provisional,
            })
        england = next(r for r in group if r["level"] == "england")
        for r in group:
            r["comparison"] = compare(r, england["value"], cat["polarity"])
        rows += group
    return rows


def _gap_rows(p01b_rows: list[dict], cat: dict) -> list[dict]:
    """P04a: PFI minus public P01b, England only, numerator/denominator null."""
    by_key = defaultdict(dict)
    for r in p01b_rows:
        if r["level"] == "operator":
            by_key[(r["period_type"], r["period_start"])][r["area_code"]] = r
    out = []
    for (ptype, start), ops in sorted(by_key.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        a, b = ops.get("pfi"), ops.get("public")
        value = l95 = u95 = l99 = u99 = None
        if a and b and a["denominator"] and b["denominator"]:
            p1, p2 = a["numerator"] / a["denominator"], b["numerator"] / b["denominator"]
            value = (p1 - p2) * 100
            for z, conf in ((1.959963984540054, "95"), (3.090232306167813, "99")):
                l1, u1 = wilson(a["numerator"], a["denominator"], z)
                l2, u2 = wilson(b["numerator"], b["denominator"], z)
                d = p1 - p2
                lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
                hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
                if conf == "95":
                    l95, u95 = lo * 100, hi * 100
                else:
                    l99, u99 = lo * 100, hi * 100
        out.append({
            "indicator_id": "P04a", "priority": cat["priority"], "period_type": ptype, "period_start": start,
            "period_end": a["period_end"] if a else period_end(ptype, start), "level": "england",
            "area_code": "ENG", "area_name": "England", "numerator": None, "denominator": None, "value": value,
            "lower_ci_95": l95, "upper_ci_95": u95, "lower_ci_99_8": l99, "upper_ci_99_8": u99,
            "comparison": "not_compared", "provisional": a["provisional"] if a else False,
        })
    return out


def disclosure_control(rows: list[dict]) -> list[dict]:
    """Primary suppression of numerators 1-7 below England, then complementary suppression so
    that no relation parent = sum(children) has exactly one suppressed member."""
    out = [dict(r, suppressed=False) for r in rows]
    attrs = {p[0]: {"region": p[2], "function": p[3], "operator": p[4]} for p in PRISONS}
    groups = defaultdict(list)
    for r in out:
        groups[(r["indicator_id"], r["period_type"], r["period_start"])].append(r)
    for group in groups.values():
        for r in group:
            if r["level"] != "england" and r["numerator"] is not None and 1 <= r["numerator"] <= 7:
                r["suppressed"] = True
        index = {(r["level"], r["area_code"]): r for r in group}
        relations = []
        for level in ("region", "operator", "function"):
            kids = defaultdict(list)
            for r in group:
                if r["level"] == "prison":
                    kids[attrs[r["area_code"]][level]].append(r)
            for parent_code, children in kids.items():
                relations.append((index[(level, parent_code)], children))
            relations.append((index[("england", "ENG")], [r for r in group if r["level"] == level]))
        changed = True
        while changed:
            changed = False
            for parent, children in relations:
                members = [parent, *children]
                if sum(m["suppressed"] for m in members) != 1:
                    continue
                candidates = sorted(
                    (c for c in children if not c["suppressed"]),
                    key=lambda c: (c["numerator"] <= 0, c["numerator"], c["denominator"], c["area_code"]),
                )
                pick = candidates[0] if candidates else (parent if parent["level"] != "england" else None)
                if pick is not None:
                    pick["suppressed"] = True
                    changed = True
    for r in out:
        if r["suppressed"]:
            for col in ("numerator", "denominator", "value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8",
                        "upper_ci_99_8", "comparison"):
                r[col] = None
    return out


def _funnel_rows(values: list[dict], cats: dict) -> list[tuple]:
    rows = []
    by_period = defaultdict(list)
    for r in values:
        if r["period_type"] in ("quarter", "financial_year") and r["indicator_id"] != "P04a":
            by_period[(r["indicator_id"], r["period_type"], r["period_start"], r["period_end"])].append(r)
    for (code, ptype, start, end), group in by_period.items():
        cat = cats[code]
        england = next(r for r in group if r["level"] == "england")
        dens = [r["denominator"] for r in group if r["level"] == "prison" and r["denominator"]]
        if not dens or england["value"] is None:
            continue
        is_rate = cat["unit"] != "%"
        ev = england["value"]
        for x in np.linspace(max(1.0, min(dens) * 0.8), max(dens) * 1.1, 100):
            lim = []
            for z in (1.959963984540054, 3.090232306167813):
                if is_rate:
                    expected = ev * x / cat["multiplier"]
                    sd = math.sqrt(max(expected, 1e-9)) / x * cat["multiplier"]
                    lim += [max(0.0, ev - z * sd), ev + z * sd]
                else:
                    p = ev / 100
                    sd = math.sqrt(p * (1 - p) / x) * 100
                    lim += [max(0.0, ev - z * sd), min(100.0, ev + z * sd)]
            rows.append((code, ptype, start, end, float(x), ev, lim[0], lim[1], lim[2], lim[3]))
    return rows


def xmr(values: list[float], polarity: str, target: float | None) -> list[dict]:
    arr = np.array(values, dtype=float)
    mean = float(arr.mean())
    mr = float(np.abs(np.diff(arr)).mean()) if len(arr) > 1 else 0.0
    lo, hi = mean - 2.66 * mr, mean + 2.66 * mr
    flags = [[] for _ in arr]
    for i, v in enumerate(arr):
        if v > hi or v < lo:
            flags[i].append("outside_limits")
    side = np.sign(arr - mean)
    run = 1
    for i in range(1, len(arr)):
        run = run + 1 if side[i] != 0 and side[i] == side[i - 1] else 1
        if run >= 7:
            for j in range(i - 6, i + 1):
                if "shift" not in flags[j]:
                    flags[j].append("shift")
    out = []
    for i, v in enumerate(arr):
        special = bool(flags[i])
        if not special:
            variation = "common_cause"
        elif polarity == "neutral":
            variation = "special_cause_neither"
        else:
            high = v > mean
            good = high if polarity == "high" else not high
            variation = "special_cause_improvement" if good else "special_cause_concern"
        assurance = None
        if target is not None and polarity != "neutral":
            if polarity == "high":
                assurance = ("consistent_pass" if target < lo else
                             "consistent_fail" if target > hi else "inconsistent")
            else:
                assurance = ("consistent_pass" if target > hi else
                             "consistent_fail" if target < lo else "inconsistent")
        out.append({"value": float(v), "mean": mean, "lower": lo, "upper": hi, "special": special,
                    "variation": variation, "rules": ",".join(flags[i]) or None, "assurance": assurance})
    return out


def _spc_rows(values: list[dict], cats: dict) -> list[tuple]:
    rows = []
    series = defaultdict(list)
    for r in values:
        if r["period_type"] == "month" and r["level"] in ("england", "prison") and r["value"] is not None:
            series[(r["indicator_id"], r["level"], r["area_code"])].append((r["period_start"], r["value"]))
    for (code, level, area), points in sorted(series.items()):
        points.sort()
        cat = cats[code]
        chart = xmr([v for _, v in points], cat["polarity"], cat["target"])
        for (month, _), c in zip(points, chart, strict=True):
            rows.append((code, level, area, month, c["value"], c["mean"], c["lower"], c["upper"], c["special"],
                         c["variation"], c["rules"], cat["target"], c["assurance"]))
    return rows


def _quality_rows(rng) -> tuple[list[tuple], list[tuple]]:
    summary, quarantine = [], []
    for source in SOURCES:
        for m in months():
            month = m.strftime("%Y-%m")
            for p in [*PRISONS, None]:
                code = p[0] if p else None
                read = int(rng.poisson(p[6] * 0.25)) if p else int(rng.poisson(3))
                reasons = [0] * len(REASONS)
                if p:
                    for _ in range(int(rng.poisson(1.5))):
                        reasons[int(rng.choice([0, 1, 2, 3, 5, 6, 7]))] += 1
                else:
                    reasons[4] = read  # unknown_prison
                quarantined = sum(reasons)
                read = max(read, quarantined)
                summary.append((source, month, code, read, read - quarantined, quarantined, *reasons))
                for k, n in enumerate(reasons):
                    for j in range(n):
                        quarantine.append((source, month, f"{source}/{month}.csv", 100 + j, code, REASONS[k],
                                           f"{REASONS[k]} in test", f"{POISON_ORIGINAL_ROW},{code},{j}"))
    return summary, quarantine


MEMBER_INDICATORS = ("P01a", "P02b", "P05a", "P11d", "P12b")
ACTIVITIES = (("first screen", 0.2), ("second screen", 0.15), ("HCV sample", 0.05), ("prescription item", 0.5),
              ("smoking status_recorded", 0.1))


def _member_counts(full: list[dict], rng: np.random.Generator) -> pd.DataFrame:
    """Counts by reason that add up to the full prison-month figures: indicator_id, month, prison_code,
    unit_type, reason, units, numerator and denominator of each unit, unit_id (for single units)."""
    out = []

    def add(r, unit_type, reason, units, num, den, unit_id=None):
        if units > 0:
            out.append((r["indicator_id"], r["period_start"], r["area_code"], unit_type, reason, int(units), int(num),
                        float(den), unit_id))

    for r in full:
        if r["period_type"] != "month" or r["level"] != "prison" or r["indicator_id"] not in MEMBER_INDICATORS:
            continue
        code, x, n = r["indicator_id"], int(r["numerator"]), float(r["denominator"])
        if code == "P01a":
            later = int(rng.binomial(int(n) - x, 0.8))
            add(r, "reception", "screened within 24h", x, 1, 1)
            add(r, "reception", "screened after 24h", later, 0, 1)
            add(r, "reception", "not screened", int(n) - x - later, 0, 1)
        elif code == "P12b":
            add(r, "reception", "tested within 72h", x, 1, 1)
            add(r, "reception", "not tested within 72h", int(n) - x, 0, 1)
            add(r, "reception", "not eligible", int(rng.poisson(2.5)), 0, 0)
        elif code == "P05a":
            split = rng.multinomial(x, [p for _, p in ACTIVITIES])
            for (reason, _), k in zip(ACTIVITIES, split, strict=True):
                add(r, "activity", reason, k, 1, 0)
            add(r, "population", "average population", 1, 0, n, f"{r['area_code']} {r['period_start']:%Y-%m}")
        elif code == "P11d":
            add(r, "event", "active TB diagnosed", x, 1, 0)
            add(r, "population", "average population / 12", 1, 0, n, f"{r['area_code']} {r['period_start']:%Y-%m}")
        elif code == "P02b":
            read = rng.multinomial(int(n), [0.3, 0.2, 0.15, 0.15, 0.2])
            quarantined = rng.multivariate_hypergeometric(read, int(n) - x) if n > x else np.zeros(5, dtype=int)
            for source, d, q in zip(SOURCES, read, quarantined, strict=True):
                if d:
                    add(r, "rows", f"{d - q} of {d} rows loaded", 1, d - q, d, source)
    first = months()[0]
    out.append(("P01a", first, POISON_CODE, "reception", "screened within 24h", 9, 1, 1.0, None))
    return pd.DataFrame(out, columns=["indicator_id", "month", "prison_code", "unit_type", "reason", "units",
                                      "numerator", "denominator", "unit_id"])


def _insert_members(conn: duckdb.DuckDBPyConnection, counts: pd.DataFrame) -> None:
    """One member row per unit (expanded in DuckDB from the counts)."""
    conn.register("member_counts", counts)
    conn.execute("""
        INSERT INTO indicators.members
        SELECT indicator_id, month, prison_code, unit_type,
               coalesce(unit_id, indicator_id || '-' || prison_code || '-' || strftime(month, '%Y%m') || '-'
                        || reason || '-' || i),
               NULL, numerator, denominator, reason, CAST(month AS TIMESTAMP), NULL, NULL, 'fixture', NULL, NULL
        FROM (SELECT *, unnest(range(units)) AS i FROM member_counts)""")
    conn.unregister("member_counts")


def _insert(conn: duckdb.DuckDBPyConnection, table: str, rows: list) -> None:
    """Bulk insert through a DataFrame (executemany is slow in DuckDB)."""
    columns = [d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    frame = pd.DataFrame(rows, columns=columns, dtype=object)  # noqa: F841 - read by DuckDB below
    conn.execute(f"INSERT INTO {table} SELECT * FROM frame")


def make_warehouse(seed: int = 20250331) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the publication inputs filled with synthetic figures."""
    rng = np.random.default_rng(seed)
    conn = duckdb.connect()
    conn.execute(DDL)
    cat_rows = catalogue_module.catalogue_rows()
    _insert(conn, "indicators.catalogue", cat_rows)
    cols = [d[0] for d in conn.execute("SELECT * FROM indicators.catalogue LIMIT 0").description]
    cats = {r[0]: dict(zip(cols, r, strict=True)) for r in cat_rows}

    full: list[dict] = []
    for code in sorted(cats):
        if code == "P04a":
            continue
        full += _values_for_indicator(rng, cats[code])
    full += _gap_rows([r for r in full if r["indicator_id"] == "P01b"], cats["P04a"])
    published = disclosure_control(full)

    poison = dict(full[0], level="prison", area_code=POISON_CODE, area_name=POISON_NAME, numerator=3,
                  value=987654.321)
    _insert(conn, "indicators.indicator_values", [[r[c] for c in VALUE_COLUMNS] for r in [*full, poison]])
    _insert(conn, "published.indicator_values", [[r[c] for c in (*VALUE_COLUMNS, "suppressed")] for r in published])
    _insert(conn, "indicators.funnel_limits", _funnel_rows(full, cats))
    _insert(conn, "indicators.spc", _spc_rows(full, cats))
    summary, quarantine = _quality_rows(rng)
    _insert(conn, "quality.summary", summary)
    _insert(conn, "quality.quarantine", quarantine)
    _insert(conn, "conformed.prisons",
            [(p[0], p[1], p[2], p[3], p[4], p[5], dt.date(1990 + i, 1, 1), None) for i, p in enumerate(PRISONS)])
    _insert_members(conn, _member_counts(full, np.random.default_rng(seed + 1)))
    return conn


def full_values(conn: duckdb.DuckDBPyConnection) -> list[dict]:
    """The unpublished rows (as dicts), for tests that check nothing leaks."""
    cur = conn.execute("SELECT * FROM indicators.indicator_values")
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


@dataclass
class Site:
    """The fixture warehouse and what the publication functions made of it."""

    conn: duckdb.DuckDBPyConnection
    out: Path  # the pipeline output directory
    root: Path  # <out>/report
    summary: object  # report.ReportSummary
    spreadsheet: Path


_SITE: Site | None = None


def published_site() -> Site:
    """Build the report and the spreadsheet once per test process (both test modules share it)."""
    global _SITE
    if _SITE is None:
        from pipelines import report, spreadsheet

        out = Path(tempfile.mkdtemp(prefix="prisonhealth-report-"))
        atexit.register(shutil.rmtree, out, True)
        conn = make_warehouse()
        xlsx = spreadsheet.build_spreadsheet(conn, out / "report" / report.SPREADSHEET_NAME)
        summary = report.build_report(conn, out, with_spreadsheet=False)
        _SITE = Site(conn=conn, out=out, root=out / "report", summary=summary, spreadsheet=xlsx)
    return _SITE


if __name__ == "__main__":  # pragma: no cover - a quick look at the fixture
    c = make_warehouse()
    print(c.sql("SELECT period_type, level, count(*), sum(suppressed::INT) FROM published.indicator_values "
                "GROUP BY ALL ORDER BY ALL"))
