"""Tests for pipelines.disclosure (primary and secondary suppression)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.disclosure import DisclosurePolicy, apply_disclosure_control

LEVELS = ("region", "operator", "function")


def build_rows(
    prisons: dict[str, tuple[int, int]],
    parents: dict[str, dict[str, str]],
    indicator: str = "P01a",
    period: str = "2024-04-01",
) -> list[dict]:
    """Prison rows plus region/operator/function/England rows that sum them."""
    rows = []

    def add(level, code, num, den):
        rows.append(
            {
                "indicator_id": indicator,
                "period_type": "month",
                "period_start": period,
                "level": level,
                "area_code": code,
                "area_name": code.lower(),
                "numerator": num,
                "denominator": den,
                "value": 100 * num / den if den else math.nan,
                "lower_ci_95": 0.0,
                "upper_ci_95": 100.0,
                "lower_ci_99_8": 0.0,
                "upper_ci_99_8": 100.0,
                "comparison": "similar",
                "provisional": False,
            }
        )

    for code, (num, den) in prisons.items():
        add("prison", code, num, den)
    for level in LEVELS:
        totals: dict[str, list[int]] = {}
        for code, (num, den) in prisons.items():
            t = totals.setdefault(parents[code][level], [0, 0])
            t[0] += num
            t[1] += den
        for area, (num, den) in sorted(totals.items()):
            add(level, area, num, den)
    add("england", "ENG", sum(n for n, _ in prisons.values()), sum(d for _, d in prisons.values()))
    return rows


def suppressed_codes(out: pd.DataFrame) -> set[tuple[str, str]]:
    return {(r.level, r.area_code) for r in out.itertuples() if r.suppressed}


PARENTS = {
    "A": {"region": "North", "operator": "public", "function": "Local"},
    "B": {"region": "North", "operator": "public", "function": "Local"},
    "C": {"region": "North", "operator": "pfi", "function": "Training"},
    "D": {"region": "South", "operator": "public", "function": "Training"},
    "E": {"region": "South", "operator": "contracted", "function": "Local"},
}


# --------------------------------------------------------------------------- primary
def test_primary_threshold_zero_shown_and_england_exempt():
    prisons = {"A": (0, 50), "B": (1, 40), "C": (7, 60), "D": (8, 70), "E": (100, 200)}
    out = apply_disclosure_control(
        pd.DataFrame(build_rows(prisons, PARENTS)), PARENTS, DisclosurePolicy(secondary=False)
    )
    prison = out[out["level"] == "prison"].set_index("area_code")["suppressed"]
    assert prison.to_dict() == {"A": False, "B": True, "C": True, "D": False, "E": False}
    england = build_rows({"A": (3, 10)}, {"A": PARENTS["A"]})
    out = apply_disclosure_control(pd.DataFrame(england), {"A": PARENTS["A"]})
    assert not out.loc[out["level"] == "england", "suppressed"].any()
    # a numerator of 3 at region level is suppressed too
    assert out.loc[out["level"] == "region", "suppressed"].all()


def test_suppressed_rows_are_nulled_and_other_columns_kept():
    prisons = {"A": (3, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}
    rows = build_rows(prisons, PARENTS)
    out = apply_disclosure_control(pd.DataFrame(rows), PARENTS)
    a = out[(out["level"] == "prison") & (out["area_code"] == "A")].iloc[0]
    for column in (
        "numerator",
        "denominator",
        "value",
        "lower_ci_95",
        "upper_ci_95",
        "lower_ci_99_8",
        "upper_ci_99_8",
        "comparison",
    ):
        assert pd.isna(a[column]), column
    assert a["area_name"] == "a"
    assert not a["provisional"]
    assert out["area_code"].tolist() == [r["area_code"] for r in rows]  # order kept
    published = out[~out["suppressed"]]
    assert published["numerator"].notna().all() and published["comparison"].notna().all()


def test_records_in_records_out():
    prisons = {"A": (3, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}
    out = apply_disclosure_control(build_rows(prisons, PARENTS), PARENTS)
    assert isinstance(out, list) and isinstance(out[0], dict)
    first = out[0]
    assert first["area_code"] == "A" and first["suppressed"] is True and first["numerator"] is None


# --------------------------------------------------------------------------- secondary
def test_single_suppressed_prison_in_region_gets_smallest_positive_complement():
    parents = {
        "A": {"region": "North", "operator": "public", "function": "Local"},
        "B": {"region": "North", "operator": "public", "function": "Local"},
        "C": {"region": "North", "operator": "public", "function": "Local"},
        "Z": {"region": "North", "operator": "public", "function": "Local"},
    }
    prisons = {"A": (5, 50), "B": (40, 60), "C": (30, 40), "Z": (0, 45)}
    out = apply_disclosure_control(
        pd.DataFrame(build_rows(prisons, parents)), parents, DisclosurePolicy(reason_column="reason")
    )
    # C (30) is the smallest positive numerator; the zero prison Z is not used
    assert suppressed_codes(out) == {("prison", "A"), ("prison", "C")}
    reasons = out.set_index("area_code")["reason"]
    assert reasons["A"] == "primary" and reasons["C"] == "secondary"


def test_only_child_suppresses_the_parent_and_then_a_sibling_parent():
    parents = {
        "A": {"region": "Solo", "operator": "public", "function": "Local"},
        "B": {"region": "North", "operator": "public", "function": "Local"},
        "C": {"region": "North", "operator": "public", "function": "Local"},
        "D": {"region": "South", "operator": "public", "function": "Local"},
    }
    # A's parent region has no other child; its numerator (9) is not primary
    prisons = {"A": (5, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45)}
    rows = build_rows(prisons, parents)
    for row in rows:
        if row["area_code"] == "Solo":
            row["numerator"] = 9  # not additive (e.g. distinct persons): still protected
    out = apply_disclosure_control(pd.DataFrame(rows), parents)
    got = suppressed_codes(out)
    assert ("region", "Solo") in got
    # England - other regions would reveal Solo, so a second region is suppressed:
    # the smallest, South (25)
    assert ("region", "South") in got
    # and South's only prison D then has a single unknown in its relation -> D too
    assert ("prison", "D") in got


def test_one_region_suppressed_against_england():
    parents = {c: dict(p) for c, p in PARENTS.items()}
    prisons = {"A": (2, 50), "B": (3, 60), "C": (1, 40), "D": (25, 45), "E": (60, 80)}
    out = apply_disclosure_control(pd.DataFrame(build_rows(prisons, parents)), parents)
    got = suppressed_codes(out)
    assert ("region", "North") in got  # 6: primary
    assert ("region", "South") in got  # the other region, else England - South = North
    assert not out.loc[out["level"] == "england", "suppressed"].any()


def test_overlapping_hierarchies_are_protected_as_a_linear_system():
    parents = {
        "A": {"region": "R1", "operator": "public", "function": "F1"},
        "B": {"region": "R1", "operator": "contracted", "function": "F2"},
        "C": {"region": "R2", "operator": "public", "function": "F2"},
        "D": {"region": "R2", "operator": "contracted", "function": "F1"},
        "E": {"region": "R3", "operator": "pfi", "function": "F3"},
        "G": {"region": "R3", "operator": "pfi", "function": "F3"},
    }
    prisons = {"A": (4, 40), "B": (50, 90), "C": (60, 80), "D": (70, 95), "E": (80, 99), "G": (90, 120)}
    rows = build_rows(prisons, parents)
    simple = apply_disclosure_control(pd.DataFrame(rows), parents, DisclosurePolicy(check_linear_recovery=False))
    assert _exposed(simple, parents), "the single-relation rule alone leaves A solvable"
    full = apply_disclosure_control(pd.DataFrame(rows), parents)
    assert not _exposed(full, parents)
    assert ("prison", "A") in suppressed_codes(full)


def test_tables_are_independent_and_policy_switches():
    rows = build_rows({"A": (3, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}, PARENTS)
    rows += build_rows(
        {"A": (30, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}, PARENTS, period="2024-05-01"
    )
    rows += build_rows(
        {"A": (3, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}, PARENTS, indicator="P08a"
    )
    frame = pd.DataFrame(rows)
    out = apply_disclosure_control(frame, PARENTS)
    may = out[out["period_start"] == "2024-05-01"]
    assert not may["suppressed"].any()
    april = out[(out["period_start"] == "2024-04-01") & (out["indicator_id"] == "P01a")]
    p08 = out[out["indicator_id"] == "P08a"]
    assert april["suppressed"].tolist() == p08["suppressed"].tolist()  # same rule for P08a
    assert april["suppressed"].sum() > 1

    off = apply_disclosure_control(frame, PARENTS, DisclosurePolicy(secondary=False))
    assert off["suppressed"].sum() == 2  # the two A rows with numerator 3
    wider = apply_disclosure_control(frame, PARENTS, DisclosurePolicy(max_numerator=30, secondary=False))
    assert set(wider.loc[wider["suppressed"], "numerator"].isna()) == {True}
    assert wider["suppressed"].sum() > off["suppressed"].sum()
    disabled = apply_disclosure_control(frame, PARENTS, DisclosurePolicy(enabled=False))
    assert not disabled["suppressed"].any()
    assert disabled["numerator"].tolist() == frame["numerator"].tolist()
    only_prisons = apply_disclosure_control(frame, PARENTS, replace(DisclosurePolicy(), levels=("prison",)))
    assert only_prisons.loc[only_prisons["level"] == "prison", "suppressed"].any()


def test_parents_as_dataframe_and_empty_input():
    mapping = pd.DataFrame([{"prison_code": k, **v} for k, v in PARENTS.items()])
    rows = build_rows({"A": (3, 50), "B": (40, 60), "C": (30, 40), "D": (25, 45), "E": (60, 80)}, PARENTS)
    a = apply_disclosure_control(pd.DataFrame(rows), mapping)
    b = apply_disclosure_control(pd.DataFrame(rows), PARENTS)
    assert a["suppressed"].tolist() == b["suppressed"].tolist()
    empty = apply_disclosure_control(pd.DataFrame(columns=list(rows[0])), PARENTS)
    assert "suppressed" in empty.columns and len(empty) == 0


# --------------------------------------------------------------------------- properties
def _relations(out: pd.DataFrame, parents: dict[str, dict[str, str]]):
    """Independent re-statement of the additive relations of one table."""
    index = {(r.level, r.area_code): i for i, r in enumerate(out.itertuples())}
    relations = []
    for level in LEVELS:
        children: dict[str, list[int]] = {}
        for code, p in parents.items():
            if ("prison", code) in index:
                children.setdefault(p[level], []).append(index[("prison", code)])
        for area, kids in children.items():
            relations.append((index[(level, area)], kids))
        kids = [i for (lv, _), i in index.items() if lv == level]
        relations.append((index[("england", "ENG")], kids))
    return relations


def _exposed(out: pd.DataFrame, parents, suppressed: np.ndarray | None = None) -> list[int]:
    """Suppressed cells determined exactly by the published relations (rank test)."""
    out = out.reset_index(drop=True)
    if suppressed is None:
        suppressed = out["suppressed"].to_numpy()
    relations = _relations(out, parents)
    unknowns = [i for i in range(len(out)) if suppressed[i]]
    if not unknowns:
        return []
    col = {c: j for j, c in enumerate(unknowns)}
    matrix = np.zeros((len(relations), len(unknowns)))
    for r, (p, kids) in enumerate(relations):
        if suppressed[p]:
            matrix[r, col[p]] = 1
        for k in kids:
            if suppressed[k]:
                matrix[r, col[k]] = -1
    rank = np.linalg.matrix_rank(matrix)
    exposed = []
    for cell, j in col.items():
        unit = np.zeros(len(unknowns))
        unit[j] = 1
        if np.linalg.matrix_rank(np.vstack([matrix, unit])) == rank:
            exposed.append(cell)
    return exposed


@st.composite
def hierarchies(draw):
    n = draw(st.integers(min_value=1, max_value=9))
    codes = [f"P{i}" for i in range(n)]
    parents = {
        c: {
            "region": draw(st.sampled_from(["R1", "R2", "R3"])),
            "operator": draw(st.sampled_from(["public", "contracted", "pfi"])),
            "function": draw(st.sampled_from(["F1", "F2"])),
        }
        for c in codes
    }
    numerators = {c: draw(st.one_of(st.integers(0, 9), st.integers(10, 60))) for c in codes}
    prisons = {c: (numerators[c], numerators[c] + draw(st.integers(0, 50))) for c in codes}
    return prisons, parents


@settings(max_examples=150, deadline=None)
@given(hierarchies())
def test_secondary_suppression_properties(case):
    prisons, parents = case
    out = apply_disclosure_control(pd.DataFrame(build_rows(prisons, parents)), parents)
    original = pd.DataFrame(build_rows(prisons, parents))
    num = original["numerator"]
    level = original["level"]
    primary = (num >= 1) & (num <= 7) & (level != "england")
    assert out.loc[primary.to_numpy(), "suppressed"].all()
    assert not out.loc[(level == "england").to_numpy(), "suppressed"].any()
    # no relation has exactly one unknown, except a level with a single area under England
    sup = out["suppressed"].to_numpy()
    for parent, kids in _relations(out, parents):
        unknown = int(sup[parent]) + int(sum(sup[k] for k in kids))
        if out.loc[parent, "level"] == "england" and len(kids) == 1:
            continue
        assert unknown != 1, (out.loc[parent, "area_code"], kids)
    # nothing is solvable that could have been protected without suppressing England
    unavoidable = _exposed(out, parents, (out["level"] != "england").to_numpy())
    assert set(_exposed(out, parents)) <= set(unavoidable)
    assert out.loc[out["suppressed"], ["numerator", "value"]].isna().all().all()
