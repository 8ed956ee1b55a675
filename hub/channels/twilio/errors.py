"""Twilio error codes in words an operator can act on, for failed sends and status callbacks."""

from __future__ import annotations

# The codes small businesses actually meet; https://www.twilio.com/docs/api/errors has the rest.
ERROR_WORDS: dict[int, str] = {
    20003: "Twilio refused the credentials: check account_sid and auth_token",
    20429: "Twilio is rate limiting this account; the message will be retried",
    21211: "the 'To' number is not a valid phone number",
    21408: "this Twilio account may not send SMS to that country (Geo Permissions)",
    21606: "the 'From' number cannot send messages to this recipient: check from_number",
    21608: "a trial account can only write to verified numbers",
    21610: "the recipient opted out (replied STOP); they must text START before you can write",
    21612: "the 'To' number cannot receive SMS from this sender",
    21614: "the 'To' number is not a mobile number",
    30001: "Twilio's outgoing queue overflowed; try again later",
    30002: "the Twilio account is suspended",
    30003: "the recipient's phone is unreachable (switched off or out of coverage)",
    30004: "the message was blocked by the recipient or their carrier",
    30005: "the number does not exist or is no longer in service",
    30006: "the number is a landline or its carrier cannot receive SMS",
    30007: "the carrier filtered the message as spam",
    30008: "the carrier did not say why the message was not delivered",
    30034: "the sending number is not registered for A2P 10DLC messaging in the US",
    63003: "the recipient is not on WhatsApp with this number",
    63016: (
        "outside WhatsApp's 24-hour window: the customer has not written in the last 24 hours, "
        "so only an approved template can be sent"
    ),
    63018: "WhatsApp rate limit for this sender was exceeded",
    63024: "the recipient cannot receive WhatsApp messages (invalid recipient)",
    63049: "Meta chose not to deliver this WhatsApp marketing message",
}


def explain(code: int | str | None, message: str | None = None) -> str:
    """'<words> (Twilio 63016: <Twilio's own message>)'; unknown codes keep Twilio's text."""
    number = code if isinstance(code, int) else None
    if isinstance(code, str) and code.strip().isdigit():
        number = int(code)
    words = ERROR_WORDS.get(number) if number is not None else None
    label = f"Twilio {number}" if number is not None else "Twilio"
    if words and message:
        return f"{words} ({label}: {message})"
    if words:
        return f"{words} ({label})"
    if message:
        return f"{label}: {message}"
    return f"{label}: the message could not be delivered"
