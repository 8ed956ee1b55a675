"""The e-mail channel's tables, for Core statements."""

from __future__ import annotations

from sqlalchemy import Table

from hub.models import Base, EmailMessage, MailboxState, RejectedMail


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


EMAIL_MESSAGES = _table(EmailMessage)
MAILBOXES = _table(MailboxState)
REJECTED = _table(RejectedMail)
