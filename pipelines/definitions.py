"""The Dagster code location: every asset, check, job, schedule and sensor of the pipeline.

Definitions are merged from one small function per stage, so a stage can be
read (and tested) on its own.
"""

from __future__ import annotations

import dagster as dg

from assets import indicators, publication, sources, validation
from pipelines import resources
from pipelines.operations import operations_definitions
from pipelines.partitions import MONTHS

SOURCE_MONTH_SELECTION = dg.AssetSelection.groups("sources", "validation")
REFERENCE_SELECTION = dg.AssetSelection.groups("reference")


def source_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*sources.REFERENCE_ASSETS, *sources.RAW_ASSETS, *validation.CONFORMED_ASSETS,
                validation.expectation_results],
        jobs=[
            dg.define_asset_job("reference_job", selection=REFERENCE_SELECTION,
                                description="Load and validate the reference tables."),
            dg.define_asset_job("ingest_job", selection=SOURCE_MONTH_SELECTION, partitions_def=MONTHS,
                                description="Land and validate every source for one month."),
        ],
    )


def indicator_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=indicators.INDICATOR_ASSETS,
        jobs=[dg.define_asset_job("indicators_job", selection=dg.AssetSelection.groups("indicators"),
                                  partitions_def=MONTHS,
                                  description="Compute every indicator for one month from its source window.")],
    )


def publication_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=publication.PUBLICATION_ASSETS,
        jobs=[dg.define_asset_job("publication_job",
                                  selection=dg.AssetSelection.groups("validation_audit", "publication"),
                                  description="Audit the month's validation with Great Expectations, aggregate "
                                  "the indicators and publish them.")],
    )


def build_definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        source_definitions(),
        indicator_definitions(),
        publication_definitions(),
        operations_definitions(),  # refresh_job, monthly schedule, landing sensor, quality/runs
        dg.Definitions(resources=resources.build(), executor=dg.in_process_executor),
    )


defs = build_definitions()
