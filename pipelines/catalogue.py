"""The indicator catalogue: one SQL file per indicator under `assets/catalogue/`.

Each file starts with a header of `-- key: value` comment lines (a value may continue on
following comment lines indented by at least three spaces) and then holds ONE query that
returns the indicator's member rows for an anchor month (see MEMBER_COLUMNS). Adding an
indicator means adding a file; nothing else names indicator codes.

This module parses and checks the files, renders `docs/methodology.md` and supplies the
rows of `indicators.catalogue`. Run `python -m pipelines.catalogue` to rewrite the
methodology after changing the catalogue (a test fails while it is stale).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pipelines import contract

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE_DIR = ROOT / "assets" / "catalogue"
METHODOLOGY_PATH = ROOT / "docs" / "methodology.md"

# Columns every member query returns, in this order.
MEMBER_COLUMNS: tuple[str, ...] = (
    "prison_code",
    "unit_type",
    "unit_id",
    "person_key",
    "numerator",
    "denominator",
    "reason",
    "anchor_datetime",
    "event_datetime",
    "window_end",
    "source_file",
    "source_line",
)
# Returned as well by `distinct_persons` indicators: which of the indicator's components
# (e.g. a drug group) the person row stands for.
COMPONENT_COLUMN = "component"

UNIT_TYPES = ("reception", "event", "person", "activity", "population", "rows")
UNITS = {  # unit -> multiplier
    "%": 100,
    "per 1,000": 1000,
    "per 1,000 per month": 1000,
    "per 100,000": 100000,
    "percentage points": 100,
}
POLARITIES = ("high", "low", "neutral")
METHODS = {
    "wilson": "Wilson score interval for a proportion (no continuity correction)",
    "byar": "rate interval: exact Poisson (chi-squared) when the numerator is under 10, Byar's method otherwise",
    "newcombe": "Newcombe's hybrid score interval for a difference of two proportions, from their Wilson intervals",
}
DENOMINATOR_KINDS = {
    "units": "counted member units (receptions, events or rows)",
    "population_months": "sum of the monthly average populations (population-months)",
    "mean_population": "mean of the monthly average populations over the period",
    "person_years": "person-years: sum of the monthly average populations / 12",
}
AGGREGATIONS = {
    "sum": "numerators and denominators summed over months and prisons",
    "distinct_persons": "numerator = distinct persons over the whole period at each prison, "
    "summed over prisons at higher levels",
}
QUERY_PARAMETERS = ("month", "month_start", "month_end", "first_source_month", "last_source_month")
DERIVED_ATTRIBUTES = ("operator", "region", "function")

REQUIRED_KEYS = (
    "code",
    "priority",
    "priority_name",
    "headline",
    "name",
    "definition",
    "numerator",
    "denominator",
    "unit",
    "multiplier",
    "polarity",
    "target",
    "method",
    "denominator_kind",
    "aggregation",
    "anchor",
)
OPTIONAL_KEYS = ("components", "derived")

_CODE_RE = re.compile(r"^P[0-9]{2}[a-z]$")
_KEY_RE = re.compile(r"^-- ([a-z_]+):(.*)$")
_CONTINUATION_RE = re.compile(r"^--\s{3,}(\S.*)$")
_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_EVENT_TABLES = tuple(t.name for t in contract.SOURCES)
_EVENT_SCAN_RE = re.compile(r"\bconformed\.(" + "|".join(_EVENT_TABLES) + r")\b")
_SOURCE_MONTH_RESTRICTION_RE = re.compile(
    r"source_month\s*(=\s*\$month\b|BETWEEN\s+\$first_source_month\s+AND\s+\$last_source_month\b)",
    re.IGNORECASE,
)
_DERIVED_RE = re.compile(r"^gap (P[0-9]{2}[a-z]) ([a-z_]+) ([A-Za-z_ ]+?) - ([A-Za-z_ ]+)$")


class CatalogueError(ValueError):
    """A catalogue file is malformed or breaks a catalogue rule."""


@dataclass(frozen=True)
class Derived:
    """An indicator computed from another's aggregates rather than from member rows.

    `gap`: value = base indicator in group_a minus in group_b, where the groups are the
    prisons whose `attribute` (a column of conformed.prisons) has that value; England only.
    """

    kind: str
    base: str
    attribute: str
    group_a: str
    group_b: str


@dataclass(frozen=True)
class Indicator:
    code: str
    priority: int
    priority_name: str
    headline: bool
    name: str
    definition: str
    numerator: str
    denominator: str
    unit: str
    multiplier: int
    polarity: str
    target: float | None
    method: str
    denominator_kind: str
    aggregation: str
    anchor: str
    components: tuple[str, ...]
    derived: Derived | None
    sql: str
    path: Path

    @property
    def parameters(self) -> tuple[str, ...]:
        """The named query parameters the SQL uses (DuckDB rejects unused ones)."""
        return tuple(sorted(set(_PARAM_RE.findall(_strip_comments(self.sql)))))

    @property
    def is_population_rate(self) -> bool:
        return self.denominator_kind != "units"


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def parse_file(path: Path) -> Indicator:
    """Read one catalogue file: its header into metadata, the rest as the query."""
    lines = path.read_text(encoding="utf-8").splitlines()
    meta: dict[str, str] = {}
    key = None
    body_start = len(lines)
    for i, line in enumerate(lines):
        if not line.startswith("--"):
            body_start = i
            break
        if m := _CONTINUATION_RE.match(line):
            if key is None:
                raise CatalogueError(f"{path.name}:{i + 1}: continuation line before any key")
            meta[key] = f"{meta[key]} {m.group(1).strip()}".strip()
        elif m := _KEY_RE.match(line):
            key = m.group(1)
            if key in meta:
                raise CatalogueError(f"{path.name}:{i + 1}: key {key!r} repeated")
            if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
                raise CatalogueError(f"{path.name}:{i + 1}: unknown key {key!r}")
            meta[key] = m.group(2).strip()
        elif line.strip() == "--":
            key = None
        else:
            raise CatalogueError(f"{path.name}:{i + 1}: header line is neither '-- key: value' nor a continuation")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CatalogueError(f"{path.name}: header lacks {', '.join(missing)}")
    sql = "\n".join(lines[body_start:]).strip().rstrip(";").strip()
    return _build(path, meta, sql)


def _build(path: Path, meta: dict[str, str], sql: str) -> Indicator:
    def fail(message: str) -> None:
        raise CatalogueError(f"{path.name}: {message}")

    code = meta["code"]
    if not _CODE_RE.match(code) or path.stem != code:
        fail(f"code {code!r} must look like P01a and match the file name")
    if meta["headline"] not in ("true", "false"):
        fail("headline must be true or false")
    unit = meta["unit"]
    if unit not in UNITS:
        fail(f"unit {unit!r} not one of {list(UNITS)}")
    multiplier = int(meta["multiplier"])
    if multiplier != UNITS[unit]:
        fail(f"multiplier {multiplier} does not match unit {unit!r} ({UNITS[unit]})")
    for key, allowed in (
        ("polarity", POLARITIES),
        ("method", METHODS),
        ("denominator_kind", DENOMINATOR_KINDS),
        ("aggregation", AGGREGATIONS),
    ):
        if meta[key] not in allowed:
            fail(f"{key} {meta[key]!r} not one of {list(allowed)}")
    target = float(meta["target"]) if meta["target"] else None
    components = tuple(c.strip() for c in meta.get("components", "").split(",") if c.strip())
    if meta["aggregation"] == "distinct_persons" and not components:
        fail("a distinct_persons indicator lists its components")
    derived = None
    if meta.get("derived"):
        m = _DERIVED_RE.match(meta["derived"])
        if not m or m.group(2) not in DERIVED_ATTRIBUTES:
            fail(f"derived {meta['derived']!r} is not 'gap <code> <{'|'.join(DERIVED_ATTRIBUTES)}> <a> - <b>'")
        derived = Derived("gap", m.group(1), m.group(2), m.group(3).strip(), m.group(4).strip())
    if not sql:
        fail("no query after the header")
    indicator = Indicator(
        code=code,
        priority=int(meta["priority"]),
        priority_name=meta["priority_name"],
        headline=meta["headline"] == "true",
        name=meta["name"],
        definition=meta["definition"],
        numerator=meta["numerator"],
        denominator=meta["denominator"],
        unit=unit,
        multiplier=multiplier,
        polarity=meta["polarity"],
        target=target,
        method=meta["method"],
        denominator_kind=meta["denominator_kind"],
        aggregation=meta["aggregation"],
        anchor=meta["anchor"],
        components=components,
        derived=derived,
        sql=sql,
        path=path,
    )
    unknown = set(indicator.parameters) - set(QUERY_PARAMETERS)
    if unknown:
        fail(f"unknown query parameters {sorted(unknown)}; allowed: {list(QUERY_PARAMETERS)}")
    body = _strip_comments(sql)
    scans = len(_EVENT_SCAN_RE.findall(body))
    restrictions = len(_SOURCE_MONTH_RESTRICTION_RE.findall(body))
    if scans > restrictions:
        fail(
            f"{scans} scans of conformed event tables but {restrictions} source_month restrictions: "
            "restrict each scan by `source_month = $month` or "
            "`source_month BETWEEN $first_source_month AND $last_source_month`"
        )
    return indicator


@cache
def _load(directory: Path) -> tuple[Indicator, ...]:
    indicators = [parse_file(p) for p in sorted(directory.glob("*.sql"))]
    by_code = {i.code: i for i in indicators}
    if len(by_code) != len(indicators):
        raise CatalogueError("indicator codes repeated")
    for i in indicators:
        if i.derived and (i.derived.base not in by_code or by_code[i.derived.base].derived):
            raise CatalogueError(f"{i.code}: derived from {i.derived.base!r}, which is not a computed indicator")
    headlines = {}
    for i in indicators:
        if i.headline and headlines.setdefault(i.priority, i.code) != i.code:
            raise CatalogueError(f"priority {i.priority} has two headline indicators")
    return tuple(sorted(indicators, key=lambda i: (i.priority, i.code)))


def load_catalogue(directory: Path | None = None) -> tuple[Indicator, ...]:
    """Every indicator of the catalogue, ordered by priority and code (parsed once)."""
    return _load(Path(directory or CATALOGUE_DIR).resolve())


def indicator(code: str) -> Indicator:
    for i in load_catalogue():
        if i.code == code:
            return i
    raise KeyError(code)


# ---------------------------------------------------------------------------------------
# indicators.catalogue

CATALOGUE_COLUMNS = (*REQUIRED_KEYS, "derived", "sql")


def catalogue_rows(directory: Path | None = None) -> list[tuple]:
    """Rows of `indicators.catalogue`, in CATALOGUE_COLUMNS order."""
    rows = []
    for i in load_catalogue(directory):
        derived = (
            f"{i.derived.kind} {i.derived.base} {i.derived.attribute} {i.derived.group_a} - {i.derived.group_b}"
            if i.derived
            else None
        )
        rows.append(
            (
                i.code, i.priority, i.priority_name, i.headline, i.name, i.definition, i.numerator,
                i.denominator, i.unit, i.multiplier, i.polarity, i.target, i.method,
                i.denominator_kind, i.aggregation, i.anchor, derived, i.sql,
            )
        )
    return rows


def write_catalogue(conn) -> int:
    """Replace the rows of `indicators.catalogue` (the table is created by warehouse.create_all)."""
    rows = catalogue_rows()
    conn.execute("DELETE FROM indicators.catalogue")
    placeholders = ", ".join("?" for _ in CATALOGUE_COLUMNS)
    conn.executemany(
        f"INSERT INTO indicators.catalogue ({', '.join(CATALOGUE_COLUMNS)}) VALUES ({placeholders})", rows
    )
    return len(rows)


# ---------------------------------------------------------------------------------------
# docs/methodology.md

SETTLED_DEFINITIONS = """\
## How the indicators are counted

**Receptions.** Every reception record counts, whether a new reception from court or a
transfer from another prison, unless an indicator says otherwise (only P03b is limited to
transfers in).

**Anchor month.** Each indicator value belongs to the month of its anchor: the reception
for reception-based indicators; the quit date for the quit rate (P07c); the sample for the
BBV positivity and referral indicators (P12e, P12f); the item issued, the positive symptom
screen or the diagnosis for the other event-based indicators; and, for healthcare activity
(P05a), each activity in the month of its own date and time (screens by the screen, BBV
tests by the sample). Because a window can run past the end of the month, and the
prescribing look-back of P03b starts before it, an indicator month M reads the source
months M-1 to M+2 and no others. (A screen or sample dated in month M reaches back only to
receptions and offers of M-1: one dated more than a calendar month after its reception or
offer, which should be rare, is not counted in P05a, P12e or P12f.)

**Windows.** A window of n days is exactly n x 24 hours, measured on the local clock as
written in the extracts, with no time-zone or daylight-saving adjustment. Windows start
at the anchor and include both ends: "within 24 hours" of a reception at 10:00 on 1 May
includes an event at exactly 10:00 on 2 May but not one at 10:00:01. An event before the
anchor never counts (a referral, treatment start or medicines reconciliation recorded
before the reception does not count). A stay "over 7 days" means no departure recorded, or
a departure later than reception + 7 x 24 hours. Medicines reconciliation counts when
reception <= reconciliation <= second screen. The P03b look-back is
reception - 28 days <= issue <= reception, at a prison other than the receiving one, for
the same person. The quit-rate follow-up is 25 x 24 hours <= outcome - quit date <=
42 x 24 hours, using any four-week outcome of the same person at any prison. A BBV
referral counts when sample <= referral <= sample + 28 days.

**Linkage.** Events are matched to receptions only through the reception link made on
ingest: an event belongs to the reception of the same person at the same prison with the
latest reception time at or before the event (ties go to the greatest reception id); a
departure does not end the link. "Within n hours of the reception" always means a linked
event inside the window. Events with no reception are unlinked: they still count for the
event-based indicators (P07c, P08c, P11c, P12e, P12f) and the population-based ones
(P05a, P08a, P08b, P11d), at the event's own prison.

**Counting once.** A reception (or event) counts once in a numerator however many events
qualify; the earliest qualifying event is the one shown as the reason. Numerators are
always subsets of their denominators: the second assessment is counted only for stays
over 7 days, the chest X-ray only at prisons with an X-ray machine, a test only for
receptions still in the BBV denominator.

**Blood-borne viruses.** "Offered" means an offer accepted or declined; "tested" means a
sample was taken, whatever its result. A reception leaves the P12a-P12d denominator for
a virus only when it has a linked not-eligible record for that virus within 72 hours and
no accepted or declined offer within 72 hours. For HCV RNA positivity (P12e) an invalid or
missing antibody result is not a result. For referral (P12f) a positive HCV sample is one
with a positive RNA result; HBV and HIV samples are positive when their result is.

**Smoking.** The earliest status recorded within 7 days of the reception and linked to it
(ties by event id) decides whether the person smokes (P07a); smokers count in P07b when
NRT or a vape was offered within 24 hours of the reception.

**Prescribing.** An item belongs to every drug group one of whose BNF prefixes starts its
BNF code. An in-possession item whose risk assessment is not recorded counts as not
assessed.

**Data quality (P02b).** Rows are counted in the month of their file and at the prison
they name; rows loaded are the rows that passed validation, rows read are loaded plus
quarantined, over all five event extracts. Rows of rejected files are reported separately
and not counted here. Quarantined rows without a valid prison count only at England level.

## Aggregation

Every indicator is computed per prison and month as member rows (one per counted unit,
with the reason it is or is not in the numerator and the file and line of the record that
decided it); the prison-month numerator and denominator are the sums of its member rows.

- **Longer periods and higher levels** (quarter, financial year; region, operator,
  function, England) add up numerators and denominators and then divide; percentages are
  never averaged.
- **Distinct persons (P08a, P08b).** Over a period, the numerator is the number of
  distinct persons at each prison over the whole period (for P08b, a person with a
  gabapentinoid and an opioid analgesic item at that prison at any time in the period,
  not necessarily in the same month); higher levels add up the prison numerators. The
  denominator is the mean of the prison's monthly average populations over the period,
  added up over prisons at higher levels.
- **Population rates.** A prison-month with events but no population figure has no value
  for its rate indicators and is left out of every longer period and higher level (both
  its events and its population); its own row still shows the events counted.
- **The PFI gap (P04a)** is computed for England only, from P01b's numerators and
  denominators summed over PFI prisons and over public-sector prisons (contracted prisons
  are in neither group), in percentage points; it has no value when either group's
  denominator is zero.
- **Zeros.** Every prison, region, operator, function and England has a row for every
  indicator and period: a zero numerator gives the value 0, a zero denominator gives no
  value.

## Periods and provisional figures

Months are calendar months. Financial quarters run April-June (Q1), July-September (Q2),
October-December (Q3) and January-March (Q4); financial years run from April to March.
Figures are produced for every month with a reception extract and for the quarters and
years holding those months. Because indicator month M also reads months M+1 and M+2, a
month is **provisional** until all five extracts have been received for M, M+1 and M+2.
A quarter or year is provisional while any of its months is missing or provisional.
"""


def _fmt_target(i: Indicator) -> str:
    if i.target is None:
        return ""
    return f"{i.target:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_methodology(directory: Path | None = None) -> str:
    """The methodology document, generated entirely from the catalogue."""
    indicators = load_catalogue(directory)
    out = [
        "# Indicator methodology",
        "",
        "<!-- Generated from assets/catalogue/*.sql by `python -m pipelines.catalogue`. Do not edit. -->",
        "",
        "The twelve priorities of the National Partnership Agreement for prison healthcare in",
        f"England are measured by {len(indicators)} indicators. Each priority has one headline",
        "indicator (H). Each indicator is one SQL file in `assets/catalogue/`: a header of",
        "metadata and one query returning the indicator's member rows for a month, so an",
        "analyst can read and rerun exactly what is counted. The query parameters are",
        "`$month` (YYYY-MM), `$month_start` and `$month_end` (first instant of the month and of",
        "the next), and `$first_source_month` / `$last_source_month` (the months before and two",
        "after, the only source months a query may read).",
        "",
        "| code | H | priority | indicator | unit | polarity | target | interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i in indicators:
        out.append(
            f"| [{i.code}](#{i.code.lower()}) | {'H' if i.headline else ''} | {i.priority} {_cell(i.priority_name)} "
            f"| {_cell(i.name)} | {i.unit} | {i.polarity} | {_fmt_target(i)} | {i.method} |"
        )
    out += ["", SETTLED_DEFINITIONS.rstrip(), "", "## Member rows", ""]
    out += [
        "Each query returns one row per unit for the anchor month with these columns:",
        "",
        "| column | meaning |",
        "|---|---|",
        "| prison_code | prison the unit is counted at (null only for P02b rows without a valid prison) |",
        "| unit_type | reception, event, person, activity, population or rows |",
        "| unit_id | reception id, event id, person key, activity id, prison and month, or source |",
        "| person_key | pseudonymised person (never the NHS number) |",
        "| numerator | 1 when the unit is in the numerator, else 0 (a row count for P02b) |",
        "| denominator | 1 when the unit is in the denominator, else 0; the population for population rows |",
        "| reason | why the unit is or is not in the numerator |",
        "| anchor_datetime | the anchor (reception, event, sample, quit date) |",
        "| event_datetime | the event that decided it, if any |",
        "| window_end | end of the window, inclusive |",
        "| source_file, source_line | the record that decided it: the event if any, else the anchor |",
        "",
        "Distinct-persons indicators also return `component` (the drug group the person row",
        "stands for). For every indicator, prison and month the sums of `numerator` and",
        "`denominator` over the member rows are the prison-month numerator and denominator.",
        "",
        "## Statistical methods",
        "",
    ]
    out += [f"- `{k}`: {v}." for k, v in METHODS.items()]
    out += ["", "## Indicators", ""]
    priority = None
    for i in indicators:
        if i.priority != priority:
            priority = i.priority
            out += [f"### Priority {i.priority}: {i.priority_name}", ""]
        out += [
            f"#### {i.code}",
            "",
            f"**{i.name}**{' (headline)' if i.headline else ''}",
            "",
            i.definition,
            "",
            f"- Numerator: {i.numerator}",
            f"- Denominator: {i.denominator}",
            f"- Unit: {i.unit} (value = numerator / denominator x {i.multiplier:,})",
            f"- Polarity: {i.polarity}",
            f"- Target: {_fmt_target(i) or 'none'}",
            f"- Interval: {i.method}",
            f"- Anchor: {i.anchor}",
            f"- Denominator kind: {i.denominator_kind} ({DENOMINATOR_KINDS[i.denominator_kind]})",
            f"- Aggregation: {i.aggregation} ({AGGREGATIONS[i.aggregation]})",
        ]
        if i.components:
            out.append(f"- Components: {', '.join(i.components)}")
        if i.derived:
            d = i.derived
            out.append(
                f"- Derived: {d.base} for prisons with {d.attribute} {d.group_a} minus {d.base} for "
                f"{d.attribute} {d.group_b}, England only"
            )
        out += ["", "```sql", i.sql, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def write_methodology(path: Path = METHODOLOGY_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_methodology(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {write_methodology()}")
