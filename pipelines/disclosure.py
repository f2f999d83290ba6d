"""Statistical disclosure control for the public outputs.

The analysts' tables hold full figures; the published tables (report, spreadsheet,
CSV) go through :func:`apply_disclosure_control` first. It is a pure function: it
takes indicator rows (a pandas DataFrame or a list of dicts) and the prison -> parent
areas mapping, and returns a copy with a boolean ``suppressed`` column in which the
figures of suppressed rows (numerator, denominator, value, intervals, comparison) are
nulled. Nothing else is changed.

Policy (:class:`DisclosurePolicy`, all fields configurable)
----------------------------------------------------------
* **Primary suppression.** Below England level (``prison``, ``region``,
  ``operator``, ``function``), a row whose numerator is between ``min_numerator`` and
  ``max_numerator`` (1 to 7) is suppressed. Zero is shown; England is never
  suppressed. Rows without a numerator are left alone. The same rule is applied to
  every indicator, including P08a/P08b whose numerators are distinct persons.
* **Secondary (complementary) suppression.** A suppressed figure must not be
  recoverable by subtraction. Rows are grouped by indicator, period type and period
  start. Within a group every parent row and its children form an additive relation
  ``parent = sum(children)``:

  - a region / operator / function row with the prisons mapped to it (a prison has
    three parents, so it sits in three relations);
  - the England row with all region rows, with all operator rows and with all
    function rows.

  Any relation with exactly one suppressed member (child or parent) would let that
  member be recovered, so one more member of the relation is suppressed: the
  smallest unsuppressed child (smallest positive numerator first, then denominator,
  then area code; zero cells only when no positive cell is left, because a zero
  complement protects little), or the parent when no child is left. England is never
  chosen; a relation that could only be protected by suppressing England is left as
  it is (this needs a parent with a single child at the level below England).
  This is repeated until no relation has a single unknown. Because the three
  hierarchies overlap, a cell can still be solvable from several relations together
  (e.g. prisons A, B, C with A+B, A+C and B+C all published); when
  ``check_linear_recovery`` is on, the group's relations are then solved as a linear
  system and a suppressed cell that the system determines exactly gets one more
  complement: from one of its own relations, or, when those are fully suppressed,
  from the relations the recovery goes through (e.g. a region whose prisons are
  exactly those of a published operator); the whole procedure repeats until stable.
  Cells that would be recoverable even if every row below England were suppressed
  (a region that is England's only region, and so on) cannot be protected while
  England is shown and are left alone. Nothing beyond exact recovery is attempted
  (for example, bounds implied by non-negative counts are not protected).

Parent mapping
--------------
``parents`` maps each prison code to its parent area codes by level, e.g.
``{"HMP1": {"region": "North West", "operator": "public", "function": "Reception"}}``,
or is a DataFrame with a ``prison_code`` column and one column per parent level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "DisclosurePolicy",
    "apply_disclosure_control",
    "primary_suppression",
    "secondary_suppression",
]


@dataclass(frozen=True)
class DisclosurePolicy:
    """Configuration of :func:`apply_disclosure_control`.

    Attributes:
        enabled: apply any suppression at all (False returns the rows unchanged, with
            ``suppressed`` all False).
        min_numerator, max_numerator: numerators in this closed range are suppressed.
        levels: levels at which the primary rule applies (England is not among them).
        secondary: apply complementary suppression.
        check_linear_recovery: also protect cells recoverable only by combining
            several relations (see module docstring).
        prison_level: level of the bottom of the hierarchy.
        parent_levels: levels that are parents of prisons (keys of the mapping).
        top_level: level of the single top row (England); never suppressed.
        group_columns: columns identifying one table (indicator and period).
        null_columns: columns nulled on suppressed rows (those present are nulled).
        reason_column: if set, a column of that name records "primary"/"secondary".
    """

    enabled: bool = True
    min_numerator: float = 1
    max_numerator: float = 7
    levels: tuple[str, ...] = ("prison", "region", "operator", "function")
    secondary: bool = True
    check_linear_recovery: bool = True
    prison_level: str = "prison"
    parent_levels: tuple[str, ...] = ("region", "operator", "function")
    top_level: str = "england"
    group_columns: tuple[str, ...] = ("indicator_id", "period_type", "period_start")
    null_columns: tuple[str, ...] = (
        "numerator",
        "denominator",
        "value",
        "lower_ci_95",
        "upper_ci_95",
        "lower_ci_99_8",
        "upper_ci_99_8",
        "comparison",
    )
    reason_column: str | None = None


def _parent_table(
    parents: Mapping[str, Mapping[str, str]] | pd.DataFrame, levels: Iterable[str]
) -> dict[str, dict[str, str]]:
    levels = tuple(levels)
    if isinstance(parents, pd.DataFrame):
        table: dict[str, dict[str, str]] = {}
        for record in parents.to_dict("records"):
            code = str(record["prison_code"])
            table[code] = {lv: str(record[lv]) for lv in levels if pd.notna(record.get(lv))}
        return table
    return {
        str(code): {lv: str(m[lv]) for lv in levels if lv in m and m[lv] is not None} for code, m in parents.items()
    }


def primary_suppression(frame: pd.DataFrame, policy: DisclosurePolicy = DisclosurePolicy()) -> np.ndarray:
    """Boolean array: rows below England whose numerator is in the suppression range."""
    if not policy.enabled:
        return np.zeros(len(frame), dtype=bool)
    numerator = pd.to_numeric(frame["numerator"], errors="coerce").to_numpy(dtype=float)
    level = frame["level"].astype(str).to_numpy()
    in_range = (numerator >= policy.min_numerator) & (numerator <= policy.max_numerator)
    return np.isin(level, list(policy.levels)) & (level != policy.top_level) & in_range


def _relations(
    group: pd.DataFrame, parent_of: dict[str, dict[str, str]], policy: DisclosurePolicy
) -> list[tuple[int, list[int]]]:
    """Additive relations ``(parent_row, child_rows)`` (positional indices into ``group``)."""
    level = group["level"].astype(str).to_numpy()
    code = group["area_code"].astype(str).to_numpy()
    index: dict[tuple[str, str], int] = {}
    for i, (lv, cd) in enumerate(zip(level, code, strict=True)):
        index.setdefault((lv, cd), i)
    relations: list[tuple[int, list[int]]] = []
    prisons = [i for i in range(len(group)) if level[i] == policy.prison_level]
    for parent_level in policy.parent_levels:
        children: dict[str, list[int]] = {}
        for i in prisons:
            p = parent_of.get(code[i], {}).get(parent_level)
            if p is not None:
                children.setdefault(p, []).append(i)
        for p, kids in sorted(children.items()):
            if (parent_level, p) in index:
                relations.append((index[(parent_level, p)], kids))
    tops = [i for i in range(len(group)) if level[i] == policy.top_level]
    if tops:
        top = tops[0]
        for parent_level in policy.parent_levels:
            kids = [i for i in range(len(group)) if level[i] == parent_level]
            if kids:
                relations.append((top, kids))
    return relations


def _choose_complement(
    members: list[int],
    parent: int | None,
    suppressed: np.ndarray,
    numerator: np.ndarray,
    denominator: np.ndarray,
    code: np.ndarray,
    level: np.ndarray,
    policy: DisclosurePolicy,
) -> int | None:
    """Smallest unsuppressed child (positive numerators first), else the parent."""
    candidates = [i for i in members if not suppressed[i] and level[i] != policy.top_level]
    if candidates:

        def key(i: int) -> tuple:
            num = numerator[i] if np.isfinite(numerator[i]) else np.inf
            den = denominator[i] if np.isfinite(denominator[i]) else np.inf
            return (num <= 0, num, den, code[i])

        return min(candidates, key=key)
    if parent is not None and not suppressed[parent] and level[parent] != policy.top_level:
        return parent
    return None


def _unknown_matrix(
    relations: list[tuple[int, list[int]]], suppressed: np.ndarray
) -> tuple[np.ndarray, list[int], list[int]]:
    """Coefficients of the suppressed cells in each relation (parent +1, children -1).

    Returns ``(matrix, unknown_cells, relation_numbers)`` keeping only relations that
    involve at least one suppressed cell.
    """
    unknowns = sorted({i for p, kids in relations for i in [p, *kids] if suppressed[i]})
    col = {cell: j for j, cell in enumerate(unknowns)}
    rows, used = [], []
    for r, (parent, kids) in enumerate(relations):
        row = np.zeros(len(unknowns))
        if suppressed[parent]:
            row[col[parent]] += 1.0
        for k in kids:
            if suppressed[k]:
                row[col[k]] -= 1.0
        if np.any(row):
            rows.append(row)
            used.append(r)
    matrix = np.vstack(rows) if rows else np.zeros((0, len(unknowns)))
    return matrix, unknowns, used


def _support(relations: list[tuple[int, list[int]]], suppressed: np.ndarray, cell: int) -> list[int]:
    """Relations combined to recover ``cell`` (non-zero weights of a least-squares solution)."""
    matrix, unknowns, used = _unknown_matrix(relations, suppressed)
    if cell not in unknowns or matrix.size == 0:
        return []
    target = np.zeros(len(unknowns))
    target[unknowns.index(cell)] = 1.0
    weights = np.linalg.lstsq(matrix.T, target, rcond=None)[0]
    return [r for r, w in zip(used, weights, strict=True) if abs(w) > 1e-9]


def _recoverable(relations: list[tuple[int, list[int]]], suppressed: np.ndarray) -> list[int]:
    """Suppressed cells determined exactly by the linear system of published relations."""
    matrix, unknowns, _ = _unknown_matrix(relations, suppressed)
    if matrix.size == 0:
        return []
    # e_j is in the row space of the matrix iff the orthogonal projection onto that
    # space (spanned by the leading left singular vectors of the transpose) keeps it
    u, s, _ = np.linalg.svd(matrix.T, full_matrices=False)
    rank = int(np.sum(s > 1e-9 * max(1.0, s[0])))
    projected = np.sum(u[:, :rank] ** 2, axis=1)
    return [cell for cell, p in zip(unknowns, projected, strict=True) if p > 1 - 1e-9]


def secondary_suppression(
    frame: pd.DataFrame,
    primary: np.ndarray,
    parents: Mapping[str, Mapping[str, str]] | pd.DataFrame,
    policy: DisclosurePolicy = DisclosurePolicy(),
) -> np.ndarray:
    """Boolean array of all suppressed rows (primary plus complements), iterated to a fixed point."""
    suppressed = np.asarray(primary, dtype=bool).copy()
    if not (policy.enabled and policy.secondary) or not suppressed.any():
        return suppressed
    parent_of = _parent_table(parents, policy.parent_levels)
    group_cols = [c for c in policy.group_columns if c in frame.columns]
    positions = np.arange(len(frame))
    keyed = frame.assign(_pos=positions)
    groups = keyed.groupby(group_cols, dropna=False, sort=False) if group_cols else [(None, keyed)]
    for _, group in groups:
        pos = group["_pos"].to_numpy()
        if not suppressed[pos].any():
            continue
        relations = _relations(group, parent_of, policy)
        if not relations:
            continue
        local = suppressed[pos].copy()
        numerator = pd.to_numeric(group["numerator"], errors="coerce").to_numpy(dtype=float)
        denominator = (
            pd.to_numeric(group["denominator"], errors="coerce").to_numpy(dtype=float)
            if "denominator" in group.columns
            else np.full(len(group), np.nan)
        )
        code = group["area_code"].astype(str).to_numpy()
        level = group["level"].astype(str).to_numpy()
        # cells recoverable whatever is suppressed (e.g. the only region under England),
        # computed only when needed
        unavoidable: set[int] | None = None
        blocked: set[int] = set()
        while True:
            changed = False
            for r, (parent, kids) in enumerate(relations):
                members = [parent, *kids]
                unknown = sum(bool(local[i]) for i in members)
                if unknown != 1 or r in blocked:
                    continue
                choice = _choose_complement(kids, parent, local, numerator, denominator, code, level, policy)
                if choice is None:
                    blocked.add(r)  # only England could protect it; England is shown
                    continue
                local[choice] = True
                changed = True
            if changed:
                continue
            if not policy.check_linear_recovery:
                break
            exposed = _recoverable(relations, local)
            if exposed:
                if unavoidable is None:
                    unavoidable = set(_recoverable(relations, level != policy.top_level))
                exposed = [c for c in exposed if c not in unavoidable]
            if not exposed:
                break
            cell = exposed[0]
            choice = None
            for r, (parent, kids) in enumerate(relations):
                if r in blocked or (cell != parent and cell not in kids):
                    continue
                choice = _choose_complement(kids, parent, local, numerator, denominator, code, level, policy)
                if choice is not None:
                    break
            if choice is None:
                # every relation holding the cell is fully suppressed: the cell is pinned
                # down through other relations; complement one of those instead
                support = _support(relations, local, cell)
                candidates = sorted(
                    {
                        i
                        for r in support
                        for i in [relations[r][0], *relations[r][1]]
                        if not local[i] and level[i] != policy.top_level
                    }
                )
                if candidates:
                    choice = _choose_complement(candidates, None, local, numerator, denominator, code, level, policy)
            if choice is None:
                unavoidable.add(cell)  # cannot be protected while England is shown
                continue
            local[choice] = True
        suppressed[pos] = local
    return suppressed


def apply_disclosure_control(
    rows: pd.DataFrame | Iterable[Mapping[str, object]],
    parents: Mapping[str, Mapping[str, str]] | pd.DataFrame,
    policy: DisclosurePolicy = DisclosurePolicy(),
) -> pd.DataFrame | list[dict[str, object]]:
    """Apply primary and secondary suppression to indicator rows.

    ``rows`` needs the columns ``level``, ``area_code`` and ``numerator`` (and, to group
    tables, ``indicator_id``, ``period_type``, ``period_start``); other columns are
    carried through. Returns the same kind of object as given (DataFrame or list of
    dicts), in the same row order, with ``suppressed`` added and the policy's
    ``null_columns`` set to null on suppressed rows.
    """
    as_records = not isinstance(rows, pd.DataFrame)
    frame = pd.DataFrame(list(rows)) if as_records else rows.copy()
    if len(frame) == 0:
        frame["suppressed"] = pd.Series(dtype=bool)
        return [] if as_records else frame
    primary = primary_suppression(frame, policy)
    suppressed = secondary_suppression(frame, primary, parents, policy)
    for column in policy.null_columns:
        if column in frame.columns and suppressed.any():
            series = frame[column]
            if pd.api.types.is_bool_dtype(series):
                frame[column] = series.astype("boolean")
            elif pd.api.types.is_integer_dtype(series):
                frame[column] = series.astype("Int64")
            elif pd.api.types.is_numeric_dtype(series):
                frame[column] = series.astype(float)
            elif not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
                frame[column] = series.astype(object)
            frame.loc[suppressed, column] = None
    frame["suppressed"] = suppressed
    if policy.reason_column:
        frame[policy.reason_column] = np.where(primary, "primary", np.where(suppressed, "secondary", None))
    if as_records:
        return frame.astype(object).where(frame.notna(), None).to_dict("records")
    return frame
