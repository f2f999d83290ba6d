"""NHS numbers in, person keys out: the only place a raw NHS number is handled.

Raw numbers exist only in memory between reading a record and hashing it; every
text that leaves this module (person keys, problems, masked rows) is safe to store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

KEY_VARIABLE = "PRISONHEALTH_PSEUDONYMISATION_KEY"
DEVELOPMENT_KEY = "prisonhealth-development-key-not-for-real-data"

_TRANS_36 = bytes(x ^ 0x36 for x in range(256))
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# Ten or more digits, optionally separated by spaces/tabs (how NHS numbers get written).
# The same pattern masks values in quarantine details on the SQL side.
DIGIT_RUN_PATTERN = r"[0-9](?:[ \t]*[0-9]){9,}"
_DIGIT_RUN = re.compile(DIGIT_RUN_PATTERN)

log = logging.getLogger(__name__)


def pseudonymisation_key() -> tuple[bytes, bool]:
    """The HMAC key and whether it is the development fallback."""
    value = os.environ.get(KEY_VARIABLE)
    if value:
        return value.encode("utf-8"), False
    return DEVELOPMENT_KEY.encode("utf-8"), True


def warn_if_development_key() -> bool:
    """Say loudly when person keys are made with the public development key."""
    _, is_development = pseudonymisation_key()
    if is_development:
        log.warning(
            "%s is not set: person keys use the fixed DEVELOPMENT key. "
            "Never load real patient data this way.",
            KEY_VARIABLE,
        )
    return is_development


def modulus11_valid(digits: str) -> bool:
    """NHS Modulus 11: weights 10..2 on the first nine digits; 11 means 0, 10 is invalid."""
    if len(digits) != 10 or not (digits.isascii() and digits.isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def nhs_number_problem(value: str | None) -> str | None:
    """Why a written NHS number is not valid, or None. Never echoes the digits."""
    if value is None or value == "":
        return "empty"
    compact = value.replace(" ", "")
    if len(compact) != 10 or not (compact.isascii() and compact.isdigit()):
        return "not 10 digits after removing spaces"
    if not modulus11_valid(compact):
        return "failed Modulus 11 check digit"
    return None


class Pseudonymiser:
    """Keyed HMAC-SHA256 of the NHS number with all white space removed."""

    CACHE_SIZE = 1_000_000

    def __init__(self, key: bytes | None = None):
        self.key = key if key is not None else pseudonymisation_key()[0]
        # HMAC (RFC 2104) with the keyed inner and outer hash states computed once: the same
        # digest as hmac.new(key, message, sha256), without rebuilding them for every number.
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(self.key).digest() if len(self.key) > block else self.key).ljust(block, b"\0")
        self._inner = hashlib.sha256(padded.translate(_TRANS_36))
        self._outer = hashlib.sha256(padded.translate(_TRANS_5C))
        self._keys: dict[str, str] = {}  # people recur across rows, files and months

    def person_key(self, value: str) -> str:
        return self.person_keys([value])[0]

    def person_keys(self, values: list[str]) -> list[str]:
        """person_key of each value (one call for a whole column)."""
        keys, inner_state, outer_state = self._keys, self._inner, self._outer
        if len(keys) + len(values) > self.CACHE_SIZE:
            keys.clear()
        out = []
        for value in values:
            key = keys.get(value)
            if key is None:
                inner = inner_state.copy()
                # str.split() splits at exactly the characters \s matches: all white space goes.
                inner.update("".join(value.split()).encode("utf-8"))
                outer = outer_state.copy()
                outer.update(inner.digest())
                key = keys[value] = outer.hexdigest()
            out.append(key)
        return out

    def digit_runs(self, value: str) -> str:
        """Replace every run of ten or more digits in a value by a short keyed hash.

        An NHS number keyed into the wrong column (or glued to another value) is still
        an NHS number, so no column may store such a run. A hash rather than a mask
        keeps long numeric identifiers distinct, so they still work as ids.
        """
        return _DIGIT_RUN.sub(lambda m: "#" + self.person_key(m.group(0))[:16], value)


def mask_nhs_numbers(text: str) -> str:
    """Mask every run of ten or more digits (spaces allowed between them) in free text,
    and make undecodable bytes printable so the text can be stored."""
    if _UNDECODABLE.search(text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _DIGIT_RUN.sub(lambda m: "#" * len(m.group(0)), text)
