"""Role checks for the operator API: a denied action is a 403 with the reason, and audited.

The checks live in webhooks.api (whose routes need them too); route modules import them here."""

from __future__ import annotations

from webhooks.api import Forbidden, deny, require_role

__all__ = ["Forbidden", "deny", "require_role"]
