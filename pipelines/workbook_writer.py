"""gptables' `produce_workbook`, writing the same file with less Python per cell.

The national workbook has tens of thousands of table rows (hundreds of thousands of cells),
and gptables 2.0 spends much of its time on two loops written for small tables: it builds the
per-cell format table one pandas row assignment at a time (`formats.iloc[row] = ...`), and
passes every cell through `_smart_write`'s chain of type checks (rich text, lists, URLs,
missing values) before `write`. Neither can be switched off, so `GPTableWriter` overrides the
two methods that hold them: `_write_table_elements` is gptables 2.0.2's own, with the format
table built in one step, and `_write_array` sends plain strings and numbers straight to
xlsxwriter's own writers of strings and numbers (past `write`'s checks of each cell, when those
checks would send the cell there) and everything else through `_smart_write` as before. gptables
still lays out every sheet, theme, note and table; tests/test_spreadsheet.py checks that the
files are identical to gptables' own, sheet by sheet, so a gptables upgrade that changes either
method shows there.
"""

from __future__ import annotations

import warnings
from unittest import mock

import gptables.core.api as gptables_api
import pandas as pd
from gptables.core.wrappers import GPWorkbook, GPWorksheet

PLAIN = (str, int, float)  # the cells `write` takes as they are


class GPTableWriter(GPWorksheet):
    def _write_table_elements(self, pos: list, gptable, auto_width: bool) -> list:
        # gptables 2.0.2 GPWorksheet._write_table_elements but for the format table's construction
        # (and its error messages' guidance links)
        gptable.table.replace({r"^\s*$": None}, inplace=True, regex=True)
        if gptable.table.isna().values.all():
            raise ValueError(f"{gptable.table_name} contains only null or whitespace cells.")
        if gptable.table.isna().all(axis=1).any():
            raise ValueError(f"Empty or null row found in {gptable.table_name}.")
        if gptable.table.isna().values.any():
            warnings.warn(f"Empty or null cell found in {gptable.table_name}.", stacklevel=2)
        if gptable.table.astype("string").stack().str.contains("^[^a-zA-Z0-9]*$").any():
            raise ValueError(f"Cell found in {gptable.table_name} containing only special characters.")

        theme = self.theme
        pos = [gptable.data_range[0], 0]
        index_levels = gptable.index_levels
        index_columns = list(gptable.index_columns.values())
        data = pd.DataFrame(gptable.table, copy=True)
        data.loc[-1] = data.columns  # the column headings, as the first row
        data.index = data.index + 1
        data.sort_index(inplace=True)

        # one dict per cell, made at once rather than one row assignment at a time (counting the
        # columns once: iterating pandas' Arrow-backed column index cell by cell is slow)
        width = len(data.columns)
        formats = pd.DataFrame([[{} for _ in range(width)] for _ in range(len(data))], index=data.index,
                               columns=data.columns, dtype=object)
        self._apply_format(formats.iloc[0, 0:], theme.column_heading_format)
        self._apply_format(formats.iloc[1:, index_levels:], theme.data_format)
        index_level_formats = [theme.index_1_format, theme.index_2_format, theme.index_3_format]
        for level, col in gptable.index_columns.items():
            self._apply_format(formats.iloc[1:, col], index_level_formats[level - 1])
        self._apply_column_alignments(data, formats, index_columns)
        self._apply_additional_formatting(formats, gptable.additional_formatting, gptable.index_levels)

        pos = self._write_array(pos, data, formats)
        if auto_width:
            self._set_column_widths(self._calculate_column_widths(data, formats))
        self._mark_data_as_worksheet_table(gptable, formats)
        return pos

    def _write_array(self, pos: list, data: pd.DataFrame, formats: pd.DataFrame) -> list:
        if data.shape != formats.shape:
            raise ValueError("data and formats arrays must be of equal shape")
        formats_by_items: dict[tuple, object] = {}  # the workbook's cache sorts each cell's dict first

        def format_of(properties: dict) -> object:
            items = tuple(properties.items())
            found = formats_by_items.get(items)
            if found is None:
                found = formats_by_items[items] = self._workbook.add_format(properties)
            return found

        # Where `write` would call xlsxwriter's `_write_string` or `_write_number` with the cell as it
        # is, call them: no type handler of the caller's, no string read as a number, and a string
        # that is not empty (a blank), a formula ("=", "{=") or a URL (which needs a colon).
        direct = not self.write_handlers and not self.strings_to_numbers
        write_number, write_string = self._write_number, self._write_string
        rows = zip(data.values.tolist(), formats.values.tolist(), strict=True)  # same shape, checked above
        for row, (values, cell_formats) in enumerate(rows, start=pos[0]):
            for col, (value, cell_format) in enumerate(zip(values, cell_formats, strict=True), start=pos[1]):
                kind = type(value)
                if direct and kind is str and value and value[0] not in "={" and ":" not in value:
                    write_string(row, col, value, format_of(cell_format))
                elif direct and (kind is int or kind is float) and value == value:
                    write_number(row, col, value, format_of(cell_format))
                elif kind in PLAIN and value == value:  # not NaN, which _smart_write writes blank
                    self.write(row, col, value, format_of(cell_format))
                else:
                    self._smart_write(row, col, value, cell_format)
        return [pos[0] + data.shape[0], 0]


class GPTableWorkbook(GPWorkbook):
    def add_worksheet(self, name: str | None = None, gridlines: str = "hide_all") -> GPTableWriter:
        # GPWorkbook.add_worksheet, with this module's worksheet class
        worksheet = super(GPWorkbook, self).add_worksheet(name, GPTableWriter)
        worksheet.theme = self.theme
        worksheet._workbook = self
        worksheet.hide_gridlines({"show_all": 0, "hide_printed": 1, "hide_all": 2}[gridlines])
        return worksheet


def produce_workbook(**arguments) -> GPWorkbook:
    """`gptables.produce_workbook(**arguments)`, its worksheets written by GPTableWriter."""
    with mock.patch.object(gptables_api, "GPWorkbook", GPTableWorkbook):
        return gptables_api.produce_workbook(**arguments)
