"""Loading landing files through the real ingest and validation code, without Dagster."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from pipelines import contract, ingest, validation, warehouse
from pipelines.pseudonymise import Pseudonymiser

CORPUS = Path(__file__).parent / "corpus"
TEST_KEY = b"prisonhealth-test-key"


class Landing:
    """A landing directory in tmp_path with the corpus reference tables, and a warehouse on it."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(CORPUS / "reference", root / "reference")
        self.conn = duckdb.connect()
        warehouse.create_all(self.conn)
        self.pseudonymiser = Pseudonymiser(TEST_KEY)
        for table in contract.REFERENCES:
            self.load_reference(table.name)

    def load_reference(self, name: str):
        table = contract.source(name)
        outcome = ingest.ingest(self.conn, self.root, table, None, self.pseudonymiser)
        if outcome.status in ("loaded", "unchanged"):
            validation.validate(self.conn, table, None)
        return outcome

    def deliver(self, source: str, month: str, content: bytes | str | Path) -> Path:
        folder = self.root / source
        folder.mkdir(exist_ok=True)
        path = folder / f"{month}.csv"
        if isinstance(content, Path):
            shutil.copy(content, path)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def load(self, source: str, month: str):
        """Ingest and validate one month as the assets do; returns (file outcome, month outcome)."""
        table = contract.source(source)
        self.conn.execute("BEGIN")
        loaded = ingest.ingest(self.conn, self.root, table, month, self.pseudonymiser)
        checked = None
        if loaded.status != "rejected":
            checked, _ = validation.validate_partition(self.conn, table, month)
        self.conn.execute("COMMIT")
        return loaded, checked

    def quarantine(self, source: str, month: str | None = None) -> list[tuple[int, str]]:
        where = "month = ?" if month else "month IS NULL"
        params = [source] + ([month] if month else [])
        return self.conn.execute(
            f"SELECT line, reason FROM quality.quarantine WHERE source = ? AND {where} ORDER BY line", params
        ).fetchall()

    def conformed_lines(self, source: str, month: str) -> list[int]:
        return [r[0] for r in self.conn.execute(
            f"SELECT source_line FROM conformed.{source} WHERE source_month = ? ORDER BY 1", [month]).fetchall()]

    def file_load(self, source: str, month: str) -> dict:
        row = self.conn.execute(
            "SELECT status, rows_read, rows_loaded, rows_quarantined, message FROM quality.file_loads "
            "WHERE source = ? AND month = ?", [source, month]).fetchone()
        return dict(zip(("status", "read", "loaded", "quarantined", "message"), row, strict=True))
