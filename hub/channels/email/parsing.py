"""One raw RFC 5322 mail to what the hub keeps of it: sender, text (each part decoded by its own
charset, mislabelled ones detected), sanitised HTML, quoted history split off, attachments,
threading headers, and whether a robot sent it (auto-reply, bounce)."""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

import nh3
from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

from hub.channels.email.quoting import split_reply

MAX_HTML_CHARS = 200_000  # kept for display; longer HTML is cut (the text stays whole)
MAX_TEXT_CHARS = 100_000
# Labels senders put on bytes that are really something else (an 8-bit Cyrillic body sent as
# "us-ascii" or "iso-8859-1"): decoded as labelled, the text would be nonsense without an error.
WEAK_LABELS = frozenset({"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252"})
MESSAGE_ID_RE = re.compile(r"<[^<>\s]+>")
AUTO_SUBJECT_RE = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|out of (the )?office|autoreply|автоответ|"
    r"автоматический ответ|avtomatik javob)\b",
    re.IGNORECASE,
)
ADDR_SPEC_RE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+$")
INLINE_PREFIX = "/api/attachments/"  # where the hub serves a mail's kept inline images
BOUNCE_SENDER_RE = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)


class MailError(ValueError):
    """A mail the hub cannot take (no sender, not a mail at all): kept raw and set aside."""


@dataclass(frozen=True)
class MailPart:
    """An attachment or inline image, with its bytes."""

    name: str
    content_type: str
    data: bytes = field(repr=False)
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    sender: str  # lower-case address
    sender_name: str | None
    reply_to: str
    subject: str
    text: str  # the visible reply
    quoted: str  # the history below it
    html: str | None  # sanitised, for display
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]  # Delivered-To / X-Original-To: the address the server used
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    parts: tuple[MailPart, ...]
    auto: str | None  # None, "auto-reply" or "bounce"
    bounced_recipient: str | None = None
    defects: tuple[str, ...] = ()

    @property
    def dedupe_key(self) -> str:
        """The Message-ID with the sender; a hash of the content when there is no Message-ID.
        Hashed to fit the receipts' key column, whatever the length of the Message-ID."""
        return dedupe_key(self.message_id, self.sender, None)


def dedupe_key(message_id: str | None, sender: str, raw: bytes | None) -> str:
    if message_id:
        digest = hashlib.sha256(f"{message_id}\n{sender.lower()}".encode()).hexdigest()
        return f"mid:{digest[:48]}"
    return f"sha:{hashlib.sha256(raw or b'').hexdigest()[:48]}"


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Bytes in their declared charset; an unknown, wrong or missing label is detected."""
    label = (declared or "").strip().lower()
    try:
        codec = codecs.lookup(label).name if label else None
    except LookupError:
        codec = None
    if codec is not None:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            pass
        else:
            if label not in WEAK_LABELS or data.isascii() or mess_ratio(text) < 0.2:
                return text
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is not None:
        return str(best)
    return data.decode(codec or "utf-8", errors="replace")


def decode_header_text(raw: str) -> str:
    """A header's text: RFC 2047 encoded words decoded by their own charsets (detected when the
    label is unknown); raw 8-bit headers, which arrive as surrogates, decoded by detection."""
    if _raw_8bit(raw):
        raw = decode_bytes(raw.encode("utf-8", "surrogateescape"), None)
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        chunks = decode_header(raw)
    except (ValueError, LookupError, UnicodeError):
        return " ".join(raw.split())
    text = "".join(
        chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "ascii")
        for chunk, charset in chunks
    )
    return " ".join(text.split())


Headers = dict[str, list[str]]


def _index(message: Message) -> Headers:
    """The headers' raw values by lower-case name, read once (policy.default would parse a
    header into objects on every read: several times slower than everything else here)."""
    headers: Headers = {}
    for key, value in message.raw_items():
        headers.setdefault(key.lower(), []).append(value if isinstance(value, str) else str(value))
    return headers


def _header(headers: Headers, name: str) -> str:
    values = headers.get(name.lower())
    return decode_header_text(values[0]) if values else ""


def _raw_8bit(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _addresses(headers: Headers, name: str) -> list[tuple[str, str]]:
    # Addresses are split before names are decoded: a decoded name may hold a comma.
    values = [decode_header_text(v) if _raw_8bit(v) else v for v in headers.get(name.lower(), [])]
    return [(decode_header_text(n), a.strip().lower()) for n, a in getaddresses(values) if "@" in a]


def _ids(headers: Headers, name: str) -> tuple[str, ...]:
    return tuple(MESSAGE_ID_RE.findall(" ".join(headers.get(name.lower(), []))))


class _TextOfHtml(HTMLParser):
    """Plain text of an HTML body: blocks become lines, scripts and styles are dropped, and
    blockquotes become '>' lines so the history splits off like in a plain-text mail."""

    BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = [""]
        self.skip = 0
        self.quote = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag == "blockquote":
            self.quote += 1
            self.lines.append("")
        elif tag in self.BLOCKS:
            self.lines.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self.lines.append("")
        elif tag in self.BLOCKS:
            self.lines.append("")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data)
        if not text.strip() and not self.lines[-1].strip():
            return
        if self.quote and not self.lines[-1]:
            self.lines[-1] = "> " * self.quote
        self.lines[-1] += text

    def text(self) -> str:
        out: list[str] = []
        for line in self.lines:
            line = re.sub(" +", " ", line).strip()
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    return parser.text()


def _no_remote_images(element: str, attribute: str, value: str) -> str | None:
    """Remote images are dropped: loading one tells the sender (a tracking pixel) that an
    operator opened the mail, and when. Inline images, kept by the hub, stay."""
    if element == "img" and attribute == "src" and not value.startswith(INLINE_PREFIX):
        return None
    return value


def sanitise_html(html: str, inline: dict[str, str]) -> str:
    """HTML fit to show in the inbox: nh3 keeps formatting and drops scripts, handlers and
    remote images; `cid:` images point at the stored inline parts."""

    def cid(match: re.Match[str]) -> str:
        url = inline.get(match.group(2).strip("<>"))
        return f"{match.group(1)}{url}" if url else f"{match.group(1)}"

    html = re.sub(r"""(src=["']?)cid:([^"'\s>]+)""", cid, html, flags=re.IGNORECASE)
    return nh3.clean(html[:MAX_HTML_CHARS], attribute_filter=_no_remote_images)


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or bool(part.get_filename())


def _part_name(part: Message, index: int) -> str:
    try:
        name = part.get_filename()
    except (LookupError, UnicodeError, ValueError):
        name = None
    if name:
        return decode_header_text(name)
    extension = {
        "image/png": ".png",
        "image/jpeg": ".jpg",
        "image/gif": ".gif",
        "message/rfc822": ".eml",
        "text/calendar": ".ics",
        "message/delivery-status": ".txt",
    }.get(part.get_content_type(), ".bin")
    return f"part-{index}{extension}"


def _walk(message: Message) -> list[Message]:
    """Leaf parts in order; an attached mail (message/rfc822) is one part, not descended into."""
    if message.is_multipart() and message.get_content_maintype() != "message":
        leaves: list[Message] = []
        payload = message.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                leaves.extend(_walk(sub))
        return leaves
    return [message]


def _payload(part: Message) -> bytes:
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return bytes(inner[0].as_bytes(policy=policy.SMTP))
        return b""
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _auto(message: Message, headers: Headers, sender: str) -> str | None:
    auto_submitted = _header(headers, "Auto-Submitted").lower()
    content_type = message.get_content_type()
    report = str(message.get_param("report-type", "") or "").lower()
    if content_type == "multipart/report" and report == "delivery-status":
        return "bounce"
    if BOUNCE_SENDER_RE.match(sender):
        return "bounce"
    if auto_submitted and auto_submitted != "no":
        return "auto-reply"
    if _header(headers, "Precedence").lower() in ("bulk", "auto_reply", "junk", "list"):
        return "auto-reply"
    if any(h in headers for h in ("x-autoreply", "x-autorespond", "x-autoresponse")):
        return "auto-reply"
    if AUTO_SUBJECT_RE.match(_header(headers, "Subject")):
        return "auto-reply"
    return None


def _bounced_recipient(parts: list[Message]) -> str | None:
    """The Final-Recipient of a delivery status notification (RFC 3464)."""
    for part in parts:
        if part.get_content_type() != "message/delivery-status":
            continue
        raw = part.get_payload()
        blocks = raw if isinstance(raw, list) else []
        texts = [str(b) for b in blocks] or [decode_bytes(_payload(part), "utf-8")]
        for text in texts:
            match = re.search(
                r"^(final|original)-recipient:\s*rfc822;\s*<?([^\s>]+@[^\s>]+)>?",
                text,
                re.IGNORECASE | re.MULTILINE,
            )
            if match:
                return match.group(2).lower()
    return None


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse with the standard library; MailError when it is not a mail we can attribute to
    anyone. compat32 leaves headers as text, which decode_header_text decodes once each."""
    if not raw.strip():
        raise MailError("empty message")
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    headers = _index(message)
    senders = _addresses(headers, "From") or _addresses(headers, "Sender")
    if not senders:
        raise MailError("no sender address in From:")
    sender_name, sender = senders[0]
    if not ADDR_SPEC_RE.match(sender):
        raise MailError(f"the From: address {sender!r} is not valid")
    reply_to = (_addresses(headers, "Reply-To") or [("", sender)])[0][1]
    message_ids = _ids(headers, "Message-ID")
    try:
        date = parsedate_to_datetime(_header(headers, "Date"))
        date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        date = None

    leaves = _walk(message)
    plain: list[str] = []
    html: list[str] = []
    parts: list[MailPart] = []
    for index, part in enumerate(leaves, start=1):
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html") and not _is_attachment(part):
            body = decode_bytes(_payload(part), part.get_content_charset())
            (plain if kind == "text/plain" else html).append(body)
            continue
        if part.is_multipart():
            continue
        content_id = decode_header_text(str(part.get("Content-ID", ""))).strip("<> ") or None
        inline = (part.get_content_disposition() or "").lower() == "inline" or (
            content_id is not None and not _is_attachment(part)
        )
        parts.append(
            MailPart(
                name=_part_name(part, index),
                content_type=kind,
                data=_payload(part),
                inline=inline,
                content_id=content_id,
            )
        )
    html_body = "\n".join(html) if html else None
    full_text = "\n\n".join(plain) if plain else (html_to_text(html_body) if html_body else "")
    text, quoted = split_reply(full_text[:MAX_TEXT_CHARS])
    auto = _auto(message, headers, sender)
    references = _ids(headers, "References")
    if auto == "bounce":  # the returned mail's Message-ID threads the bounce to its conversation
        for kept in parts:
            if kept.content_type in ("text/rfc822-headers", "message/rfc822"):
                returned = BytesParser(policy=policy.compat32).parsebytes(
                    kept.data, headersonly=True
                )
                references += _ids(_index(returned), "Message-ID")
    return ParsedMail(
        message_id=message_ids[0] if message_ids else None,
        sender=sender,
        sender_name=sender_name or None,
        reply_to=reply_to,
        subject=_header(headers, "Subject"),
        text=text,
        quoted=quoted,
        html=html_body,
        to=tuple(a for _, a in _addresses(headers, "To")),
        cc=tuple(a for _, a in _addresses(headers, "Cc")),
        delivered_to=tuple(
            a for h in ("Delivered-To", "X-Original-To") for _, a in _addresses(headers, h)
        ),
        in_reply_to=_ids(headers, "In-Reply-To"),
        references=references,
        date=date,
        parts=tuple(parts),
        auto=auto,
        bounced_recipient=_bounced_recipient(leaves) if auto == "bounce" else None,
        defects=tuple(type(d).__name__ for d in message.defects),
    )
