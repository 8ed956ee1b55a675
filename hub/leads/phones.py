"""Phone numbers as people type them, turned into one canonical E.164 form per person."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber

# E.164 allows 15 digits; a leading "00" or a trunk prefix adds a few more as typed.
_MIN_DIGITS = 3
_MAX_DIGITS = 17
_MAX_INPUT_CHARS = 64

# An extension at the end ("ext. 12", "x12", "#12", "доб. 12"); E.164 has no place for it.
_EXTENSION = re.compile(r"(?:[,;]?\s*(?:ext\.?|extn\.?|extension|x|#|доб\.?)\s*\d{1,7})\s*$", re.I)
# Whatever people put between digit groups; anything else (letters, "*", "@") is not a phone.
_SEPARATORS = frozenset(" \t\u00a0-\u2010\u2011\u2012\u2013\u2014\u2212().\\/")

# Regions whose numbers people still dial with a trunk prefix the plan has dropped:
# Uzbekistan's old Soviet "8" ("8 (90) 123-45-67"), no longer in phonenumbers' UZ metadata,
# and the "0" that PBXs and carriers put before a national number ("0901234567").
_LEGACY_TRUNK_PREFIXES = {"UZ": ("8", "0")}


def _phone_text(raw: str) -> str | None:
    """The typed number without extension or outer space, or None if it is not phone-shaped."""
    text = raw.strip()
    if not text or len(text) > _MAX_INPUT_CHARS:
        return None
    text = _EXTENSION.sub("", text).strip()
    body = text[1:] if text.startswith("+") else text
    if not all(ch.isdecimal() or ch in _SEPARATORS for ch in body):
        return None
    digits = phonenumbers.normalize_digits_only(body)
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        return None
    return text


def looks_like_phone(raw: str) -> bool:
    """Whether ``raw`` is written like a phone number (valid or not): digits and separators only."""
    return _phone_text(raw) is not None


def _known_variant(number: PhoneNumber) -> PhoneNumber | None:
    """The current form of a number written in a superseded national form, if it has one."""
    nsn = phonenumbers.national_significant_number(number)
    if number.country_code == 55 and len(nsn) == 10 and nsn[2] in "6789":
        # Brazil added a ninth digit "9" in front of every mobile subscriber number (2012-2016).
        return PhoneNumber(country_code=55, national_number=int(nsn[:2] + "9" + nsn[2:]))
    if number.country_code == 52 and len(nsn) == 11 and nsn.startswith("1"):
        # Mexico dropped the "1" dialled after +52 before mobile numbers in 2019.
        return PhoneNumber(country_code=52, national_number=int(nsn[1:]))
    return None


def _valid_e164(text: str, region: str | None) -> str | None:
    """One reading of ``text``: its E.164 form when it (or its known current variant) is valid."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        # Only an invalid reading is replaced: a valid number is never turned into another one.
        variant = _known_variant(number)
        if variant is None or not phonenumbers.is_valid_number(variant):
            return None
        number = variant
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=8192)  # pure, and each inbound number is read twice (validation, matching)
def normalize_phone(raw: str, region: str | None) -> str | None:
    """The canonical E.164 form of a typed phone number, or None when no reading of it is valid.

    ``region`` (ISO 3166 alpha-2, e.g. "UZ") says how to read a number typed without "+".
    Such a number is read nationally first, then the old trunk prefix of the region, then as
    international typed without "+" (or with "00"); the first valid reading wins.
    """
    text = _phone_text(raw)
    if text is None:
        return None
    if text.startswith("+"):
        return _valid_e164(text, None)
    region = region.upper() if region else None
    digits = phonenumbers.normalize_digits_only(text)
    readings: list[tuple[str, str | None]] = []
    if region is not None and region in phonenumbers.SUPPORTED_REGIONS:
        readings.append((text, region))
        for trunk in _LEGACY_TRUNK_PREFIXES.get(region, ()):
            if digits.startswith(trunk) and not digits.startswith("00"):  # 00: international
                readings.append((digits[len(trunk) :], region))
    readings.append(("+" + (digits[2:] if digits.startswith("00") else digits), None))
    for reading, reading_region in readings:
        e164 = _valid_e164(reading, reading_region)
        if e164 is not None:
            return e164
    return None
