"""Tests for pipelines.stats, pinned to published reference values (tests/reference)."""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines import stats

REF = Path(__file__).parent / "reference"


def _rows(name: str) -> list[dict[str, str]]:
    with open(REF / name, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_published(computed: float, published: str, rel: float = 1e-9) -> None:
    """Equal to 1e-9 relative, or to every digit the source prints (half a unit in the
    last printed decimal place), whichever is looser: the source's own precision."""
    expected = float(published)
    exponent = Decimal(published.strip()).as_tuple().exponent
    half_unit = 0.5 * 10.0 ** int(exponent) if int(exponent) < 0 else 0.0
    tol = max(rel * abs(expected), half_unit * (1 + 1e-9))
    assert abs(computed - expected) <= tol, (computed, published)


# --------------------------------------------------------------------------- Wilson
@pytest.mark.parametrize("row", _rows("wilson_reference.csv"), ids=lambda r: r["source"][:30])
def test_wilson_reference_values(row):
    lower, upper = stats.wilson_interval(
        int(row["numerator"]), int(row["denominator"]), float(row["confidence"]), float(row["multiplier"])
    )
    assert lower == pytest.approx(float(row["lower"]), rel=1e-9)
    assert upper == pytest.approx(float(row["upper"]), rel=1e-9)


def test_wilson_spec_value_exactly_as_stated():
    lower, upper = stats.wilson_interval(20, 100)
    assert lower == pytest.approx(13.33669333310325, rel=1e-9)
    assert upper == pytest.approx(28.882916559315885, rel=1e-9)


def test_wilson_998_is_wider_and_percentage_confidence_accepted():
    lo95, hi95 = stats.wilson_interval(20, 100, 0.95)
    lo998, hi998 = stats.wilson_interval(20, 100, 99.8)
    assert lo998 < lo95 < 20 < hi95 < hi998
    assert stats.wilson_interval(20, 100, 95) == stats.wilson_interval(20, 100, 0.95)


def test_wilson_edges_and_zero_denominator():
    lower, upper = stats.wilson_interval([0, 10, 3], [10, 10, 0])
    assert lower[0] == 0.0 and upper[1] == 100.0
    assert upper[0] == pytest.approx(27.753279986288, rel=1e-9)  # 0/10, also Newcombe's (e)
    assert math.isnan(lower[2]) and math.isnan(upper[2])
    assert math.isnan(stats.proportion(3, 0))
    assert stats.proportion(0, 5) == 0.0


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)
    with pytest.raises(ValueError):
        stats.wilson_interval(-1, 10)


def test_proportion_with_intervals_keys():
    out = stats.proportion_with_intervals(np.array([20, 0]), np.array([100, 0]))
    assert set(out) == {"value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8"}
    assert out["value"][0] == 20.0 and math.isnan(out["value"][1])
    assert out["lower_ci_95"][0] == pytest.approx(13.33669333310325, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10_000), st.data())
def test_wilson_contains_estimate_and_is_nested(n, data):
    x = data.draw(st.integers(min_value=0, max_value=n))
    lo95, hi95 = stats.wilson_interval(x, n, 0.95)
    lo998, hi998 = stats.wilson_interval(x, n, 0.998)
    p = 100 * x / n
    assert 0 <= lo998 <= lo95 <= p + 1e-9
    assert p - 1e-9 <= hi95 <= hi998 <= 100


# --------------------------------------------------------------------------- Poisson / Byar
@pytest.mark.parametrize("row", _rows("poisson_reference.csv"))
def test_exact_poisson_reference(row):
    args = (int(row["count"]), float(row["denominator"]), float(row["confidence"]), float(row["multiplier"]))
    lower, upper = stats.exact_poisson_interval(*args)
    assert lower == pytest.approx(float(row["lower"]), rel=1e-9)
    assert upper == pytest.approx(float(row["upper"]), rel=1e-9)
    # the Fingertips rate rule uses the exact method below 10 events
    assert stats.rate_interval(*args) == (lower, upper)


def test_rate_rule_switches_to_byars_at_10():
    assert stats.rate_interval(9, 1000, multiplier=1000) == stats.exact_poisson_interval(9, 1000, 0.95, 1000)
    assert stats.rate_interval(10, 1000, multiplier=1000) == stats.byars_interval(10, 1000, 0.95, 1000)


def test_byars_formula_and_closeness_to_exact():
    z = stats.z_value(0.95)
    lower, upper = stats.byars_interval(65)
    assert lower == pytest.approx(65 * (1 - 1 / (9 * 65) - z / (3 * math.sqrt(65))) ** 3, rel=1e-12)
    assert upper == pytest.approx(66 * (1 - 1 / (9 * 66) + z / (3 * math.sqrt(66))) ** 3, rel=1e-12)
    # PHE technical guide: Byar's is within 0.2% of the exact limits from 10 events (95%)
    counts = np.arange(10, 2000)
    bl, bu = stats.byars_interval(counts)
    el, eu = stats.exact_poisson_interval(counts)
    assert np.all(np.abs(bl / el - 1) < 0.002) and np.all(np.abs(bu / eu - 1) < 0.002)


def test_rate_zero_count_and_zero_denominator():
    lower, upper = stats.rate_interval([0, 3], [500, 0], multiplier=1000)
    assert lower[0] == 0.0
    assert upper[0] == pytest.approx(-math.log(0.025) / 500 * 1000, rel=1e-9)
    assert math.isnan(lower[1]) and math.isnan(upper[1])
    assert math.isnan(stats.rate(3, 0, 1000))
    out = stats.rate_with_intervals(np.array([5]), np.array([100]), 100_000)
    assert out["lower_ci_95"][0] == pytest.approx(1623.4863901184199, rel=1e-9)


# --------------------------------------------------------------------------- Newcombe
@pytest.mark.parametrize("row", _rows("newcombe_1998_method10.csv"), ids=lambda r: "{x1}/{n1}-{x2}/{n2}".format(**r))
def test_newcombe_published_tables(row):
    args = [int(row[k]) for k in ("x1", "n1", "x2", "n2")]
    difference, lower, upper = stats.newcombe_difference_interval(*args, float(row["confidence"]), multiplier=1)
    assert difference == pytest.approx(args[0] / args[1] - args[2] / args[3], rel=1e-12)
    assert_published(lower, row["lower"])
    assert_published(upper, row["upper"])


def test_newcombe_percentage_points_and_missing_group():
    d, lo, hi = stats.newcombe_difference_interval(56, 70, 48, 80)
    assert d == pytest.approx(20.0) and lo == pytest.approx(5.24, abs=0.005) and hi == pytest.approx(33.39, abs=0.005)
    d, lo, hi = stats.newcombe_difference_interval(5, 10, 0, 0)
    assert math.isnan(d) and math.isnan(lo) and math.isnan(hi)


# --------------------------------------------------------------------------- comparison
def test_compare_with_benchmark_fingertips_rule():
    value = [30, 10, 20, 20, math.nan, 25]
    low = [25, 5, 15, 20, math.nan, 20]
    high = [35, 15, 25, 22, math.nan, 30]
    high_pol = stats.compare_with_benchmark(value, low, high, 20, "high")
    assert list(high_pol) == ["better", "worse", "similar", "similar", "not_compared", "similar"]
    low_pol = stats.compare_with_benchmark(value, low, high, 20, "low")
    assert list(low_pol[:2]) == ["worse", "better"]
    neutral = stats.compare_with_benchmark(value, low, high, 20, "neutral")
    assert list(neutral[:3]) == ["higher", "lower", "similar"]
    own = stats.compare_with_benchmark(20, 15, 25, 20, "high", is_benchmark=True)
    assert own == "not_compared"
    assert stats.compare_with_benchmark(30, 25, 35, 20, None) == "not_compared"
    assert stats.compare_with_benchmark(30, 25, 35, math.nan, "high") == "not_compared"
    with pytest.raises(ValueError):
        stats.compare_with_benchmark(30, 25, 35, 20, "up")


# --------------------------------------------------------------------------- funnel helpers
def test_phe_funnel_helpers_published_values():
    for row in _rows("phe_funnel_helpers.csv"):
        fn = row["function"]
        if fn == "sigma_adjustment":
            got = stats.sigma_adjustment(
                float(row["p"]), float(row["x"]), float(row["y"]), row["side"], float(row["multiplier"])
            )
            assert got == pytest.approx(float(row["expected"]), rel=1e-12)
        elif fn == "poisson_funnel":
            got = stats.poisson_funnel(float(row["x"]), float(row["p"]), row["side"])
            assert got == pytest.approx(float(row["expected"]), rel=1e-12)
        else:
            got = stats.funnel_ratio_significance(float(row["x"]), float(row["y"]), float(row["p"]), row["side"])
            assert round(got, 2) == float(row["expected"])


# --------------------------------------------------------------------------- funnel tables
PROPORTION_COLUMNS = {
    "Lower2s0025limit": "lower_2s_limit",
    "Upper2s0025limit": "upper_2s_limit",
    "Lower3s0001limit": "lower_3s_limit",
    "Upper3s0001limit": "upper_3s_limit",
    "Baseline": "baseline",
}


def _assert_table(table: pd.DataFrame, expected: list[dict[str, str]], first: str, columns: dict[str, str]):
    assert len(table) == len(expected) == 100
    for i, row in enumerate(expected):
        assert table[first].iloc[i] == float(row[first])
        for published, mine in columns.items():
            assert_published(float(table[mine].iloc[i]), row[published])


@pytest.fixture(scope="module")
def prop_inputs() -> pd.DataFrame:
    return pd.read_csv(REF / "phe_funnel_prop_inputs.csv")


def test_funnel_table_proportion(prop_inputs):
    table = stats.funnel_limits_table(
        prop_inputs["numerator"], prop_inputs["denominator"], statistic="proportion", multiplier=100
    )
    _assert_table(table, _rows("phe_funnel_prop_outputs.csv"), "Population", PROPORTION_COLUMNS)


def test_funnel_table_proportion_axis_variation(prop_inputs):
    subset = prop_inputs[prop_inputs["denominator"] < 31000]
    table = stats.funnel_limits_table(
        subset["numerator"], subset["denominator"], statistic="proportion", multiplier=100
    )
    _assert_table(table, _rows("phe_funnel_prop_outputs_with_axis_variation.csv"), "Population", PROPORTION_COLUMNS)


def test_funnel_significance_proportion(prop_inputs):
    labels = stats.proportion_funnel_significance(
        prop_inputs["numerator"].to_numpy(), prop_inputs["denominator"].to_numpy()
    )
    assert list(labels) == list(prop_inputs["significance"])


RATE_COLUMNS = [
    "lower_2s_population_1_year",
    "lower_2s_limit",
    "upper_2s_population_1_year",
    "upper_2s_limit",
    "lower_3s_population_1_year",
    "lower_3s_limit",
    "upper_3s_population_1_year",
    "upper_3s_limit",
    "baseline",
]


@pytest.fixture(scope="module")
def rate_inputs() -> pd.DataFrame:
    return pd.read_csv(REF / "phe_funnel_rate_input_funnels.csv")


def test_funnel_table_rate_dsr(rate_inputs):
    table = stats.funnel_limits_table(
        rate_inputs["ev"],
        statistic="rate",
        rate=rate_inputs["rate"],
        rate_type="dsr",
        multiplier=100_000,
        years_of_data=3,
    )
    _assert_table(table, _rows("phe_funnel_rate_outputs_dsr.csv"), "Events", {c: c for c in RATE_COLUMNS})


def test_funnel_table_rate_crude(rate_inputs):
    data = rate_inputs.copy()
    data.loc[data["ev"] == data["ev"].max(), "ev"] = 5
    table = stats.funnel_limits_table(
        data["ev"],
        statistic="rate",
        rate=data["rate"],
        rate_type="crude",
        multiplier=100_000,
        years_of_data=3,
    )
    _assert_table(table, _rows("phe_funnel_rate_outputs_crude.csv"), "Events", {c: c for c in RATE_COLUMNS})


@pytest.mark.parametrize(
    "column, rate_column, multiplier, rate_type, drop_zero",
    [
        ("dsr_per_100000_with_0", "rate_dsr", 1e5, "dsr", False),
        ("dsr_per_100000_without_0", "rate_dsr", 1e5, "dsr", True),
        ("dsr_per_100_with_0", "rate_dsr", 100, "dsr", False),
        ("dsr_per_100_without_0", "rate_dsr", 100, "dsr", True),
        ("crude_per_100000_with_0", "rate_crude_per_100000", 1e5, "crude", False),
        ("crude_per_100000_without_0", "rate_crude_per_100000", 1e5, "crude", True),
        ("crude_per_100_with_0", "rate_crude_per_100", 100, "crude", False),
        ("crude_per_100_without_0", "rate_crude_per_100", 100, "crude", True),
    ],
)
def test_funnel_significance_rate(column, rate_column, multiplier, rate_type, drop_zero):
    data = pd.read_csv(REF / "phe_funnel_rate_significance.csv")
    if drop_zero:
        data = data[data["count"] != 0]
    labels = stats.rate_funnel_significance(
        data["count"].to_numpy(),
        data["pop"].to_numpy(),
        rate=data[rate_column].to_numpy(),
        multiplier=multiplier,
        rate_type=rate_type,
    )
    assert list(labels) == list(data[column])


# --------------------------------------------------------------------------- per-area funnels
def test_proportion_funnel_limits_agree_with_phe_table(prop_inputs):
    england = 100 * prop_inputs["numerator"].sum() / prop_inputs["denominator"].sum()
    expected = _rows("phe_funnel_prop_outputs.csv")
    n = np.array([float(r["Population"]) for r in expected])
    lo95, hi95 = stats.proportion_funnel_limits(n, england, 0.95)
    lo998, hi998 = stats.proportion_funnel_limits(n, england, 0.998)
    for i, row in enumerate(expected):
        assert_published(lo95[i], row["Lower2s0025limit"])
        assert_published(hi95[i], row["Upper2s0025limit"])
        assert_published(lo998[i], row["Lower3s0001limit"])
        assert_published(hi998[i], row["Upper3s0001limit"])
    lo, hi = stats.proportion_funnel_limits([0, 50], 30.0)
    assert math.isnan(lo[0]) and math.isnan(hi[0]) and lo[1] < 30 < hi[1]


def test_rate_funnel_limits_trace_the_phe_curve(rate_inputs):
    """At the population where PHE's (bisection) curve puts a given number of events, the
    continuous exact limit equals that curve to the bisection's precision (~1e-7)."""
    expected = _rows("phe_funnel_rate_outputs_crude.csv")
    baseline = float(expected[0]["baseline"])
    for row in expected[5::10]:
        for side, level, conf in (("upper", "2s", 0.95), ("lower", "2s", 0.95), ("upper", "3s", 0.998)):
            population = 3 * float(row[f"{side}_{level}_population_1_year"])
            lo, hi = stats.rate_funnel_limits(population, baseline, conf, 100_000)
            got = hi if side == "upper" else lo
            assert got == pytest.approx(float(row[f"{side}_{level}_limit"]), rel=2e-6)


def test_rate_funnel_limits_edges():
    lo, hi = stats.rate_funnel_limits([0, 10, 1e6], 50.0, 0.95, 1000)
    assert math.isnan(lo[0]) and math.isnan(hi[0])
    assert lo[1] == 0.0 and hi[1] > 50  # expected 0.5 events: no count is low enough
    assert lo[2] < 50 < hi[2] and hi[2] - lo[2] < 1


def test_rate_funnel_significance_with_plain_denominators():
    labels = stats.rate_funnel_significance([50, 5, 0], [1000, 1000, 1000], multiplier=1000, centre_value=10.0)
    assert list(labels) == ["High (0.001)", "Not significant", "Low (0.001)"]
