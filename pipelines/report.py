"""The published report: a static HTML site with Plotly charts, plus CSV and Parquet exports.

`build_report(conn, out_dir)` writes `<out_dir>/report/`:

    index.html                 overview: the twelve headline indicators as tiles, all indicators by priority
    indicators/<code>.html     one page per indicator: England SPC chart, funnel plot of prisons for the
                               latest quarter, sortable tables of prisons and other areas, "Behind the
                               figure" (counts by reason for a chosen prison and month), definition, CSV link
    areas.html                 prison and region picker
    prisons/<code>.html        every indicator for one prison against England
    regions/<slug>.html        every indicator for one region against England, and its prisons
    methodology.html           the catalogue and the statistical methods
    data-quality.html          quarantined rows by source, reason, prison and month (counts only)
    downloads.html             the CSV, Parquet and spreadsheet files
    assets/                    plotly.min.js (copied once from the installed plotly package), report.css, report.js
    data/indicator_values.csv|.parquet, data/indicators/<code>.csv, data/catalogue.csv, data/data_quality.csv

Only disclosure-controlled figures are read: `published.indicator_values` (never the analysts'
`indicators.indicator_values`). Suppressed figures are shown as `[c]`. England-level SPC rows
(`indicators.spc`), funnel limits (`indicators.funnel_limits`), the catalogue, the prisons and
`quality.summary` counts complete the pages. The counts by reason behind each monthly prison
figure come from `indicators.members` through `pipelines.drilldown` (disclosure-controlled there;
the section is left out when the table is missing), for the latest BEHIND_MONTHS months: every
month would make each page, and each refresh, grow with the years kept (the analysts' database
keeps every month's members). The site works offline from file:// (no CDN).

The pages are rendered from the Jinja2 templates in `reports/` at the project root.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pandas as pd
from markupsafe import Markup, escape

from pipelines import drilldown, warehouse
from pipelines.disclosure import DisclosurePolicy

if TYPE_CHECKING:  # spreadsheet imports this module
    from pipelines.spreadsheet import SpreadsheetProcess

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "reports"
SITE_DIR = "report"
BEHIND_MONTHS = 24  # months of counts by reason embedded in each indicator page
SPREADSHEET_NAME = "prison-health-indicators.xlsx"
TITLE = "Prison health indicators"
SUBTITLE = "National Partnership Agreement for prison healthcare in England: the twelve priorities"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
DISPLAY_DECIMALS = 1  # values and intervals on the pages
CSV_DECIMALS = 4  # values, intervals and (fractional) denominators in the CSV files; Parquet keeps full precision

FIGURE_COLUMNS = ("numerator", "denominator", "value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8")
VALUE_COLUMNS = (
    "indicator_id", "priority", "period_type", "period_start", "period_end", "level", "area_code", "area_name",
    "numerator", "denominator", "value", "lower_ci_95", "upper_ci_95", "lower_ci_99_8", "upper_ci_99_8",
    "comparison", "provisional", "suppressed",
)
LEVEL_ORDER = {"england": 0, "region": 1, "operator": 2, "function": 3, "prison": 4}
LEVEL_LABELS = {"england": "England", "region": "Region", "operator": "Operator", "function": "Function",
                "prison": "Prison"}
PERIOD_LABELS = {"month": "Month", "quarter": "Quarter", "financial_year": "Financial year"}
QUALITY_REASONS = (
    "malformed_row", "missing_required_value", "invalid_value", "invalid_nhs_number", "unknown_prison",
    "outside_file_month", "sequence_error", "duplicate_id",
)
REASON_LABELS = {
    "malformed_row": "Malformed row", "missing_required_value": "Missing required value",
    "invalid_value": "Invalid value", "invalid_nhs_number": "Invalid NHS number", "unknown_prison": "Unknown prison",
    "outside_file_month": "Outside the file's month", "sequence_error": "Dates out of sequence",
    "duplicate_id": "Duplicate record id",
}
SOURCE_LABELS = {
    "reception_screening": "Reception screening", "bbv_testing": "Blood-borne virus testing",
    "tb_screening": "TB screening", "smoking": "Smoking", "prescribing": "Prescribing",
}

# Okabe-Ito colour-blind-safe palette; shapes and words always carry the meaning too.
COLOURS = {
    "better": "#0072B2", "worse": "#D55E00", "similar": "#6F6F6F", "higher": "#7B3294", "lower": "#7B3294",
    "not_compared": "#6F6F6F", "england": "#1A1A1A", "limit95": "#3D3D3D", "limit998": "#3D3D3D",
    "improvement": "#0072B2", "concern": "#D55E00", "neither": "#7B3294", "common": "#6F6F6F",
    "target": "#009E73", "series": "#1A1A1A", "band": "rgba(86,180,233,0.25)",
}
COMPARISONS = {
    "better": ("Better", "better than England", "circle"),
    "similar": ("Similar", "similar to England", "circle-open"),
    "worse": ("Worse", "worse than England", "diamond"),
    "higher": ("Higher", "higher than England", "triangle-up"),
    "lower": ("Lower", "lower than England", "triangle-down"),
    "not_compared": ("Not compared", "not compared with England", "x-thin-open"),
}
VARIATIONS = {
    "common_cause": ("Common cause variation", "common", "circle-open"),
    "special_cause_improvement": ("Special cause variation: improvement", "improvement", "circle"),
    "special_cause_concern": ("Special cause variation: concern", "concern", "diamond"),
    "special_cause_neither": ("Special cause variation: neither better nor worse", "neither", "square"),
}
ASSURANCE = {
    "consistent_pass": ("Consistently passes the target", "improvement", "pass"),
    "consistent_fail": ("Consistently fails the target", "concern", "fail"),
    "inconsistent": ("Hits and misses the target: inconsistent", "common", "inconsistent"),
}
FUNCTION_LABELS = {"reception": "Reception", "training": "Training", "open": "Open",
                   "yoi": "Young offender institution", "female": "Women's prison", "high_security": "High security"}
OPERATOR_LABELS = {"public": "Public sector", "contracted": "Contracted", "pfi": "PFI (private finance initiative)"}
POLARITY_TEXT = {"high": "A higher value is better", "low": "A lower value is better",
                 "neutral": "Neither a higher nor a lower value is better in itself"}
METHOD_TEXT = {
    "wilson": "Wilson score interval for a proportion, without continuity correction",
    "byar": "Exact Poisson (chi-squared) interval when the numerator is under 10, Byar's method otherwise",
    "newcombe": "Newcombe's hybrid score interval for a difference of two proportions, from their Wilson "
                "intervals",
}
ICON_SHAPES = ("better", "worse", "similar", "higher", "lower", "improvement", "concern", "neither", "common",
               "pass", "fail", "inconsistent", "suppressed", "none")
SHORTHAND_TITLES = {"[c]": "Confidential: suppressed for disclosure control", "[x]": "Not available",
                    "[z]": "Not applicable"}
SHORTHAND = {
    "[c]": "Confidential: suppressed to protect confidentiality (a numerator of 1 to 7 below England, or a "
           "figure that would let one be worked out)",
    "[x]": "Not available",
    "[z]": "Not applicable (no one in the denominator, or not measured at this level)",
}


# ---------------------------------------------------------------------------------------------
# Public results


@dataclass
class ReportSummary:
    """What `build_report` wrote."""

    root: Path
    paths: list[Path] = field(default_factory=list)
    pages: int = 0
    bytes: int = 0

    @property
    def index(self) -> Path:
        return self.root / "index.html"

    def metadata(self) -> dict[str, Any]:
        """A flat dict for Dagster's MaterializeResult metadata."""
        return {"path": str(self.index), "pages": self.pages, "files": len(self.paths), "bytes": self.bytes,
                "megabytes": round(self.bytes / 1e6, 2)}


# ---------------------------------------------------------------------------------------------
# Reading the warehouse


def _columns(conn: duckdb.DuckDBPyConnection, qualified: str) -> list[str]:
    schema, name = qualified.split(".")
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, name]).fetchall()]


def _records(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    """The rows as dicts, NaN (from pandas inserts) as None: it is no figure. Only the floating-point
    columns are checked, as the national tables hold millions of cells."""
    cur = conn.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    floats = [d[0] for d in cur.description if str(d[1]) in ("DOUBLE", "FLOAT")]
    rows = [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    for column in floats:
        for row in rows:
            value = row[column]
            if value != value:
                row[column] = None
    return rows


def _clean(value: Any) -> Any:
    """NaN/NA -> None, numpy scalars -> Python, timestamps -> dates."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if hasattr(value, "item"):
        return value.item()
    return value


def _as_date(value: Any) -> dt.date | None:
    if type(value) is dt.date:
        return value
    value = _clean(value)
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


@dataclass
class Publication:
    """Everything the public outputs show, read once from the warehouse."""

    catalogue: list[dict]
    rows: list[dict]  # published.indicator_values: England's every period, other areas' recent ones
    prisons: dict[str, dict]
    spc: dict[str, list[dict]]  # indicator -> England SPC points in month order
    funnel: dict[tuple[str, str, dt.date], list[dict]]  # (indicator, 'quarter', latest start) -> limits by x
    quality: list[dict]

    def __post_init__(self) -> None:
        self.by_code = {c["code"]: c for c in self.catalogue}
        self.by_indicator: dict[str, list[dict]] = defaultdict(list)
        self._by_period: dict[tuple, list[dict]] = defaultdict(list)
        self._latest: dict[tuple, dt.date] = {}
        self.levels: dict[str, set[str]] = defaultdict(set)
        for r in self.rows:
            self.by_indicator[r["indicator_id"]].append(r)
            self._by_period[(r["indicator_id"], r["period_type"], r["period_start"])].append(r)
            self.levels[r["indicator_id"]].add(r["level"])
            key = (r["indicator_id"], r["period_type"])
            if r["period_start"] is not None and (key not in self._latest or r["period_start"] > self._latest[key]):
                self._latest[key] = r["period_start"]

    @property
    def headline(self) -> list[dict]:
        return [c for c in self.catalogue if c.get("headline")]

    def rows_for(self, code: str, *, period_type: str | None = None, start: dt.date | None = None,
                 level: str | None = None, area_code: str | None = None) -> list[dict]:
        if period_type is not None and start is not None:
            rows = self._by_period.get((code, period_type, start), [])
            if area_code is not None:
                return [r for r in rows if r["area_code"] == area_code and (level is None or r["level"] == level)]
            return [r for r in rows if level is None or r["level"] == level]
        return [r for r in self.by_indicator.get(code, [])
                if (period_type is None or r["period_type"] == period_type)
                and (start is None or r["period_start"] == start)
                and (level is None or r["level"] == level)
                and (area_code is None or r["area_code"] == area_code)]

    def latest_start(self, code: str | None, period_type: str) -> dt.date | None:
        if code:
            return self._latest.get((code, period_type))
        starts = [v for (_, p), v in self._latest.items() if p == period_type]
        return max(starts) if starts else None

    def england(self, code: str, period_type: str, start: dt.date | None) -> dict | None:
        rows = self.rows_for(code, period_type=period_type, start=start, level="england")
        return rows[0] if rows else None

    @property
    def months(self) -> list[dt.date]:
        return sorted({r["period_start"] for r in self.rows if r["period_type"] == "month"})

    def area_name(self, level: str, code: str) -> str:
        if level == "prison" and code in self.prisons:
            return self.prisons[code]["prison_name"] or code
        for r in self.rows:
            if r["level"] == level and r["area_code"] == code and r["area_name"]:
                return r["area_name"]
        return code


def catalogue_of(conn: duckdb.DuckDBPyConnection, codes: Iterable[str]) -> list[dict]:
    codes = sorted(set(codes))
    if warehouse.table_exists(conn, "indicators.catalogue"):
        rows = _records(conn, "SELECT * FROM indicators.catalogue ORDER BY priority, code")
    else:
        rows = []
    known = {r["code"] for r in rows}
    for code in codes:  # an indicator published without a catalogue row still gets a page
        if code not in known:
            rows.append({"code": code, "priority": int(code[1:3]), "priority_name": "", "headline": False,
                         "name": code, "definition": "", "numerator": "", "denominator": "", "unit": "",
                         "multiplier": None, "polarity": "neutral", "target": None, "method": ""})
    for r in rows:
        r["headline"] = bool(r.get("headline"))
        r["target"] = _clean(r.get("target"))
        r.setdefault("polarity", "neutral")
        r["unit"] = r.get("unit") or ""
    rows.sort(key=lambda r: (r["priority"], r["code"]))
    return rows


def published_rows(conn: duckdb.DuckDBPyConnection, where: str = "true") -> list[dict]:
    """The rows of `published.indicator_values` that satisfy the SQL condition `where` (aliased
    `v`), as the pages show them: a suppressed row's figures are None whatever the table holds."""
    if not warehouse.table_exists(conn, "published.indicator_values"):
        raise LookupError("published.indicator_values does not exist: run the publication step first")
    present = _columns(conn, "published.indicator_values")
    select = ", ".join(c if c in present else f"NULL AS {c}" for c in VALUE_COLUMNS)
    rows = _records(conn, f"SELECT {select} FROM published.indicator_values AS v WHERE {where} "
                          "ORDER BY indicator_id, period_type, period_start, level, area_code")
    for r in rows:
        r["period_start"] = _as_date(r["period_start"])
        r["period_end"] = _as_date(r["period_end"])
        r["suppressed"] = bool(r["suppressed"])
        r["provisional"] = bool(r["provisional"])
        if r["suppressed"]:  # never trust a suppressed row's figures, whatever the table holds
            for c in FIGURE_COLUMNS:
                r[c] = None
            r["comparison"] = None
        if r["numerator"] is not None:
            r["numerator"] = int(r["numerator"])
    return rows


def load_publication(conn: duckdb.DuckDBPyConnection) -> Publication:
    """Read the published tables (only disclosure-controlled figures) and their companions.

    The pages show England's whole series but other areas only in the latest periods and in the
    latest BEHIND_MONTHS months ("Behind the figure"), so below England only the periods that
    start in an indicator's latest BEHIND_MONTHS months (at least twelve) are read: with ten years
    kept, reading every prison's every period took most of this. Every row is in the CSV and
    Parquet files, written straight from the table."""
    months = max(BEHIND_MONTHS, 12)  # twelve months hold the latest quarter and financial year
    rows = published_rows(conn, f"""v.level = 'england' OR v.period_start >= (
        SELECT max(w.period_start) FROM published.indicator_values AS w
        WHERE w.indicator_id = v.indicator_id AND w.period_type = 'month') - INTERVAL {months - 1} MONTH""")
    catalogue = catalogue_of(conn, {r["indicator_id"] for r in rows})

    prisons: dict[str, dict] = {}
    if warehouse.table_exists(conn, "conformed.prisons"):
        cols = set(_columns(conn, "conformed.prisons"))
        want = [c for c in ("prison_code", "prison_name", "region", "function", "operator", "has_xray") if c in cols]
        for p in _records(conn, f"SELECT {', '.join(chr(34) + c + chr(34) for c in want)} FROM conformed.prisons"):
            prisons[p["prison_code"]] = p
    for r in rows:  # prisons published but missing from the reference table
        if r["level"] == "prison" and r["area_code"] not in prisons:
            prisons[r["area_code"]] = {"prison_code": r["area_code"], "prison_name": r["area_name"]}

    spc: dict[str, list[dict]] = defaultdict(list)
    if warehouse.table_exists(conn, "indicators.spc"):
        for p in _records(conn, "SELECT * FROM indicators.spc WHERE level = 'england' ORDER BY indicator_id, month"):
            p["month"] = _as_date(p["month"])
            spc[p["indicator_id"]].append(p)

    funnel: dict[tuple[str, str, dt.date], list[dict]] = defaultdict(list)
    if warehouse.table_exists(conn, "indicators.funnel_limits"):
        for f in _records(conn, """
                SELECT * FROM indicators.funnel_limits AS f
                WHERE f.period_type = 'quarter' AND f.period_start = (  -- the pages plot the latest quarter
                    SELECT max(q.period_start) FROM published.indicator_values AS q
                    WHERE q.indicator_id = f.indicator_id AND q.period_type = 'quarter')
                ORDER BY indicator_id, period_type, period_start, denominator"""):
            funnel[(f["indicator_id"], f["period_type"], _as_date(f["period_start"]))].append(f)

    quality: list[dict] = []
    if warehouse.table_exists(conn, "quality.summary"):
        cols = set(_columns(conn, "quality.summary"))
        counts = [c for c in ("rows_read", "rows_loaded", "rows_quarantined", *QUALITY_REASONS) if c in cols]
        quality = _records(conn, f"SELECT source, month, prison_code, {', '.join(counts)} FROM quality.summary")
        for q in quality:
            for c in ("rows_read", "rows_loaded", "rows_quarantined", *QUALITY_REASONS):
                q[c] = int(q.get(c) or 0)
    return Publication(catalogue, rows, prisons, dict(spc), dict(funnel), quality)


# ---------------------------------------------------------------------------------------------
# Formatting


def period_label(period_type: str, start: dt.date, *, short: bool = False) -> str:
    """'March 2025', 'Q4 2024/25 (January to March 2025)', '2024/25 (April 2024 to March 2025)'."""
    if start is None:
        return ""
    if period_type == "month":
        return start.strftime("%b %Y" if short else "%B %Y")
    fy = start.year if start.month >= 4 else start.year - 1
    fy_label = f"{fy}/{str(fy + 1)[-2:]}"
    if period_type == "quarter":
        q = ((start.month - 4) % 12) // 3 + 1
        end = dt.date(start.year + (start.month + 2 > 12), (start.month + 1) % 12 + 1, 1)
        label = f"Q{q} {fy_label}"
        return label if short else f"{label} ({start:%B} to {end:%B %Y})"
    if period_type == "financial_year":
        return fy_label if short else f"{fy_label} (April {fy} to March {fy + 1})"
    return start.isoformat()


def format_number(value: float | None, unit: str = "", *, with_unit: bool = True, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:{'+' if signed else ''},.{DISPLAY_DECIMALS}f}"
    text = text.replace("-", "\u2212")
    if not with_unit:
        return text
    if unit == "%":
        return f"{text}%"
    if unit == "percentage points":
        return f"{text} pp"
    return text


def format_count(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def unit_label(unit: str) -> str:
    return {"%": "per cent", "percentage points": "percentage points"}.get(unit, unit)


def shorthand(row: dict, figure: str = "value") -> str | None:
    """'[c]', '[z]' or '[x]' when the row has no figure to show, else None."""
    if row.get("suppressed"):
        return "[c]"
    if row.get(figure) is not None:
        return None
    if figure in ("numerator", "denominator") and row.get("indicator_id") == "P04a":
        return "[z]"
    if row.get("denominator") is not None and row["denominator"] == 0:
        return "[z]"
    return "[x]"


def _abbr(code: str) -> Markup:
    return Markup('<abbr class="shorthand" title="{}">{}</abbr>').format(SHORTHAND_TITLES[code], code)


def value_cell(row: dict | None, unit: str) -> Markup:
    if row is None:
        return _abbr("[x]")
    code = shorthand(row)
    if code:
        return _abbr(code)
    return Markup(escape(format_number(row["value"], unit, signed=unit == "percentage points")))


def interval_cell(row: dict | None, unit: str, level: str = "95") -> Markup:
    if row is None:
        return _abbr("[x]")
    lo, hi = row.get(f"lower_ci_{level}"), row.get(f"upper_ci_{level}")
    if row.get("suppressed"):
        return _abbr("[c]")
    if lo is None or hi is None:
        return _abbr(shorthand(row) or "[x]")
    return Markup(escape(f"{format_number(lo, unit, with_unit=False)} to {format_number(hi, unit, with_unit=False)}"))


def count_cell(row: dict | None, column: str) -> Markup:
    if row is None:
        return _abbr("[x]")
    code = shorthand(row, column)
    if code:
        return _abbr(code)
    return Markup(escape(format_count(row[column])))


def sort_value(row: dict | None, column: str) -> str:
    """A data-sort attribute: the number, or empty (sorted last) for [c]/[x]/[z]."""
    if row is None or row.get(column) is None:
        return ""
    return repr(float(row[column]))


def comparison_key(row: dict | None) -> str | None:
    if row is None:
        return None
    if row.get("suppressed"):
        return None
    return row.get("comparison") or "not_compared"


def _slug(text: str) -> str:
    """A file name from a code or an area name: 'P01a', 'XAA', 'North-West'."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-") or "area"


def _json_for_html(payload: Any) -> Markup:
    """JSON safe to place inside <script type="application/json">."""
    text = json.dumps(payload, separators=(",", ":"), default=_json_default, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


# ---------------------------------------------------------------------------------------------
# Charts (Plotly figures as JSON, rendered in the page by assets/report.js)


def _figure_payload(fig: dict) -> dict:
    """The figure as plain JSON data (plotly.io.to_json without validation: the figures are built as
    dicts, which is much faster than graph objects; tests validate them with plotly.graph_objects)."""
    import plotly.io as pio

    spec = _rounded(json.loads(pio.to_json(fig, validate=False, pretty=False)))
    return {"data": spec.get("data", []), "layout": spec.get("layout", {}), "config": PLOTLY_CONFIG}


def _rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded for the page (smaller pages; the CSV files hold the figures)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value


def _layout(*, y_title: str, x_title: str, height: int = 380, **extra: Any) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 64, "r": 16, "t": 48, "b": 56},
        "font": {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif", "size": 13,
                 "color": "#1A1A1A"},
        "paper_bgcolor": "#FFFFFF",
        "plot_bgcolor": "#FFFFFF",
        "hovermode": "closest",
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "xanchor": "left"},
        "xaxis": {"title": {"text": x_title}, "showgrid": False, "linecolor": "#6F6F6F", "ticks": "outside",
                  "automargin": True},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#E3E3E3", "zeroline": False, "linecolor": "#6F6F6F",
                  "automargin": True},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _line(x: list, y: list, name: str, *, dash: str = "solid", width: float = 1, colour: str = COLOURS["limit95"],
          **extra: Any) -> dict:
    return {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name, "hoverinfo": "skip",
            "line": {"color": colour, "dash": dash, "width": width}, **extra}


def spc_figure(points: list[dict], unit: str, target: float | None, polarity: str) -> dict:
    """England XmR chart: values, mean, process limits, target, special-cause points by shape."""
    x = [p["month"].isoformat() for p in points]
    data = []
    if any(p.get("upper_process_limit") is not None for p in points):
        data.append(_line(x, [p.get("upper_process_limit") for p in points], "Process limits", dash="dot",
                          legendgroup="limits"))
        data.append(_line(x, [p.get("lower_process_limit") for p in points], "Lower process limit", dash="dot",
                          legendgroup="limits", showlegend=False))
        data.append(_line(x, [p.get("mean") for p in points], "Mean", dash="dash", width=1.5))
    if target is not None:
        data.append(_line([x[0], x[-1]], [target, target], f"Target ({format_number(target, unit)})",
                          dash="dashdot", width=2, colour=COLOURS["target"]))
    data.append({
        "type": "scatter", "mode": "lines+markers", "x": x, "y": [p["value"] for p in points], "name": "England",
        "line": {"color": COLOURS["series"], "width": 2},
        "marker": {"color": "#FFFFFF", "size": 7, "line": {"color": COLOURS["series"], "width": 1.5}},
        "hovertemplate": "%{x|%B %Y}: %{y:.1f}<extra>England</extra>",
    })
    for key, (label, colour, symbol) in VARIATIONS.items():
        chosen = [p for p in points if p.get("variation") == key]
        if key == "common_cause" or not chosen:
            continue
        data.append({
            "type": "scatter", "mode": "markers", "x": [p["month"].isoformat() for p in chosen],
            "y": [p["value"] for p in chosen], "name": label.replace("Special cause variation: ", "Special cause: "),
            "marker": {"color": COLOURS[colour], "size": 11, "symbol": symbol,
                       "line": {"color": "#FFFFFF", "width": 1}},
            "hovertemplate": "%{x|%B %Y}: %{y:.1f}<extra>" + str(escape(label)) + "</extra>",
        })
    layout = _layout(y_title=_axis_unit(unit), x_title="Month", xaxis={"type": "date", "tickformat": "%b %Y"})
    return {"data": data, "layout": layout}


def _axis_unit(unit: str) -> str:
    return {"%": "Per cent", "percentage points": "Percentage points"}.get(unit, unit.capitalize() if unit else "")


def funnel_figure(prisons: list[dict], limits: list[dict], england_value: float | None, unit: str,
                  denominator_label: str) -> dict:
    """Funnel plot: published prison values against their denominators, with 95% and 99.8% limits.

    Prison traces carry `meta.level = "prison"` and customdata [code, name, numerator, denominator,
    interval] so that their figures can be checked (tests scan them for small numerators)."""
    data = []
    if limits:
        xs = [f["denominator"] for f in limits]
        for key, name, dash in (("99_8", "99.8% limits", "dot"), ("95", "95% limits", "dash")):
            data.append(_line(xs, [f[f"upper_{key}"] for f in limits], name, dash=dash, legendgroup=key))
            data.append(_line(xs, [f[f"lower_{key}"] for f in limits], name, dash=dash, legendgroup=key,
                              showlegend=False))
    xs_all = [p["denominator"] for p in prisons] + [f["denominator"] for f in limits]
    if england_value is not None and xs_all:
        data.append(_line([0, max(xs_all) * 1.02], [england_value, england_value],
                          f"England ({format_number(england_value, unit)})", width=2, colour=COLOURS["england"]))
    for key, (label, _text, symbol) in COMPARISONS.items():
        chosen = [p for p in prisons if (p.get("comparison") or "not_compared") == key]
        if not chosen:
            continue
        data.append({
            "type": "scatter", "mode": "markers", "name": f"{label} ({len(chosen)})", "meta": {"level": "prison"},
            "x": [p["denominator"] for p in chosen], "y": [p["value"] for p in chosen],
            "marker": {"color": COLOURS[key], "size": 11, "symbol": symbol,
                       "line": {"color": COLOURS[key] if symbol.endswith("open") else "#FFFFFF", "width": 1.5}},
            "customdata": [[p["area_code"], p["area_name"], p["numerator"], p["denominator"], interval_text(p, unit)]
                           for p in chosen],
            "hovertemplate": "<b>%{customdata[1]}</b> (%{customdata[0]})<br>%{y:.1f} (95% CI %{customdata[4]})"
                             "<br>%{customdata[2]:,} of %{customdata[3]:,}<extra>" + label + "</extra>",
        })
    layout = _layout(y_title=_axis_unit(unit), x_title=denominator_label, xaxis={"rangemode": "tozero"})
    return {"data": data, "layout": layout}


def interval_text(row: dict, unit: str) -> str:
    if row.get("lower_ci_95") is None or row.get("upper_ci_95") is None:
        return ""
    return (f"{format_number(row['lower_ci_95'], unit, with_unit=False)} to "
            f"{format_number(row['upper_ci_95'], unit, with_unit=False)}")


def quality_figure(by_month: list[dict], sources: list[str]) -> dict:
    """Stacked bars of quarantined rows by month and source (colour and fill pattern per source)."""
    palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"]
    patterns = ["", "/", ".", "x", "-", "+"]
    months = [m["month"] for m in by_month]
    data = [{
        "type": "bar", "x": months, "y": [m["by_source"].get(source, 0) for m in by_month],
        "name": SOURCE_LABELS.get(source, source),
        "marker": {"color": palette[i % len(palette)], "pattern": {"shape": patterns[i % len(patterns)]}},
        "hovertemplate": "%{x}: %{y:,} rows<extra>" + SOURCE_LABELS.get(source, source) + "</extra>",
    } for i, source in enumerate(sources)]
    layout = _layout(y_title="Rows quarantined", x_title="Month of file", height=360, barmode="stack",
                     xaxis={"type": "category"})
    return {"data": data, "layout": layout}


def sparkline_svg(points: list[tuple[dt.date, float]], unit: str, *, width: int = 180, height: int = 44) -> Markup:
    """A small inline SVG trend line (no script needed), with a text alternative."""
    points = [(d, v) for d, v in points if v is not None]
    if len(points) < 2:
        return Markup('<p class="sparkline-none">Not enough months for a trend.</p>')
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    pad = 4
    coords = []
    for i, (_, v) in enumerate(points):
        x = pad + i * (width - 2 * pad) / (len(points) - 1)
        y = pad + (hi - v) * (height - 2 * pad) / span
        coords.append((round(x, 1), round(y, 1)))
    path = " ".join(f"{x},{y}" for x, y in coords)
    first, last = points[0], points[-1]
    hi_point = max(points, key=lambda p: p[1])
    lo_point = min(points, key=lambda p: p[1])
    label = (f"Trend in England, {period_label('month', first[0])} to {period_label('month', last[0])}: "
             f"{format_number(first[1], unit)} to {format_number(last[1], unit)}; highest "
             f"{format_number(hi_point[1], unit)} ({period_label('month', hi_point[0], short=True)}), lowest "
             f"{format_number(lo_point[1], unit)} ({period_label('month', lo_point[0], short=True)}).")
    lx, ly = coords[-1]
    return Markup(
        '<svg class="sparkline" role="img" aria-label="{label}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'focusable="false"><title>{label}</title><polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        'points="{path}"/><circle cx="{lx}" cy="{ly}" r="3"/></svg>'
    ).format(label=label, w=width, h=height, path=path, lx=lx, ly=ly)


# ---------------------------------------------------------------------------------------------
# Page contexts


def _spc_points(pub: Publication, code: str) -> list[dict]:
    """England SPC points; falls back to the published England monthly values without limits."""
    points = [p for p in pub.spc.get(code, []) if p.get("value") is not None]
    if points:
        return points
    rows = sorted(pub.rows_for(code, period_type="month", level="england"), key=lambda r: r["period_start"])
    return [{"month": r["period_start"], "value": r["value"], "variation": None} for r in rows
            if r["value"] is not None]


def _comparison_counts(rows: list[dict]) -> dict[str, int]:
    counts = Counter()
    for r in rows:
        counts["suppressed" if r["suppressed"] else (r.get("comparison") or "not_compared")] += 1
    return dict(counts)


def comparison_summary(counts: dict[str, int], polarity: str) -> str:
    keys = ("higher", "similar", "lower") if polarity == "neutral" else ("better", "similar", "worse")
    parts = [f"{counts.get(k, 0)} {k}" for k in keys]
    if counts.get("suppressed"):
        parts.append(f"{counts['suppressed']} suppressed [c]")
    other = sum(v for k, v in counts.items() if k not in (*keys, "suppressed"))
    if other:
        parts.append(f"{other} not compared")
    return ", ".join(parts)


def _spc_summary(points: list[dict], unit: str, target: float | None) -> dict:
    if not points:
        return {"text": "No monthly England series is available yet.", "variation": None, "assurance": None}
    last = points[-1]
    months = f"{period_label('month', points[0]['month'])} to {period_label('month', last['month'])}"
    text = f"England, {months}: the latest value is {format_number(last['value'], unit)} " \
           f"({period_label('month', last['month'])})."
    if last.get("mean") is not None:
        text += (f" The mean is {format_number(last['mean'], unit)} and the process limits are "
                 f"{format_number(last.get('lower_process_limit'), unit)} to "
                 f"{format_number(last.get('upper_process_limit'), unit)}.")
    variation = last.get("variation")
    if variation in VARIATIONS:
        text += f" The latest month shows {VARIATIONS[variation][0].lower()}."
        special = Counter(p.get("variation") for p in points if p.get("variation") not in (None, "common_cause"))
        if special:
            text += " Special cause points: " + ", ".join(
                f"{n} {VARIATIONS[k][0].split(': ', 1)[-1]}" for k, n in sorted(special.items()) if k in VARIATIONS
            ) + "."
    assurance = last.get("assurance")
    if target is not None:
        text += f" The target is {format_number(target, unit)}"
        text += f": {ASSURANCE[assurance][0].lower()}." if assurance in ASSURANCE else "."
    return {"text": text, "variation": variation if variation in VARIATIONS else None,
            "assurance": assurance if assurance in ASSURANCE else None}


def _funnel_position(row: dict, limits: list[dict]) -> str:
    """Where a point lies against the funnel limits at its denominator."""
    if not limits or row.get("value") is None or row.get("denominator") is None:
        return ""
    xs = [f["denominator"] for f in limits]
    x = row["denominator"]

    def at(col: str) -> float | None:
        ys = [f[col] for f in limits]
        if any(y is None for y in ys):
            return None
        if x <= xs[0]:
            return ys[0]
        if x >= xs[-1]:
            return ys[-1]
        for i in range(1, len(xs)):
            if x <= xs[i]:
                t = (x - xs[i - 1]) / ((xs[i] - xs[i - 1]) or 1)
                return ys[i - 1] + t * (ys[i] - ys[i - 1])
        return ys[-1]

    v = row["value"]
    u998, l998, u95, l95 = at("upper_99_8"), at("lower_99_8"), at("upper_95"), at("lower_95")
    if None in (u998, l998, u95, l95):
        return ""
    if v > u998:
        return "above the upper 99.8% limit"
    if v < l998:
        return "below the lower 99.8% limit"
    if v > u95:
        return "between the upper 95% and 99.8% limits"
    if v < l95:
        return "between the lower 95% and 99.8% limits"
    return "within the 95% limits"


def _tile(pub: Publication, cat: dict) -> dict:
    code, unit = cat["code"], cat["unit"]
    quarter = pub.latest_start(code, "quarter")
    england = pub.england(code, "quarter", quarter)
    prisons = pub.rows_for(code, period_type="quarter", start=quarter, level="prison")
    points = _spc_points(pub, code)
    spc = _spc_summary(points, unit, cat.get("target"))
    counts = _comparison_counts(prisons)
    return {
        "cat": cat,
        "period": period_label("quarter", quarter) if quarter else "",
        "period_short": period_label("quarter", quarter, short=True) if quarter else "",
        "england": england,
        "value": value_cell(england, unit),
        "interval": interval_cell(england, unit),
        "provisional": bool(england and england["provisional"]),
        "sparkline": sparkline_svg([(p["month"], p["value"]) for p in points][-24:], unit),
        "variation": spc["variation"],
        "assurance": spc["assurance"],
        "counts": counts,
        "compared": comparison_summary(counts, cat["polarity"]) if prisons else "England only: not compared",
        "compare_keys": (("higher", "similar", "lower") if cat["polarity"] == "neutral"
                         else ("better", "similar", "worse")),
        "n_prisons": len(prisons),
    }


def _area_rows(pub: Publication, code: str, period_type: str, start: dt.date | None, levels: Iterable[str]):
    rows = [r for r in pub.rows_for(code, period_type=period_type, start=start) if r["level"] in set(levels)]
    rows.sort(key=lambda r: (LEVEL_ORDER.get(r["level"], 9), r["area_name"] or r["area_code"]))
    return rows


def _spc_table(points: list[dict], unit: str) -> list[dict]:
    return [{
        "month": period_label("month", p["month"]),
        "value": format_number(p["value"], unit),
        "mean": format_number(p.get("mean"), unit),
        "lower": format_number(p.get("lower_process_limit"), unit),
        "upper": format_number(p.get("upper_process_limit"), unit),
        "variation": VARIATIONS.get(p.get("variation"), ("", "", ""))[0],
        "rules": "" if p.get("variation") in (None, "common_cause") else
                 (p.get("rules") or "").replace(",", ", ").replace("_", " "),
    } for p in points]


def _indicator_context(pub: Publication, cat: dict, csv_bytes: int | None) -> dict:
    code, unit = cat["code"], cat["unit"]
    quarter = pub.latest_start(code, "quarter")
    year = pub.latest_start(code, "financial_year")
    england_q = pub.england(code, "quarter", quarter)
    prisons = _area_rows(pub, code, "quarter", quarter, ["prison"])
    others = _area_rows(pub, code, "quarter", quarter, ["region", "operator", "function"])
    points = _spc_points(pub, code)
    spc = _spc_summary(points, unit, cat.get("target"))
    charts = []
    if points:
        charts.append({
            "id": f"spc-{code}",
            "title": f"England monthly values with statistical process control limits, "
                     f"{period_label('month', points[0]['month'])} to {period_label('month', points[-1]['month'])}",
            "summary": spc["text"],
            "payload": _json_for_html(_figure_payload(spc_figure(points, unit, cat.get("target"), cat["polarity"]))),
            "table": {"columns": ["Month", "England", "Mean", "Lower process limit", "Upper process limit",
                                  "Variation", "Rules"],
                      "rows": [[t["month"], t["value"], t["mean"], t["lower"], t["upper"], t["variation"], t["rules"]]
                               for t in _spc_table(points, unit)]},
        })
    funnel = None
    plotted = [p for p in prisons if p["value"] is not None and p["denominator"] is not None]
    if prisons and plotted:
        limits = pub.funnel.get((code, "quarter", quarter), [])
        england_value = england_q["value"] if england_q else None
        positions = Counter(_funnel_position(p, limits) for p in plotted)
        not_shown = len(prisons) - len(plotted)
        summary = (f"Funnel plot of {len(plotted)} prisons for {period_label('quarter', quarter)}: each prison's "
                   f"value against its denominator ({(cat.get('denominator') or 'denominator').lower()}), with "
                   f"England's value ({format_number(england_value, unit)}) and its 95% and 99.8% limits. ")
        counts = _comparison_counts(plotted)
        summary += "Compared with England: " + comparison_summary(counts, cat["polarity"]) + "."
        if limits and positions:
            summary += " Against the limits: " + "; ".join(
                f"{n} {k}" for k, n in sorted(positions.items(), key=lambda kv: -kv[1]) if k) + "."
        elif not limits:
            summary += " Funnel limits are not available for this period."
        if not_shown:
            summary += f" {not_shown} prison{'s are' if not_shown != 1 else ' is'} not shown because the figures " \
                       "are suppressed [c] or not available."
        fig = funnel_figure(plotted, limits, england_value, unit, cat.get("denominator") or "Denominator")
        funnel = {
            "id": f"funnel-{code}",
            "title": f"Prisons compared with England, {period_label('quarter', quarter)}",
            "summary": summary,
            "payload": _json_for_html(_figure_payload(fig)),
            "limits": [{"x": format_count(round(f["denominator"])),
                        "l998": format_number(f["lower_99_8"], unit), "l95": format_number(f["lower_95"], unit),
                        "u95": format_number(f["upper_95"], unit), "u998": format_number(f["upper_99_8"], unit)}
                       for f in limits[:: max(1, len(limits) // 10)]],
            "positions": {p["area_code"]: _funnel_position(p, limits) for p in plotted},
        }
    england_rows = sorted(
        [r for r in pub.rows_for(code, level="england") if r["period_type"] in ("quarter", "financial_year")],
        key=lambda r: (r["period_type"] != "financial_year", r["period_start"]))
    return {
        "cat": cat, "unit": unit, "unit_label": unit_label(unit), "quarter": quarter,
        "quarter_label": period_label("quarter", quarter) if quarter else "",
        "year_label": period_label("financial_year", year) if year else "",
        "england_q": england_q, "prisons": prisons, "others": others, "charts": charts, "funnel": funnel,
        "spc": spc, "england_rows": england_rows, "csv_href": f"../data/indicators/{code}.csv",
        "csv_size": _size(csv_bytes) if csv_bytes is not None else "",
        "prisons_counts": comparison_summary(_comparison_counts(prisons), cat["polarity"]) if prisons else "",
        "method_text": METHOD_TEXT.get(cat.get("method") or "", cat.get("method") or ""),
        "polarity_text": POLARITY_TEXT.get(cat["polarity"], ""),
    }


# ---------------------------------------------------------------------------------------------
# Behind the figure: counts by reason for one prison and month (pipelines.drilldown)

BEHIND_MONTHS_NOTE = {
    None: "no figure is published for this month.",
    "s": "the figure is suppressed [c], so no breakdown is shown.",
    "b": "the counts by reason are suppressed [c] to protect confidentiality.",
    "n": "no counts by reason are available for this month.",
}


def behind_months(pub: Publication, code: str) -> list[dt.date]:
    """The months whose counts by reason an indicator's page shows: its latest BEHIND_MONTHS
    months with published prison figures."""
    return sorted({r["period_start"] for r in pub.rows_for(code, period_type="month", level="prison")})[
        -BEHIND_MONTHS:]


BEHIND_FIELDS = ("role", "reason", "units", "numerator", "denominator", "suppressed", "suppression")


@dataclass
class Behind:
    """Disclosure-controlled counts by reason, read once: indicator -> (prison, month) -> rows."""

    codes: set[str]  # indicators with member rows
    rows: dict[str, dict[tuple[str, dt.date], list[dict]]]  # each row: BEHIND_FIELDS


def load_behind(conn: duckdb.DuckDBPyConnection, pub: Publication,
                policy: DisclosurePolicy = DisclosurePolicy()) -> Behind | None:
    """The publishable counts by reason (None when the warehouse has no `indicators.members`).

    A prison-month is explained only when its figure is published and not suppressed in the
    rows the pages show (`pub.rows`). Only the months the pages show are read (`behind_months`)."""
    if not drilldown.members_available(conn):
        return None
    since = min((m for c in pub.by_code for m in behind_months(pub, c)[:1]), default=dt.date.min)
    cached = drilldown.cached_breakdowns(conn, since=since) if policy == DisclosurePolicy() else None
    if cached is not None:  # the pipeline keeps them up to date month by month
        shown, codes = cached
    else:
        counts = drilldown.reason_counts(conn)
        published = pd.DataFrame(
            [{"indicator_id": r["indicator_id"], "month": r["period_start"], "prison_code": r["area_code"],
              "suppressed": r["suppressed"]} for r in pub.rows
             if r["level"] == "prison" and r["period_type"] == "month" and r["period_start"] >= since],
            columns=["indicator_id", "month", "prison_code", "suppressed"])
        shown = drilldown.publishable_reason_counts(counts, policy, published=published,
                                                    months=set(published["month"]))
        codes = set(counts["indicator_id"].dropna())
    rows: dict[str, dict[tuple[str, dt.date], list[dict]]] = defaultdict(lambda: defaultdict(list))
    # Plain Python values column by column (NaN and NA become None), then zipped into records of
    # the fields the pages read: DataFrame.to_dict boxes every cell on its own, which took most of
    # this step nationally, and every field more is another value per row of hundreds of thousands.
    def plain(column: str) -> list:
        return shown[column].astype(object).where(shown[column].notna(), None).tolist()

    months = {m: _as_date(m) for m in set(shown["month"].tolist())}
    keys = zip(plain("indicator_id"), plain("prison_code"), shown["month"].tolist(), strict=True)
    for (code, prison, month), values in zip(keys, zip(*map(plain, BEHIND_FIELDS), strict=True), strict=True):
        rows[code][(prison, months[month])].append(dict(zip(BEHIND_FIELDS, values, strict=True)))
    return Behind(codes=codes, rows=rows)


def _count_text(n: float | None) -> str:
    return "[c]" if n is None else format_count(n)


def behind_text(entry: Any, reasons: list[str], kind: str, population: str | None) -> str:
    """The counts by reason for one prison-month as a sentence (assets/report.js writes the same).

    `entry` is one cell of the embedded data: None (no published figure), "s" (figure suppressed),
    "b" (breakdown suppressed), "n" (no counts), or {"c": counts aligned with `reasons` (null for
    [c]; [rows loaded, rows read] per source when `kind` is "rows"), "p": population, "f":
    [numerator, denominator, value]}."""
    if not isinstance(entry, dict):
        return BEHIND_MONTHS_NOTE.get(entry, BEHIND_MONTHS_NOTE[None])
    parts = []
    for label, count in zip(reasons, entry["c"], strict=True):
        if count == 0:
            continue
        if kind == "rows":
            parts.append(f"{label}: [c]" if count is None else
                         f"{label}: {format_count(count[0])} of {format_count(count[1])} rows loaded")
        else:
            parts.append(f"{_count_text(count)} {label}")
    text = ("; ".join(parts) or "nothing counted") + "."
    if population and "p" in entry:
        text += f" {population[:1].upper()}{population[1:]}: {_count_text(entry.get('p'))}."
    figure = entry.get("f")
    if figure:
        text += (f" Published figure: numerator {_count_text(figure[0])}, denominator {_count_text(figure[1])}, "
                 f"value {figure[2] or '[x]'}.")
    return text


def _behind_context(pub: Publication, cat: dict, behind: Behind | None) -> dict | None:
    """The "Behind the figure" section: embedded counts for every prison and month of the indicator,
    the sentence for the default choice and the static table of the latest month (without script)."""
    code, unit = cat["code"], cat["unit"]
    if behind is None or code not in behind.codes:
        return None
    published = {(r["area_code"], r["period_start"]): r
                 for r in pub.rows_for(code, period_type="month", level="prison")}
    if not published:
        return None
    months = behind_months(pub, code)
    published = {key: row for key, row in published.items() if key[1] >= months[0]}
    prisons = sorted({p for p, _ in published}, key=lambda c: (pub.area_name("prison", c).lower(), c))
    by_cell = behind.rows.get(code, {})
    vocabulary: dict[tuple[str, str], str] = {}  # (role, reason) -> label, display order
    population = None
    kind = "units"
    for rows in by_cell.values():
        for r in rows:
            if r["role"] == "population":
                population = population or r["reason"]
            else:
                vocabulary.setdefault((r["role"], r["reason"]), r["reason"])
                kind = "rows" if r["role"] == "rows" else kind
    keys = sorted(vocabulary, key=lambda k: (drilldown.ROLE_ORDER.get(k[0], 9), k[1]))
    labels = [SOURCE_LABELS.get(k[1], k[1]) if k[0] == "rows" else k[1] for k in keys]
    position = {k: i for i, k in enumerate(keys)}

    def entry(prison: str, month: dt.date) -> Any:
        row = published.get((prison, month))
        if row is None:
            return None
        if row["suppressed"]:
            return "s"
        rows = by_cell.get((prison, month))
        if not rows:
            return "n"
        if any(r["suppression"] == "breakdown" for r in rows):
            return "b"
        counts: list[Any] = [0] * len(keys)
        out: dict[str, Any] = {"c": counts}
        for r in rows:
            if r["role"] == "population":
                out["p"] = None if r["suppressed"] else _rounded(r["denominator"], 1)
                continue
            i = position[(r["role"], r["reason"])]
            if r["suppressed"]:
                counts[i] = None
            elif r["role"] == "rows":
                counts[i] = [int(r["numerator"]), int(r["denominator"])]
            else:
                counts[i] = int(r["units"])
        num, den = row["numerator"], row["denominator"]
        out["f"] = [num, None if den is None else _rounded(float(den), 1),
                    value_cell(row, unit).striptags() if row["value"] is not None else ""]
        return out

    cells = [[entry(p, m) for m in months] for p in prisons]
    names = [pub.area_name("prison", p) for p in prisons]
    month_labels = [period_label("month", m) for m in months]
    latest = months[-1]
    table = [{"code": p, "name": names[i], "text": behind_text(cells[i][-1], labels, kind, population)}
             for i, p in enumerate(prisons)]
    data = {"reasons": labels, "kind": kind, "population": population,
            "months": [[m.isoformat(), label] for m, label in zip(months, month_labels, strict=True)],
            "prisons": [[p, names[i]] for i, p in enumerate(prisons)], "cells": cells,
            "notes": {("none" if k is None else k): v for k, v in BEHIND_MONTHS_NOTE.items()}}
    return {
        "id": f"behind-{_slug(code)}",
        "prisons": [{"code": p, "name": names[i]} for i, p in enumerate(prisons)],
        "months": [{"value": m.isoformat(), "label": label} for m, label in zip(months, month_labels, strict=True)],
        "latest": latest.isoformat(), "latest_label": period_label("month", latest),
        "sentence": f"{names[0]}, {period_label('month', latest)}: {table[0]['text']}",
        "table": table, "payload": _json_for_html(data), "rows_kind": kind == "rows",
    }


def _area_context(pub: Publication, level: str, code: str) -> dict:
    sections = []
    totals: Counter = Counter()
    for period_type in ("quarter", "financial_year"):
        items = []
        for cat in pub.catalogue:
            start = pub.latest_start(cat["code"], period_type)
            rows = pub.rows_for(cat["code"], period_type=period_type, start=start, level=level, area_code=code)
            if not rows and level not in pub.levels.get(cat["code"], ()):
                continue
            row = rows[0] if rows else None
            items.append({"cat": cat, "row": row, "england": pub.england(cat["code"], period_type, start),
                          "period": period_label(period_type, start, short=True) if start else ""})
            if period_type == "quarter" and row is not None:
                totals["suppressed" if row["suppressed"] else (row.get("comparison") or "not_compared")] += 1
        if items:
            sections.append({"period_type": period_type, "label": PERIOD_LABELS[period_type], "items": items,
                             "id": f"latest-{period_type.replace('_', '-')}"})
    return {"sections": sections, "totals": dict(totals)}


def _quality_context(pub: Publication) -> dict:
    q = pub.quality
    sources = sorted({r["source"] for r in q}, key=lambda s: (list(SOURCE_LABELS).index(s)
                                                              if s in SOURCE_LABELS else 99, s))
    by_source = []
    for s in sources:
        rows = [r for r in q if r["source"] == s]
        read = sum(r["rows_read"] for r in rows)
        quarantined = sum(r["rows_quarantined"] for r in rows)
        by_source.append({"source": SOURCE_LABELS.get(s, s), "read": read,
                          "loaded": sum(r["rows_loaded"] for r in rows), "quarantined": quarantined,
                          "share": (quarantined / read * 100) if read else None,
                          "reasons": [sum(r[k] for r in rows) for k in QUALITY_REASONS]})
    total = {"read": sum(s["read"] for s in by_source), "loaded": sum(s["loaded"] for s in by_source),
             "quarantined": sum(s["quarantined"] for s in by_source),
             "reasons": [sum(s["reasons"][i] for s in by_source) for i in range(len(QUALITY_REASONS))]}
    total["share"] = total["quarantined"] / total["read"] * 100 if total["read"] else None
    prisons: dict[str | None, dict] = {}
    for r in q:
        p = prisons.setdefault(r["prison_code"], {"read": 0, "quarantined": 0, "reasons": Counter()})
        p["read"] += r["rows_read"]
        p["quarantined"] += r["rows_quarantined"]
        for k in QUALITY_REASONS:
            p["reasons"][k] += r[k]
    by_prison = []
    for code, p in sorted(prisons.items(), key=lambda kv: (kv[0] is None, kv[0] or "")):
        top = [f"{REASON_LABELS[k]} ({n:,})" for k, n in p["reasons"].most_common(2) if n]
        by_prison.append({"code": code, "name": pub.prisons.get(code, {}).get("prison_name") if code else None,
                          "read": p["read"], "quarantined": p["quarantined"],
                          "share": p["quarantined"] / p["read"] * 100 if p["read"] else None,
                          "top": "; ".join(top) or "None"})
    months: dict[str, dict] = {}
    for r in q:
        m = months.setdefault(r["month"] or "Reference", {"month": r["month"] or "Reference", "by_source": Counter(),
                                                          "read": 0, "quarantined": 0})
        m["by_source"][r["source"]] += r["rows_quarantined"]
        m["read"] += r["rows_read"]
        m["quarantined"] += r["rows_quarantined"]
    by_month = [months[k] for k in sorted(months)]
    chart = None
    if by_month and total["quarantined"]:
        worst = max(by_month, key=lambda m: m["quarantined"])
        chart = {
            "id": "quarantine-by-month",
            "title": "Rows quarantined by month of file and source",
            "summary": (f"Stacked bar chart of the rows quarantined in each month's files, by source, "
                        f"{by_month[0]['month']} to {by_month[-1]['month']}: {total['quarantined']:,} rows in all; "
                        f"the most in {worst['month']} ({worst['quarantined']:,})."),
            "payload": _json_for_html(_figure_payload(quality_figure(by_month, sources))),
            "table": {"columns": ["Month", *[SOURCE_LABELS.get(s, s) for s in sources], "All sources"],
                      "rows": [[m["month"], *[f"{m['by_source'].get(s, 0):,}" for s in sources],
                                f"{m['quarantined']:,}"] for m in by_month]},
        }
    return {"by_source": by_source, "total": total, "by_prison": by_prison, "by_month": by_month, "chart": chart,
            "reasons": [REASON_LABELS[k] for k in QUALITY_REASONS], "sources": sources}


def _size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


# ---------------------------------------------------------------------------------------------
# Exports (CSV / Parquet of the published rows)


def _csv_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _published_select(present: list[str]) -> str:
    """Published rows with suppressed figures written as [c] (text), in a stable order."""

    def col(c: str) -> str:
        return c if c in present else f"NULL AS {c}"

    def fig(c: str) -> str:
        if c not in present:
            return f"NULL AS {c}"
        expr = c if c in ("numerator", "comparison") else f"round({c}, {CSV_DECIMALS})"
        if c == "denominator":  # whole counts without a trailing .0
            expr = (f"CASE WHEN {c} = trunc({c}) THEN CAST(CAST({c} AS BIGINT) AS VARCHAR) "
                    f"ELSE CAST({expr} AS VARCHAR) END")
        return f"CASE WHEN suppressed THEN '[c]' ELSE CAST({expr} AS VARCHAR) END AS {c}"

    parts = [fig(c) if c in (*FIGURE_COLUMNS, "comparison") else col(c) for c in VALUE_COLUMNS]
    order = ("indicator_id, CASE period_type WHEN 'month' THEN 0 WHEN 'quarter' THEN 1 ELSE 2 END, period_start, "
             "CASE level WHEN 'england' THEN 0 WHEN 'region' THEN 1 WHEN 'operator' THEN 2 WHEN 'function' THEN 3 "
             "ELSE 4 END, area_code")
    return f"SELECT {', '.join(parts)} FROM published.indicator_values ORDER BY {order}"


def _exports_beside(conn: duckdb.DuckDBPyConnection, data_dir: Path, codes: list[str]) -> list[Path]:
    with conn.cursor() as own:  # a connection of its own: one connection runs one query at a time
        return write_exports(own, data_dir, codes)


def write_exports(conn: duckdb.DuckDBPyConnection, data_dir: Path, codes: Iterable[str]) -> list[Path]:
    """CSV (suppressed figures as [c], figures rounded to CSV_DECIMALS places) and Parquet (typed, full
    precision; suppressed figures null) of the published rows."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "indicators").mkdir(exist_ok=True)
    paths = []
    csv_path = data_dir / "indicator_values.csv"
    present = _columns(conn, "published.indicator_values")
    # Formatted and sorted once; the whole file and each indicator's file are read from it in order.
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _csv_rows AS {_published_select(present)}")
    conn.execute(f"COPY _csv_rows TO {_csv_literal(csv_path)} (FORMAT csv, HEADER true)")
    paths.append(csv_path)
    parquet_path = data_dir / "indicator_values.parquet"
    select = ", ".join(c if c in present else f"NULL AS {c}" for c in VALUE_COLUMNS)
    conn.execute(f"COPY (SELECT {select} FROM published.indicator_values ORDER BY indicator_id, period_type, "
                 f"period_start, level, area_code) TO {_csv_literal(parquet_path)} (FORMAT parquet)")
    paths.append(parquet_path)
    for code in codes:
        path = data_dir / "indicators" / f"{_slug(code)}.csv"
        safe = str(code).replace("'", "''")
        conn.execute(f"COPY (SELECT * FROM _csv_rows WHERE indicator_id = '{safe}') "
                     f"TO {_csv_literal(path)} (FORMAT csv, HEADER true)")
        paths.append(path)
    conn.execute("DROP TABLE _csv_rows")
    if warehouse.table_exists(conn, "indicators.catalogue"):
        cols = [c for c in _columns(conn, "indicators.catalogue") if c != "sql"]
        path = data_dir / "catalogue.csv"
        conn.execute(f"COPY (SELECT {', '.join(chr(34) + c + chr(34) for c in cols)} FROM indicators.catalogue "
                     f"ORDER BY priority, code) TO {_csv_literal(path)} (FORMAT csv, HEADER true)")
        paths.append(path)
    if warehouse.table_exists(conn, "quality.summary"):
        path = data_dir / "data_quality.csv"
        conn.execute(f"COPY (SELECT * FROM quality.summary ORDER BY source, month, prison_code NULLS LAST) "
                     f"TO {_csv_literal(path)} (FORMAT csv, HEADER true)")
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Building the site


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(
        COMPARISONS=COMPARISONS, VARIATIONS=VARIATIONS, ASSURANCE=ASSURANCE, SHORTHAND=SHORTHAND,
        SHORTHAND_TITLES=SHORTHAND_TITLES, ICON_SHAPES=ICON_SHAPES,
        LEVEL_LABELS=LEVEL_LABELS, PERIOD_LABELS=PERIOD_LABELS, FUNCTION_LABELS=FUNCTION_LABELS,
        OPERATOR_LABELS=OPERATOR_LABELS, TITLE=TITLE, SUBTITLE=SUBTITLE,
        SPREADSHEET_NAME=SPREADSHEET_NAME, POLARITY_TEXT=POLARITY_TEXT, METHOD_TEXT=METHOD_TEXT,
    )
    env.filters.update(
        value_cell=value_cell, interval_cell=interval_cell, count_cell=count_cell, sort_value=sort_value,
        comparison_key=comparison_key, period_label=period_label, format_number=format_number,
        format_count=format_count, slug=_slug, size=_size,
        percent=lambda v: "" if v is None else f"{v:.1f}%",
        row_period=lambda r, short=False: period_label(r["period_type"], r["period_start"], short=short),
    )
    return env


def _copy_assets(assets: Path) -> list[Path]:
    import plotly

    assets.mkdir(parents=True, exist_ok=True)
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    dest = assets / "plotly.min.js"
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dest)
    paths = [dest]
    for name in ("report.css", "report.js"):
        shutil.copyfile(TEMPLATES_DIR / name, assets / name)
        paths.append(assets / name)
    return paths


def _latest_label(pub: Publication) -> str:
    months = pub.months
    if not months:
        return ""
    return f"{period_label('month', months[0])} to {period_label('month', months[-1])}"


def build_report(conn: duckdb.DuckDBPyConnection, out_dir: Path, *, with_spreadsheet: bool = True,
                 synthetic: bool = True, publication: Publication | None = None,
                 workbook: SpreadsheetProcess | None = None) -> ReportSummary:
    """Write the static report site to `<out_dir>/report/` and return what was written.

    `out_dir` is the pipeline's output directory (the one holding warehouse.duckdb). With
    `with_spreadsheet` (the default) the accessible spreadsheet is written beside the pages
    too; pass False when it is materialised separately with `spreadsheet.build_spreadsheet`.
    `synthetic` adds the banner (and cover note) saying the figures are made-up sample data.
    `publication` saves reading the published tables again when the caller already has them;
    `workbook` is the spreadsheet already started by the caller (`spreadsheet.start_spreadsheet`).
    """
    out_dir = Path(out_dir)
    root = out_dir / SITE_DIR
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("indicators", "prisons", "regions", "data/indicators"):  # nothing stale may linger
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    pub = publication or load_publication(conn)
    if with_spreadsheet and workbook is None:  # written by a second process while this one does the rest
        from pipelines import spreadsheet

        workbook = spreadsheet.start_spreadsheet(spreadsheet.workbook_publication(conn), root / SPREADSHEET_NAME,
                                                 synthetic=synthetic)
    written: list[Path] = _copy_assets(root / "assets")
    # The CSV and Parquet files are DuckDB's work, which holds no GIL: written on a connection of
    # their own while this thread renders every page but the indicators' (which give their sizes).
    beside = ThreadPoolExecutor(max_workers=1)
    exports = beside.submit(_exports_beside, conn, root / "data", [c["code"] for c in pub.catalogue])
    beside.shutdown(wait=False)
    behind = load_behind(conn, pub)
    env = _environment()
    regions = sorted({p.get("region") for p in pub.prisons.values() if p.get("region")})
    prison_codes = sorted({r["area_code"] for r in pub.rows if r["level"] == "prison"})
    region_codes = sorted({r["area_code"] for r in pub.rows if r["level"] == "region"} | set(regions))
    nav_regions = []
    for region in region_codes:
        members = [c for c in prison_codes if pub.prisons.get(c, {}).get("region") == region]
        nav_regions.append({"name": region, "href": f"regions/{_slug(region)}.html",
                            "prisons": [{"code": c, "name": pub.area_name("prison", c),
                                         "href": f"prisons/{_slug(c)}.html"} for c in members]})
    orphans = [c for c in prison_codes if pub.prisons.get(c, {}).get("region") not in region_codes]
    if orphans:
        nav_regions.append({"name": "Region not known", "href": None,
                            "prisons": [{"code": c, "name": pub.area_name("prison", c),
                                         "href": f"prisons/{_slug(c)}.html"} for c in orphans]})
    common = {"data_period": _latest_label(pub), "catalogue": pub.catalogue, "synthetic": synthetic,
              "priorities": _priorities(pub.catalogue)}
    pages: list[tuple[str, str, dict]] = []
    tiles = [_tile(pub, c) for c in pub.headline]
    pages.append(("index.html", "index.html.j2", {"tiles": tiles, "page_id": "overview"}))
    pages.append(("areas.html", "areas.html.j2", {"regions": nav_regions, "page_id": "areas"}))
    for code in prison_codes:
        info = pub.prisons.get(code, {})
        region = info.get("region")
        pages.append((f"prisons/{_slug(code)}.html", "area.html.j2", {
            **_area_context(pub, "prison", code), "level": "prison", "code": code,
            "name": pub.area_name("prison", code), "info": info, "page_id": "areas",
            "parent": {"name": region, "href": f"../regions/{_slug(region)}.html"} if region in region_codes else None,
            "members": [],
        }))
    for region in nav_regions:
        if region["href"] is None:
            continue
        pages.append((region["href"], "area.html.j2", {
            **_area_context(pub, "region", region["name"]), "level": "region", "code": region["name"],
            "name": region["name"], "info": {}, "page_id": "areas", "parent": None,
            "members": [{**p, "href": "../" + p["href"]} for p in region["prisons"]],
        }))
    pages.append(("methodology.html", "methodology.html.j2",
                  {"page_id": "methodology", "behind_months": BEHIND_MONTHS}))
    pages.append(("data-quality.html", "data_quality.html.j2", {**_quality_context(pub), "page_id": "quality"}))

    def render(rel: str, template: str, ctx: dict) -> None:
        depth = rel.count("/")
        html = env.get_template(template).render(**common, **ctx, root="../" * depth, rel=rel)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
        written.append(path)

    for page in pages:
        render(*page)
    data_paths = exports.result()
    written += data_paths
    csv_sizes = {p.stem: p.stat().st_size for p in data_paths if p.parent.name == "indicators"}
    for cat in pub.catalogue:
        ctx = _indicator_context(pub, cat, csv_sizes.get(_slug(cat["code"])))
        ctx["positions"] = (ctx["funnel"] or {}).get("positions", {})
        ctx["region_of"] = {c: p.get("region") for c, p in pub.prisons.items()}
        ctx["behind"] = _behind_context(pub, cat, behind)
        pages.append((f"indicators/{_slug(cat['code'])}.html", "indicator.html.j2", {**ctx, "page_id": "indicators"}))
        render(*pages[-1])
    if workbook is not None:
        written.append(workbook.result())
    downloads = [{"name": p.name, "href": str(p.relative_to(root)).replace("\\", "/"), "size": _size(p.stat().st_size),
                  "code": p.stem} for p in data_paths if p.parent.name == "indicators"]
    render("downloads.html", "downloads.html.j2", {  # last: it gives the spreadsheet's size
        "page_id": "downloads", "indicator_files": downloads,
        "sizes": {p.name: _size(p.stat().st_size) for p in [*written, root / SPREADSHEET_NAME] if p.exists()},
        "spreadsheet": workbook is not None or (root / SPREADSHEET_NAME).exists(),
    })
    total = sum(p.stat().st_size for p in written if p.exists())
    return ReportSummary(root=root, paths=written, pages=len(pages) + 1, bytes=total)


def _priorities(catalogue: list[dict]) -> list[dict]:
    out: dict[int, dict] = {}
    for c in catalogue:
        p = out.setdefault(c["priority"], {"priority": c["priority"], "name": c.get("priority_name") or "",
                                           "indicators": []})
        p["indicators"].append(c)
    return [out[k] for k in sorted(out)]


# ---------------------------------------------------------------------------------------------
# For the Dagster UI


def headline_table_markdown(conn: duckdb.DuckDBPyConnection, publication: Publication | None = None) -> str:
    """The twelve headline indicators: latest quarter England value, 95% interval and how many prisons
    are better / similar / worse than England (higher / similar / lower for neutral indicators)."""
    pub = publication or load_publication(conn)
    lines = ["| Indicator | Period | England | 95% CI | Prisons compared with England |",
             "|---|---|---|---|---|"]
    for cat in pub.headline:
        tile = _tile(pub, cat)
        england = tile["england"]
        value = shorthand(england) if england is None or england["value"] is None else format_number(
            england["value"], cat["unit"], signed=cat["unit"] == "percentage points")
        interval = interval_text(england, cat["unit"]) if england else ""
        name = f"{cat['code']} {cat['name']}".replace("|", "/")
        provisional = " (provisional)" if tile["provisional"] else ""
        lines.append(f"| {name} | {tile['period_short']}{provisional} | {value or '[x]'} | {interval or '[x]'} | "
                     f"{tile['compared']} |")
    return "\n".join(lines) + "\n"


def indicator_chart_png(conn: duckdb.DuckDBPyConnection, indicator_id: str, *, width: int = 640,
                        height: int = 320) -> bytes | None:
    """A small England trend chart as PNG (kaleido with the system Chromium); None if export fails."""
    try:
        import plotly.io as pio

        pub = load_publication(conn)
        cat = pub.by_code.get(indicator_id)
        points = _spc_points(pub, indicator_id)
        if cat is None or not points:
            return None
        import plotly.graph_objects as go

        fig = go.Figure(spc_figure(points, cat["unit"], cat.get("target"), cat["polarity"]))
        fig.update_layout(height=height, width=width, showlegend=False,
                          title={"text": f"{indicator_id} {cat['name']}: England", "x": 0.01, "font": {"size": 14}},
                          margin={"l": 56, "r": 12, "t": 36, "b": 40})
        return pio.to_image(fig, format="png", width=width, height=height)
    except Exception:  # noqa: BLE001 - optional: no browser, kaleido failure, ...
        return None
