"""E-mail addresses as identities: validated syntax, matched case-insensitively."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalize_email(raw: str) -> str | None:
    """The address lower-cased for matching, or None when it is not an address at all."""
    text = raw.strip()
    if not text or len(text) > 254:
        return None
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return info.normalized.lower()
