"""Twilio Voice: the inbound-call webhook (TwiML that rings the on-duty operators, then takes a
voicemail), the <Dial> outcome, call status callbacks and recording callbacks, as call events.

Twilio calls, all signed like the messaging webhooks:
- `/voice` when a call comes in (CallStatus=ringing), and again as the <Dial> action when the
  operators' phones stop ringing (DialCallStatus: completed, or no-answer/busy/failed/canceled);
- `/voice/status` with the call's outcome (CallStatus completed, busy, no-answer, ... and
  CallDuration), for inbound calls and for outbound calls created with this StatusCallback;
- `/voice/recording` as the voicemail's <Record> action and recordingStatusCallback.
Pure functions of the POSTed parameters (Twilio's "Voice webhooks" reference)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from twilio.twiml.voice_response import Dial, VoiceResponse

from hub.channels.base import Attachment, InboundEvent, InvalidPayload, ProviderAnswer
from hub.inbox.calls import MAX_CALL_ID, CallEvent, call_event, call_event_of
from hub.settings import Key

KINDS = ("voice", "voice/status", "voice/recording")
DEFAULT_MESSAGE = (
    "Sorry, nobody can take your call right now. Please leave a message after the beep "
    "and we will call you back."
)
VOICE_KEYS: dict[str, Key] = {
    "voice_operators": Key(list, default=[]),  # E.164 numbers rung at once by an inbound call
    "voice_timeout": Key(int, default=20),  # seconds the operators' phones ring
    "voice_message": Key(str, default=DEFAULT_MESSAGE),  # said before the voicemail beep
    "voice_language": Key(str, default="en-US"),  # of voice_message (Twilio <Say> language)
    "voice_max_message_seconds": Key(int, default=120),
}
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")
CALL_SID_RE = re.compile(r"^CA[0-9a-fA-F]{32}$")
# Twilio's DialCallStatus/CallStatus for a call nobody answered -> the contract's reason.
MISSED = {"no-answer": "no-answer", "busy": "busy", "failed": "failed", "canceled": "cancelled"}
RINGING = ("queued", "initiated", "ringing")
EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def check_voice_config(values: Mapping[str, Any]) -> list[str]:
    problems = []
    operators = values.get("voice_operators")
    if isinstance(operators, list):
        for number in operators:
            if not isinstance(number, str) or not E164_RE.match(number):
                problems.append(
                    f"voice_operators: {number!r} is not an E.164 number like +998901234567"
                )
    timeout = values.get("voice_timeout")
    if isinstance(timeout, int) and not 5 <= timeout <= 600:
        problems.append(f"voice_timeout: {timeout} is not 5 to 600 seconds")
    longest = values.get("voice_max_message_seconds")
    if isinstance(longest, int) and not 1 <= longest <= 3600:
        problems.append(f"voice_max_message_seconds: {longest} is not 1 to 3600 seconds")
    return problems


def _call_sid(params: Mapping[str, str]) -> str:
    sid = params.get("CallSid", "").strip()
    if not sid:
        raise InvalidPayload("CallSid: required in a Twilio voice webhook", field="CallSid")
    if len(sid) > MAX_CALL_ID or not CALL_SID_RE.match(sid):
        raise InvalidPayload(f"CallSid: {sid[:40]!r} is not a Call SID", field="CallSid")
    return sid


def _seconds(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 7:
        raise InvalidPayload(f"{name}: {raw[:20]!r} is not a number of seconds", field=name)
    return int(raw)


def _direction(params: Mapping[str, str]) -> Literal["in", "out"]:
    return "out" if params.get("Direction", "inbound").startswith("outbound") else "in"


def _call(params: Mapping[str, str], event: str, step: str, **fields: Any) -> CallEvent:
    direction = _direction(params)
    caller, called = params.get("From", ""), params.get("To", "")
    return CallEvent(
        call_id=_call_sid(params),
        event=event,
        direction=direction,
        party=caller if direction == "in" else called,
        line=(called if direction == "in" else caller) or None,
        step=step,
        **fields,
    )


def voice_events(
    channel: str, channel_type: str, kind: str, params: Mapping[str, str], operators: int
) -> list[InboundEvent]:
    """The call events of one voice webhook; none for what adds nothing (an operator's leg)."""
    if params.get("Direction") == "outbound-dial":
        return []  # a leg <Dial> placed to an operator: part of the caller's call, not a call
    _call_sid(params)
    name = params.get("CallerName", "").strip() or None

    def event(key: str, call: CallEvent, files: tuple[Attachment, ...] = ()) -> InboundEvent:
        thread = call.party if call.party.startswith("+") else None  # joins their SMS thread
        return call_event(
            channel, channel_type, key, call, name=name, thread_key=thread, attachments=files
        )

    if kind == "voice":
        dial = params.get("DialCallStatus", "").strip().lower()
        if dial:  # the <Dial> action: did an operator pick up?
            if dial in ("completed", "answered"):
                duration = _seconds(params, "DialCallDuration")
                call = _call(
                    params,
                    "answered",
                    "dial",
                    duration=duration,
                    answered=True,
                    provider_status=dial,
                )
                return [event(f"dial:{dial}", call)]
            reason = MISSED.get(dial, "failed")
            return [
                event(
                    f"dial:{dial}",
                    _call(params, "missed", "dial", reason=reason, provider_status=dial),
                )
            ]
        status = params.get("CallStatus", "ringing").strip().lower()
        if _direction(params) == "out":  # an API call's URL is fetched when the callee answers
            return [event("voice", _call(params, "answered", "voice", provider_status=status))]
        ringing = event("ringing", _call(params, "ringing", "voice", provider_status=status))
        if operators:
            return [ringing]
        # Nobody to ring: the call goes straight to voicemail, a missed call from the start.
        missed = _call(
            params, "missed", "voice", reason="no-answer", provider_status="no operators"
        )
        return [ringing, event("no-operators", missed)]
    if kind == "voice/status":
        status = params.get("CallStatus", "").strip().lower()
        if not status:
            raise InvalidPayload(
                "CallStatus: required in a call status callback", field="CallStatus"
            )
        duration = _seconds(params, "CallDuration")
        out = _direction(params) == "out"
        key = f"status:{status}"
        if status in RINGING:
            return [event(key, _call(params, "ringing", "status", provider_status=status))]
        if status == "in-progress":
            # Inbound: Twilio runs our TwiML, nobody has answered yet. Outbound: they picked up.
            return (
                [event(key, _call(params, "answered", "status", provider_status=status))]
                if out
                else []
            )
        if status == "completed":
            # An inbound call is "completed" after voicemail too: only an outbound one was
            # surely answered; the <Dial> outcome tells for inbound calls.
            call = _call(
                params, "ended", "status", duration=duration, answered=out, provider_status=status
            )
            return [event(key, call)]
        if status in MISSED:
            call = _call(params, "missed", "status", reason=MISSED[status], provider_status=status)
            return [event(key, call)]
        raise InvalidPayload(f"CallStatus: unknown call status {status[:30]!r}", field="CallStatus")
    # voice/recording: the <Record> action and the recording status callback, one recording.
    state = params.get("RecordingStatus", "completed").strip().lower()
    url = params.get("RecordingUrl", "").strip()
    if state != "completed":
        return []  # in-progress, absent (silence), failed: no file to listen to
    if not url:
        raise InvalidPayload(
            "RecordingUrl: required for a completed recording", field="RecordingUrl"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidPayload("RecordingUrl: not an http(s) URL", field="RecordingUrl")
    recording_id = (
        params.get("RecordingSid", "").strip() or parts.path.rstrip("/").rsplit("/", 1)[-1]
    )
    call = _call(
        params,
        "recording",
        "recording",
        recording_url=url,
        recording_id=recording_id[:64],
        recording_duration=_seconds(params, "RecordingDuration"),
        voicemail=True,
        provider_status=state,
    )
    # Kept by the hub: the worker fetches the MP3 with the account's credentials (Twilio
    # serves a recording as .mp3 when asked), so operators need no Twilio login to listen.
    audio = Attachment(
        name=f"{recording_id[:64]}.mp3",
        content_type="audio/mpeg",
        url=f"{url}.mp3",
        ref=recording_id[:64],
    )
    return [event(f"recording:{recording_id[:64]}", call, (audio,))]


def voicemail(response: VoiceResponse, message: str, language: str, longest: int, url: str) -> None:
    response.say(message, language=language)
    response.record(
        action=url,
        recording_status_callback=url,
        recording_status_callback_event="completed",
        max_length=longest,
        play_beep=True,
        timeout=5,
    )
    response.hangup()


def answer(
    events: Sequence[InboundEvent],
    *,
    operators: Sequence[str],
    timeout: int,
    message: str,
    language: str,
    longest: int,
    url_of: Any,
) -> ProviderAnswer:
    """The TwiML for the step Twilio is at: ring the operators, take a voicemail, or hang up."""
    calls = [c for e in events if (c := call_event_of(e)) is not None]
    response = VoiceResponse()
    if not calls:
        return ProviderAnswer(200, EMPTY, "text/xml")
    first = calls[0]
    if first.step == "voice" and first.event == "ringing":
        if operators:
            dial = Dial(action=url_of("voice"), timeout=timeout, answer_on_bridge=True)
            for number in operators:
                dial.number(number)
            response.append(dial)
        else:
            voicemail(response, message, language, longest, url_of("voice/recording"))
    elif first.step == "dial" and first.event == "missed":
        voicemail(response, message, language, longest, url_of("voice/recording"))
    elif first.step in ("dial", "recording"):
        response.hangup()
    else:
        return ProviderAnswer(200, EMPTY, "text/xml")
    return ProviderAnswer(200, str(response.to_xml()).encode(), "text/xml")
