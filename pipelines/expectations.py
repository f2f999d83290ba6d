"""Great Expectations suites generated from the contract, and their run on one month.

The suites in `expectations/<source>.json` are written by `prisonhealth docs` from
the contract objects and checked for staleness by a test, so they are reviewable
and versioned. Each expectation carries the contract reason code in its `meta`.
The suite runs on the month's judged frame (raw text as `raw__<column>`, typed
values under the conformed names) with GX 1.x directly: the `dagster-ge`
integration pins GX below 1.0, and GX has no DuckDB engine, so pandas it is.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipelines import contract

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
SUITE_DIR = Path(__file__).resolve().parents[1] / "expectations"
_PATTERNS = {
    "datetime": contract.DATETIME_PATTERN,
    "date": contract.DATE_PATTERN,
    "integer": contract.INTEGER_PATTERN,
    "number": contract.NUMBER_PATTERN,
    "month": contract.MONTH_PATTERN,
}


def _expectation(kind: str, reason: str, rule: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {"reason": reason, "rule": rule}}


def suite_definition(table: contract.Table) -> dict:
    """The suite as a JSON-able dict, in the form GX's ExpectationSuite accepts."""
    out: list[dict] = []
    for column in table.columns:
        raw = "raw__" + column.name
        if column.type == "nhs_number":
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_nhs_number",
                                    "nhs_number has 10 digits and a valid Modulus 11 check digit",
                                    column="nhs_number_problem", value_set=["empty"]))
            if column.required:
                out.append(_expectation("expect_column_values_to_not_be_in_set", "missing_required_value",
                                        "nhs_number is present", column="nhs_number_problem", value_set=["empty"]))
            continue
        if column.required:
            out.append(_expectation("expect_column_values_to_not_be_null", "missing_required_value",
                                    f"{column.name} is present", column=raw))
        if column.type in _PATTERNS:
            out.append(_expectation("expect_column_values_to_match_regex", "invalid_value",
                                    f"{column.name} is written as {column.type}", column=raw,
                                    regex=_PATTERNS[column.type]))
            out.append(_expectation("expect_column_values_to_not_be_null", "invalid_value",
                                    f"{column.name} is a valid {column.type}", column=column.name,
                                    row_condition=f"{raw}.notnull()", condition_parser="pandas"))
        if column.type == "bool":
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_value",
                                    f"{column.name} is a boolean", column=column.name, value_set=[True, False]))
            out.append(_expectation("expect_column_values_to_not_be_null", "invalid_value",
                                    f"{column.name} is a boolean", column=column.name,
                                    row_condition=f"{raw}.notnull()", condition_parser="pandas"))
        if column.allowed:
            out.append(_expectation("expect_column_values_to_be_in_set", "invalid_value",
                                    f"{column.name} is one of the allowed values", column=raw,
                                    value_set=list(column.allowed)))
        if column.pattern:
            out.append(_expectation("expect_column_values_to_match_regex", "invalid_value",
                                    f"{column.name} matches its pattern", column=raw, regex=column.pattern))
        if column.minimum is not None or column.maximum is not None:
            out.append(_expectation("expect_column_values_to_be_between", "invalid_value",
                                    f"{column.name} is in range ({column.rule_text()})", column=column.name,
                                    min_value=column.minimum, max_value=column.maximum,
                                    strict_min=column.exclusive_minimum))
    for rule in table.rules:
        if rule.expectation:
            column, kind, condition = rule.expectation
            out.append(_expectation(f"expect_column_values_to_{'be_null' if kind == 'null' else 'not_be_null'}",
                                    rule.reason, rule.description, column=column,
                                    row_condition=condition, condition_parser="pandas"))
    if table.is_event or table.name == "population":
        out.append(_expectation("expect_column_values_to_be_in_set", "unknown_prison",
                                "prison_code is a prison in the reference", column="prison_code",
                                value_set={"$PARAMETER": "prison_codes"}))
    if table.primary_datetime:
        out.append(_expectation("expect_column_values_to_be_between", "outside_file_month",
                                f"{table.primary_datetime} is inside the file month",
                                column=table.primary_datetime, min_value={"$PARAMETER": "month_start"},
                                max_value={"$PARAMETER": "month_last_second"}))
    for rule in table.rules:
        if rule.reason == "sequence_error":
            earlier, later = rule.columns
            out.append(_expectation("expect_column_pair_values_a_to_be_greater_than_b", "sequence_error",
                                    rule.description, column_A=later, column_B=earlier, or_equal=True,
                                    ignore_row_if="either_value_is_missing"))
    if table.id_column or table.name in ("population", "drug_groups"):
        out.append(_expectation("expect_column_values_to_be_null", "duplicate_id",
                                "the id was not used by an earlier row (across all months)", column="first_file"))
    return {"name": table.name, "expectations": out, "meta": {"contract_version": contract.CONTRACT_VERSION}}


def suite_json(table: contract.Table) -> str:
    return json.dumps(suite_definition(table), indent=2) + "\n"


def load_suite(table: contract.Table) -> dict:
    """The committed suite if present (the reviewed version), else the generated one."""
    path = SUITE_DIR / f"{table.name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    return suite_definition(table)


def _quiet_gx():
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return gx


def run_suite(table: contract.Table, frame: pd.DataFrame, month: str | None, prison_codes: list[str]) -> list[dict]:
    """Validate one month's judged frame; one row per expectation with its failing count and lines."""
    gx = _quiet_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("prisonhealth").add_dataframe_asset(name=table.name)
             .add_batch_definition_whole_dataframe("month").get_batch(batch_parameters={"dataframe": frame}))
    parameters = {"prison_codes": prison_codes}
    if month:
        start = datetime.strptime(month, "%Y-%m")
        end = pd.Timestamp(start) + pd.offsets.MonthBegin(1) - pd.Timedelta(seconds=1)
        parameters |= {"month_start": pd.Timestamp(start), "month_last_second": end}
    suite = gx.ExpectationSuite(**load_suite(table))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": ["source_line"]}
    result = batch.validate(suite, expectation_parameters=parameters, result_format=result_format)
    rows = []
    for item in result.results:
        config = item.expectation_config
        lines = [entry["source_line"] for entry in (item.result.get("unexpected_index_list") or [])]
        column = config.kwargs.get("column") or f"{config.kwargs.get('column_A')} >= {config.kwargs.get('column_B')}"
        rows.append({
            "expectation": config.type,
            "column": column,
            "reason": config.meta.get("reason"),
            "rule": config.meta.get("rule"),
            "success": bool(item.success),
            "unexpected_count": int(item.result.get("unexpected_count") or len(lines)),
            "lines": sorted(int(x) for x in lines),
            "error": (item.exception_info or {}).get("exception_message") if not item.success else None,
        })
    return rows


def failing_table_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No row failed the contract's rules."
    failing = [r for r in rows if not r["success"]]
    if not failing:
        return f"All {len(rows)} expectations met."
    lines = ["| expectation | column | reason | rows failing |", "|---|---|---|---|"]
    for r in failing:
        lines.append(f"| {r['expectation']} | {r['column']} | {r['reason']} | {r['unexpected_count']} |")
    return "\n".join(lines)
