"""What a person reads at the terminal, in their language: gettext messages, numbers and times.

``_("text {name}").format(name=...)`` marks and translates a message; ``N_("text")`` only marks
one (translated later, where it is shown). The catalogue of a language is
``node/locale/<lang>/LC_MESSAGES/streetnode.po``; the build compiles it to ``.mo`` (setup.py), and
an editable install compiles it on first use (`node.pofile`). English is the source language, the
default and the fallback for any message a catalogue lacks.

The language comes from ``--lang`` (`set_language`), else the environment as GNU gettext and
Debian read it (`detect`). The daemon's log lines stay English; so does every ``--json`` document
(`english()` around what produces one). See docs/i18n.md for adding a message.
"""

from __future__ import annotations

import contextlib
import gettext
import os
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

DOMAIN = "streetnode"
LOCALE_DIR = Path(__file__).with_name("locale")
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "vi")  # languages with a catalogue (en: the source, no catalogue needed)
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
_FIXED_ZONES = {"Asia/Ho_Chi_Minh": 7, "Asia/Saigon": 7, "Asia/Bangkok": 7, "UTC": 0, "Etc/UTC": 0}

# decimal mark and thousands separator of each language (glibc's LC_NUMERIC for vi_VN)
NUMERIC = {"en": (".", ""), "vi": (",", ".")}

_state: dict[str, object] = {"lang": SOURCE_LANGUAGE, "trans": gettext.NullTranslations(),
                             "tz": None, "tz_name": DEFAULT_TIMEZONE}
_cache: dict[str, gettext.NullTranslations] = {}


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it here."""
    return message


def _(message: str) -> str:
    """``message`` in the current language (English when the catalogue lacks it)."""
    return _state["trans"].gettext(message)  # type: ignore[attr-defined, no-any-return]


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the current language."""
    return _state["trans"].ngettext(singular, plural, n)  # type: ignore[attr-defined, no-any-return]


def language() -> str:
    return str(_state["lang"])


def _base(tag: str) -> str:
    """``vi_VN.UTF-8@x`` -> ``vi``; ``C``/``POSIX``/empty -> ``""``."""
    tag = tag.split(".", 1)[0].split("@", 1)[0]
    if tag in ("C", "POSIX", ""):
        return ""
    return tag.split("_", 1)[0].split("-", 1)[0].lower()


def detect(environ: Mapping[str, str] | None = None) -> str:
    """The language the environment asks for, as GNU gettext reads it (Debian's convention).

    The locale is the first set of LC_ALL, LC_MESSAGES, LANG. LANGUAGE, a colon-separated list of
    preferences, overrides it, except when the locale is C/POSIX (then LANGUAGE is ignored). The
    first preference with a catalogue wins; anything else is English.
    """
    env = os.environ if environ is None else environ
    locale_tag = next((env[k] for k in ("LC_ALL", "LC_MESSAGES", "LANG") if env.get(k)), "")
    if not _base(locale_tag):
        return SOURCE_LANGUAGE
    wanted = [_base(t) for t in env.get("LANGUAGE", "").split(":")] + [_base(locale_tag)]
    return next((lang for lang in wanted if lang in LANGUAGES), SOURCE_LANGUAGE)


def catalogue(lang: str) -> gettext.NullTranslations:
    """The translations of ``lang``: its compiled ``.mo``, else its ``.po`` compiled now."""
    if lang == SOURCE_LANGUAGE or lang not in LANGUAGES:
        return gettext.NullTranslations()
    if lang in _cache:
        return _cache[lang]
    from node import pofile

    here = LOCALE_DIR / lang / "LC_MESSAGES"
    po, mo = here / f"{DOMAIN}.po", here / f"{DOMAIN}.mo"
    trans: gettext.NullTranslations = gettext.NullTranslations()
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as f:
            trans = gettext.GNUTranslations(f)
    elif po.exists():
        trans = pofile.translations(po, cache=mo)
    _cache[lang] = trans
    return trans


def set_language(lang: str | None = None) -> str:
    """Use ``lang`` (``None``: from the environment) for every message from now on; returns it.

    Also gives argparse (usage, errors, --help headings) the same catalogue.
    """
    import argparse

    chosen = _base(lang) if lang else detect()
    if chosen not in LANGUAGES:
        chosen = SOURCE_LANGUAGE
    trans = catalogue(chosen)
    _state["lang"] = chosen
    _state["trans"] = trans
    argparse._ = trans.gettext  # type: ignore[attr-defined]  # argparse calls its module's _()
    argparse.ngettext = trans.ngettext  # type: ignore[attr-defined]
    return chosen


@contextlib.contextmanager
def english() -> Iterator[None]:
    """English inside the block (JSON documents, support bundles), the previous language after."""
    before = language()
    set_language(SOURCE_LANGUAGE)
    try:
        yield
    finally:
        set_language(before)


# ---------------------------------------------------------------- numbers
def number(value: float, digits: int = 1, *, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals, in the reader's notation (vi: ``1.234,5``)."""
    text = f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"
    point, group = NUMERIC.get(language(), NUMERIC["en"])
    return text.replace(",", "\0").replace(".", point).replace("\0", group)


def integer(value: int) -> str:
    """A count in the reader's notation (vi groups thousands with a dot: ``12.345``)."""
    return number(value, 0)


# ---------------------------------------------------------------- times
def set_timezone(name: str | None) -> None:
    """The node's configured time zone (``[node] timezone``) for times shown to a person."""
    _state["tz_name"] = name or DEFAULT_TIMEZONE
    _state["tz"] = None


def zone(name: str) -> tzinfo:
    """The zone called ``name``; without the system's tz database, a fixed offset where known."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # no tzdata on a minimal image, or a malformed name
        if name in _FIXED_ZONES:
            return timezone(timedelta(hours=_FIXED_ZONES[name]), name)
        raise ValueError(name) from None


def _tz() -> tzinfo:
    if _state["tz"] is None:
        try:
            _state["tz"] = zone(str(_state["tz_name"]))
        except ValueError:
            _state["tz"] = zone(DEFAULT_TIMEZONE)
    return _state["tz"]  # type: ignore[return-value]


def date_time(wall_s: float) -> str:
    """A moment for the reader: English ``2026-05-01 07:30:00 UTC`` (as before), Vietnamese
    ``01/05/2026 14:30:00 (+07)`` in the node's time zone, 24-hour clock."""
    if language() == SOURCE_LANGUAGE:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_s))
    local = datetime.fromtimestamp(wall_s, _tz())
    offset = local.strftime("%z")
    short = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    return local.strftime("%d/%m/%Y %H:%M:%S") + f" ({short})"


def clock_time(wall_s: float | None = None) -> str:
    """``HH:MM:SS`` (24 h): local time in English as before, the node's zone otherwise."""
    wall = time.time() if wall_s is None else wall_s
    if language() == SOURCE_LANGUAGE:
        return time.strftime("%H:%M:%S", time.localtime(wall))
    return datetime.fromtimestamp(wall, _tz()).strftime("%H:%M:%S")


# ---------------------------------------------------------------- argparse's own messages
# argparse's strings (Python 3.11-3.13) that a technician meets, for the catalogue; argparse
# itself calls gettext on them (set_language hands it this catalogue).
ARGPARSE_MESSAGES = (
    N_("usage: "), N_("options"), N_("positional arguments"), N_("show this help message and exit"),
    N_("show program's version number and exit"), N_("%(prog)s: error: %(message)s\n"),
    N_("unrecognized arguments: %s"), N_("the following arguments are required: %s"),
    N_("expected one argument"), N_("expected at most one argument"),
    N_("expected at least one argument"), N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"), N_("argument %(argument_name)s: %(message)s"),
    N_("not allowed with argument %s"), N_("ignored explicit argument %r"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("one of the arguments %s is required"),
)
