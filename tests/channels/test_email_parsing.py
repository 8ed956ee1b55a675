"""Parsing real mails: every charset decoded by its own label (or detected when the label is
wrong), HTML sanitised, the visible reply split from the quoted history, robots recognised."""

# ruff: noqa: RUF001  # Cyrillic text is what these tests are about

from __future__ import annotations

import pytest

from hub.channels.email.parsing import (
    MailError,
    decode_bytes,
    html_to_text,
    parse_mail,
    sanitise_html,
)
from hub.channels.email.quoting import split_reply
from hub.channels.email.threads import OWN_ID_RE, subject_key, token_of_address
from tests.conftest import FIXTURES

MAILS = FIXTURES / "email"


def parse(name: str) -> object:
    return parse_mail((MAILS / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "sender", "subject", "text"),
    [
        (
            "cp1251_outlook.eml",
            "ivan.petrov@mail.ru",
            "Заказ стульев",
            "Здравствуйте!\n\nХочу заказать 20 стульев для кафе в Ташкенте.",
        ),
        ("koi8r_qp.eml", "olga.smirnova@yandex.ru", "Доставка дивана", "Добрый день!"),
        ("iso8859_5_base64.eml", "dilshod@example.uz", "Нархлар", "Здравствуйте!\nПришлите"),
        ("iso8859_2_qp.eml", "pavel.dvorak@seznam.cz", "Poptávka židlí", "Dobrý den,\nmáte"),
        # labelled us-ascii, really windows-1251 (The Bat! with a wrong default)
        ("mislabelled_ascii_cp1251.eml", "sergey@ural-mebel.ru", "price", "Добрый день. Пришлите"),
        # a charset name nobody knows: detected from the bytes
        ("unknown_charset.eml", "marat@example.kz", None, "Здравствуйте, интересует доставка"),
        ("no_message_id.eml", "client@old-server.uz", "Hello", "Do you still sell"),
    ],
)
def test_each_part_is_decoded_by_its_charset(
    name: str, sender: str, subject: str | None, text: str
) -> None:
    mail = parse_mail((MAILS / name).read_bytes())
    assert mail.sender == sender
    if subject is not None:
        assert mail.subject == subject
    assert mail.text.startswith(text)
    assert "\ufffd" not in mail.text and mail.auto is None


def test_sender_names_in_encoded_words_are_decoded() -> None:
    assert parse_mail((MAILS / "cp1251_outlook.eml").read_bytes()).sender_name == "Иван Петров"
    assert parse_mail((MAILS / "koi8r_qp.eml").read_bytes()).sender_name == "Ольга Смирнова"


@pytest.mark.parametrize(
    ("name", "visible", "history_starts"),
    [
        (
            "gmail_reply_en.eml",
            "Great, Thursday after 2pm works for me. Please bring fabric samples.\n\nKate",
            "On Wed, 25 Nov 2026 at 14:02, Support Team",
        ),
        (
            "gmail_reply_ru.eml",
            "Да, в четверг после обеда удобно. Адрес: ул. Навои, 12.",
            "пн, 23 нояб. 2026 г. в 14:05, Support",
        ),
        (
            "outlook_reply_ru.eml",
            "Спасибо, ждём замерщика в четверг.\n\nОльга Смирнова\nМенеджер по закупкам",
            "-----Исходное сообщение-----",
        ),
        (
            "outlook_reply_en.eml",
            "Yes, please send the invoice to accounts@company.uz.\n\nThanks,\nAziz",
            "________________________________",
        ),
        ("reply_uz.eml", "Rahmat, ertaga soat 10 da kutamiz.", "2026-yil 25-noy"),
    ],
)
def test_the_quoted_history_is_split_off(name: str, visible: str, history_starts: str) -> None:
    mail = parse_mail((MAILS / name).read_bytes())
    assert mail.text == visible
    assert mail.quoted.startswith(history_starts)


@pytest.mark.parametrize(
    ("text", "visible"),
    [
        ("Ok\n\nВ Пн, 23.11.2026 в 10:00, Иван написал(а):\n> привет", "Ok"),
        ('Ok\n\n23.11.2026, 10:00, "Ali" <ali@yandex.ru>:\n> salom', "Ok"),
        ("Ok\n\nDushanba, 23-noyabr 2026, Ali <ali@mail.uz> yozdi:\n> salom", "Ok"),
        ("Ok\n\n-----Original Message-----\nFrom: a@b.c\nSent: today\n", "Ok"),
        ("Ok\nFrom: Support <s@x.com>\nSent: Monday\nTo: me\nSubject: hi\n\nold", "Ok"),
        ("> quoted first\nmy answer below", "my answer below"),
        # an ordinary line with a date and a colon, not followed by a quote, is kept
        ("Call me on 25.11 at ali@x.uz:\nthanks", "Call me on 25.11 at ali@x.uz:\nthanks"),
        ("> only a forward", "> only a forward"),
    ],
)
def test_split_reply_cases(text: str, visible: str) -> None:
    assert split_reply(text)[0] == visible


def test_html_only_mail_is_sanitised_and_gets_plain_text() -> None:
    mail = parse_mail((MAILS / "html_only.eml").read_bytes())
    assert mail.html is not None and "<script>" in mail.html  # the raw part, before cleaning
    assert (
        mail.text == "Hello, I'd like a quote for 3 sofas.\n\nCall me on +998 93 555 12 34.\nclick"
    )
    assert "Thank you for your interest" in mail.quoted
    assert html_to_text("<p>a<br>b</p><style>x{}</style>") == "a\nb"


def test_sanitised_html_keeps_formatting_and_inline_images_only() -> None:
    html = (
        '<p onclick="x()">Hi <b>there</b><script>alert(1)</script>'
        '<img src="cid:logo@x"><img src="https://pixel.example.net/o.gif">'
        '<a href="javascript:alert(1)">a</a><a href="https://shop.example.com">b</a></p>'
    )
    clean = sanitise_html(html, {"logo@x": "/api/attachments/" + "a" * 64})
    assert clean.startswith("<p>Hi <b>there</b>")
    assert f'<img src="/api/attachments/{"a" * 64}">' in clean
    assert "pixel.example.net" not in clean and "script" not in clean
    assert "javascript" not in clean and 'href="https://shop.example.com"' in clean


def test_attachments_and_inline_images_keep_their_names_and_bytes() -> None:
    mail = parse_mail((MAILS / "attachments.eml").read_bytes())
    image, pdf = mail.parts
    assert (image.content_type, image.inline, image.content_id) == (
        "image/png",
        True,
        "room@company.uz",
    )
    assert image.data.startswith(b"\x89PNG")
    assert (pdf.name, pdf.content_type, pdf.inline) == ("смета.pdf", "application/pdf", False)
    assert pdf.data.startswith(b"%PDF")


def test_auto_replies_and_bounces_are_recognised() -> None:
    auto = parse_mail((MAILS / "auto_reply.eml").read_bytes())
    assert auto.auto == "auto-reply"
    bounce = parse_mail((MAILS / "bounce.eml").read_bytes())
    assert bounce.auto == "bounce"
    assert bounce.bounced_recipient == "no.such.user@gmail.com"
    assert "<PLACEHOLDER@hub.invalid>" in bounce.references  # threads to the mail it returns
    for header in ("Precedence: bulk", "X-Autoreply: yes", "Auto-Submitted: auto-generated"):
        raw = f"From: a@b.uz\r\n{header}\r\nSubject: x\r\n\r\nbody\r\n".encode()
        assert parse_mail(raw).auto == "auto-reply"
    assert parse_mail(b"From: a@b.uz\r\nAuto-Submitted: no\r\n\r\nhi\r\n").auto is None


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", (MAILS / "no_sender.eml").read_bytes(), b"From: not an address\r\n\r\nx"],
)
def test_mail_without_a_sender_is_refused_with_a_reason(raw: bytes) -> None:
    with pytest.raises(MailError):
        parse_mail(raw)


def test_hostile_and_broken_input_never_crashes_the_parser() -> None:
    samples = [
        b'From: a@b.uz\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n',
        b"From: a@b.uz\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"From: a@b.uz\r\nSubject: \xff\xfe raw 8-bit \xd0\x9f\r\n\r\n\xff\x00\x01",
        b"From: =?utf-8?B?broken?= <a@b.uz>\r\nDate: yesterday\r\n\r\nhi",
        b'From: a@b.uz\r\nContent-Type: text/plain; charset=""\r\n\r\n\xe9t\xe9',
    ]
    for raw in samples:
        mail = parse_mail(raw)
        assert mail.sender == "a@b.uz"


def test_decode_bytes_prefers_the_label_and_falls_back_to_detection() -> None:
    assert decode_bytes("Grüße".encode("latin-1"), "iso-8859-1") == "Grüße"
    cyrillic = "Пришлите прайс на офисные кресла".encode("cp1251")
    assert decode_bytes(cyrillic, "iso-8859-1") == "Пришлите прайс на офисные кресла"
    assert decode_bytes("Привет".encode(), "no-such-charset") == "Привет"


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("Re: Quote for sofas", "quote for sofas"),
        ("RE: Fwd: AW:  Quote  for sofas", "quote for sofas"),
        ("Ответ: Re[2]: Доставка дивана", "доставка дивана"),
        ("[Support] Re: Hello", "hello"),
        ("Javob: Narxlar", "narxlar"),
    ],
)
def test_subjects_are_normalised_for_threading(subject: str, key: str) -> None:
    assert subject_key(subject) == key


def test_reply_tokens_and_own_message_ids() -> None:
    assert token_of_address("support@example.com", ["support+0123456789abcdef@example.com"]) == (
        "0123456789abcdef"
    )
    assert token_of_address("support@example.com", ["support+x@example.com"]) is None
    assert token_of_address("support@example.com", ["other+0123456789abcdef@example.com"]) is None
    match = OWN_ID_RE.match("<0123456789abcdef.42.support@example.com>")
    assert match is not None and match.group(1) == "0123456789abcdef"
