"""Seeded synthetic landing data: a fictional prison estate that matches the data contract.

`generate()` writes a landing directory (see `pipelines.contract` and the data
contract): `reference/prisons.csv`, `reference/population.csv` and one
`<source>/YYYY-MM.csv` per month for each of the five event sources. The
project's default drug groups are shipped with the code, so no
`drug_groups.csv` is written.

How the data is made
--------------------
A small agent-based simulation runs month by month and keeps only its state
between months (who is in which prison, their regular medicines, ids issued,
events already generated that fall in a later month), so the national scale
never holds more than a month of rows in memory.

- People are received from court (`new`) or from another prison (`transfer`),
  stay for a length drawn from a mixture of exponential distributions that
  depends on the prison's function, then are released or transferred; released
  people may be received again later. A feedback on new receptions and on
  transfer destinations keeps every prison near a slowly drifting target
  population. `population.csv` is the simulated average number in custody.
- Each reception gets its screening row and linked events (same person and
  prison, at or after the reception): BBV offers and samples, TB symptom screens
  and chest X-rays, smoking status, NRT / vape offers and quit attempts. Events
  that fall in a later month are written to that month's file.
- Everyone in custody gets their regular medicines issued at their supply
  interval (gabapentinoids, opioid analgesics, opioid substitution, hypnotics and
  other BNF chapters), re-started at the receiving prison after a transfer, plus
  acute items. TB diagnoses and quit dates set during a stay come from the
  population in custody, so some events are unlinked (nobody was received there
  within the data).
- Every rate behind an indicator varies between prisons (a general quality
  factor, a domain factor, a few outliers), over time (a trend per prison, some
  step changes, a winter dip, month-to-month noise) and, for BBV testing, with a
  national rise in uptake.
- Prisons and people are fictional: prison codes are `X..`, names are invented,
  and NHS numbers come from the 999 test range with valid Modulus 11 check digits.

Conventions of the written files
--------------------------------
- A month's extract is taken six weeks after the month ends: a departure is
  written only when it happened by then (null otherwise); follow-up fields in a
  row (second screen, referrals, samples, results) are complete.
- Times are whole minutes on the naive local clock. Four sources write
  `YYYY-MM-DDTHH:MM:SS`; prescribing (a pharmacy system) writes `YYYY-MM-DD HH:MM`.
- Booleans are `true`/`false`, except at about one prison in ten whose system
  writes `Y`/`N`. About 0.2% of NHS numbers are written with spaces (`999 123 4567`).
- RFC 4180 with `\\n` line ends; no field holds a line break, so a record is a line
  (drug names with commas are quoted).
- The demo is scaled to stay under 15 MB: somewhat smaller prisons, longer stays
  (fewer receptions per prisoner) and few medicines outside the indicator groups;
  its rates are the national ones.
- Existing files with the same paths are overwritten; nothing else under `out`
  is touched.

Faults
------
About 0.5% of the rows of each event file are made faulty on purpose, one fault
per row, each of a kind that the pipeline quarantines with a known reason
(`FAULT_KINDS`). Every injected fault is listed in `GenerationSummary.fault_log`
with its file and line, so the quarantine can be checked against it. Reference
files are clean and no fault ever breaks a whole file (an unclosed quote is only
ever put on the last line of a file).

Same seed and arguments, same bytes.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from pipelines import contract

__all__ = [
    "FAULT_KINDS",
    "FAULT_RATE",
    "SCALES",
    "GenerationSummary",
    "InjectedFault",
    "Scale",
    "generate",
    "is_valid_nhs_number",
    "nhs_check_digit",
]


class Scale(NamedTuple):
    prisons: int
    months: int
    start: str  # first month, YYYY-MM


SCALES: dict[str, Scale] = {
    "demo": Scale(prisons=12, months=24, start="2023-04"),  # two financial years, 2023-24 and 2024-25
    "national": Scale(prisons=115, months=120, start="2015-04"),
}


@dataclass(frozen=True)
class _Volume:
    """Knobs that keep the demo small on disk while its rates stay realistic."""

    population: float = 1.0  # multiplies target populations (kept within 300-1,600)
    stay: float = 1.0  # multiplies the longer stays: fewer receptions for the same population
    other_rx: float = 1.0  # regular medicines outside the indicator drug groups
    acute_rx: float = 1.0  # acute items per prisoner-month
    short_supply: float = 0.35  # share of regular medicines issued 7 or 14 days at a time (else 28)


_VOLUMES = {
    "demo": _Volume(population=0.5, stay=2.7, other_rx=0.05, acute_rx=0.03, short_supply=0.05),
    "national": _Volume(),
}

FAULT_RATE = 0.005
FAULT_KINDS: dict[str, str] = {  # kind injected -> reason the pipeline must quarantine it with
    "malformed_row": "malformed_row",
    "missing_required_value": "missing_required_value",
    "invalid_value": "invalid_value",
    "bad_nhs_check_digit": "invalid_nhs_number",
    "unknown_prison": "unknown_prison",
    "outside_file_month": "outside_file_month",
    "out_of_order_datetime": "sequence_error",
    "duplicate_id": "duplicate_id",
}
UNKNOWN_PRISON_CODES = ("XZZ", "XZY", "XZQ")  # never given to a generated prison

# --------------------------------------------------------------------------------------
# Time: int64 seconds since 1970 on the naive local clock, always whole minutes.

NULL = np.iinfo(np.int64).min
MINUTE, HOUR, DAY = 60, 3600, 86400
YEAR = 365.2425 * DAY
EXTRACT_LAG = 42 * DAY  # a month's extract is taken six weeks after the month ends
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
PRESCRIBING_DATETIME_FORMAT = "%Y-%m-%d %H:%M"  # the pharmacy system writes minutes


def _at(base: np.ndarray, delay: np.ndarray | float) -> np.ndarray:
    """base + delay seconds, floored to the minute (never earlier than a whole-minute base)."""
    t = base + np.asarray(delay).astype(np.int64)
    return t - t % MINUTE


def _day(t: np.ndarray) -> np.ndarray:
    return t - t % DAY


def _daytime(t: np.ndarray) -> np.ndarray:
    """Move night-time clinic activity forward into the working day (08:00-10:00 after 20:00 or before 08:00)."""
    sec = t % DAY
    early = sec < 8 * HOUR
    late = sec >= 20 * HOUR
    moved = np.where(early, _day(t) + 8 * HOUR + sec // 4,
                     np.where(late, _day(t) + DAY + 8 * HOUR + (sec - 20 * HOUR) // 2, t))
    return moved - moved % MINUTE


# --------------------------------------------------------------------------------------
# NHS numbers


def nhs_check_digit(first9: np.ndarray) -> np.ndarray:
    """Modulus 11 check digit of 9-digit numbers (weights 10..2); 10 means no valid number."""
    first9 = np.asarray(first9, dtype=np.int64)
    total = np.zeros_like(first9)
    for i, weight in enumerate(range(10, 1, -1)):
        total += (first9 // 10 ** (8 - i)) % 10 * weight
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def is_valid_nhs_number(text: str) -> bool:
    """10 digits (spaces allowed) whose last digit is the Modulus 11 check digit."""
    digits = "".join(str(text).split())
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return (0 if check == 11 else check) == int(digits[9])


class _NhsNumbers:
    """Hands out distinct valid NHS numbers from the 999 test range, shuffled in blocks of 100,000."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        # 999 0 to 999 9 first (the NHS test range), then 998 and so on: 99x is never issued
        self.prefixes = [p * 10 + d for p in (999, 998, 997, 996) for d in range(10)]
        self.block = np.empty(0, np.int64)
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos >= len(self.block):
                prefix = self.prefixes.pop(0)
                first9 = prefix * 100_000 + self.rng.permutation(100_000).astype(np.int64)
                check = nhs_check_digit(first9)
                ok = check != 10
                self.block = first9[ok] * 10 + check[ok]
                self.pos = 0
            got = self.block[self.pos : self.pos + k]
            self.pos += len(got)
            k -= len(got)
            out.append(got)
        return np.concatenate(out) if out else np.empty(0, np.int64)


# --------------------------------------------------------------------------------------
# The fictional estate

_FUNCS = contract.FUNCTIONS
_F = {f: i for i, f in enumerate(_FUNCS)}


def _by_function(values: dict[str, float]) -> np.ndarray:
    return np.array([values[f] for f in _FUNCS], dtype=float)


_NAME_HEADS = (
    "Alder", "Amber", "Ash", "Barrow", "Bram", "Brack", "Cald", "Chalk", "Clay", "Copp",
    "Culver", "Dray", "Elder", "Ember", "Fallow", "Farrow", "Fen", "Flint", "Gorse", "Hazel",
    "Heron", "Holly", "Kestle", "Lark", "Linden", "Marl", "Nether", "Osier", "Pike", "Quarry",
    "Raven", "Reed", "Rook", "Rush", "Sedge", "Sorrel", "Teal", "Thistle", "Wren", "Yarrow",
)  # fmt: skip
_NAME_TAILS = (
    "combe", "wick", "thorpe", "stead", "mere", "dale", "holt", "bury", "ridge", "leigh",
    "don", "brook", "hurst", "cote", "minster",
)  # fmt: skip
_NAME_SUFFIXES = ("", "", "", "", " Vale", " Park", " Heath", " Hill", " Fields", " Moor", " Common")
# Words of real establishments (prisons and secure hospitals) that a generated name must avoid.
REAL_ESTABLISHMENT_WORDS = frozenset(
    """altcourse ashfield ashwell ashworth askham aylesbury bedford belmarsh berwyn birmingham blantyre
    blundeston brinsford bristol brixton broadmoor bronzefield buckley bullingdon bullwood bure cardiff
    channings chelmsford coldingley cookham dartmoor deerbolt doncaster dovegate downview drake durham
    eastwood elmley erlestoke everthorpe exeter featherstone feltham ford forest fosse foston frankland
    garth gartree glen grendon guys haslar hatfield haverigg hewell highdown highpoint hindley hollesley
    holloway holme hull humber huntercombe isis kingston kirkham kirklevington lancaster latchmere leeds
    leicester lewes leyhill lincoln lindholme littlehey liverpool lowdham maidstone manchester medway
    millsike moorland morton newhall northallerton northumberland norwich nottingham oakwood onley parc
    parkhurst pentonville peterborough portland prescoed preston rampton ranby risley rochester rye send
    springhill stafford standford stocken styal sudbury swaleside swansea swinfen thameside thorn usk
    verne wakefield wandsworth warren wayland wealstun wellingborough werrington wetherby whatton
    whitemoor winchester woodhill wormwood wymott""".split()
)

_DEMO_LAYOUT = (  # function, operator, has_xray: every function, 2 pfi, 2 contracted, 8 public
    ("reception", "public", True),
    ("reception", "pfi", False),
    ("reception", "public", True),
    ("reception", "contracted", True),
    ("training", "public", False),
    ("training", "pfi", True),
    ("training", "public", False),
    ("open", "public", False),
    ("yoi", "public", True),
    ("female", "public", True),
    ("female", "contracted", False),
    ("high_security", "public", True),
)
_FUNCTION_SHARES = {"reception": 0.28, "training": 0.42, "open": 0.08, "yoi": 0.07, "female": 0.10,
                    "high_security": 0.05}
_POPULATION_RANGE = {"reception": (700, 1500), "training": (450, 1200), "open": (300, 600),
                     "yoi": (300, 700), "female": (300, 560), "high_security": (500, 850)}
_STAYS = {  # (share, mean days): a mixture of exponential lengths of stay; the first is never scaled
    "reception": ((0.10, 4.0), (0.55, 55.0), (0.35, 230.0)),
    "training": ((0.05, 20.0), (0.45, 220.0), (0.50, 600.0)),
    "open": ((0.20, 35.0), (0.80, 240.0), (0.0, 1.0)),
    "yoi": ((0.10, 7.0), (0.60, 110.0), (0.30, 300.0)),
    "female": ((0.15, 5.0), (0.55, 50.0), (0.30, 210.0)),
    "high_security": ((0.05, 30.0), (0.0, 1.0), (0.95, 1400.0)),
}
_NEW_SHARE = {"reception": 0.88, "training": 0.08, "open": 0.04, "yoi": 0.70, "female": 0.80,
              "high_security": 0.30}
_TRANSFER_OUT = {"reception": 0.36, "training": 0.22, "open": 0.05, "yoi": 0.30, "female": 0.12,
                 "high_security": 0.30}
_RETURNING = {"reception": 0.45, "training": 0.30, "open": 0.25, "yoi": 0.30, "female": 0.40,
              "high_security": 0.20}  # share of new receptions who have been in custody before
_DRUG_USE = {"reception": 0.50, "training": 0.42, "open": 0.30, "yoi": 0.35, "female": 0.55,
             "high_security": 0.30}
_OST = {"reception": 0.24, "training": 0.18, "open": 0.06, "yoi": 0.03, "female": 0.26,
        "high_security": 0.10}  # opioid substitution among people who use drugs
_SELF_HARM = {"reception": 0.12, "training": 0.10, "open": 0.06, "yoi": 0.15, "female": 0.22,
              "high_security": 0.09}
_SMOKER = {"reception": 0.83, "training": 0.80, "open": 0.72, "yoi": 0.78, "female": 0.74,
           "high_security": 0.76}
# Transfers in the male estate: weight of each destination function by origin function.
_FLOWS = {
    "reception": {"reception": 0.15, "training": 0.65, "open": 0.08, "yoi": 0.05, "high_security": 0.07},
    "training": {"reception": 0.10, "training": 0.45, "open": 0.40, "high_security": 0.05},
    "open": {"reception": 0.30, "training": 0.70},
    "yoi": {"reception": 0.15, "training": 0.35, "open": 0.05, "yoi": 0.45},
    "female": {},
    "high_security": {"reception": 0.05, "training": 0.55, "high_security": 0.40},
}
_SEASON_RECEPTIONS = np.array([1.02, 1.0, 1.04, 0.97, 1.0, 1.02, 1.03, 0.93, 1.0, 1.04, 1.02, 0.88])

# Rates behind the indicators: (base probability, sd between prisons on the logit scale, winter dip).
_DOMAINS: dict[str, tuple[float, float, float]] = {
    "first24": (0.91, 0.55, 0.25),  # P01a
    "second7": (0.76, 0.55, 0.20),  # P01b, P04a
    "record": (0.975, 0.60, 0.10),  # P02a
    "medrec": (0.84, 0.55, 0.10),  # P03a
    "continuity": (0.82, 0.55, 0.10),  # P03b
    "subst7": (0.85, 0.55, 0.15),  # P06b
    "status7": (0.93, 0.55, 0.15),  # P07a
    "nrt24": (0.84, 0.65, 0.15),  # P07b
    "quit": (0.55, 0.35, 0.00),  # P07c
    "safe_supply": (0.70, 0.65, 0.00),  # P08c
    "mh24": (0.86, 0.55, 0.10),  # P09a
    "social28": (0.85, 0.55, 0.10),  # P10a
    "tb24": (0.88, 0.55, 0.20),  # P11a
    "xray48": (0.72, 0.65, 0.15),  # P11b
    "tbref": (0.82, 0.55, 0.10),  # P11c
    "bbv_offer": (0.90, 0.55, 0.15),  # P12a
    "bbv_uptake": (0.70, 0.45, 0.10),  # P12b-d (base replaced by a national rise over the years)
    "bbv_ref": (0.80, 0.55, 0.10),  # P12f
}


# --------------------------------------------------------------------------------------
# Medicines: (bnf_code, drug_name, class, quantity per day or pack, supply days or 0, weight)
# class: 0 gabapentinoid, 1 opioid analgesic, 2 opioid substitution, 3 hypnotic/anxiolytic,
#        4 other regular medicine, 5 acute item. Codes look like BNF presentation codes.

_DRUGS: tuple[tuple[str, str, int, float, int, float], ...] = (
    ("0408010G0AAAAAA", "Gabapentin 100mg capsules", 0, 3, 0, 1),
    ("0408010G0AAABAB", "Gabapentin 300mg capsules", 0, 3, 0, 3),
    ("0408010G0AAACAC", "Gabapentin 400mg capsules", 0, 3, 0, 1),
    ("0408010G0AAAHAH", "Gabapentin 600mg tablets", 0, 3, 0, 1),
    ("0408010AEAAAAAA", "Pregabalin 25mg capsules", 0, 2, 0, 1),
    ("0408010AEAAABAB", "Pregabalin 50mg capsules", 0, 2, 0, 1),
    ("0408010AEAAACAC", "Pregabalin 75mg capsules", 0, 2, 0, 3),
    ("0408010AEAAAEAE", "Pregabalin 150mg capsules", 0, 2, 0, 2),
    ("0408010AEAAAGAG", "Pregabalin 300mg capsules", 0, 2, 0, 1),
    ("0407020C0AAAAAA", "Codeine 30mg tablets", 1, 4, 0, 3),
    ("0407020G0AAAAAA", "Dihydrocodeine 30mg tablets", 1, 4, 0, 3),
    ("0407020Q0AAAAAA", "Tramadol 50mg capsules", 1, 4, 0, 3),
    ("0407020M0AAAEAE", "Morphine sulfate 10mg/5ml oral solution", 1, 20, 0, 1),
    ("0407020ADAAAAAA", "Buprenorphine 5micrograms/hour transdermal patches", 1, 0.25, 28, 1),
    ("0410030A0AAAAAA", "Methadone 1mg/ml oral solution sugar free", 2, 60, 0, 6),
    ("0410030C0AAAAAA", "Buprenorphine 2mg sublingual tablets", 2, 4, 0, 2),
    ("0410030C0AAABAB", "Buprenorphine 8mg sublingual tablets", 2, 2, 0, 2),
    ("0410030AEAAAAAA", "Buprenorphine 64mg/0.18ml prolonged-release injection pre-filled syringes",
     2, 1 / 7, 7, 1),
    ("0401010Z0AAAAAA", "Zopiclone 3.75mg tablets", 3, 1, 0, 2),
    ("0401010Z0AAABAB", "Zopiclone 7.5mg tablets", 3, 1, 0, 3),
    ("0401020K0AAAHAH", "Diazepam 2mg tablets", 3, 3, 0, 2),
    ("0401020K0AAAIAI", "Diazepam 5mg tablets", 3, 2, 0, 2),
    ("0401010T0AAAAAA", "Temazepam 10mg tablets", 3, 1, 0, 1),
    ("0401020E0AAAAAA", "Chlordiazepoxide 10mg capsules", 3, 4, 0, 1),
    ("0401010ADAAAAAA", "Melatonin 2mg modified-release tablets", 3, 1, 0, 2),
    ("0403030Q0AAAAAA", "Sertraline 50mg tablets", 4, 1, 0, 6),
    ("0403030E0AAAAAA", "Fluoxetine 20mg capsules", 4, 1, 0, 4),
    ("0403030D0AAAAAA", "Citalopram 20mg tablets", 4, 1, 0, 4),
    ("0403040X0AAAAAA", "Mirtazapine 15mg tablets", 4, 1, 0, 5),
    ("0402010ABAAABAB", "Quetiapine 25mg tablets", 4, 2, 0, 3),
    ("0402010ADAAAEAE", "Olanzapine 10mg tablets", 4, 1, 0, 3),
    ("0404000M0AAAGAG", "Methylphenidate 10mg tablets", 4, 2, 0, 1),
    ("0301011R0AAAPAP", "Salbutamol 100micrograms/dose inhaler CFC free", 4, 1 / 28, 0, 5),
    ("0302000C0AAAFAF", "Beclometasone 100micrograms/dose inhaler CFC free", 4, 1 / 28, 0, 2),
    ("0601022B0AAABAB", "Metformin 500mg tablets", 4, 2, 0, 2),
    ("0206020A0AAAAAA", "Amlodipine 5mg tablets", 4, 1, 0, 2),
    ("0212000B0AAABAB", "Atorvastatin 20mg tablets", 4, 1, 0, 2),
    ("0205051R0AAAAAA", "Ramipril 2.5mg capsules", 4, 1, 0, 1),
    ("0103050P0AAAAAA", "Omeprazole 20mg gastro-resistant capsules", 4, 1, 0, 4),
    ("0103050L0AAAAAA", "Lansoprazole 30mg gastro-resistant capsules", 4, 1, 0, 2),
    ("0602010V0AAABAB", "Levothyroxine sodium 50microgram tablets", 4, 1, 0, 1),
    ("0408010C0AAAAAA", "Carbamazepine 200mg tablets", 4, 2, 0, 1),
    ("0906040G0AAAJAJ", "Colecalciferol 800unit capsules", 4, 1, 0, 2),
    ("1302010D0AAAAAA", "Emollient cream 500g", 4, 1 / 28, 0, 2),
    ("0407010H0AAAMAM", "Paracetamol 500mg tablets, 32", 5, 32, 0, 10),
    ("1001010J0AAADAD", "Ibuprofen 400mg tablets, 24", 5, 24, 0, 5),
    ("1001010P0AAAAAA", "Naproxen 250mg tablets, 28", 5, 28, 0, 2),
    ("0501013B0AAABAB", "Amoxicillin 500mg capsules, 21", 5, 21, 0, 3),
    ("0501012G0AAABAB", "Flucloxacillin 500mg capsules, 28", 5, 28, 0, 2),
    ("0501030I0AAABAB", "Doxycycline 100mg capsules, 8", 5, 8, 0, 1),
    ("0304010I0AAAAAA", "Cetirizine 10mg tablets, 30", 5, 30, 0, 2),
    ("0106020M0AAAAAA", "Senna 7.5mg tablets, 60", 5, 60, 0, 2),
    ("0104020L0AAAAAA", "Loperamide 2mg capsules, 30", 5, 30, 0, 1),
    ("0106040M0AAAAAA", "Lactulose 3.3g/5ml oral solution", 5, 300, 0, 1),
    ("0410020C0AAAAAA", "Nicotine 21mg/24hours transdermal patches, 7", 5, 7, 0, 3),
    ("1305020C0AAAAAA", "Hydrocortisone 1% cream", 5, 15, 0, 1),
)
_DRUG_BNF = [d[0] for d in _DRUGS]
_DRUG_NAME = [d[1] for d in _DRUGS]
_DRUG_CLASS = np.array([d[2] for d in _DRUGS])
_DRUG_QTY = np.array([d[3] for d in _DRUGS], dtype=float)
_DRUG_DAYS = np.array([d[4] for d in _DRUGS])
_DRUG_WEIGHT = np.array([d[5] for d in _DRUGS], dtype=float)
_N_SLOTS = 6  # regular-medicine slots per person: gaba, opioid, OST, hypnotic, other, other
_TRADABLE_CLASSES = (0, 1, 3)


# --------------------------------------------------------------------------------------
# Output layout of each source: contract column -> how to render it from the numeric rows.

_CODE = {t.name: {c.name: {v: i for i, v in enumerate(c.allowed)} for c in t.columns if c.allowed}
         for t in contract.SOURCES}


def _c(source: str, column: str, value: str) -> int:
    """Numeric code of an allowed value (its index in the contract's `allowed`)."""
    return _CODE[source][column][value]


_LAYOUT: dict[str, dict[str, tuple]] = {
    "reception_screening": {
        "reception_id": ("id", "R", 8),
        "nhs_number": ("nhs",),
        "prison_code": ("prison",),
        "reception_datetime": ("dt", "a"),
        "reception_type": ("code", "type"),
        "sex": ("code", "sex"),
        "age": ("int", "age"),
        "first_screen_datetime": ("dt", "first"),
        "second_screen_datetime": ("dt", "second"),
        "meds_reconciliation_datetime": ("dt", "medrec"),
        "substance_misuse_need": ("bool", "subst"),
        "substance_treatment_start_datetime": ("dt", "treat"),
        "self_harm_risk": ("bool", "sh"),
        "mental_health_referral_datetime": ("dt", "mh"),
        "social_care_need": ("bool", "sc"),
        "social_care_referral_datetime": ("dt", "scref"),
        "departure_datetime": ("dt", "dep"),
    },
    "bbv_testing": {
        "bbv_event_id": ("id", "B", 8),
        "nhs_number": ("nhs",),
        "prison_code": ("prison",),
        "virus": ("code", "virus"),
        "offer_datetime": ("dt", "t"),
        "offer_outcome": ("code", "outcome"),
        "sample_datetime": ("dt", "sample"),
        "result": ("code", "result"),
        "hcv_rna_result": ("code", "rna"),
        "referral_datetime": ("dt", "ref"),
    },
    "tb_screening": {
        "tb_event_id": ("id", "T", 8),
        "nhs_number": ("nhs",),
        "prison_code": ("prison",),
        "event_datetime": ("dt", "t"),
        "event_type": ("code", "type"),
        "result": ("code", "result"),
        "referral_datetime": ("dt", "ref"),
    },
    "smoking": {
        "smoking_event_id": ("id", "S", 8),
        "nhs_number": ("nhs",),
        "prison_code": ("prison",),
        "event_datetime": ("dt", "t"),
        "event_type": ("code", "type"),
        "smoking_status": ("code", "status"),
        "outcome": ("code", "outcome"),
    },
    "prescribing": {
        "item_id": ("id", "P", 9),
        "nhs_number": ("nhs",),
        "prison_code": ("prison",),
        "issue_datetime": ("dt", "t"),
        "bnf_code": ("drug", _DRUG_BNF),
        "drug_name": ("drug", _DRUG_NAME),
        "quantity": ("qty", "qty"),
        "days_supply": ("int", "days"),
        "in_possession": ("bool", "ip"),
        "ip_risk_assessed": ("bool", "ra"),
        "indication_recorded": ("bool", "ind"),
    },
}
for _t in contract.SOURCES:  # the layout must cover exactly the contract's columns
    assert tuple(_LAYOUT[_t.name]) == _t.column_names, _t.name
_TIME_KEY = {t.name: _LAYOUT[t.name][t.primary_datetime][1] for t in contract.SOURCES}

# Values that break a column's rule, as a real extract might carry them.
_BAD_VALUES: dict[str, tuple[str, ...]] = {
    "reception_type": ("readmission", "recall", "court"),
    "sex": ("X", "Male", "9"),
    "age": ("7", "121", "3O", "-1"),
    "virus": ("HCX", "HEPC", "HIV1"),
    "offer_outcome": ("refused", "DNA", "accept"),
    "result": ("equivocal", "reactive", "inconclusive"),
    "hcv_rna_result": ("detected", "indeterminate"),
    "event_type": ("xray", "status", "quit_12wk", "cxr"),
    "smoking_status": ("unknown", "occasional", "Current smoker"),
    "outcome": ("quit", "relapsed", "lost"),
    "bnf_code": ("N/A", "0408-010G0", "04080", "0408010G0AAABABX2"),
    "quantity": ("0", "-28", "ten", "1e3"),
    "days_supply": ("0", "400", "28.5", "-7"),
}
_BAD_BOOLS = ("maybe", "unknown", "N/K", "?")


# --------------------------------------------------------------------------------------
# Summary


@dataclass(frozen=True)
class InjectedFault:
    source: str
    month: str
    file: str  # path relative to the landing directory
    line: int  # physical line of the record (header = 1)
    kind: str
    reason: str  # the quarantine reason the contract gives it
    detail: str


@dataclass
class GenerationSummary:
    out: Path
    scale: str
    seed: int
    start: str
    months: int
    prisons: int
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0
    fault_log: list[InjectedFault] = field(default_factory=list)

    @property
    def files_written(self) -> int:
        return len(self.files)

    @property
    def event_rows(self) -> int:
        return sum(self.rows.get(t.name, 0) for t in contract.SOURCES)

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def lines(self) -> list[str]:
        end = (np.datetime64(self.start, "M") + self.months - 1).astype(str)
        out = [
            f"Synthetic landing data ({self.scale}, seed {self.seed}) in {self.out}",
            f"  {self.prisons} prisons, {self.months} months {self.start} to {end}",
            f"  {self.files_written} files, {self.bytes_written / 1e6:,.1f} MB, {self.seconds:,.1f} s",
        ]
        width = max(len(k) for k in self.rows) if self.rows else 10
        for name, n in self.rows.items():
            out.append(f"  {name:<{width}}  {n:>12,} rows")
        share = self.faults_injected / self.event_rows if self.event_rows else 0.0
        out.append(f"  faults injected: {self.faults_injected:,} ({share:.2%} of event rows)")
        for kind, n in sorted(self.faults.items()):
            out.append(f"    {kind:<24} {n:>8,}  -> {FAULT_KINDS[kind]}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# --------------------------------------------------------------------------------------
# Simulation state


class _People:
    """Everyone created so far: identity, lasting traits and current regular medicines."""

    FIELDS = {
        "nhs": np.int64, "sex": np.int8, "birth": np.int64, "drug": np.bool_, "smoke": np.int8,
        "hcv": np.bool_, "rna": np.bool_, "hbv": np.bool_, "hiv": np.bool_, "known": np.int8,
    }  # fmt: skip

    def __init__(self) -> None:
        self.n = 0
        cap = 1024
        for name, dtype in self.FIELDS.items():
            setattr(self, name, np.zeros(cap, dtype))
        self.tested = np.full((cap, 3), NULL, np.int64)  # last BBV sample per virus
        self.slots = np.full((cap, _N_SLOTS), -1, np.int16)

    def add(self, k: int) -> np.ndarray:
        need = self.n + k
        cap = len(self.nhs)
        if need > cap:
            new = max(need, cap * 2)
            for name in self.FIELDS:
                old = getattr(self, name)
                arr = np.zeros(new, old.dtype)
                arr[: self.n] = old[: self.n]
                setattr(self, name, arr)
            tested = np.full((new, 3), NULL, np.int64)
            tested[: self.n] = self.tested[: self.n]
            self.tested = tested
            slots = np.full((new, _N_SLOTS), -1, np.int16)
            slots[: self.n] = self.slots[: self.n]
            self.slots = slots
        idx = np.arange(self.n, need)
        self.n = need
        return idx


_ROSTER = {"x": np.int64, "p": np.int64, "a": np.int64, "e": np.int64, "done": np.bool_}


class _Queue:
    """Rows generated ahead of time, waiting for the month of their primary datetime."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, rows: dict[str, np.ndarray]) -> None:
        if len(rows[self.key]):
            self.parts.append(rows)

    def take(self, t1: int) -> dict[str, np.ndarray] | None:
        if not self.parts:
            return None
        rows = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        now = rows[self.key] < t1
        later = {k: v[~now] for k, v in rows.items()}
        self.parts = [later] if len(later[self.key]) else []
        return {k: v[now] for k, v in rows.items()}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(rows: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in rows.items()}


def _logit(p):
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


class _Generator:
    def __init__(self, out: Path, scale: str, seed: int, start: str, months: int, progress: bool) -> None:
        self.out = out
        self.scale = scale
        self.seed = seed
        self.start = start
        self.n_months = months
        self.progress = progress
        self.vol = _VOLUMES[scale]
        self.rng = np.random.default_rng(seed)
        self.summary = GenerationSummary(out=out, scale=scale, seed=seed, start=start, months=months,
                                         prisons=SCALES[scale].prisons)
        self.rows: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        base = np.datetime64(start, "M")
        self.month_labels = [str(base + i) for i in range(months)]
        edges = (base + np.arange(months + 1)).astype("datetime64[s]").astype(np.int64)
        self.t0s, self.t1s = edges[:-1], edges[1:]
        months_since_1970 = (base + np.arange(months)).astype(np.int64)
        self.moy = months_since_1970 % 12 + 1
        self.year = 1970 + months_since_1970 / 12  # fractional calendar year of each month
        self.people = _People()
        self.nhs_numbers = _NhsNumbers(self.rng)
        self.id_next = {t.name: 1 for t in contract.SOURCES}
        self.prev_clean_ids: dict[str, np.ndarray] = {t.name: np.empty(0, np.int64) for t in contract.SOURCES}
        self.queues = {name: _Queue("t") for name in ("bbv_testing", "tb_screening", "smoking")}

    # ---------------------------------------------------------------- estate
    def _make_estate(self, n: int) -> None:
        rng = self.rng
        if self.scale == "demo" and n == len(_DEMO_LAYOUT):
            funcs = [f for f, _, _ in _DEMO_LAYOUT]
            ops = [o for _, o, _ in _DEMO_LAYOUT]
            xray = np.array([x for _, _, x in _DEMO_LAYOUT])
        else:
            counts = {f: int(np.floor(s * n)) for f, s in _FUNCTION_SHARES.items()}
            for f in sorted(_FUNCTION_SHARES, key=lambda f: -(_FUNCTION_SHARES[f] * n % 1)):
                if sum(counts.values()) < n:
                    counts[f] += 1
            if counts["reception"] == 0:
                counts["reception"], counts["training"] = 1, counts["training"] - 1
            funcs = [f for f in _FUNCS for _ in range(counts[f])]
            funcs = [funcs[i] for i in rng.permutation(n)]
            ops = ["public"] * n
            private = [i for i, f in enumerate(funcs) if f in ("reception", "training", "female")]
            n_pfi, n_con = max(2, round(0.08 * n)), max(1, round(0.05 * n))
            chosen = rng.choice(private, min(len(private), n_pfi + n_con), replace=False)
            for k, i in enumerate(chosen):
                ops[i] = "pfi" if k < n_pfi else "contracted"
            p_xray = _by_function({"reception": 0.7, "training": 0.4, "open": 0.2, "yoi": 0.5, "female": 0.6,
                                   "high_security": 0.8})
            xray = rng.random(n) < p_xray[[_F[f] for f in funcs]]
        self.n_prisons = n
        self.func = np.array([_F[f] for f in funcs])
        self.operator = ops
        self.has_xray = np.asarray(xray, dtype=bool)
        regions = np.empty(n, dtype=object)
        order = rng.permutation(n)
        regions[order] = [contract.REGIONS[i % len(contract.REGIONS)] for i in range(n)]
        self.region = list(regions)
        # names and codes
        stems = [h + t for h in _NAME_HEADS for t in _NAME_TAILS]
        stems = [s for s in stems if s.lower() not in REAL_ESTABLISHMENT_WORDS]
        picked = rng.choice(len(stems), n, replace=False)
        names, codes = [], []
        for i in range(n):
            stem = stems[picked[i]]
            suffix = _NAME_SUFFIXES[rng.integers(len(_NAME_SUFFIXES))]
            prefix = "HMYOI" if funcs[i] == "yoi" else "HMP"
            names.append(f"{prefix} {stem}{suffix}")
            letters = [ch for ch in stem[1:].upper() if ch.isalpha()]
            code = None
            for ch in letters:
                cand = "X" + stem[0].upper() + ch
                if cand not in codes and cand[:2] != "XZ":
                    code = cand
                    break
            if code is None:
                for a in "ABCDEFGHIJKLMNOPQRSTUVWXY":
                    for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
                        if code is None and "X" + a + b not in codes:
                            code = "X" + a + b
            codes.append(code)
        self.codes = codes
        self.names = names
        self.yn = np.zeros(n, bool)  # a few prisons' systems write booleans as Y/N
        self.yn[rng.choice(n, max(1, round(0.1 * n)), replace=False)] = True
        private = np.array([o != "public" for o in ops])
        opened_year = np.where(private, rng.integers(1992, 2018, n), rng.integers(1842, 1996, n))
        self.opened = [f"{y}-{m:02d}-{d:02d}" for y, m, d in
                       zip(opened_year, rng.integers(1, 13, n), rng.integers(1, 29, n), strict=True)]
        # target populations: a slow drift around a level set by function
        lo = np.array([_POPULATION_RANGE[f][0] for f in funcs], dtype=float)
        hi = np.array([_POPULATION_RANGE[f][1] for f in funcs], dtype=float)
        level = rng.uniform(lo, hi) * self.vol.population
        years = np.arange(self.n_months) / 12
        drift = (rng.normal(0, 0.025, n)[:, None] * years
                 + 0.06 * np.sin(2 * np.pi * (years / rng.uniform(3, 7, n)[:, None] + rng.random(n)[:, None])))
        self.target = np.clip(level[:, None] * np.exp(drift), 380, 1450)
        # stays, reception rates and flows
        f = self.func
        comps = np.array([[c for c in _STAYS[name]] for name in _FUNCS])  # (F, 3, 2)
        self.stay_w = comps[:, :, 0]
        self.stay_mu = comps[:, :, 1] * np.array([1.0, self.vol.stay, self.vol.stay])
        self.stay_mean = (self.stay_w * self.stay_mu).sum(axis=1)  # days, by function
        self.rate = self.target * 30.4375 / self.stay_mean[f][:, None]  # receptions per month
        self.new_share = _by_function(_NEW_SHARE)[f]
        self.tout = _by_function(_TRANSFER_OUT)[f]
        flows = np.zeros((len(_FUNCS), len(_FUNCS)))
        for a, row in _FLOWS.items():
            for b, w in row.items():
                flows[_F[a], _F[b]] = w
        self.flows = flows
        # prescribing culture
        gm = np.exp(rng.normal(0, 0.35, n))
        out = rng.choice(n, 2, replace=False)
        gm[out[0]] *= 2.4
        gm[out[1]] *= 0.4
        self.gaba_mult = gm
        self.ip_tradable = _sigmoid(_logit(0.3) + rng.normal(0, 0.7, n))
        self.quit_mult = np.exp(rng.normal(0, 0.3, n))
        tb = np.exp(rng.normal(0, 0.35, n)) * np.where(self.func == _F["reception"], 1.4, 0.85)
        self.tb_mult = tb / np.average(tb, weights=self.target[:, 0])  # national rate stays ~200 per 100,000
        self._make_domains()

    def _make_domains(self) -> None:
        rng = self.rng
        n, m = self.n_prisons, self.n_months
        general = rng.normal(0, 1, n)
        frac = np.arange(m) / max(m - 1, 1)
        winter = np.isin(self.moy, (12, 1, 2)).astype(float)
        low = rng.choice(n, 2, replace=False)
        high = rng.choice(np.setdiff1d(np.arange(n), low), 1)
        self.prob: dict[str, np.ndarray] = {}
        for name, (base, sd, dip) in _DOMAINS.items():
            if name == "bbv_uptake":  # opt-out testing rolled out nationally: uptake rises
                base_m = 0.56 + 0.25 * np.clip((self.year - 2015.25) / 7, 0, 1) + 0.015 * np.clip(self.year - 2022.25,
                                                                                                   0, 5)
            else:
                base_m = np.full(m, base)
            level = sd * (0.55 * general + 0.85 * rng.normal(0, 1, n))
            trend = rng.normal(0, 0.45, n)
            has_step = rng.random(n) < 0.15
            step = has_step * rng.choice([-1.0, 1.0], n) * rng.uniform(0.6, 1.2, n)
            step_at = rng.integers(1, max(m, 2), n)
            noise = np.zeros((n, m))
            shocks = rng.normal(0, 0.13, (n, m))
            for j in range(m):
                noise[:, j] = (0.5 * noise[:, j - 1] if j else 0) + shocks[:, j]
            lg = (_logit(base_m)[None, :] + level[:, None] + trend[:, None] * frac[None, :]
                  + step[:, None] * (np.arange(m)[None, :] >= step_at[:, None]) - dip * winter[None, :] + noise)
            if rng.random() < 0.35:
                lg[low[0]] -= 1.8
            if rng.random() < 0.35:
                lg[low[1]] -= 1.4
            lg[high[0]] += 0.8
            self.prob[name] = np.clip(_sigmoid(lg), 0.01, 0.995)

    # ---------------------------------------------------------------- people
    def _new_people(self, p: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Create one person per reception at prison p, time a."""
        rng = self.rng
        k = len(p)
        idx = self.people.add(k)
        pe = self.people
        f = self.func[p]
        female = f == _F["female"]
        yoi = f == _F["yoi"]
        pe.nhs[idx] = self.nhs_numbers.take(k)
        pe.sex[idx] = np.where(female, 1, np.where(rng.random(k) < 0.003, 2, 0))
        age = np.where(yoi, rng.choice(np.arange(15, 21), k, p=[0.04, 0.08, 0.14, 0.22, 0.26, 0.26]),
                       18 + rng.gamma(2.0, 8.0, k) + np.where(f == _F["high_security"], 4, 0))
        age = np.clip(age, 15, 85)
        pe.birth[idx] = a - ((np.floor(age) + rng.random(k)) * YEAR).astype(np.int64)
        pe.drug[idx] = rng.random(k) < _by_function(_DRUG_USE)[f]
        smoker_base = _by_function(_SMOKER)[f] - 0.004 * (self.cur_year - 2015)
        r = rng.random(k)
        pe.smoke[idx] = np.where(r < smoker_base, 0, np.where(r < smoker_base + 0.5 * (1 - smoker_base), 1, 2))
        drug = pe.drug[idx]
        pe.hcv[idx] = rng.random(k) < np.where(drug, 0.125, 0.015)
        rna_share = 0.62 - 0.17 * np.clip((self.cur_year - 2015) / 10, 0, 1)  # treatment clears infections
        pe.rna[idx] = pe.hcv[idx] & (rng.random(k) < rna_share)
        pe.hbv[idx] = rng.random(k) < 0.006
        pe.hiv[idx] = rng.random(k) < np.where(drug, 0.006, 0.003)
        pe.known[idx] = 0
        return idx

    # ---------------------------------------------------------------- admissions
    def _draw_slots(self, x, p, a, transfer, mi):
        """Regular medicines at reception: new receptions get a fresh set, transfers keep theirs."""
        rng = self.rng
        n = len(x)
        pe = self.people
        drug = pe.drug[x]
        f = self.func[p]
        pg = 0.026 * self.gaba_mult[p] * np.where(drug, 1.55, 0.55)
        fresh = np.full((n, _N_SLOTS), -1, np.int16)
        has = [
            rng.random(n) < pg,
            None,
            drug & (rng.random(n) < _by_function(_OST)[f]),
            rng.random(n) < 0.032 * np.where(drug, 1.5, 0.6),
            rng.random(n) < 0.42 * self.vol.other_rx,
            None,
        ]
        has[1] = rng.random(n) < np.where(has[0], 0.27, 0.018)
        has[5] = has[4] & (rng.random(n) < 0.45)
        classes = (0, 1, 2, 3, 4, 4)
        for s, cls in enumerate(classes):
            members = np.flatnonzero(_DRUG_CLASS == cls)
            w = _DRUG_WEIGHT[members] / _DRUG_WEIGHT[members].sum()
            fresh[:, s] = np.where(has[s], rng.choice(members, n, p=w), -1)
        slots = np.where(transfer[:, None], pe.slots[x], fresh)
        # a receiving prison stops some gabapentinoids and starts a few
        stop = transfer & (slots[:, 0] >= 0) & (rng.random(n) < 0.08 / np.minimum(self.gaba_mult[p], 1.5))
        start = transfer & (slots[:, 0] < 0) & (rng.random(n) < 0.2 * pg)
        slots[:, 0] = np.where(stop, -1, np.where(start, fresh[:, 0], slots[:, 0]))
        pe.slots[x] = slots
        # supply interval and first issue at this prison
        interval = np.zeros((n, _N_SLOTS), np.int64)
        in_possession = np.zeros((n, _N_SLOTS), bool)
        first = np.full((n, _N_SLOTS), NULL, np.int64)
        cont = rng.random(n) < self.prob["continuity"][p, mi]
        for s in range(_N_SLOTS):
            d = slots[:, s]
            ok = d >= 0
            dc = np.where(ok, d, 0)
            fixed = _DRUG_DAYS[dc]
            cls = _DRUG_CLASS[dc]
            tradable = np.isin(cls, _TRADABLE_CLASSES)
            ip = np.where(tradable, rng.random(n) < self.ip_tradable[p], rng.random(n) < 0.72)
            in_possession[:, s] = ip & (cls != 2)
            short = rng.random(n) < self.vol.short_supply
            interval[:, s] = np.where(fixed > 0, fixed, np.where(short, np.where(ip, 14, 7), 28))
            delay_new = np.where(cls == 2, rng.uniform(1, 20, n), rng.uniform(3, 96, n)) * HOUR
            delay_tr = np.where(cont, rng.uniform(0.3, 23, n), rng.uniform(25, 170, n)) * HOUR
            first[:, s] = np.where(ok, _at(a, np.where(transfer, delay_tr, delay_new)), NULL)
        return slots, interval, in_possession, first

    def _admit(self, x, p, a, transfer, mi) -> dict[str, np.ndarray]:
        """Receive people: draw their stay and medicines, add them to the roster."""
        rng = self.rng
        n = len(x)
        f = self.func[p]
        comp = (rng.random(n)[:, None] > np.cumsum(self.stay_w[f], axis=1)).sum(axis=1)
        comp = np.minimum(comp, 2)
        stay = rng.exponential(self.stay_mu[f, comp]) * DAY
        e = _day(a + stay.astype(np.int64)) + _at(np.zeros(n, np.int64), rng.uniform(7.5, 11, n) * HOUR)
        e = np.where(e <= a, e + DAY, e)
        slots, interval, ip, first = self._draw_slots(x, p, a, transfer, mi)
        self._roster_add(x, p, a, e, slots, interval, ip, first)
        return {"x": x, "p": p, "a": a, "e": e, "transfer": transfer}

    def _roster_add(self, x, p, a, e, slots, interval, ip, first) -> None:
        add = {"x": x, "p": p, "a": a, "e": e, "done": np.zeros(len(x), bool),
               "slots": slots, "interval": interval, "ip": ip, "first": first}
        if not hasattr(self, "roster"):
            self.roster = add
        else:
            self.roster = {k: np.concatenate([self.roster[k], v]) for k, v in add.items()}

    def _warm_up(self) -> None:
        """People already in custody when the data starts: no reception row of theirs is written."""
        rng = self.rng
        self.cur_year = self.year[0]
        self.pool_x = np.empty(0, np.int64)
        self.pool_t = np.empty(0, np.int64)
        t0 = self.t0s[0]
        p = np.repeat(np.arange(self.n_prisons), np.round(self.target[:, 0]).astype(int))
        n = len(p)
        f = self.func[p]
        # residual stays of a stationary mixture: component weighted by share x mean
        w = self.stay_w[f] * self.stay_mu[f]
        comp = (rng.random(n)[:, None] * w.sum(axis=1)[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
        mu = self.stay_mu[f, np.minimum(comp, 2)]
        served = (rng.exponential(mu) * DAY).astype(np.int64)
        left = (rng.exponential(mu) * DAY).astype(np.int64)
        a = _at(t0 - served, 0) - DAY
        x = self._new_people(p, np.full(n, t0))  # ages as at the start of the data
        e = _day(t0 + left) + _at(np.zeros(n, np.int64), rng.uniform(7.5, 11, n) * HOUR)
        e = np.maximum(e, t0 + 8 * HOUR)
        slots, interval, ip, _ = self._draw_slots(x, p, a, np.zeros(n, bool), 0)
        first = np.where(slots >= 0, _at(t0 - (rng.random((n, _N_SLOTS)) * interval * DAY).astype(np.int64), 0),
                         NULL)
        self._roster_add(x, p, a, e, slots, interval, ip, first)
        self.arrivals = {k: np.empty(0, np.int64) for k in ("x", "p", "a")}

    # ---------------------------------------------------------------- flows of people
    def _counts_now(self, t: int) -> np.ndarray:
        r = self.roster
        here = (r["a"] <= t) & (r["e"] > t)
        return np.bincount(r["p"][here], minlength=self.n_prisons)

    def _new_receptions(self, mi: int, fb: np.ndarray, now: np.ndarray):
        rng = self.rng
        t0, t1 = self.t0s[mi], self.t1s[mi]
        lam = self.rate[:, mi] * self.new_share * fb * _SEASON_RECEPTIONS[self.moy[mi] - 1]
        lam = lam + 0.6 * np.maximum(0, self.target[:, mi] - now)  # fill a shortfall, e.g. with recalls
        k = rng.poisson(lam)
        p = np.repeat(np.arange(self.n_prisons), k)
        n = len(p)
        days = (t1 - t0) // DAY
        day0 = t0 // DAY
        dow = (day0 + np.arange(days) + 3) % 7  # Monday = 0
        w = np.array([1, 1, 1, 1, 1, 0.25, 0.04])[dow]
        day = rng.choice(days, n, p=w / w.sum())
        hour = np.clip(rng.normal(17.0, 2.2, n), 9.0, 23.9)
        a = _at(t0 + day * DAY, hour * HOUR)
        # returning people, drawn from those released earlier
        f = self.func[p]
        returning = rng.random(n) < _by_function(_RETURNING)[f]
        x = np.full(n, -1, np.int64)
        pe = self.people
        if len(self.pool_x):
            age = (t0 - pe.birth[self.pool_x]) / YEAR
            sex = pe.sex[self.pool_x]
            taken = np.zeros(len(self.pool_x), bool)
            groups = (
                (f == _F["female"], (sex == 1) & (age >= 18)),
                (f == _F["yoi"], (sex != 1) & (age >= 15) & (age < 21)),
                ((f != _F["female"]) & (f != _F["yoi"]), (sex != 1) & (age >= 18)),
            )
            for want, eligible in groups:
                rows = np.flatnonzero(want & returning)
                cand = np.flatnonzero(eligible & ~taken)
                k_take = min(len(rows), len(cand))
                if k_take:
                    pick = rng.choice(cand, k_take, replace=False)
                    taken[pick] = True
                    x[rng.choice(rows, k_take, replace=False)] = self.pool_x[pick]
            self.pool_x, self.pool_t = self.pool_x[~taken], self.pool_t[~taken]
        fresh = x < 0
        x[fresh] = self._new_people(p[fresh], a[fresh])
        return x, p, a

    def _destinations(self, x, src, t, fb, mi):
        """Choose the receiving prison of each transfer (-1 when there is none: released instead)."""
        rng = self.rng
        n = len(x)
        pe = self.people
        age = (t - pe.birth[x]) / YEAR
        female = pe.sex[x] == 1
        f_to = self.func
        appetite = self.rate[:, mi] * (1 - self.new_share) * fb
        base = self.flows[self.func][:, f_to] * appetite[None, :]  # (P, P)
        np.fill_diagonal(base, 0)
        is_yoi = f_to == _F["yoi"]
        is_fem = f_to == _F["female"]
        female_m = np.where((self.func == _F["female"])[:, None] & is_fem[None, :], appetite[None, :], 0.0)
        np.fill_diagonal(female_m, 0)
        mats = (
            female_m,  # women
            np.where(is_yoi[None, :], base + 0.5 * appetite[None, :] * (self.func == _F["yoi"])[:, None], 0.0),  # < 18
            base,  # 18-20: the male estate including YOIs
            np.where(is_yoi[None, :], 0.0, base),  # adults
        )
        cat = np.where(female, 0, np.where(age < 18, 1, np.where(age < 21, 2, 3)))
        dest = np.full(n, -1, np.int64)
        for c, mat in enumerate(mats):
            rows = np.flatnonzero(cat == c)
            if not len(rows):
                continue
            mat = mat.copy()
            np.fill_diagonal(mat, 0)
            w = mat[src[rows]]
            tot = w.sum(axis=1)
            ok = tot > 0
            cum = np.cumsum(w, axis=1) / np.where(ok, tot, 1)[:, None]
            u = rng.random(len(rows))
            d = (cum < u[:, None]).sum(axis=1)
            dest[rows] = np.where(ok, np.minimum(d, self.n_prisons - 1), -1)
        return dest

    def _relieve_pressure(self, mi: int, now: np.ndarray) -> None:
        """A prison well over its target population moves some long-stay people on early this month."""
        rng = self.rng
        t0, t1 = self.t0s[mi], self.t1s[mi]
        excess = np.floor(0.5 * (now - 1.05 * self.target[:, mi])).astype(np.int64)
        r = self.roster
        for p in np.flatnonzero(excess > 0):
            # received at least two months ago, so their reception rows are already extracted
            cand = np.flatnonzero((r["p"] == p) & (r["a"] < t0 - 60 * DAY) & (r["e"] >= t1))
            pick = rng.choice(cand, min(len(cand), int(excess[p])), replace=False)
            day = rng.integers(0, (t1 - t0) // DAY, len(pick))
            r["e"][pick] = _at(t0 + day * DAY, rng.uniform(7.5, 11, len(pick)) * HOUR)

    def _people_flows(self, mi: int) -> dict[str, np.ndarray]:
        """All receptions of month mi (new and transfers), with departures processed as they fall due."""
        rng = self.rng
        t0, t1 = self.t0s[mi], self.t1s[mi]
        self.cur_year = self.year[mi]
        now = self._counts_now(t0)
        self._relieve_pressure(mi, now)
        fb = np.clip((self.target[:, mi] / np.maximum(now, 1)) ** 2, 0.25, 4.0)
        x, p, a = self._new_receptions(mi, fb, now)
        arr = self.arrivals
        batch_x = np.concatenate([x, arr["x"]])
        batch_p = np.concatenate([p, arr["p"]])
        batch_a = np.concatenate([a, arr["a"]])
        batch_tr = np.concatenate([np.zeros(len(x), bool), np.ones(len(arr["x"]), bool)])
        later = {k: [] for k in ("x", "p", "a")}
        parts = []
        while True:
            if len(batch_x):
                parts.append(self._admit(batch_x, batch_p, batch_a, batch_tr, mi))
            r = self.roster
            dep = np.flatnonzero((r["e"] < t1) & ~r["done"])
            r["done"][dep] = True
            dx, dp, de = r["x"][dep], r["p"][dep], r["e"][dep]
            go = rng.random(len(dep)) < self.tout[dp]
            dest = np.full(len(dep), -1, np.int64)
            if go.any():
                dest[go] = self._destinations(dx[go], dp[go], de[go], fb, mi)
            moved = dest >= 0
            ta = _at(de, rng.uniform(1, 5, len(dep)) * HOUR)
            released = ~moved
            self.pool_x = np.concatenate([self.pool_x, dx[released]])
            self.pool_t = np.concatenate([self.pool_t, de[released]])
            inside = moved & (ta < t1)
            outside = moved & (ta >= t1)
            for k, v in (("x", dx), ("p", dest), ("a", ta)):
                later[k].append(v[outside])
            batch_x, batch_p, batch_a = dx[inside], dest[inside], ta[inside]
            batch_tr = np.ones(len(batch_x), bool)
            if not len(batch_x):
                break
        self.arrivals = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in later.items()}
        # forget releases more than six years ago
        keep = self.pool_t >= t1 - int(6 * YEAR)
        self.pool_x, self.pool_t = self.pool_x[keep], self.pool_t[keep]
        if not parts:
            parts.append(self._admit(*(np.empty(0, np.int64),) * 3, np.empty(0, bool), mi))
        recs = _concat(parts)
        order = np.lexsort((recs["x"], recs["a"]))
        return _take(recs, order)

    # ---------------------------------------------------------------- reception-based events
    def _reception_events(self, R: dict[str, np.ndarray], mi: int) -> dict[str, np.ndarray]:
        rng = self.rng
        x, p, a, e = R["x"], R["p"], R["a"], R["e"]
        n = len(x)
        pe = self.people
        f = self.func[p]

        def pr(name):
            return self.prob[name][p, mi]

        def u():
            return rng.random(n)

        def span(lo, hi):
            return rng.uniform(lo, hi, n)

        age = np.floor((a - pe.birth[x]) / YEAR).astype(np.int64)
        # screens
        on = u() < pr("first24")
        d1 = np.where(on, np.minimum(rng.exponential(1.5 * HOUR, n) + 10 * MINUTE, 23.9 * HOUR),
                      span(24.5 * HOUR, 96 * HOUR))
        first = _at(a, d1)
        has_first = (u() < 0.985) & (first < e)
        anchor = np.where(has_first, first, a)
        on = u() < pr("second7")
        d2 = np.where(on, span(5 * HOUR, 7 * DAY - HOUR), span(7 * DAY + HOUR, 30 * DAY))
        second = np.maximum(_daytime(_at(a, d2)), anchor + 30 * MINUTE)
        has_second = (u() > 0.05) & (second < e) & (has_first | (u() < 0.3))
        before = u() < pr("medrec")
        gap = np.where(has_second, second - anchor, 0)
        medrec = np.where(has_second & before, _at(anchor, u() * gap),
                          np.where(has_second, _at(second, span(HOUR, 5 * DAY)), _at(a, span(2 * HOUR, 10 * DAY))))
        medrec = np.where(u() < 0.004, _at(a, -span(HOUR, 3 * DAY)), medrec)  # from community records
        has_medrec = (u() < 0.94) & (medrec < e)
        rec = pr("record")

        def recorded():
            return np.where(has_first, u() < rec, u() < 0.25)

        subst_rec = recorded()
        subst = pe.drug[x] ^ (u() < 0.08)
        on = u() < pr("subst7")
        treat = _at(a, np.where(on, span(2 * HOUR, 7 * DAY), span(7 * DAY + HOUR, 35 * DAY)))
        has_treat = subst_rec & subst & (u() > 0.06) & (treat < e)
        sh_rec = recorded()
        sh = u() < _by_function(_SELF_HARM)[f] * np.where(pe.drug[x], 1.25, 0.8)
        on = u() < pr("mh24")
        mh = _at(a, np.where(on, span(10 * MINUTE, 24 * HOUR), span(25 * HOUR, 10 * DAY)))
        has_mh = sh_rec & sh & (u() > 0.04) & (mh < e)
        sc_rec = recorded()
        sc = u() < 0.04 + 0.04 * (age >= 50) + 0.16 * (age >= 60)
        on = u() < pr("social28")
        scref = _daytime(_at(a, np.where(on, span(DAY, 27.5 * DAY), span(28 * DAY + HOUR, 70 * DAY))))
        has_scref = sc_rec & sc & (u() > 0.07) & (scref < e)
        dep = np.where(e <= self.t1s[mi] + EXTRACT_LAG, e, NULL)
        rows = {
            "x": x, "p": p, "a": a,
            "type": np.where(R["transfer"], _c("reception_screening", "reception_type", "transfer"),
                             _c("reception_screening", "reception_type", "new")),
            "sex": pe.sex[x].astype(np.int64), "age": age,
            "first": np.where(has_first, first, NULL), "second": np.where(has_second, second, NULL),
            "medrec": np.where(has_medrec, medrec, NULL),
            "subst": np.where(subst_rec, subst.astype(np.int64), -1), "treat": np.where(has_treat, treat, NULL),
            "sh": np.where(sh_rec, sh.astype(np.int64), -1), "mh": np.where(has_mh, mh, NULL),
            "sc": np.where(sc_rec, sc.astype(np.int64), -1), "scref": np.where(has_scref, scref, NULL),
            "dep": dep,
        }  # fmt: skip
        self._bbv(x, p, a, e, mi, u, span, pr)
        self._tb(x, p, a, e, first, has_first, mi, u, span, pr)
        self._smoking(x, p, a, e, first, has_first, mi, u, span, pr)
        return rows

    def _bbv(self, x, p, a, e, mi, u, span, pr) -> None:
        rng = self.rng
        n = len(x)
        pe = self.people
        on = u() < pr("bbv_offer")
        late = ~on & (u() < 0.4)
        offer = _at(a, np.where(on, 72 * HOUR * rng.beta(1.2, 5.0, n), span(73 * HOUR, 21 * DAY)))
        offer = np.where(offer - a > 8 * HOUR, _daytime(offer), offer)
        has_offer = (on | late) & (offer < e)
        accept_p = np.clip(pr("bbv_uptake") / (pr("bbv_offer") * 0.93), 0.05, 0.98)
        common = u() < accept_p
        parts = []
        status = (pe.hbv[x], pe.hcv[x], pe.hiv[x])
        viruses = [_c("bbv_testing", "virus", v) for v in ("HBV", "HCV", "HIV")]
        for v, code in enumerate(viruses):
            known = (pe.known[x] >> v) & 1 == 1
            recent = (pe.tested[x, v] != NULL) & (a - pe.tested[x, v] < 90 * DAY)
            ne = (known & (u() < 0.85)) | (recent & (u() < 0.7))
            acc = np.where(u() < 0.92, common, u() < accept_p)
            outcome = np.where(ne, 2, np.where(acc, 0, 1))  # accepted, declined, not_eligible
            sample = _at(offer, np.where(u() < 0.7, 0, span(10 * MINUTE, 48 * HOUR)))
            sampled = has_offer & (outcome == 0) & (u() < 0.965) & (sample < e)
            res = np.where(status[v], 0, 1)  # positive, negative
            res = np.where(u() < 0.012, 2, res)  # invalid
            res = np.where(sampled & (u() > 0.015), res, -1)  # pending or no sample
            if v == 1:
                rna = np.where((res == 0) & (u() < 0.93), np.where(pe.rna[x], 0, 1), -1)
                rna = np.where((res == 1) & (u() < 0.02), 1, rna)
                positive = rna == 0
            else:
                rna = np.full(n, -1)
                positive = res == 0
            on = u() < pr("bbv_ref")
            ref = _daytime(_at(sample, np.where(on, span(2 * DAY, 27.5 * DAY), span(29 * DAY, 70 * DAY))))
            has_ref = positive & (u() > 0.08)
            keep = has_offer
            parts.append({
                "x": x[keep], "p": p[keep], "t": offer[keep], "virus": np.full(keep.sum(), code),
                "outcome": outcome[keep], "sample": np.where(sampled, sample, NULL)[keep], "result": res[keep],
                "rna": rna[keep], "ref": np.where(has_ref, ref, NULL)[keep],
            })  # fmt: skip
            tested = np.flatnonzero(sampled)
            pe.tested[x[tested], v] = sample[tested]
            pos = np.flatnonzero(positive | ((res == 0) & (v != 1)))
            pe.known[x[pos]] |= np.int8(1 << v)
        self.queues["bbv_testing"].add(_concat(parts))

    def _tb(self, x, p, a, e, first, has_first, mi, u, span, pr) -> None:
        n = len(x)
        on = u() < pr("tb24")
        use_first = has_first & (first - a <= 24 * HOUR)
        t = np.where(on, np.where(use_first, first, _at(a, span(20 * MINUTE, 24 * HOUR))),
                     _at(a, span(25 * HOUR, 10 * DAY)))
        has = (on | (u() < 0.5)) & (t < e)
        pos = u() < 0.03
        res = np.where(u() < 0.01, -1, np.where(pos, 0, 1))
        on = u() < pr("tbref")
        ref = _at(t, np.where(on, span(10 * MINUTE, 24 * HOUR), span(25 * HOUR, 10 * DAY)))
        has_ref = (res == 0) & (u() > 0.1)
        sym = {"x": x, "p": p, "t": t, "type": np.full(n, 0), "result": res, "ref": np.where(has_ref, ref, NULL)}
        on = u() < self.prob["xray48"][p, mi]
        tx = _daytime(_at(a, np.where(on, span(3 * HOUR, 40 * HOUR), span(49 * HOUR, 14 * DAY))))
        has_x = self.has_xray[p] & (on | (u() < 0.5)) & (tx < e)
        res_x = np.where(u() < 0.012, 0, 1)
        ref_x = _at(tx, span(HOUR, 7 * DAY))
        xray = {"x": x, "p": p, "t": tx, "type": np.full(n, 1), "result": res_x,
                "ref": np.where((res_x == 0) & (u() < 0.8), ref_x, NULL)}
        self.queues["tb_screening"].add(_concat([_take(sym, has), _take(xray, has_x)]))

    def _smoking(self, x, p, a, e, first, has_first, mi, u, span, pr) -> None:
        rng = self.rng
        n = len(x)
        pe = self.people
        S = "smoking"
        ev = {k: _c(S, "event_type", k) for k in _CODE[S]["event_type"]}
        on = u() < pr("status7")
        use_first = has_first & (first - a <= 7 * DAY)
        t = np.where(on, np.where(use_first, first, _at(a, span(30 * MINUTE, 7 * DAY))),
                     _at(a, span(7 * DAY + HOUR, 30 * DAY)))
        has = (on | (u() < 0.4)) & (t < e)
        status = np.where(u() < 0.03, rng.integers(0, 3, n), pe.smoke[x])
        parts = [{"x": x, "p": p, "t": t, "type": np.full(n, ev["status_recorded"]), "status": status,
                  "outcome": np.full(n, -1), "keep": has}]
        t2 = _at(t, span(DAY, 10 * DAY))
        status2 = np.where(u() < 0.3, rng.integers(0, 3, n), status)
        parts.append({"x": x, "p": p, "t": t2, "type": np.full(n, ev["status_recorded"]), "status": status2,
                      "outcome": np.full(n, -1), "keep": has & (u() < 0.04) & (t2 < e)})
        current = np.where(has, status == 0, pe.smoke[x] == 0)
        on = u() < pr("nrt24")
        tn = _at(a, np.where(on, span(15 * MINUTE, 24 * HOUR), span(25 * HOUR, 10 * DAY)))
        offered = current & (on | (u() < 0.6)) & (tn < e)
        year = self.year[mi]
        vape_share = 0.7 * np.clip((year - 2017.5) / 3, 0, 1)
        vape = u() < vape_share
        both = u() < 0.08
        none = np.full(n, -1)
        parts.append({"x": x, "p": p, "t": tn, "type": np.where(vape, ev["vape_offered"], ev["nrt_offered"]),
                      "status": none, "outcome": none, "keep": offered})
        parts.append({"x": x, "p": p, "t": tn, "type": np.where(vape, ev["nrt_offered"], ev["vape_offered"]),
                      "status": none, "outcome": none, "keep": offered & both & (vape_share > 0)})
        quitting = current & (u() < 0.22 * self.quit_mult[p])
        qd = _daytime(_at(a, span(2 * DAY, 28 * DAY)))
        parts += self._quit(x, p, qd, e, quitting & (qd < e), mi)
        self.queues[S].add(_concat([_take(part, part.pop("keep")) for part in parts]))

    def _quit(self, x, p, qd, e, keep, mi) -> list[dict[str, np.ndarray]]:
        """Quit dates set and their four-week follow-up (mostly 25-42 days later)."""
        rng = self.rng
        n = len(x)
        S = "smoking"
        r = rng.random(n)
        delay = np.where(r < 0.85, rng.uniform(25, 42, n), np.where(r < 0.93, rng.uniform(14, 24.9, n),
                                                                    rng.uniform(42.1, 75, n))) * DAY
        ft = _daytime(_at(qd, delay))
        ft = np.where(r < 0.85, np.minimum(ft, qd + 42 * DAY), ft)
        follow = keep & (rng.random(n) < 0.9) & (ft < e)
        success = rng.random(n) < self.prob["quit"][p, mi]
        o = {k: _c(S, "outcome", k) for k in _CODE[S]["outcome"]}
        outcome = np.where(success, np.where(rng.random(n) < 0.45, o["quit_co_verified"], o["quit_self_reported"]),
                           np.where(rng.random(n) < 0.6, o["not_quit"], o["lost_to_follow_up"]))
        none = np.full(n, -1)
        return [
            {"x": x, "p": p, "t": qd, "type": np.full(n, _c(S, "event_type", "quit_date_set")), "status": none,
             "outcome": none, "keep": keep},
            {"x": x, "p": p, "t": ft, "type": np.full(n, _c(S, "event_type", "quit_4wk")), "status": none,
             "outcome": outcome, "keep": follow},
        ]

    # ---------------------------------------------------------------- population-based events
    def _in_custody_events(self, mi: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Prescribing for the month, TB diagnoses and quit attempts during a stay; the month's population."""
        rng = self.rng
        t0, t1 = self.t0s[mi], self.t1s[mi]
        r = self.roster
        present = np.flatnonzero((r["a"] < t1) & (r["e"] > t0))
        x, p, a, e = r["x"][present], r["p"][present], r["a"][present], r["e"][present]
        lo, hi = np.maximum(a, t0), np.minimum(e, t1)
        exposure = (hi - lo) / (t1 - t0)
        population = np.bincount(p, weights=exposure, minlength=self.n_prisons)
        n = len(x)

        def within(k_idx):
            return _at(lo[k_idx], rng.random(len(k_idx)) * (hi[k_idx] - lo[k_idx]))

        # TB diagnoses: about 200 per 100,000 person-years, and some ruled out
        months_frac = exposure * (t1 - t0) / YEAR
        rate = 0.002 * self.tb_mult[p] * months_frac
        diag = np.flatnonzero(rng.random(n) < rate * 1.5)
        td = within(diag)
        res = np.where(rng.random(len(diag)) < 1 / 1.5, 0, 1)
        ref = _at(td, rng.uniform(0, 2 * DAY, len(diag)))
        self.queues["tb_screening"].add({
            "x": x[diag], "p": p[diag], "t": td, "type": np.full(len(diag), 2), "result": res,
            "ref": np.where((res == 0) & (rng.random(len(diag)) < 0.9), ref, NULL)})
        # quit dates set during a stay
        smoker = self.people.smoke[x] == 0
        qi = np.flatnonzero(smoker & (rng.random(n) < 0.006 * exposure * self.quit_mult[p]))
        parts = self._quit(x[qi], p[qi], within(qi), e[qi], np.ones(len(qi), bool), mi)
        self.queues["smoking"].add(_concat([_take(part, part.pop("keep")) for part in parts]))
        # prescribing: regular medicines at their interval, then acute items
        items = []
        for s in range(_N_SLOTS):
            d = r["slots"][present, s]
            ok = np.flatnonzero(d >= 0)
            f = r["first"][present[ok], s]
            step = r["interval"][present[ok], s] * DAY
            end = np.minimum(e[ok], t1)
            klo = np.maximum(0, -((f - t0) // step))  # ceil((t0 - f) / step)
            khi = -((f - end) // step)  # ceil((end - f) / step): issues f + k step < end
            cnt = np.maximum(0, khi - klo)
            rep = np.repeat(np.arange(len(ok)), cnt)
            k = klo[rep] + (np.arange(len(rep)) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            t = f[rep] + k * step[rep]
            t = np.where(k > 0, _at(_day(t), rng.uniform(8.5, 17, len(t)) * HOUR), t)
            keep = (t < e[ok][rep]) & (t >= t0) & (t < t1)
            j = ok[rep][keep]
            items.append({"i": j, "t": t[keep], "drug": d[j].astype(np.int64), "days": step[rep][keep] // DAY,
                          "ip": r["ip"][present[j], s]})
        acute_n = rng.poisson(self.vol.acute_rx * exposure)
        ai = np.repeat(np.arange(n), acute_n)
        acute = np.flatnonzero(_DRUG_CLASS == 5)
        w = _DRUG_WEIGHT[acute] / _DRUG_WEIGHT[acute].sum()
        ta = _daytime(within(ai))
        ok = ta < hi[ai]
        ai, ta = ai[ok], ta[ok]
        items.append({"i": ai, "t": ta, "drug": rng.choice(acute, len(ai), p=w),
                      "days": rng.integers(3, 15, len(ai)), "ip": rng.random(len(ai)) < 0.5})
        it = _concat(items)
        m = len(it["i"])
        drug = it["drug"]
        cls = _DRUG_CLASS[drug]
        days = it["days"]
        qty = np.where(cls == 5, _DRUG_QTY[drug], np.maximum(1, np.round(_DRUG_QTY[drug] * days)))
        qty = np.where(drug == _DRUG_BNF.index("0410030A0AAAAAA"), rng.integers(6, 24, m) * 5.0 * days, qty)
        ip = it["ip"]
        ip_prison = p[it["i"]]
        safe = rng.random(m) < self.prob["safe_supply"][ip_prison, mi]
        tradable = np.isin(cls, _TRADABLE_CLASSES)
        r2 = rng.random(m)
        ra = np.where(ip & tradable, np.where(safe, 1, np.where(r2 < 0.5, -1, 0)),
                      np.where(ip, np.where(r2 < 0.85, 1, np.where(r2 < 0.95, -1, 0)),
                               np.where(r2 < 0.2, 1, -1)))
        r3 = rng.random(m)
        ind = np.where(r3 < 0.82, 1, np.where(r3 < 0.86, 0, -1))
        rx = {"x": x[it["i"]], "p": ip_prison, "t": it["t"], "drug": drug, "qty": qty, "days": days,
              "ip": ip.astype(np.int64), "ra": ra, "ind": ind}
        return rx, population

    # ---------------------------------------------------------------- writing
    def _write(self, rel: str, data: bytes) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.summary.files.append(rel)
        self.summary.bytes_written += len(data)

    def _write_reference(self, populations: np.ndarray) -> None:
        prisons = pl.DataFrame({
            "prison_code": self.codes, "prison_name": self.names, "region": self.region,
            "function": [_FUNCS[i] for i in self.func], "operator": self.operator,
            "has_xray": ["true" if v else "false" for v in self.has_xray], "opened": self.opened,
            "closed": pl.Series([None] * self.n_prisons, dtype=pl.String),
        })  # fmt: skip
        assert tuple(prisons.columns) == contract.TABLES["prisons"].column_names
        self._write("reference/prisons.csv", prisons.write_csv().encode())
        self.rows["prisons"] = self.n_prisons
        pop = pl.DataFrame({
            "prison_code": np.repeat(np.array(self.codes), self.n_months),
            "month": np.tile(np.array(self.month_labels), self.n_prisons),
            "average_population": np.maximum(1, np.round(populations)).astype(np.int64).ravel(),
        })  # fmt: skip
        assert tuple(pop.columns) == contract.TABLES["population"].column_names
        self._write("reference/population.csv", pop.write_csv().encode())
        self.rows["population"] = pop.height

    def _render(self, source: str, data: dict[str, np.ndarray]) -> pl.DataFrame:
        table = contract.TABLES[source]
        n = len(data["x"])
        frame = pl.DataFrame({k: v for k, v in data.items()}).with_columns(
            _nhs=pl.Series(self.people.nhs[data["x"]]).cast(pl.String),
            _yn=pl.Series(self.yn[data["p"]]),
            _spaced=pl.Series(self.rng.random(n) < 0.002),
        )
        codes = dict(enumerate(self.codes))
        fmt = PRESCRIBING_DATETIME_FORMAT if source == "prescribing" else DATETIME_FORMAT
        exprs = []
        for col in table.columns:
            kind, *arg = _LAYOUT[source][col.name]
            if kind == "id":
                prefix, width = arg
                ex = pl.format(prefix + "{}", pl.col("_id").cast(pl.String).str.zfill(width))
            elif kind == "nhs":
                s = pl.col("_nhs")
                ex = pl.when(pl.col("_spaced")).then(
                    pl.concat_str([s.str.slice(0, 3), s.str.slice(3, 3), s.str.slice(6, 4)], separator=" ")
                ).otherwise(s)
            elif kind == "prison":
                ex = pl.col("p").replace_strict(codes, return_dtype=pl.String)
            elif kind == "dt":
                c = pl.col(arg[0])
                ex = pl.when(c != NULL).then(pl.from_epoch(c, time_unit="s").dt.strftime(fmt))
            elif kind == "code":
                ex = pl.col(arg[0]).replace_strict(dict(enumerate(col.allowed)), default=None,
                                                   return_dtype=pl.String)
            elif kind == "bool":
                c, yn = pl.col(arg[0]), pl.col("_yn")
                ex = (pl.when(c == 1).then(pl.when(yn).then(pl.lit("Y")).otherwise(pl.lit("true")))
                      .when(c == 0).then(pl.when(yn).then(pl.lit("N")).otherwise(pl.lit("false"))))
            elif kind == "int":
                ex = pl.col(arg[0]).cast(pl.String)
            elif kind == "qty":
                q = pl.col(arg[0])
                ex = pl.when(q == q.round()).then(q.cast(pl.Int64).cast(pl.String)).otherwise(
                    q.round(2).cast(pl.String))
            elif kind == "drug":
                ex = pl.col("drug").replace_strict(dict(enumerate(arg[0])), return_dtype=pl.String)
            else:  # pragma: no cover
                raise ValueError(kind)
            exprs.append(ex.cast(pl.String).alias(col.name))
        return frame.select(exprs)

    def _emit(self, source: str, data: dict[str, np.ndarray] | None, mi: int) -> None:
        """Sort, number, fault and write one source's file for month mi."""
        if data is None:
            data = {k: np.empty(0, np.int64) for k in ("x", "p", _TIME_KEY[source])}
        key = _TIME_KEY[source]
        assert len(data[key]) == 0 or (data[key].min() >= self.t0s[mi] and data[key].max() < self.t1s[mi])
        order = np.lexsort((data["x"], data["p"], data[key]))
        data = _take(data, order)
        n = len(order)
        data["_id"] = self.id_next[source] + np.arange(n, dtype=np.int64)
        self.id_next[source] += n
        month = self.month_labels[mi]
        rel = f"{source}/{month}.csv"
        if n == 0:
            empty = pl.DataFrame({c: pl.Series([], dtype=pl.String) for c in contract.TABLES[source].column_names})
            self._write(rel, empty.write_csv().encode())
            self.prev_clean_ids[source] = np.empty(0, np.int64)
            return
        faults = _FaultInjector(self, source, mi, rel, data)
        faults.numeric()
        df = self._render(source, data)
        df = faults.strings(df)
        text = faults.text(df)
        self._write(rel, text)
        self.rows[source] += faults.n_rows
        self.prev_clean_ids[source] = data["_id"][faults.clean_rows()]
        for fault in faults.log:
            self.faults[fault.kind] += 1
            self.summary.fault_log.append(fault)

    # ---------------------------------------------------------------- main loop
    def run(self) -> GenerationSummary:
        started = time.perf_counter()
        self._make_estate(SCALES[self.scale].prisons)
        self._warm_up()
        populations = np.zeros((self.n_prisons, self.n_months))
        progress = None
        if self.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn())
            progress.start()
            task = progress.add_task(f"{self.scale} sample", total=self.n_months)
        try:
            for mi in range(self.n_months):
                receptions = self._people_flows(mi)
                rows = self._reception_events(receptions, mi)
                rx, populations[:, mi] = self._in_custody_events(mi)
                self._emit("reception_screening", rows, mi)
                for source in ("bbv_testing", "tb_screening", "smoking"):
                    self._emit(source, self.queues[source].take(self.t1s[mi]), mi)
                self._emit("prescribing", rx, mi)
                r = self.roster
                keep = r["e"] >= self.t1s[mi]
                self.roster = {k: v[keep] for k, v in r.items()}
                if progress is not None:
                    progress.update(task, advance=1, description=f"{self.scale} sample {self.month_labels[mi]}")
        finally:
            if progress is not None:
                progress.stop()
        self._write_reference(populations)
        s = self.summary
        s.rows = {t.name: self.rows[t.name] for t in contract.SOURCES}
        s.rows["prisons"] = self.rows["prisons"]
        s.rows["population"] = self.rows["population"]
        s.faults = {k: self.faults[k] for k in FAULT_KINDS if self.faults[k]}
        s.seconds = time.perf_counter() - started
        return s


# --------------------------------------------------------------------------------------
# Fault injection


class _FaultInjector:
    """Chooses about FAULT_RATE of a file's rows and breaks each in one known way.

    Faults are applied in three passes: on the numeric rows (datetimes out of order
    or outside the month), on the rendered strings (NHS number, prison code,
    missing or invalid values, repeated ids), and on the CSV text (malformed rows,
    whole repeated lines). Every fault is logged with its final line number.
    """

    def __init__(self, gen: _Generator, source: str, mi: int, rel: str, data: dict[str, np.ndarray]) -> None:
        self.gen = gen
        self.rng = gen.rng
        self.source = source
        self.table = contract.TABLES[source]
        self.mi = mi
        self.rel = rel
        self.data = data
        self.n = len(data["x"])
        self.log: list[InjectedFault] = []
        kinds = list(FAULT_KINDS)
        if source not in ("reception_screening", "bbv_testing"):
            kinds.remove("out_of_order_datetime")
        rng = self.rng
        k = min(rng.binomial(self.n, FAULT_RATE), self.n // 2)
        self.pos = np.sort(rng.choice(self.n, k, replace=False)) if k else np.empty(0, np.int64)
        self.kind = [kinds[i] for i in rng.integers(0, len(kinds), k)]
        self.detail: dict[int, str] = {}
        self.dup_after: dict[int, int] = {}  # faulty copy of clean row r inserted after row r
        faulty = set(self.pos.tolist())
        # a malformed row now and then moves to the last line, where it can have an unclosed quote
        for i, kd in enumerate(self.kind):
            if kd == "malformed_row" and self.n - 1 not in faulty and rng.random() < 0.25:
                faulty.discard(int(self.pos[i]))
                self.pos[i] = self.n - 1
                faulty.add(self.n - 1)
                break
        # exact duplicates are extra lines: the chosen row stays clean, its copy is the fault
        for i, kd in enumerate(self.kind):
            if kd == "duplicate_id" and rng.random() < 0.3:
                self.dup_after[int(self.pos[i])] = i
        self.faulty = faulty - set(self.dup_after)

    def clean_rows(self) -> np.ndarray:
        mask = np.ones(self.n, bool)
        mask[list(self.faulty)] = False
        return mask

    def _record(self, row: int, kind: str, detail: str) -> None:
        self.detail[row] = f"{kind}|{detail}"

    # -- pass 1: numeric
    def numeric(self) -> None:
        rng, d = self.rng, self.data
        t0, t1 = self.gen.t0s[self.mi], self.gen.t1s[self.mi]
        key = _TIME_KEY[self.source]
        for row, kind in zip(self.pos.tolist(), self.kind, strict=True):
            if row in self.dup_after:
                continue
            if kind == "outside_file_month":
                if rng.random() < 0.7:
                    new = t0 - int(rng.uniform(1, 96)) * HOUR - int(rng.integers(0, 60)) * MINUTE
                else:
                    new = t1 + int(rng.uniform(1, 72)) * HOUR
                d[key][row] = new
                self._record(row, kind, f"{self.table.primary_datetime} moved out of {self.gen.month_labels[self.mi]}")
            elif kind == "out_of_order_datetime":
                if self.source == "reception_screening":
                    a = d["a"][row]
                    choice = rng.integers(0, 3)
                    if choice == 0 or d["second"][row] == NULL:
                        col = "first_screen_datetime"
                        d["first"][row] = a - int(rng.integers(1, 20 * 60)) * MINUTE
                        if d["second"][row] != NULL and d["second"][row] < d["first"][row]:
                            d["second"][row] = NULL
                    elif choice == 1:
                        col = "departure_datetime"
                        d["dep"][row] = a - int(rng.integers(1, 10 * 24 * 60)) * MINUTE
                    else:
                        col = "second_screen_datetime before first_screen_datetime"
                        d["first"][row] = d["second"][row] + int(rng.integers(10, 24 * 60)) * MINUTE
                    self._record(row, kind, col)
                else:  # bbv: a sample before the offer
                    d["outcome"][row] = _c("bbv_testing", "offer_outcome", "accepted")
                    d["sample"][row] = d["t"][row] - int(rng.integers(60, 3 * 24 * 60)) * MINUTE
                    self._record(row, kind, "sample_datetime before offer_datetime")

    # -- pass 2: strings
    def strings(self, df: pl.DataFrame) -> pl.DataFrame:
        rng = self.rng
        cols = {c: df.get_column(c) for c in df.columns}
        edits: dict[str, list[tuple[int, str | None]]] = {}
        clean = self.clean_rows()
        prev = self.gen.prev_clean_ids[self.source]
        prefix, width = _LAYOUT[self.source][self.table.id_column][1:]

        def put(col: str, row: int, value: str | None) -> None:
            edits.setdefault(col, []).append((row, value))

        for row, kind in zip(self.pos.tolist(), self.kind, strict=True):
            if row in self.dup_after:
                continue
            if kind == "bad_nhs_check_digit":
                digits = cols["nhs_number"][row].replace(" ", "")
                if rng.random() < 0.85:
                    wrong = (int(digits[9]) + int(rng.integers(1, 10))) % 10
                    value = digits[:9] + str(wrong)
                    self._record(row, kind, "wrong check digit")
                else:
                    value = digits[:9]
                    self._record(row, kind, "nine digits")
                put("nhs_number", row, value)
            elif kind == "unknown_prison":
                code = UNKNOWN_PRISON_CODES[rng.integers(len(UNKNOWN_PRISON_CODES))]
                put("prison_code", row, code)
                self._record(row, kind, f"prison_code {code}")
            elif kind == "missing_required_value":
                options = list(self.table.required_columns)
                if self.source == "smoking":
                    etype = cols["event_type"][row]
                    if etype == "status_recorded":
                        options += ["smoking_status"] * 3
                    elif etype == "quit_4wk":
                        options += ["outcome"] * 3
                col = options[rng.integers(len(options))]
                put(col, row, None)
                self._record(row, kind, f"{col} empty")
            elif kind == "invalid_value":
                col, value = self._bad_value(cols, row)
                put(col, row, value)
                self._record(row, kind, f"{col} = {value!r}")
            elif kind == "duplicate_id":
                earlier = np.flatnonzero(clean[:row])
                if len(prev) and (not len(earlier) or rng.random() < 0.35):
                    dup = int(prev[rng.integers(len(prev))])
                    where = "previous month"
                elif len(earlier):
                    dup = int(self.data["_id"][earlier[rng.integers(len(earlier))]])
                    where = "same file"
                else:  # nothing earlier to repeat: an invalid value instead
                    col, value = self._bad_value(cols, row)
                    put(col, row, value)
                    self._record(row, "invalid_value", f"{col} = {value!r}")
                    continue
                value = prefix + str(dup).zfill(width)
                put(self.table.id_column, row, value)
                self._record(row, kind, f"id {value} repeated from {where}")
        if not edits:
            return df
        out = []
        for c in df.columns:
            s = cols[c]
            for row, value in edits.get(c, []):
                s = s.scatter(row, value)
            out.append(s)
        return pl.DataFrame(out)

    def _bad_value(self, cols: dict[str, pl.Series], row: int) -> tuple[str, str]:
        rng = self.rng
        skip = {self.table.id_column, "nhs_number", "prison_code", "drug_name"}
        options = [c for c in self.table.columns if c.name not in skip]
        col = options[rng.integers(len(options))]
        if col.name in _BAD_VALUES:
            bad = _BAD_VALUES[col.name]
            return col.name, bad[rng.integers(len(bad))]
        if col.type == "bool":
            return col.name, _BAD_BOOLS[rng.integers(len(_BAD_BOOLS))]
        if col.type == "datetime":
            s = cols[col.name][row] or cols[self.table.primary_datetime][row]
            if rng.random() < 0.6:  # day-first, as a spreadsheet would write it
                return col.name, f"{s[8:10]}/{s[5:7]}/{s[0:4]} {s[11:16]}"
            return col.name, f"{s[0:8]}{int(s[8:10]) + 31:02d}{s[10:]}"  # no such day
        raise ValueError(f"no bad value for {col.name}")  # pragma: no cover

    # -- pass 3: text
    def text(self, df: pl.DataFrame) -> bytes:
        rng = self.rng
        n = self.n
        # final order: every row, and after some clean rows a repeated copy of them (the fault)
        order = np.arange(n)
        copies = sorted(self.dup_after)
        if copies:
            order = np.sort(np.concatenate([np.arange(n) * 2, np.array(copies) * 2 + 1]))
            src = order // 2
            df = df.select(pl.all().gather(src))
            is_copy = order % 2 == 1
        else:
            src = order
            is_copy = np.zeros(n, bool)
        line_of_row = np.zeros(n, np.int64)
        line_of_row[src[~is_copy]] = np.flatnonzero(~is_copy) + 2
        line_of_copy = dict(zip(src[is_copy].tolist(), (np.flatnonzero(is_copy) + 2).tolist(), strict=True))
        self.n_rows = len(src)
        buf = io.BytesIO()
        df.write_csv(buf)
        body = buf.getvalue()
        # no field holds a newline, so physical line k (header = 1) ends at the k-th newline
        ends = np.flatnonzero(np.frombuffer(body, np.uint8) == 10)
        edits: dict[int, bytes] = {}
        last_line = self.n_rows + 1
        for row, kind in zip(self.pos.tolist(), self.kind, strict=True):
            if row in self.dup_after:
                line = line_of_copy[row]
                self.log.append(self._fault(line, kind, f"line {int(line_of_row[row])} repeated whole"))
                continue
            line = int(line_of_row[row])
            if kind == "malformed_row":
                start = int(ends[line - 2]) + 1
                raw = body[start : int(ends[line - 1])]
                if line == last_line and rng.random() < 0.6:
                    cut = raw.rfind(b",")
                    edits[line] = raw[: cut + 1] + b'"' + raw[cut + 1 :]
                    what = "quote left open in the last field"
                elif rng.random() < 0.5:
                    edits[line] = raw[: raw.rfind(b",")]
                    what = "last field missing"
                else:
                    edits[line] = raw + (b",", b",N", b",0")[rng.integers(3)]
                    what = "extra field"
                self.log.append(self._fault(line, kind, what))
            else:
                kd, detail = self.detail[row].split("|", 1)
                self.log.append(self._fault(line, kd, detail))
        self.log.sort(key=lambda f: f.line)
        if not edits:
            return body
        pieces, pos = [], 0
        for line in sorted(edits):
            start, end = int(ends[line - 2]) + 1, int(ends[line - 1])
            pieces += [body[pos:start], edits[line]]
            pos = end
        pieces.append(body[pos:])
        return b"".join(pieces)

    def _fault(self, line: int, kind: str, detail: str) -> InjectedFault:
        return InjectedFault(self.source, self.gen.month_labels[self.mi], self.rel, line, kind, FAULT_KINDS[kind],
                             detail)


# --------------------------------------------------------------------------------------


def generate(
    out: Path,
    scale: str = "demo",
    seed: int = 20240401,
    start: str | None = None,
    months: int | None = None,
    progress: bool = False,
) -> GenerationSummary:
    """Write a synthetic landing directory under `out` and return what was written.

    scale: "demo" (12 prisons, 24 months from 2023-04, a few MB) or "national"
    (115 prisons, 120 months from 2015-04, several GB). start (YYYY-MM) and months
    override the scale's defaults. The same arguments always give the same bytes.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    sc = SCALES[scale]
    start = start or sc.start
    try:
        np.datetime64(start, "M")
    except ValueError as exc:
        raise ValueError(f"start must be YYYY-MM, not {start!r}") from exc
    if len(start) != 7 or start[4] != "-":
        raise ValueError(f"start must be YYYY-MM, not {start!r}")
    months = sc.months if months is None else int(months)
    if months < 1:
        raise ValueError("months must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return _Generator(out, scale, int(seed), start, months, progress).run()
