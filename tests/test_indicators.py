"""Every indicator of the catalogue on a small hand-built warehouse.

Each test inserts a handful of rows, and the expected prison-month numerators and
denominators were worked out by hand from them (the comment on each row says whether it
counts). Anchor month is April 2024 unless said otherwise. Prisons:
AAA public, London, X-ray; BBB PFI, South East, no X-ray; CCC contracted, London, X-ray.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from indicator_fixtures import Warehouse

from pipelines import catalogue, indicators

M = "2024-04"

ALL_CODES = [
    "P01a", "P01b", "P02a", "P02b", "P03a", "P03b", "P04a", "P05a", "P06a", "P06b", "P07a", "P07b",
    "P07c", "P08a", "P08b", "P08c", "P09a", "P10a", "P11a", "P11b", "P11c", "P11d", "P12a", "P12b",
    "P12c", "P12d", "P12e", "P12f",
]
GABAPENTIN = "0408010G0AAAAAA"
PREGABALIN = "0408010AEAAABAB"
OPIOID = "040702040AAAAAA"
HYPNOTIC = "0401010ADAAAAAA"
METHADONE = "0410030C0AAAAAA"


def make() -> Warehouse:
    w = Warehouse()
    w.prison("AAA", operator="public", region="London", function="reception", has_xray=True)
    w.prison("BBB", operator="pfi", region="South East", function="training", has_xray=False)
    w.prison("CCC", operator="contracted", region="London", function="yoi", has_xray=True)
    return w


def reasons(w: Warehouse, code: str, month: str = M) -> dict[str, tuple[int, float, str]]:
    return {k: (r["numerator"], r["denominator"], r["reason"]) for k, r in w.members(code, month).items()}


# ---------------------------------------------------------------------------------------
# The catalogue itself


def test_catalogue_has_the_28_indicators_one_file_each():
    codes = [i.code for i in catalogue.load_catalogue()]
    assert sorted(codes) == ALL_CODES
    assert sorted(p.stem for p in catalogue.CATALOGUE_DIR.glob("*.sql")) == ALL_CODES


def test_each_priority_has_one_headline_and_metadata_is_complete():
    by_priority = {}
    for i in catalogue.load_catalogue():
        by_priority.setdefault(i.priority, []).append(i)
        assert i.name and i.definition and i.numerator and i.denominator and i.anchor
    assert sorted(by_priority) == list(range(1, 13))
    for priority, members in by_priority.items():
        assert sum(i.headline for i in members) == 1, priority
    targets = [i.code for i in catalogue.load_catalogue() if i.target is not None]
    assert len(targets) >= 2
    for code in targets:
        assert "local illustrative target" in catalogue.indicator(code).definition


def test_units_methods_and_kinds_follow_the_indicator_table():
    expected = {
        "P04a": ("percentage points", "newcombe", "neutral"),
        "P05a": ("per 1,000 per month", "byar", "neutral"),
        "P08a": ("per 1,000", "byar", "low"),
        "P08b": ("per 1,000", "byar", "low"),
        "P11d": ("per 100,000", "byar", "low"),
        "P07a": ("%", "wilson", "low"),
        "P06a": ("%", "wilson", "neutral"),
        "P12e": ("%", "wilson", "neutral"),
        "P01a": ("%", "wilson", "high"),
    }
    for code, (unit, method, polarity) in expected.items():
        i = catalogue.indicator(code)
        assert (i.unit, i.method, i.polarity) == (unit, method, polarity), code
    kinds = {i.code: i.denominator_kind for i in catalogue.load_catalogue() if i.denominator_kind != "units"}
    assert kinds == {"P05a": "population_months", "P08a": "mean_population", "P08b": "mean_population",
                     "P11d": "person_years"}
    assert catalogue.indicator("P04a").derived == catalogue.Derived("gap", "P01b", "operator", "pfi", "public")


def test_every_event_table_scan_is_restricted_to_the_source_month_window():
    for i in catalogue.load_catalogue():
        body = re.sub(r"--[^\n]*", "", i.sql)
        scans = re.findall(r"conformed\.(reception_screening|bbv_testing|tb_screening|smoking|prescribing)", body)
        restrictions = re.findall(
            r"source_month (= \$month|BETWEEN \$first_source_month AND \$last_source_month)", body)
        assert len(scans) <= len(restrictions), i.code


def test_a_file_scanning_an_event_table_without_restriction_is_refused(tmp_path: Path):
    good = (catalogue.CATALOGUE_DIR / "P01a.sql").read_text()
    (tmp_path / "P01a.sql").write_text(good.replace("WHERE r.source_month = $month", "WHERE true"))
    with pytest.raises(catalogue.CatalogueError, match="source_month"):
        catalogue.load_catalogue(tmp_path)


def test_a_malformed_header_is_refused(tmp_path: Path):
    good = (catalogue.CATALOGUE_DIR / "P01a.sql").read_text()
    (tmp_path / "P01a.sql").write_text(good.replace("-- multiplier: 100", "-- multiplier: 1000"))
    with pytest.raises(catalogue.CatalogueError, match="multiplier"):
        catalogue.load_catalogue(tmp_path)
    (tmp_path / "P01a.sql").write_text(good.replace("-- code: P01a", "-- code: P01b"))
    with pytest.raises(catalogue.CatalogueError, match="file name"):
        catalogue.load_catalogue(tmp_path)


def test_methodology_document_is_generated_from_the_catalogue():
    committed = catalogue.METHODOLOGY_PATH.read_text(encoding="utf-8")
    assert committed == catalogue.render_methodology(), "run `python -m pipelines.catalogue`"
    for i in catalogue.load_catalogue():
        assert f"#### {i.code}" in committed
        assert i.sql in committed
    assert "/work/" not in committed and "indicators.md" not in committed


def test_catalogue_rows_fill_the_catalogue_table():
    w = Warehouse()
    assert catalogue.write_catalogue(w.conn) == 28
    rows = w.conn.execute(
        "SELECT code, priority, headline, unit, multiplier, polarity, target, method FROM indicators.catalogue "
        "WHERE code IN ('P01a', 'P11d') ORDER BY code").fetchall()
    assert rows == [
        ("P01a", 1, True, "%", 100, "high", 95.0, "wilson"),
        ("P11d", 11, False, "per 100,000", 100000, "low", None, "byar"),
    ]


# ---------------------------------------------------------------------------------------
# Priority 1


def test_P01a_first_screen_within_24_hours():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-10 10:00", first_screen_datetime="2024-04-11 10:00:00")  # exactly 24h: yes
    w.reception("r2", "p2", "AAA", "2024-04-10 10:00", first_screen_datetime="2024-04-11 10:00:01")  # 1s late: no
    w.reception("r3", "p3", "AAA", "2024-04-12 10:00")  # not screened: no
    w.reception("r4", "p4", "AAA", "2024-04-30 20:00", first_screen_datetime="2024-05-01 08:00")  # next month: yes
    w.reception("r5", "p5", "BBB", "2024-04-05 09:00", first_screen_datetime="2024-04-05 09:30", type="transfer")
    w.reception("r6", "p6", "AAA", "2024-05-02 09:00")  # May: not April
    w.reception("r7", "p7", "AAA", "2024-03-31 23:00", first_screen_datetime="2024-04-01 01:00")  # March
    w.compute("2024-03", M, "2024-05")
    assert w.prison_month("P01a", M) == {"AAA": (2, 4.0), "BBB": (1, 1.0)}
    assert w.prison_month("P01a", "2024-03") == {"AAA": (1, 1.0)}
    assert w.prison_month("P01a", "2024-05") == {"AAA": (0, 1.0)}
    r = reasons(w, "P01a")
    assert r["r1"] == (1, 1.0, "screened within 24h")
    assert r["r2"] == (0, 1.0, "screened after 24h")
    assert r["r3"] == (0, 1.0, "not screened")
    m = w.members("P01a", M)["r2"]
    assert str(m["window_end"]) == "2024-04-11 10:00:00"
    assert (m["source_file"], m["source_line"]) == ("reception_screening/2024-04.csv", 3)


def test_P01b_second_assessment_within_7_days_for_stays_over_7_days():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-08 09:00:00")  # exactly 7d: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-08 09:00:01")  # late: 0/1
    w.reception("r3", "p3", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-03 09:00",
                departure_datetime="2024-04-05 09:00")  # left inside 7 days: 0/0
    w.reception("r4", "p4", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-02 09:00",
                departure_datetime="2024-04-08 09:00:00")  # left exactly at 7 days: not over 7 days, 0/0
    w.reception("r5", "p5", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-02 09:00",
                departure_datetime="2024-04-08 09:00:01")  # left 1s after 7 days: over 7 days, 1/1
    w.reception("r6", "p6", "AAA", "2024-04-01 09:00")  # no second screen: 0/1
    w.compute(M)
    assert w.prison_month("P01b", M) == {"AAA": (2, 4.0)}
    r = reasons(w, "P01b")
    assert r["r3"] == (0, 0.0, "left within 7 days")
    assert r["r4"] == (0, 0.0, "left within 7 days")
    assert r["r5"] == (1, 1.0, "second screen within 7 days")
    assert r["r2"] == (0, 1.0, "second screen after 7 days")


# ---------------------------------------------------------------------------------------
# Priority 2


def test_P02a_reception_record_completeness():
    w = make()
    full = dict(first_screen_datetime="2024-04-02 10:00", substance_misuse_need=True, self_harm_risk=False,
                social_care_need=False)
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00", **full)  # complete
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00", **{**full, "self_harm_risk": None})  # one missing
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00", first_screen_datetime="2024-04-02 10:00",
                substance_misuse_need=False, self_harm_risk=False, social_care_need=False)  # false is recorded
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00")  # nothing recorded
    w.compute(M)
    assert w.prison_month("P02a", M) == {"AAA": (2, 4.0)}
    r = reasons(w, "P02a")
    assert r["r2"] == (0, 1.0, "missing self-harm risk")
    assert r["r4"][2] == "missing first screen, substance misuse need, self-harm risk, social care need"


def test_P02b_valid_record_rate_from_the_quality_summary():
    w = make()
    w.receive(M)
    w.summary("reception_screening", M, "AAA", read=10, loaded=9)
    w.summary("bbv_testing", M, "AAA", read=5, loaded=5)
    w.summary("tb_screening", M, "BBB", read=4, loaded=2)
    w.summary("prescribing", M, None, read=3, loaded=0)  # no valid prison: England only
    w.summary("prisons", M, "AAA", read=2, loaded=1)  # a reference table: not an event extract
    w.summary("smoking", "2024-05", "AAA", read=7, loaded=1)  # another file month
    w.compute(M)
    assert w.prison_month("P02b", M) == {"AAA": (14, 15.0), "BBB": (2, 4.0), None: (0, 3.0)}
    w.build()
    assert (w.value("P02b", "month", "2024-04-01", "england", "ENG")["numerator"],
            w.value("P02b", "month", "2024-04-01", "england", "ENG")["denominator"]) == (16, 22.0)
    london = w.value("P02b", "month", "2024-04-01", "region", "London")
    assert (london["numerator"], london["denominator"]) == (14, 15.0)
    south_east = w.value("P02b", "month", "2024-04-01", "region", "South East")
    assert (south_east["numerator"], south_east["denominator"], south_east["value"]) == (2, 4.0, 50.0)
    public = w.value("P02b", "month", "2024-04-01", "operator", "public")
    assert (public["numerator"], public["denominator"]) == (14, 15.0)
    assert w.members("P02b", M)["bbv_testing"]["source_file"] == "bbv_testing/2024-04.csv"


# ---------------------------------------------------------------------------------------
# Priority 3


def test_P03a_medicines_reconciliation_before_second_screen():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-05 10:00",
                meds_reconciliation_datetime="2024-04-03 10:00")  # 1/1
    w.reception("r2", "p2", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-05 10:00",
                meds_reconciliation_datetime="2024-04-05 10:00:00")  # at the second screen: 1/1
    w.reception("r3", "p3", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-05 10:00",
                meds_reconciliation_datetime="2024-04-05 10:00:01")  # 1s after: 0/1
    w.reception("r4", "p4", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-05 10:00",
                meds_reconciliation_datetime="2024-03-31 10:00")  # before reception: 0/1
    w.reception("r5", "p5", "AAA", "2024-04-01 09:00",
                meds_reconciliation_datetime="2024-04-02 10:00")  # no second screen: 0/0
    w.reception("r6", "p6", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-05 10:00")  # 0/1
    w.compute(M)
    assert w.prison_month("P03a", M) == {"AAA": (2, 5.0)}
    r = reasons(w, "P03a")
    assert r["r4"] == (0, 1.0, "reconciled before reception")
    assert r["r5"] == (0, 0.0, "no second screen")


def test_P03b_prescribing_continuity_on_transfer():
    w = make()
    # p1: item at AAA in March, transferred to BBB, item at BBB exactly 24h later: 1/1.
    w.item("i1a", "p1", "AAA", "2024-03-20 10:00", METHADONE)
    w.reception("r1", "p1", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i1b", "p1", "BBB", "2024-04-11 10:00:00", METHADONE)
    # p2: previous item exactly 28 days before (in), item at BBB 1s after 24h: 0/1.
    w.item("i2a", "p2", "AAA", "2024-03-13 10:00:00", METHADONE)
    w.reception("r2", "p2", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i2b", "p2", "BBB", "2024-04-11 10:00:01", METHADONE)
    # p3: previous item 1s more than 28 days before: not in the denominator, 0/0.
    w.item("i3a", "p3", "AAA", "2024-03-13 09:59:59", METHADONE)
    w.reception("r3", "p3", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i3b", "p3", "BBB", "2024-04-10 11:00", METHADONE)
    # p4: a new reception (not a transfer): 0/0.
    w.item("i4a", "p4", "AAA", "2024-04-01 10:00", METHADONE)
    w.reception("r4", "p4", "BBB", "2024-04-10 10:00", type="new")
    w.item("i4b", "p4", "BBB", "2024-04-10 11:00", METHADONE)
    # p5: the earlier item was at the receiving prison itself: not another prison, 0/0.
    w.item("i5a", "p5", "BBB", "2024-04-01 10:00", METHADONE)
    w.reception("r5", "p5", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i5b", "p5", "BBB", "2024-04-10 11:00", METHADONE)
    # p6: two items within 24h: counted once, 1/1.
    w.item("i6a", "p6", "CCC", "2024-04-05 10:00", METHADONE)
    w.reception("r6", "p6", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i6b", "p6", "BBB", "2024-04-10 12:00", METHADONE)
    w.item("i6c", "p6", "BBB", "2024-04-10 11:00", OPIOID)
    # p7: the only item within 24h was issued at another prison (not linked): 0/1.
    w.item("i7a", "p7", "AAA", "2024-04-05 10:00", METHADONE)
    w.reception("r7", "p7", "BBB", "2024-04-10 10:00", type="transfer")
    w.item("i7b", "p7", "CCC", "2024-04-10 11:00", METHADONE)
    w.compute(M)
    assert w.prison_month("P03b", M) == {"BBB": (2, 4.0)}
    r = reasons(w, "P03b")
    assert r["r3"] == (0, 0.0, "no item at another prison in the 28 days before")
    assert r["r4"] == (0, 0.0, "not a transfer")
    assert r["r5"][:2] == (0, 0.0)
    assert r["r7"] == (0, 1.0, "no item issued within 24h")
    r6 = w.members("P03b", M)["r6"]
    assert str(r6["event_datetime"]) == "2024-04-10 11:00:00"  # the first of the two items decides
    assert r6["source_file"] == "prescribing/2024-04.csv"


# ---------------------------------------------------------------------------------------
# Priority 4 (England only, derived from P01b)


def test_P04a_pfi_minus_public_gap():
    w = make()
    w.receive(M)
    # AAA (public): P01b 1/2. BBB (pfi): 3/4. CCC (contracted, in neither group): 0/1.
    for n, screened in enumerate([True, False]):
        w.reception(f"a{n}", f"pa{n}", "AAA", "2024-04-01 09:00",
                    second_screen_datetime="2024-04-02 09:00" if screened else None)
    for n, screened in enumerate([True, True, True, False]):
        w.reception(f"b{n}", f"pb{n}", "BBB", "2024-04-01 09:00",
                    second_screen_datetime="2024-04-02 09:00" if screened else None)
    w.reception("c0", "pc0", "CCC", "2024-04-01 09:00")
    w.compute(M)
    w.build()
    rows = w.conn.execute(
        "SELECT level, area_code, numerator, denominator, value FROM indicators.indicator_values "
        "WHERE indicator_id = 'P04a' AND period_type = 'month'").fetchall()
    assert rows == [("england", "ENG", None, None, pytest.approx(25.0))]  # 75% - 50%
    gap = indicators.gap_components(w.conn)
    month = gap[gap.period_type == "month"].iloc[0]
    assert (month.group_a, month.numerator_a, month.denominator_a) == ("pfi", 3, 4.0)
    assert (month.group_b, month.numerator_b, month.denominator_b) == ("public", 1, 2.0)
    # The analyst's query in P04a.sql gives the same figure for the month.
    p04a = catalogue.indicator("P04a")
    shown = w.conn.execute(p04a.sql, indicators.member_query_parameters(p04a, M)).fetchall()
    assert shown == [(3, 4.0, 1, 2.0, pytest.approx(25.0))]


def test_P04a_has_no_value_when_a_group_has_no_denominator():
    w = make()
    w.receive(M)
    w.reception("a0", "pa0", "AAA", "2024-04-01 09:00", second_screen_datetime="2024-04-02 09:00")
    w.reception("b0", "pb0", "BBB", "2024-04-01 09:00", departure_datetime="2024-04-02 09:00")  # 0/0 at PFI
    w.compute(M)
    w.build()
    row = w.value("P04a", "month", "2024-04-01", "england", "ENG")
    assert row["value"] != row["value"] or row["value"] is None  # NaN/None: no value
    assert w.conn.execute("SELECT count(*) FROM indicators.indicator_values WHERE indicator_id = 'P04a' "
                          "AND level <> 'england'").fetchall() == [(0,)]


# ---------------------------------------------------------------------------------------
# Priority 5


def test_P05a_activity_per_1000_each_activity_in_its_own_month():
    w = make()
    w.receive(M, "2024-05")
    w.population("AAA", M, 500)
    w.population("BBB", M, 200)
    w.population("AAA", "2024-05", 510)
    # CCC has activity but no population row.
    w.reception("r0", "p0", "AAA", "2024-03-30 09:00", first_screen_datetime="2024-03-31 09:00",
                second_screen_datetime="2024-04-03 09:00")  # March screen: March; second screen: April (1)
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00", first_screen_datetime="2024-04-02 10:00",
                second_screen_datetime="2024-04-09 10:00")  # April: 2
    w.reception("r2", "p2", "AAA", "2024-04-29 09:00", first_screen_datetime="2024-05-01 10:00")  # May: 1
    w.bbv("b1", "p1", "AAA", "HCV", "2024-03-30 10:00", "accepted", sample_datetime="2024-04-01 10:00")  # April: 1
    w.bbv("b2", "p1", "AAA", "HBV", "2024-04-05 10:00", "declined")  # no sample: 0
    w.bbv("b3", "p1", "AAA", "HIV", "2024-04-30 10:00", "accepted", sample_datetime="2024-05-01 10:00")  # May: 1
    w.tb("t1", "p1", "AAA", "2024-04-03 10:00", "symptom_screen", result="negative")  # April: 1
    w.tb("t2", "p9", "AAA", "2024-04-04 10:00", "chest_xray")  # unlinked, April: 1
    w.smoking("s1", "p1", "AAA", "2024-04-03 10:00", "status_recorded", smoking_status="never")  # April: 1
    for n in range(3):
        w.item(f"i{n}", "p1", "AAA", "2024-04-10 10:00", METHADONE)  # April: 3
    w.item("i9", "p5", "BBB", "2024-04-10 10:00", METHADONE)  # BBB April: 1
    w.item("c1", "p6", "CCC", "2024-04-10 10:00", METHADONE)  # CCC: no population
    w.item("c2", "p6", "CCC", "2024-04-11 10:00", METHADONE)
    w.compute("2024-03", M, "2024-05")
    assert w.prison_month("P05a", M) == {"AAA": (10, 500.0), "BBB": (1, 200.0), "CCC": (2, 0.0)}
    assert w.prison_month("P05a", "2024-05") == {"AAA": (2, 510.0)}
    members = w.members("P05a", M)
    assert members["second_screen:r0"]["event_datetime"].strftime("%Y-%m-%d") == "2024-04-03"
    assert members["AAA 2024-04"]["unit_type"] == "population"
    w.build()
    assert w.value("P05a", "month", "2024-04-01", "prison", "AAA")["value"] == pytest.approx(20.0)
    ccc = w.value("P05a", "month", "2024-04-01", "prison", "CCC")
    assert ccc["numerator"] == 2 and ccc["value"] != ccc["value"]  # events shown, no value (NaN)
    england = w.value("P05a", "month", "2024-04-01", "england", "ENG")
    assert (england["numerator"], england["denominator"]) == (11, 700.0)  # CCC left out
    london = w.value("P05a", "month", "2024-04-01", "region", "London")  # AAA + CCC(no population)
    assert (london["numerator"], london["denominator"]) == (10, 500.0)
    quarter = w.value("P05a", "quarter", "2024-04-01", "prison", "AAA")
    assert (quarter["numerator"], quarter["denominator"]) == (12, 1010.0)
    assert quarter["value"] == pytest.approx(12 / 1010 * 1000)


# ---------------------------------------------------------------------------------------
# Priority 6


def test_P06a_substance_misuse_need_at_reception():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00", substance_misuse_need=True)
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00", substance_misuse_need=False)
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00")  # not recorded: out of the denominator
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00", substance_misuse_need=True)
    w.compute(M)
    assert w.prison_month("P06a", M) == {"AAA": (2, 3.0)}
    assert reasons(w, "P06a")["r3"] == (0, 0.0, "need not recorded")


def test_P06b_treatment_started_within_7_days():
    w = make()
    need = dict(substance_misuse_need=True)
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00", substance_treatment_start_datetime="2024-04-09 09:00:00",
                **need)  # exactly 7d: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00", substance_treatment_start_datetime="2024-04-09 09:00:01",
                **need)  # 1s late: 0/1
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00", substance_treatment_start_datetime="2024-04-01 09:00",
                **need)  # before reception: 0/1
    w.reception("r4", "p4", "AAA", "2024-04-28 09:00", substance_treatment_start_datetime="2024-05-02 09:00",
                **need)  # next month: 1/1
    w.reception("r5", "p5", "AAA", "2024-04-02 09:00", substance_misuse_need=False,
                substance_treatment_start_datetime="2024-04-03 09:00")  # no need: 0/0
    w.reception("r6", "p6", "AAA", "2024-04-02 09:00")  # not recorded: 0/0
    w.compute(M)
    assert w.prison_month("P06b", M) == {"AAA": (2, 4.0)}
    r = reasons(w, "P06b")
    assert r["r3"] == (0, 1.0, "started before reception")
    assert r["r5"] == (0, 0.0, "no need")


# ---------------------------------------------------------------------------------------
# Priority 7


def test_P07a_first_status_within_7_days_decides():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00")
    w.smoking("s1a", "p1", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="current")
    w.smoking("s1b", "p1", "AAA", "2024-04-02 11:00", "status_recorded", smoking_status="ex")  # later: ignored
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00")
    w.smoking("s2a", "p2", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="ex")
    w.smoking("s2b", "p2", "AAA", "2024-04-02 12:00", "status_recorded", smoking_status="current")
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00")  # tie at the same time: smaller id S30 decides
    w.smoking("S31", "p3", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="never")
    w.smoking("S30", "p3", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="current")
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00")
    w.smoking("s4", "p4", "AAA", "2024-04-09 09:00:00", "status_recorded", smoking_status="current")  # exactly 7d
    w.reception("r5", "p5", "AAA", "2024-04-02 09:00")
    w.smoking("s5", "p5", "AAA", "2024-04-09 09:00:01", "status_recorded", smoking_status="current")  # 1s late
    w.reception("r6", "p6", "AAA", "2024-04-02 09:00")  # no status
    w.reception("r7", "p7", "AAA", "2024-04-02 09:00")
    w.smoking("s7", "p7", "BBB", "2024-04-02 10:00", "status_recorded", smoking_status="current")  # unlinked
    w.compute(M)
    assert w.prison_month("P07a", M) == {"AAA": (3, 4.0)}
    r = reasons(w, "P07a")
    assert r["r1"] == (1, 1.0, "status current")
    assert r["r2"] == (0, 1.0, "status ex")
    assert r["r3"] == (1, 1.0, "status current")
    assert r["r5"] == (0, 0.0, "no status within 7 days")
    assert r["r7"] == (0, 0.0, "no status within 7 days")
    assert w.members("P07a", M)["r4"]["source_file"] == "smoking/2024-04.csv"


def test_P07b_smokers_offered_nrt_or_vape_within_24_hours():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00")
    w.smoking("s1", "p1", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="current")
    w.smoking("o1", "p1", "AAA", "2024-04-03 09:00:00", "nrt_offered")  # exactly 24h: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00")
    w.smoking("s2", "p2", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="current")
    w.smoking("o2", "p2", "AAA", "2024-04-03 09:00:01", "vape_offered")  # 1s late: 0/1
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00")
    w.smoking("s3", "p3", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="current")
    w.smoking("o3a", "p3", "AAA", "2024-04-02 11:00", "nrt_offered")
    w.smoking("o3b", "p3", "AAA", "2024-04-02 12:00", "vape_offered")  # two offers: counted once, 1/1
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00")
    w.smoking("s4", "p4", "AAA", "2024-04-02 10:00", "status_recorded", smoking_status="ex")
    w.smoking("o4", "p4", "AAA", "2024-04-02 11:00", "nrt_offered")  # not a smoker: 0/0
    w.reception("r5", "p5", "AAA", "2024-04-02 09:00")
    w.smoking("o5", "p5", "AAA", "2024-04-02 10:00", "vape_offered")  # offer before the status...
    w.smoking("s5", "p5", "AAA", "2024-04-05 09:00", "status_recorded", smoking_status="current")  # ...day 3: 1/1
    w.reception("r6", "p6", "AAA", "2024-04-02 09:00")
    w.smoking("o6", "p6", "AAA", "2024-04-02 10:00", "nrt_offered")  # no status: 0/0
    w.compute(M)
    assert w.prison_month("P07b", M) == {"AAA": (3, 4.0)}
    r = reasons(w, "P07b")
    assert r["r2"] == (0, 1.0, "not offered within 24h")
    assert r["r4"] == (0, 0.0, "status ex")
    assert r["r6"] == (0, 0.0, "no status within 7 days")
    assert str(w.members("P07b", M)["r3"]["event_datetime"]) == "2024-04-02 11:00:00"


def test_P07c_four_week_quit_rate_by_quit_date_month():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-01 09:00")
    w.smoking("q1", "p1", "AAA", "2024-04-05 10:00", "quit_date_set")
    w.smoking("f1", "p1", "BBB", "2024-04-30 10:00:00", "quit_4wk",
              outcome="quit_co_verified")  # exactly 25d, at another prison: yes
    w.smoking("q2", "p2", "AAA", "2024-04-05 10:00", "quit_date_set")
    w.smoking("f2", "p2", "AAA", "2024-05-17 10:00:00", "quit_4wk",
              outcome="quit_self_reported")  # exactly 42d, next month: yes
    w.smoking("q3", "p3", "AAA", "2024-04-05 10:00", "quit_date_set")
    w.smoking("f3", "p3", "AAA", "2024-05-17 10:00:01", "quit_4wk", outcome="quit_self_reported")  # 1s late: no
    w.smoking("q4", "p4", "AAA", "2024-04-05 10:00", "quit_date_set")
    w.smoking("f4", "p4", "AAA", "2024-04-30 09:59:59", "quit_4wk", outcome="quit_self_reported")  # 1s early: no
    w.smoking("q5", "p5", "AAA", "2024-04-05 10:00", "quit_date_set")
    w.smoking("f5", "p5", "AAA", "2024-05-05 10:00", "quit_4wk", outcome="not_quit")  # not quit: no
    w.smoking("q6", "p6", "BBB", "2024-04-20 10:00", "quit_date_set")  # unlinked (no reception): counts at BBB
    w.smoking("f6", "p6", "BBB", "2024-05-25 10:00", "quit_4wk", outcome="quit_self_reported")  # 35d: yes
    w.smoking("q7", "p7", "AAA", "2024-04-28 10:00", "quit_date_set")
    w.smoking("f7", "p7", "AAA", "2024-06-05 10:00", "quit_4wk", outcome="quit_co_verified")  # 38d, in June: yes
    w.smoking("q8", "p8", "AAA", "2024-05-02 10:00", "quit_date_set")  # May: not April
    w.compute(M)
    assert w.prison_month("P07c", M) == {"AAA": (3, 6.0), "BBB": (1, 1.0)}
    r = reasons(w, "P07c")
    assert r["q1"] == (1, 1.0, "quit_co_verified")
    assert r["q3"] == (0, 1.0, "no quit recorded 25 to 42 days later")
    assert w.members("P07c", M)["q7"]["source_file"] == "smoking/2024-06.csv"


# ---------------------------------------------------------------------------------------
# Priority 8


def test_P08a_gabapentinoid_persons_per_1000():
    w = make()
    w.receive(M, "2024-05")
    for prison, month, pop in [("AAA", M, 400), ("AAA", "2024-05", 600), ("BBB", M, 100), ("BBB", "2024-05", 100)]:
        w.population(prison, month, pop)
    w.item("i1", "p1", "AAA", "2024-04-02 10:00", GABAPENTIN)
    w.item("i2", "p1", "AAA", "2024-04-20 10:00", GABAPENTIN)  # same person twice: once
    w.item("i3", "p2", "AAA", "2024-04-03 10:00", PREGABALIN)
    w.item("i4", "p3", "AAA", "2024-04-03 10:00", OPIOID)  # not a gabapentinoid
    w.item("i5", "p4", "BBB", "2024-04-03 10:00", GABAPENTIN)
    w.item("i6", "p1", "BBB", "2024-04-25 10:00", GABAPENTIN)  # transferred: counts at BBB too
    w.item("i7", "p1", "AAA", "2024-05-03 10:00", GABAPENTIN)
    w.item("i8", "p5", "AAA", "2024-05-03 10:00", PREGABALIN)
    w.compute(M, "2024-05")
    assert w.prison_month("P08a", M) == {"AAA": (2, 400.0), "BBB": (2, 100.0)}
    assert w.prison_month("P08a", "2024-05") == {"AAA": (2, 600.0), "BBB": (0, 100.0)}
    assert str(w.members("P08a", M)["AAA:p1:gabapentinoid"]["event_datetime"]) == "2024-04-02 10:00:00"
    w.build()
    assert w.value("P08a", "month", "2024-04-01", "prison", "AAA")["value"] == pytest.approx(5.0)
    # Quarter: distinct persons over the period (p1 in April and May counts once), mean population.
    aaa = w.value("P08a", "quarter", "2024-04-01", "prison", "AAA")
    assert (aaa["numerator"], aaa["denominator"], aaa["value"]) == (3, 500.0, pytest.approx(6.0))
    bbb = w.value("P08a", "quarter", "2024-04-01", "prison", "BBB")
    assert (bbb["numerator"], bbb["denominator"]) == (2, 100.0)
    england = w.value("P08a", "quarter", "2024-04-01", "england", "ENG")
    assert (england["numerator"], england["denominator"]) == (5, 600.0)  # prison numerators summed


def test_P08b_gabapentinoid_and_opioid_at_the_same_prison_in_the_period():
    w = make()
    w.receive(M, "2024-05")
    for month in (M, "2024-05"):
        w.population("AAA", month, 1000)
        w.population("BBB", month, 500)
    w.item("a1", "p1", "AAA", "2024-04-02 10:00", GABAPENTIN)
    w.item("b1", "p1", "AAA", "2024-04-09 10:00", OPIOID)  # both in April: April 1, quarter 1
    w.item("a2", "p2", "AAA", "2024-04-02 10:00", PREGABALIN)
    w.item("b2", "p2", "AAA", "2024-05-09 10:00", OPIOID)  # April and May: neither month, quarter 1
    w.item("a3", "p3", "AAA", "2024-04-02 10:00", GABAPENTIN)
    w.item("b3", "p3", "BBB", "2024-04-09 10:00", OPIOID)  # different prisons: never
    w.item("b4", "p4", "AAA", "2024-04-09 10:00", OPIOID)  # opioid only: never
    w.compute(M, "2024-05")
    assert w.prison_month("P08b", M) == {"AAA": (1, 1000.0), "BBB": (0, 500.0)}
    assert w.prison_month("P08b", "2024-05") == {"AAA": (0, 1000.0), "BBB": (0, 500.0)}
    r = reasons(w, "P08b")
    assert r["AAA:p1:gabapentinoid"] == (1, 0.0, "both groups this month")
    assert r["AAA:p1:opioid_analgesic"] == (0, 0.0, "both groups this month")
    assert r["AAA:p2:gabapentinoid"] == (0, 0.0, "gabapentinoid only this month")
    w.build()
    quarter = w.value("P08b", "quarter", "2024-04-01", "prison", "AAA")
    assert (quarter["numerator"], quarter["denominator"], quarter["value"]) == (2, 1000.0, pytest.approx(2.0))
    assert w.value("P08b", "quarter", "2024-04-01", "prison", "BBB")["numerator"] == 0
    england = w.value("P08b", "quarter", "2024-04-01", "england", "ENG")
    assert (england["numerator"], england["denominator"]) == (2, 1500.0)


def test_P08c_tradable_medicines_supplied_safely():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-01 09:00")
    w.item("i1", "p1", "AAA", "2024-04-02 10:00", GABAPENTIN, in_possession=False)  # 1/1
    w.item("i2", "p1", "AAA", "2024-04-02 10:00", PREGABALIN, in_possession=True, ip_risk_assessed=True)  # 1/1
    w.item("i3", "p1", "AAA", "2024-04-02 10:00", OPIOID, in_possession=True)  # assessment null: 0/1
    w.item("i4", "p1", "AAA", "2024-04-02 10:00", HYPNOTIC, in_possession=True, ip_risk_assessed=False)  # 0/1
    w.item("i5", "p1", "AAA", "2024-04-02 10:00", METHADONE, in_possession=True)  # not tradable: no member
    w.item("i6", "p9", "BBB", "2024-04-02 10:00", GABAPENTIN, in_possession=False)  # unlinked: BBB 1/1
    w.item("i7", "p1", "AAA", "2024-05-02 10:00", GABAPENTIN)  # May
    w.compute(M)
    assert w.prison_month("P08c", M) == {"AAA": (2, 4.0), "BBB": (1, 1.0)}
    r = reasons(w, "P08c")
    assert r["i3"] == (0, 1.0, "in possession, assessment not recorded")
    assert "i5" not in r


# ---------------------------------------------------------------------------------------
# Priorities 9 and 10


def test_P09a_self_harm_risk_referred_within_24_hours():
    w = make()
    risk = dict(self_harm_risk=True)
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00", mental_health_referral_datetime="2024-04-03 09:00:00",
                **risk)  # exactly 24h: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00", mental_health_referral_datetime="2024-04-03 09:00:01",
                **risk)  # 0/1
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00", mental_health_referral_datetime="2024-04-02 08:59:59",
                **risk)  # before reception: 0/1
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00", **risk)  # not referred: 0/1
    w.reception("r5", "p5", "AAA", "2024-04-02 09:00", self_harm_risk=False,
                mental_health_referral_datetime="2024-04-02 10:00")  # no risk: 0/0
    w.reception("r6", "p6", "AAA", "2024-04-02 09:00")  # not recorded: 0/0
    w.compute(M)
    assert w.prison_month("P09a", M) == {"AAA": (1, 4.0)}
    assert reasons(w, "P09a")["r3"] == (0, 1.0, "referred before reception")


def test_P10a_social_care_referral_within_28_days():
    w = make()
    need = dict(social_care_need=True)
    w.reception("r1", "p1", "AAA", "2024-04-20 10:00", social_care_referral_datetime="2024-05-18 10:00:00",
                **need)  # exactly 28d, in May: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-20 10:00", social_care_referral_datetime="2024-05-18 10:00:01",
                **need)  # 0/1
    w.reception("r3", "p3", "AAA", "2024-04-20 10:00", social_care_referral_datetime="2024-04-19 10:00",
                **need)  # before: 0/1
    w.reception("r4", "p4", "AAA", "2024-04-20 10:00", social_care_referral_datetime="2024-04-23 10:00",
                **need)  # 1/1
    w.reception("r5", "p5", "AAA", "2024-04-20 10:00", social_care_need=False)  # 0/0
    w.compute(M)
    assert w.prison_month("P10a", M) == {"AAA": (2, 4.0)}


# ---------------------------------------------------------------------------------------
# Priority 11


def test_P11a_symptom_screen_within_24_hours_through_linkage_only():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00")
    w.tb("t1", "p1", "AAA", "2024-04-03 09:00:00", "symptom_screen")  # exactly 24h: yes
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00")
    w.tb("t2", "p2", "AAA", "2024-04-03 09:00:01", "symptom_screen")  # 1s late: no
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00")
    w.tb("t3a", "p3", "AAA", "2024-04-02 10:00", "symptom_screen", result="negative")
    w.tb("t3b", "p3", "AAA", "2024-04-02 11:00", "symptom_screen", result="positive")  # two: counted once
    w.reception("r4", "p4", "AAA", "2024-04-02 09:00")
    w.tb("t4", "p4", "AAA", "2024-04-02 10:00", "chest_xray")  # not a symptom screen: no
    w.reception("r5", "p5", "AAA", "2024-04-30 22:00")
    w.tb("t5", "p5", "AAA", "2024-05-01 01:00", "symptom_screen")  # next month's file: yes
    w.reception("r6", "p6", "AAA", "2024-04-02 09:00")
    w.tb("t6", "p6", "CCC", "2024-04-02 10:00", "symptom_screen")  # at another prison, unlinked: no
    w.reception("r7a", "p7", "AAA", "2024-04-02 10:00")  # the screen links to the later reception r7b
    w.reception("r7b", "p7", "AAA", "2024-04-03 09:00")
    w.tb("t7", "p7", "AAA", "2024-04-03 09:30", "symptom_screen")
    w.compute(M)
    assert w.prison_month("P11a", M) == {"AAA": (4, 8.0)}
    r = reasons(w, "P11a")
    assert [k for k, v in sorted(r.items()) if v[0] == 1] == ["r1", "r3", "r5", "r7b"]
    members = w.members("P11a", M)
    assert (members["r3"]["unit_id"], str(members["r3"]["event_datetime"])) == ("r3", "2024-04-02 10:00:00")
    assert members["r5"]["source_file"] == "tb_screening/2024-05.csv"


def test_P11b_chest_xray_within_48_hours_at_xray_prisons():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-02 09:00")
    w.tb("t1", "p1", "AAA", "2024-04-04 09:00:00", "chest_xray")  # exactly 48h: 1/1
    w.reception("r2", "p2", "AAA", "2024-04-02 09:00")
    w.tb("t2", "p2", "AAA", "2024-04-04 09:00:01", "chest_xray")  # 0/1
    w.reception("r3", "p3", "AAA", "2024-04-02 09:00")  # 0/1
    w.reception("r4", "p4", "BBB", "2024-04-02 09:00")
    w.tb("t4", "p4", "BBB", "2024-04-02 10:00", "chest_xray")  # BBB has no X-ray: 0/0
    w.compute(M)
    assert w.prison_month("P11b", M) == {"AAA": (1, 3.0), "BBB": (0, 0.0)}
    assert reasons(w, "P11b")["r4"] == (0, 0.0, "no X-ray at this prison")


def test_P11c_positive_symptom_screens_referred_within_24_hours():
    w = make()
    w.reception("r1", "p1", "AAA", "2024-04-01 09:00")
    w.tb("e1", "p1", "AAA", "2024-04-02 10:00", "symptom_screen", result="positive",
         referral_datetime="2024-04-03 10:00:00")  # exactly 24h: 1/1
    w.tb("e2", "p1", "AAA", "2024-04-05 10:00", "symptom_screen", result="positive",
         referral_datetime="2024-04-06 10:00:01")  # 0/1
    w.tb("e3", "p1", "AAA", "2024-04-05 10:00", "symptom_screen", result="negative",
         referral_datetime="2024-04-05 11:00")  # negative: not a member
    w.tb("e4", "p9", "BBB", "2024-04-05 10:00", "symptom_screen", result="positive",
         referral_datetime="2024-04-05 11:00")  # unlinked: BBB 1/1
    w.tb("e5", "p1", "AAA", "2024-04-30 23:00", "symptom_screen", result="positive",
         referral_datetime="2024-05-01 01:00")  # referral next month: 1/1
    w.tb("e6", "p1", "AAA", "2024-04-12 10:00", "symptom_screen", result="positive")  # not referred: 0/1
    w.compute(M)
    assert w.prison_month("P11c", M) == {"AAA": (2, 4.0), "BBB": (1, 1.0)}
    assert "e3" not in w.members("P11c", M)


def test_P11d_tb_cases_per_100000_person_years():
    w = make()
    w.receive(M)
    w.population("AAA", M, 1200)  # 100 person-years
    w.tb("d1", "p1", "AAA", "2024-04-02 10:00", "diagnosis", result="positive")
    w.tb("d2", "p2", "AAA", "2024-04-12 10:00", "diagnosis", result="positive")  # unlinked: still a case
    w.tb("d3", "p3", "AAA", "2024-04-12 10:00", "diagnosis", result="negative")  # not a case
    w.tb("d4", "p4", "AAA", "2024-04-12 10:00", "symptom_screen", result="positive")  # not a diagnosis
    w.tb("d5", "p5", "BBB", "2024-04-12 10:00", "diagnosis", result="positive")  # BBB: no population
    w.compute(M)
    assert w.prison_month("P11d", M) == {"AAA": (2, 100.0), "BBB": (1, 0.0)}
    w.build()
    assert w.value("P11d", "month", "2024-04-01", "prison", "AAA")["value"] == pytest.approx(2000.0)
    england = w.value("P11d", "month", "2024-04-01", "england", "ENG")
    assert (england["numerator"], england["denominator"], england["value"]) == (2, 100.0, pytest.approx(2000.0))
    bbb = w.value("P11d", "month", "2024-04-01", "prison", "BBB")
    assert bbb["numerator"] == 1 and bbb["denominator"] != bbb["denominator"]  # no population: null


# ---------------------------------------------------------------------------------------
# Priority 12


def test_P12a_hcv_offered_within_72_hours():
    w = make()
    at = "2024-04-02 09:00"
    w.reception("r1", "p1", "AAA", at)
    w.bbv("b1", "p1", "AAA", "HCV", "2024-04-05 09:00:00", "accepted")  # exactly 72h: 1/1
    w.reception("r2", "p2", "AAA", at)
    w.bbv("b2", "p2", "AAA", "HCV", "2024-04-05 09:00:01", "declined")  # 1s late: 0/1
    w.reception("r3", "p3", "AAA", at)
    w.bbv("b3", "p3", "AAA", "HCV", "2024-04-02 10:00", "not_eligible")  # not eligible: 0/0
    w.reception("r4", "p4", "AAA", at)
    w.bbv("b4a", "p4", "AAA", "HCV", "2024-04-02 10:00", "not_eligible")
    w.bbv("b4b", "p4", "AAA", "HCV", "2024-04-02 11:00", "declined")  # offered as well: 1/1
    w.reception("r5", "p5", "AAA", at)
    w.bbv("b5", "p5", "AAA", "HCV", "2024-04-05 10:00", "not_eligible")  # after 72h: stays, 0/1
    w.reception("r6", "p6", "AAA", at)
    w.bbv("b6", "p6", "AAA", "HBV", "2024-04-02 10:00", "accepted")  # another virus: 0/1
    w.reception("r7", "p7", "AAA", at)
    w.bbv("b7a", "p7", "AAA", "HCV", "2024-04-02 10:00", "declined")
    w.bbv("b7b", "p7", "AAA", "HCV", "2024-04-03 10:00", "accepted")  # two offers: counted once, 1/1
    w.reception("r8", "p8", "AAA", at)  # nothing: 0/1
    w.compute(M)
    assert w.prison_month("P12a", M) == {"AAA": (3, 7.0)}
    r = reasons(w, "P12a")
    assert r["r3"] == (0, 0.0, "not eligible")
    assert r["r4"] == (1, 1.0, "offered within 72h (declined)")
    assert r["r7"] == (1, 1.0, "offered within 72h (declined)")


def test_P12b_hcv_tested_within_72_hours():
    w = make()
    at = "2024-04-02 09:00"
    w.reception("r1", "p1", "AAA", at)
    w.bbv("b1", "p1", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-05 09:00:00")  # 1/1
    w.reception("r2", "p2", "AAA", at)
    w.bbv("b2", "p2", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-05 09:00:01")  # 0/1
    w.reception("r3", "p3", "AAA", at)
    w.bbv("b3", "p3", "AAA", "HCV", "2024-04-02 10:00", "not_eligible")  # 0/0
    w.reception("r4", "p4", "AAA", at)
    w.bbv("b4", "p4", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="invalid")  # tested, whatever the result: 1/1
    w.reception("r5", "p5", "AAA", at)
    w.bbv("b5", "p5", "AAA", "HCV", "2024-04-02 10:00", "declined")  # 0/1
    w.reception("r6", "p6", "AAA", "2024-04-30 20:00")
    w.bbv("b6", "p6", "AAA", "HCV", "2024-05-01 09:00", "accepted", sample_datetime="2024-05-01 10:00")  # May file: 1/1
    w.compute(M)
    assert w.prison_month("P12b", M) == {"AAA": (3, 5.0)}
    assert reasons(w, "P12b")["r2"] == (0, 1.0, "not tested within 72h")


def test_P12c_and_P12d_hbv_and_hiv_tested_within_72_hours():
    w = make()
    at = "2024-04-02 09:00"
    w.reception("r1", "p1", "AAA", at)
    w.bbv("b1", "p1", "AAA", "HBV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00")
    w.reception("r2", "p2", "AAA", at)
    w.bbv("b2", "p2", "AAA", "HIV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00")
    w.reception("r3", "p3", "AAA", at)
    w.bbv("b3", "p3", "AAA", "HBV", "2024-04-02 10:00", "not_eligible")
    w.compute(M)
    # HBV: r1 tested; r2 not; r3 not eligible for HBV.  HIV: r2 tested; r1 and r3 not.
    assert w.prison_month("P12c", M) == {"AAA": (1, 2.0)}
    assert w.prison_month("P12d", M) == {"AAA": (1, 3.0)}


def test_P12e_hcv_rna_positivity_by_sample_month():
    w = make()
    w.bbv("s1", "p1", "AAA", "HCV", "2024-03-30 10:00", "accepted", sample_datetime="2024-04-01 10:00",
          result="positive", hcv_rna_result="positive")  # March offer, April sample: 1/1
    w.bbv("s2", "p2", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="negative")  # 0/1
    w.bbv("s3", "p3", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="invalid")  # invalid is not a result: 0/0
    w.bbv("s4", "p4", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00")  # pending
    w.bbv("s5", "p5", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", hcv_rna_result="negative")  # 0/1
    w.bbv("s6", "p6", "AAA", "HCV", "2024-04-30 10:00", "accepted", sample_datetime="2024-05-01 10:00",
          result="positive", hcv_rna_result="positive")  # May sample: not April
    w.bbv("s7", "p7", "BBB", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", hcv_rna_result="positive")  # unlinked, BBB: 1/1
    w.bbv("s8", "p8", "AAA", "HBV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive")  # HBV: not a member
    w.compute(M, "2024-05")
    assert w.prison_month("P12e", M) == {"AAA": (1, 3.0), "BBB": (1, 1.0)}
    assert w.prison_month("P12e", "2024-05") == {"AAA": (1, 1.0)}
    r = reasons(w, "P12e")
    assert r["s3"] == (0, 0.0, "invalid result")
    assert r["s4"] == (0, 0.0, "no result")
    assert "s8" not in r and "s6" not in r


def test_P12f_positives_referred_within_28_days_of_the_sample():
    w = make()
    w.bbv("s1", "p1", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", hcv_rna_result="positive", referral_datetime="2024-04-30 11:00:00")  # exactly 28d: 1/1
    w.bbv("s2", "p2", "AAA", "HBV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", referral_datetime="2024-04-30 11:00:01")  # 0/1
    w.bbv("s3", "p3", "AAA", "HIV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", referral_datetime="2024-04-02 10:30")  # before the sample: 0/1
    w.bbv("s4", "p4", "AAA", "HCV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive", hcv_rna_result="negative", referral_datetime="2024-04-03 11:00")  # not positive
    w.bbv("s5", "p5", "AAA", "HIV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="negative", referral_datetime="2024-04-03 11:00")  # not positive
    w.bbv("s6", "p6", "AAA", "HCV", "2024-03-31 10:00", "accepted", sample_datetime="2024-04-01 10:00",
          result="positive", hcv_rna_result="positive", referral_datetime="2024-04-02 10:00")  # March offer: 1/1
    w.bbv("s7", "p7", "AAA", "HBV", "2024-04-02 10:00", "accepted", sample_datetime="2024-04-02 11:00",
          result="positive")  # not referred: 0/1
    w.compute(M)
    assert w.prison_month("P12f", M) == {"AAA": (2, 5.0)}
    r = reasons(w, "P12f")
    assert r["s3"] == (0, 1.0, "HIV positive, referred before sample")
    assert "s4" not in r and "s5" not in r
