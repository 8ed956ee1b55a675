"""Phone numbers as typed, read into one E.164 form per person."""

from __future__ import annotations

import pytest

from hub.leads.phones import looks_like_phone, normalize_phone

UZ = "+998901234567"
FULL_WIDTH = {ord(d): chr(0xFF10 + int(d)) for d in "0123456789"}

VALID = [
    # Uzbekistan, every way people type the same mobile.
    ("+998 90 123 45 67", "UZ", UZ),
    ("90 123 45 67", "UZ", UZ),
    ("901234567", "UZ", UZ),
    ("8 (90) 123-45-67", "UZ", UZ),  # old Soviet trunk prefix, gone from phonenumbers' UZ data
    ("+998 (90) 123-45-67", "UZ", UZ),
    ("00998901234567", "UZ", UZ),
    ("998901234567", "UZ", UZ),
    ("  +998-90-123-45-67  ", "UZ", UZ),
    ("901234567", "uz", UZ),
    ("8 (90) 123-45-67".translate(FULL_WIDTH), "UZ", UZ),  # full-width digits (CJK keyboards)
    # International typed without "+", in another region's context.
    ("994501234567", "UZ", "+994501234567"),
    ("998901234567", "RU", UZ),
    ("+998 90 123 45 67", "RU", UZ),
    ("8 10 998 90 123 45 67", "RU", UZ),  # Russia's own "8~10" international prefix
    ("00998901234567", None, UZ),
    ("998901234567", None, UZ),
    # Other countries.
    ("(202) 555-0143", "US", "+12025550143"),
    ("+1 202 555 0143 ext 12", "US", "+12025550143"),
    ("202-555-0143 x12", "US", "+12025550143"),
    ("+7 916 123-45-67", None, "+79161234567"),
    ("8 916 123 45 67", "RU", "+79161234567"),
    ("+7 916 123-45-67 доб. 5", "RU", "+79161234567"),
    # Brazil's ninth digit: old 8-digit mobiles match the current 9-digit form.
    ("+55 11 98765-4321", None, "+5511987654321"),
    ("+55 11 8765-4321", None, "+5511987654321"),
    ("+55 21 6123-4567", None, "+5521961234567"),
    ("11 8765-4321", "BR", "+5511987654321"),
    ("5511987654321", "UZ", "+5511987654321"),
    ("+55 11 3765-4321", None, "+551137654321"),  # landline: unchanged
    ("+55 11 2765-4321", None, "+551127654321"),  # landline: unchanged
    # Mexico's old "1" before mobiles.
    ("+52 1 55 1234 5678", None, "+525512345678"),
    ("+52 55 1234 5678", None, "+525512345678"),
    ("1 55 1234 5678", "MX", "+525512345678"),
]

INVALID = [
    ("123", "UZ"),
    ("+998 12", "UZ"),
    ("abc", "UZ"),
    ("call 90 123 45 67", "UZ"),  # letters: not a phone at all
    ("", "UZ"),
    ("   ", "UZ"),
    ("+0000000000", None),
    ("+0000000000", "UZ"),
    ("901234567", None),  # national without a region: no reading is valid
    ("90 123 45 67", "RU"),  # a UZ national number read in Russia is not a valid number there
    ("1-800-FLOWERS", "US"),  # letters are not turned into digits
    ("+998 90 123 45 67 89", "UZ"),  # too long: not trimmed into a valid number
    ("+998 90 123 45 6", "UZ"),  # too short
    ("9" * 40, "UZ"),
    ("+998 90 123 45 67 " * 5, "UZ"),
    ("90*123*45*67", "UZ"),
    ("+998+901234567", "UZ"),
    ("901234567", "XX"),  # unknown region, and not valid as international either
    ("+55 11 8765-432", None),  # old BR form, but a digit short
]


@pytest.mark.parametrize(("raw", "region", "expected"), VALID)
def test_normalize_phone(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(("raw", "region"), INVALID)
def test_invalid_is_none(raw: str, region: str | None) -> None:
    assert normalize_phone(raw, region) is None


@pytest.mark.parametrize(("raw", "region", "expected"), VALID)
def test_normalize_is_idempotent(raw: str, region: str | None, expected: str) -> None:
    first = normalize_phone(raw, region)
    assert first is not None
    for again_region in (region, None, "US"):
        assert normalize_phone(first, again_region) == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+998 90 123 45 67", True),
        ("8 (90) 123-45-67", True),
        ("+998 12 345", True),  # phone-shaped even though not valid
        ("202-555-0143 ext. 12", True),
        ("abc", False),
        ("", False),
        ("12", False),
        ("ivan@example.com", False),
        ("1-800-FLOWERS", False),
    ],
)
def test_looks_like_phone(raw: str, expected: bool) -> None:
    assert looks_like_phone(raw) is expected
