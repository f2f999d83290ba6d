"""Generated documents and suites must match the code that enforces them."""

import pytest

from pipelines import docs, settings

GENERATED = docs.generated_files()


@pytest.mark.parametrize("path", sorted(GENERATED), ids=lambda p: str(p.relative_to(settings.PROJECT_ROOT)))
def test_committed_document_is_not_stale(path):
    assert path.exists(), f"{path} is missing: run `prisonhealth docs`"
    assert path.read_text() == GENERATED[path], f"{path} is stale: run `prisonhealth docs`"


def test_data_dictionary_lists_every_reason_and_column():
    from pipelines import contract

    text = docs.render_data_dictionary()
    for reason in contract.REASONS:
        assert f"`{reason}`" in text
    for table in contract.TABLES.values():
        for column in table.columns:
            assert f"| `{column.name}` |" in text
