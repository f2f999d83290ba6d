"""The data contract in code: the single definition of every landing file.

Ingest, validation (SQL rules and the Great Expectations suites), the sample
generator and `docs/data-dictionary.md` all read these objects, so a change to
the contract is made here once. Nothing here touches Dagster or DuckDB; the SQL
fragments are plain strings that the validation stage assembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTRACT_VERSION = "1.0"

# Reason codes in precedence order: a quarantined row carries the first that applies.
REASONS: tuple[str, ...] = (
    "malformed_row",
    "missing_required_value",
    "invalid_value",
    "invalid_nhs_number",
    "unknown_prison",
    "outside_file_month",
    "sequence_error",
    "duplicate_id",
)

REGIONS = (
    "London",
    "South East",
    "South West",
    "Midlands",
    "East of England",
    "North West",
    "North East and Yorkshire",
)
FUNCTIONS = ("reception", "training", "open", "yoi", "female", "high_security")
OPERATORS = ("public", "contracted", "pfi")

# Patterns for values as written in the extracts (after trimming).
DATETIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
INTEGER_PATTERN = r"^[0-9]+$"
NUMBER_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
BOOLEAN_TRUE = ("true", "y", "yes", "1")
BOOLEAN_FALSE = ("false", "n", "no", "0")

# DuckDB types of the conformed columns, by contract type.
SQL_TYPES = {
    "text": "VARCHAR",
    "datetime": "TIMESTAMP",
    "date": "DATE",
    "bool": "BOOLEAN",
    "integer": "INTEGER",
    "number": "DOUBLE",
    "month": "VARCHAR",
    "nhs_number": "VARCHAR",
}


@dataclass(frozen=True)
class Column:
    """One landing column: its type as written, and the rules on its value."""

    name: str
    type: str
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    pattern: str | None = None

    @property
    def conformed_name(self) -> str:
        """NHS numbers never reach a table: they become `person_key`."""
        return "person_key" if self.type == "nhs_number" else self.name

    @property
    def sql_type(self) -> str:
        return SQL_TYPES[self.type]

    def rule_text(self) -> str:
        """The column's value rule in words, for the data dictionary."""
        parts = []
        if self.allowed:
            parts.append("one of: " + ", ".join(self.allowed))
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"{_num(self.minimum)} to {_num(self.maximum)}")
        elif self.minimum is not None:
            parts.append(("> " if self.exclusive_minimum else ">= ") + _num(self.minimum))
        if self.pattern and self.type == "text":
            parts.append(f"matches `{self.pattern}`")
        return "; ".join(parts)


@dataclass(frozen=True)
class RowRule:
    """A rule across columns of one row, expressed once as SQL over typed values.

    `violated` is a DuckDB boolean expression over the conformed (typed) column
    names that is true when the row breaks the rule.
    """

    reason: str
    name: str
    description: str
    violated: str
    columns: tuple[str, ...]
    # The same rule for Great Expectations: (column, "null" | "not_null", pandas row condition).
    expectation: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Table:
    """A landing table: an event extract (monthly files) or a reference table."""

    name: str
    description: str
    columns: tuple[Column, ...]
    id_column: str | None = None
    primary_datetime: str | None = None
    rules: tuple[RowRule, ...] = field(default_factory=tuple)
    is_event: bool = True
    optional_file: bool = False

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def links_to_reception(self) -> bool:
        """Event sources other than the receptions themselves carry a reception link."""
        return self.is_event and self.name != "reception_screening"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _text(name, description, required=False, allowed=None, pattern=None):
    return Column(name, "text", description, required, allowed=allowed, pattern=pattern)


def _dt(name, description, required=False):
    return Column(name, "datetime", description, required)


def _bool(name, description, required=False):
    return Column(name, "bool", description, required)


def _identity(id_column: str, what: str) -> tuple[Column, ...]:
    return (
        _text(id_column, f"Identifier of the {what}, unique within the source across all months.", True),
        Column("nhs_number", "nhs_number", "NHS number: 10 digits with a valid Modulus 11 check digit "
               "(spaces tolerated). Replaced on ingest by `person_key`, its keyed HMAC-SHA256.", True),
        _text("prison_code", "Prison where the event happened; must be in `reference/prisons.csv`.", True),
    )


def _sequence(name: str, earlier: str, later: str, reason_text: str) -> RowRule:
    return RowRule(
        "sequence_error",
        name,
        reason_text,
        f"{later} IS NOT NULL AND {earlier} IS NOT NULL AND {later} < {earlier}",
        (earlier, later),
    )


RECEPTION_SCREENING = Table(
    name="reception_screening",
    description="One row per reception into a prison, with the health screening that followed it.",
    id_column="reception_id",
    primary_datetime="reception_datetime",
    columns=(
        *_identity("reception_id", "reception"),
        _dt("reception_datetime", "When the person was received into the prison.", True),
        _text("reception_type", "New reception from court, or transfer from another prison.", True,
              allowed=("new", "transfer")),
        _text("sex", "Recorded sex.", True, allowed=("M", "F", "U")),
        Column("age", "integer", "Age in years at reception.", True, minimum=15, maximum=110),
        _dt("first_screen_datetime", "First reception health screen; null = not done."),
        _dt("second_screen_datetime", "Second health assessment; null = not done."),
        _dt("meds_reconciliation_datetime", "Medicines reconciliation; null = not done."),
        _bool("substance_misuse_need", "Substance misuse need identified; null = not recorded."),
        _dt("substance_treatment_start_datetime", "Start of substance misuse treatment."),
        _bool("self_harm_risk", "Risk of self-harm identified; null = not recorded."),
        _dt("mental_health_referral_datetime", "Referral to mental health services."),
        _bool("social_care_need", "Social care need identified; null = not recorded."),
        _dt("social_care_referral_datetime", "Referral to social care."),
        _dt("departure_datetime", "Release or transfer out, if known at extract time."),
    ),
    rules=(
        _sequence("first_screen_not_before_reception", "reception_datetime", "first_screen_datetime",
                  "The first screen is not before the reception."),
        _sequence("second_screen_not_before_reception", "reception_datetime", "second_screen_datetime",
                  "The second screen is not before the reception."),
        _sequence("second_screen_not_before_first", "first_screen_datetime", "second_screen_datetime",
                  "The second screen is not before the first."),
        _sequence("departure_not_before_reception", "reception_datetime", "departure_datetime",
                  "The departure is not before the reception."),
    ),
)

BBV_TESTING = Table(
    name="bbv_testing",
    description="Opt-out blood-borne virus testing: one row per person, virus and offer.",
    id_column="bbv_event_id",
    primary_datetime="offer_datetime",
    columns=(
        *_identity("bbv_event_id", "offer"),
        _text("virus", "Virus offered a test for.", True, allowed=("HBV", "HCV", "HIV")),
        _dt("offer_datetime", "When the test was offered.", True),
        _text("offer_outcome", "Outcome of the offer (not_eligible: known positive or recently tested).",
              True, allowed=("accepted", "declined", "not_eligible")),
        _dt("sample_datetime", "When the sample was taken; null = no sample. Only when accepted."),
        _text("result", "Test result (HCV: antibody); null = pending or no sample.",
              allowed=("positive", "negative", "invalid")),
        _text("hcv_rna_result", "HCV RNA result; HCV only.", allowed=("positive", "negative")),
        _dt("referral_datetime", "Referral to specialist treatment."),
    ),
    rules=(
        RowRule("invalid_value", "sample_only_when_accepted",
                "A sample is recorded only when the offer was accepted.",
                "sample_datetime IS NOT NULL AND offer_outcome <> 'accepted'",
                ("sample_datetime", "offer_outcome"), ("sample_datetime", "null", 'offer_outcome != "accepted"')),
        RowRule("invalid_value", "result_only_when_accepted",
                "A result is recorded only when the offer was accepted.",
                "result IS NOT NULL AND offer_outcome <> 'accepted'", ("result", "offer_outcome"),
                ("result", "null", 'offer_outcome != "accepted"')),
        RowRule("invalid_value", "result_only_with_sample", "A result is recorded only with a sample.",
                "result IS NOT NULL AND sample_datetime IS NULL", ("result", "sample_datetime"),
                ("result", "null", "sample_datetime.isnull()")),
        RowRule("invalid_value", "rna_result_only_for_hcv", "hcv_rna_result is recorded only for HCV.",
                "hcv_rna_result IS NOT NULL AND virus <> 'HCV'", ("hcv_rna_result", "virus"),
                ("hcv_rna_result", "null", 'virus != "HCV"')),
        _sequence("sample_not_before_offer", "offer_datetime", "sample_datetime",
                  "The sample is not taken before the offer."),
    ),
)

TB_SCREENING = Table(
    name="tb_screening",
    description="Tuberculosis symptom screens, chest X-rays and diagnoses.",
    id_column="tb_event_id",
    primary_datetime="event_datetime",
    columns=(
        *_identity("tb_event_id", "TB event"),
        _dt("event_datetime", "When the screen, film or diagnosis happened.", True),
        _text("event_type", "Kind of TB event.", True, allowed=("symptom_screen", "chest_xray", "diagnosis")),
        _text("result", "positive = symptoms present / abnormal film / active TB confirmed.",
              allowed=("positive", "negative")),
        _dt("referral_datetime", "Referral to the NHS TB service."),
    ),
)

SMOKING = Table(
    name="smoking",
    description="Smoking status and stop-smoking support events.",
    id_column="smoking_event_id",
    primary_datetime="event_datetime",
    columns=(
        *_identity("smoking_event_id", "smoking event"),
        _dt("event_datetime", "When the event happened.", True),
        _text("event_type", "Kind of smoking event.", True,
              allowed=("status_recorded", "nrt_offered", "vape_offered", "quit_date_set", "quit_4wk")),
        _text("smoking_status", "Smoking status; required on status_recorded, otherwise null.",
              allowed=("current", "ex", "never")),
        _text("outcome", "Four-week outcome; quit_4wk only.",
              allowed=("quit_self_reported", "quit_co_verified", "not_quit", "lost_to_follow_up")),
    ),
    rules=(
        RowRule("missing_required_value", "status_required_on_status_event",
                "smoking_status is required on status_recorded events.",
                "event_type = 'status_recorded' AND smoking_status IS NULL", ("smoking_status", "event_type"),
                ("smoking_status", "not_null", 'event_type == "status_recorded"')),
        RowRule("missing_required_value", "outcome_required_on_quit_4wk",
                "outcome is required on quit_4wk events.",
                "event_type = 'quit_4wk' AND outcome IS NULL", ("outcome", "event_type"),
                ("outcome", "not_null", 'event_type == "quit_4wk"')),
        RowRule("invalid_value", "status_only_on_status_event",
                "smoking_status is recorded only on status_recorded events.",
                "smoking_status IS NOT NULL AND event_type <> 'status_recorded'", ("smoking_status", "event_type"),
                ("smoking_status", "null", 'event_type != "status_recorded"')),
        RowRule("invalid_value", "outcome_only_on_quit_4wk", "outcome is recorded only on quit_4wk events.",
                "outcome IS NOT NULL AND event_type <> 'quit_4wk'", ("outcome", "event_type"),
                ("outcome", "null", 'event_type != "quit_4wk"')),
    ),
)

PRESCRIBING = Table(
    name="prescribing",
    description="Prescribing: one row per item issued.",
    id_column="item_id",
    primary_datetime="issue_datetime",
    columns=(
        *_identity("item_id", "item issued"),
        _dt("issue_datetime", "When the item was issued.", True),
        _text("bnf_code", "BNF presentation code, 9 to 15 letters and digits.", True,
              pattern=r"^[A-Za-z0-9]{9,15}$"),
        _text("drug_name", "Name of the drug as issued."),
        Column("quantity", "number", "Quantity issued.", True, minimum=0, exclusive_minimum=True),
        Column("days_supply", "integer", "Days of supply.", True, minimum=1, maximum=365),
        _bool("in_possession", "Issued to be held in possession by the patient.", True),
        _bool("ip_risk_assessed", "In-possession risk assessment done; null = not assessed."),
        _bool("indication_recorded", "Indication recorded; null = not recorded."),
    ),
)

PRISONS = Table(
    name="prisons",
    description="Establishments: one row per prison.",
    id_column="prison_code",
    is_event=False,
    columns=(
        _text("prison_code", "Prison code: 3 upper-case letters, unique.", True, pattern=r"^[A-Z]{3}$"),
        _text("prison_name", "Name of the establishment.", True),
        _text("region", "NHS England region.", True, allowed=REGIONS),
        _text("function", "Prison function.", True, allowed=FUNCTIONS),
        _text("operator", "Who runs the prison.", True, allowed=OPERATORS),
        _bool("has_xray", "Digital chest X-ray on site.", True),
        Column("opened", "date", "Date opened."),
        Column("closed", "date", "Date closed; null while open."),
    ),
)

POPULATION = Table(
    name="population",
    description="Average prison population: one row per prison per month.",
    id_column=None,
    is_event=False,
    columns=(
        _text("prison_code", "Prison code, in prisons.csv.", True),
        Column("month", "month", "Month, YYYY-MM.", True),
        Column("average_population", "integer", "Average population in the month.", True,
               minimum=0, exclusive_minimum=True),
    ),
)

DRUG_GROUPS = Table(
    name="drug_groups",
    description="BNF code prefixes of the drug groups. Optional: overrides the groups shipped "
                "with the project. An item belongs to every group whose prefix starts its bnf_code.",
    is_event=False,
    optional_file=True,
    columns=(
        _text("bnf_prefix", "Start of a BNF code.", True, pattern=r"^[A-Za-z0-9]{1,15}$"),
        _text("group", "Drug group name.", True),
    ),
)

DEFAULT_DRUG_GROUPS: tuple[tuple[str, str], ...] = (
    ("0408010G0", "gabapentinoid"),
    ("0408010AE", "gabapentinoid"),
    ("040702", "opioid_analgesic"),
    ("041003", "opioid_substitution"),
    ("0401", "hypnotic_anxiolytic"),
    ("0408010G0", "tradable"),
    ("0408010AE", "tradable"),
    ("040702", "tradable"),
    ("0401", "tradable"),
)

SOURCES: tuple[Table, ...] = (RECEPTION_SCREENING, BBV_TESTING, TB_SCREENING, SMOKING, PRESCRIBING)
REFERENCES: tuple[Table, ...] = (PRISONS, POPULATION, DRUG_GROUPS)
TABLES: dict[str, Table] = {t.name: t for t in (*SOURCES, *REFERENCES)}


def source(name: str) -> Table:
    return TABLES[name]


def conformed_columns(table: Table) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a conformed table, in order, lineage columns last."""
    cols = [(c.conformed_name, c.sql_type) for c in table.columns]
    if table.links_to_reception:
        cols.append(("reception_id", "VARCHAR"))
    if table.is_event:
        cols.append(("source_month", "VARCHAR"))
    cols += [("source_file", "VARCHAR"), ("source_line", "INTEGER")]
    return cols


def conformed_ddl(table: Table, schema: str = "conformed") -> str:
    cols = ",\n  ".join(f'"{n}" {t}' for n, t in conformed_columns(table))
    return f"CREATE TABLE IF NOT EXISTS {schema}.{table.name} (\n  {cols}\n)"
