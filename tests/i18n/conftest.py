"""Every test here leaves the process in English, whatever language it switched to."""

from __future__ import annotations

import pytest

from node import i18n

LOCALE_VARS = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@pytest.fixture(autouse=True)
def english_afterwards(monkeypatch):
    for name in LOCALE_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
    i18n.set_language("en")
    i18n.set_timezone(None)
