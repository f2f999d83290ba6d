"""NHS number handling against known vectors."""

import hashlib
import hmac

import pytest

from pipelines.pseudonymise import Pseudonymiser, mask_nhs_numbers, modulus11_valid, nhs_number_problem


@pytest.mark.parametrize(("number", "valid"), [
    ("9434765919", True),   # the NHS Data Dictionary's worked example
    ("4010232137", True),
    ("9876543210", True),   # remainder 0: check digit 11 becomes 0
    ("9434765918", False),  # wrong check digit
    ("0000000060", False),  # check digit would be 10: never valid
    ("943476591", False),
    ("94347659190", False),
    ("943476591X", False),
])
def test_modulus_11(number, valid):
    assert modulus11_valid(number) is valid


def test_problems_never_echo_the_digits():
    assert nhs_number_problem("943 476 5919") is None
    assert nhs_number_problem("") == "empty"
    assert nhs_number_problem("12345") == "not 10 digits after removing spaces"
    assert nhs_number_problem("9434765918") == "failed Modulus 11 check digit"


def test_person_key_is_hmac_sha256_of_the_number_without_white_space():
    # Reference value from `printf 9434765919 | openssl dgst -sha256 -hmac prisonhealth-test-key`.
    expected = "bb362bd771ae14cea93ff558b35095c59af0669762120506bf3f4e587d6992a7"
    pseudonymiser = Pseudonymiser(b"prisonhealth-test-key")
    assert pseudonymiser.person_key("9434765919") == expected
    assert pseudonymiser.person_key("943 476 5919") == expected
    assert pseudonymiser.person_key("943\t476 5919 ") == expected
    # RFC 4231 test case 2 checks the primitive itself.
    assert hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRISONHEALTH_PSEUDONYMISATION_KEY", "prisonhealth-test-key")
    assert Pseudonymiser().person_key("9434765919").startswith("bb362bd7")
    monkeypatch.delenv("PRISONHEALTH_PSEUDONYMISATION_KEY")
    # `printf 9434765919 | openssl dgst -sha256 -hmac prisonhealth-development-key-not-for-real-data`
    assert Pseudonymiser().person_key("9434765919").startswith("8854147af18c107a")


def test_masking_hides_runs_of_ten_or_more_digits():
    assert mask_nhs_numbers("R1,943 476 5919,XAA,2024-01-05T10:00,30") == "R1,############,XAA,2024-01-05T10:00,30"
    assert mask_nhs_numbers("12345678901") == "###########"
    assert mask_nhs_numbers("123456789") == "123456789"


def test_digit_runs_in_other_columns_become_distinct_keyed_hashes():
    pseudonymiser = Pseudonymiser(b"prisonhealth-test-key")
    assert pseudonymiser.digit_runs("R9434765919") == "R#bb362bd771ae14ce"
    assert pseudonymiser.digit_runs("ITEM-20240100012345") != pseudonymiser.digit_runs("ITEM-20240100012346")
    assert pseudonymiser.digit_runs("2024-01-05T10:00") == "2024-01-05T10:00"


def test_unicode_digits_are_not_nhs_digits():
    assert nhs_number_problem("943476591²") == "not 10 digits after removing spaces"
    assert modulus11_valid("９４３４７６５９１９") is False
