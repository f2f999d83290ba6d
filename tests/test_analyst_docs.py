"""Every SQL example in docs/analysts.md runs against the analysts' database and returns rows."""

import re

import duckdb
import pytest

from pipelines import settings

DOC = (settings.PROJECT_ROOT / "docs" / "analysts.md").read_text()
EXAMPLES = re.findall(r"```sql\n(.*?)```", DOC, flags=re.S)


def test_the_guide_has_examples():
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("sql", EXAMPLES, ids=[f"example{i + 1}" for i in range(len(EXAMPLES))])
def test_sql_example_runs_and_returns_rows(refreshed_sample, sql):
    with duckdb.connect(str(refreshed_sample.analyst), read_only=True) as conn:
        rows = conn.execute(sql).fetchall()
    assert rows, "the example returned nothing on the demo sample"


def test_python_example_runs(refreshed_sample):
    code = re.search(r"```python\n(.*?)```", DOC, flags=re.S).group(1)
    code = code.replace("out/analyst.duckdb", str(refreshed_sample.analyst))
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the documented example itself
    assert len(namespace["latest"]) == 12
