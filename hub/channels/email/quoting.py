"""The visible reply, separated from the quoted history that mail clients append below it, as
Gmail, Outlook, Apple Mail, Yandex, Mail.ru and Thunderbird write it in English, Russian and
Uzbek (Latin and Cyrillic)."""

from __future__ import annotations

import re

# A line that introduces the quoted mail: "On <date>, <name> wrote:" and its translations.
ATTRIBUTION = re.compile(
    r"""^\s*(
        (on|le|am)\s.{3,300}\s(wrote|a\s+écrit|schrieb)\s*:
      | .{0,300}(написал|написала|написал\(\w\)|пишет|писал|yozdi|ёзди|йозди)\s*:
      | .{0,200}\d.{0,200}<?[\w.+'-]+@[\w-]+(\.[\w-]+)+>?
        \s*(пишет|писал|написал\(\w\)|yozdi|ёзди)?\s*:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
# A separator line Outlook, Exchange and webmails put above the forwarded or quoted mail.
SEPARATOR = re.compile(
    r"""^\s*(
        -{2,}\s*(original\s+message|исходное\s+сообщение|пересылаемое\s+сообщение|
                 forwarded\s+message|asl\s+xabar|boshlang\W?ich\s+xabar)\s*-{2,}
      | _{20,}\s*$
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Outlook's header block that starts the quoted mail without any separator line.
HEADER_FROM = re.compile(r"^\s*\*?(from|от|kimdan|кимдан)\s*:\*?\s*\S", re.IGNORECASE)
HEADER_NEXT = re.compile(
    r"^\s*\*?(sent|date|to|subject|отправлено|дата|кому|тема|yuborildi|sana|kimga|mavzu)"
    r"\s*:\*?",
    re.IGNORECASE,
)
QUOTED = re.compile(r"^\s*>")


def _attribution_at(lines: list[str], index: int) -> bool:
    """An attribution line, also when the client wrapped it over two lines (Gmail does)."""
    line = lines[index].strip()
    if not line:
        return False
    if ATTRIBUTION.match(line):
        return True
    if index + 1 < len(lines) and not line.startswith(">"):
        joined = f"{line} {lines[index + 1].strip()}"
        if (
            len(line) < 200
            and ATTRIBUTION.match(joined)
            and lines[index + 1].rstrip().endswith(":")
        ):
            following = lines[index + 2].strip() if index + 2 < len(lines) else ""
            return following == "" or following.startswith(">")
    return False


def _header_block_at(lines: list[str], index: int) -> bool:
    if not HEADER_FROM.match(lines[index]):
        return False
    window = lines[index + 1 : index + 5]
    return sum(1 for line in window if HEADER_NEXT.match(line)) >= 2


def split_reply(text: str) -> tuple[str, str]:
    """(the visible reply, the quoted history): everything from the first attribution,
    separator or Outlook header block on is history, and so are '>' lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        if (SEPARATOR.match(line) and index > 0) or _header_block_at(lines, index):
            cut = index
            break
        if _attribution_at(lines, index):
            following = [entry for entry in lines[index + 1 :] if entry.strip()]
            # An attribution is followed by the quote; a line like "Date: 5 May:" in the
            # middle of a message is not, unless quoted lines come next.
            if not following or QUOTED.match(following[0]) or index > 0:
                cut = index
                break
    visible = [line for line in lines[:cut] if not QUOTED.match(line)]
    history = lines[cut:] + [line for line in lines[:cut] if QUOTED.match(line)]
    reply = "\n".join(visible).strip()
    quoted = "\n".join(history).strip()
    if not reply:  # nothing but a quote (a forward without a word): show the mail as it came
        return text.strip(), ""
    return reply, quoted
