"""What every browser test shares: Debian's Chromium and its flags (the `browser` fixture is
in conftest.py).

Importing this module skips the importing test module when Chromium is missing, except in CI
(.ci/run installs it), where a missing browser is a failure, never a silent skip."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    message = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)
import playwright.async_api as playwright_api  # noqa: E402  # after the browser check

expect = playwright_api.expect
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
