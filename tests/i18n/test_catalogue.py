"""The catalogue against the source: every message translated, placeholders kept, nothing bare.

When this fails, its message says what to add where (node/i18n_extract.py; docs/i18n.md).
"""

from __future__ import annotations

import gettext
import io
import re

import pytest

from node import i18n_extract, pofile
from node.i18n_extract import Message, bare_strings, fragments, placeholders, po_entry


def test_every_message_has_a_vietnamese_translation_with_its_placeholders():
    problems = i18n_extract.report("vi")
    assert problems == "", "\n" + problems


def test_the_extraction_finds_the_messages_a_technician_reads():
    found = i18n_extract.messages()
    assert len(found) > 400
    assert "{name} ({type}): nothing answers at 0x{address:02x}" in found  # diag's scan
    assert "{key}: unknown key; did you mean '{hint}'?" in found  # a config error
    assert "usage: " in found and "show this help message and exit" in found  # argparse's own
    plural = found["streetnode: {source}: configuration ok ({count} sensor)"]
    assert plural.plural == "streetnode: {source}: configuration ok ({count} sensors)"


def test_a_missing_translation_and_a_dropped_placeholder_are_named(tmp_path, monkeypatch):
    real = pofile.parse(i18n_extract.catalogue_path("vi").read_text(encoding="utf-8"))
    lines = ['msgid ""', 'msgstr "Content-Type: text/plain; charset=UTF-8\\n"', ""]
    for e in real[1:]:
        if e.msgid == "{name} ({type}): nothing answers at 0x{address:02x}":
            lines += [po_entry(Message(e.msgid, None, "x.py:1"), "{name}: không có gì trả lời")]
        elif e.msgid != "no GPIO pins configured" and e.msgid_plural is None:
            lines += [po_entry(Message(e.msgid, None, "x.py:1"), e.msgstr)]
        elif e.msgid_plural is not None:
            lines += [po_entry(Message(e.msgid, e.msgid_plural, "x.py:1"), e.msgstr_plural[0])]
    fake = tmp_path / "vi.po"
    fake.write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setattr(i18n_extract, "catalogue_path", lambda lang: fake)
    missing, mismatched = i18n_extract.problems("vi")
    assert [m.msgid for m in missing] == ["no GPIO pins configured"]
    assert missing[0].where.startswith("node/diag/hardware.py:")
    assert len(mismatched) == 1 and "{address:02x}" in mismatched[0] and "{type}" in mismatched[0]
    text = i18n_extract.report("vi")
    assert 'msgid "no GPIO pins configured"\nmsgstr ""' in text  # the exact entry to add
    assert str(fake) in text and "--update" in text and "docs/vi/glossary.md" in text


def test_a_printed_f_string_is_caught_and_an_exempt_one_is_not(tmp_path):
    module = tmp_path / "cmd.py"
    module.write_text(
        "from node.i18n import _\n"
        "def f(path, e):\n"
        "    print(f'cannot read {path}: {e}')\n"
        "    print(_('cannot read {path}').format(path=path))\n"
        "    print(f'{path}: {e}')\n"
        "    raise UsageError('--interval: expected a positive number')\n"
        "    problems.append(f'{path}: expected a table')\n"
        "    p.add_argument('--x', help='keep reading until Ctrl-C')\n"
        "    print(f'# {path} = (not set)')  # i18n: no (TOML)\n"
    )
    found = [(b.where.rsplit(":", 1)[1], b.text) for b in bare_strings([module])]
    assert [line for line, _text in found] == ["3", "6", "7", "8"]


def test_a_sentence_glued_from_translated_pieces_is_caught(tmp_path):
    module = tmp_path / "glue.py"
    module.write_text(
        "from node.i18n import _\n"
        "def f(state, a, b):\n"
        "    one = _('storm mode: ') + 'ON now'\n"
        "    two = f\"{_('daemon')} is running\"\n"
        "    three = _(a) + '; ' + _(b)\n"
        "    four = _('disk nearly full: {space}').format(space=state) + ' (more soon)'\n"
        "    five = ', '.join([_(a), _(b)])\n"
    )
    assert [b.where.rsplit(":", 1)[1] for b in fragments([module])] == ["3", "4", "6"]


@pytest.mark.parametrize(("text", "fields"), [
    ("at 0x{address:02x}: {name!r}", ["{address:02x}", "{name!r}"]),
    ("%(prog)s: error: %(message)s\n", ["%(message)s", "%(prog)s"]),
    ("humidity at {percent} %: saturated, 100 % for hours", ["{percent}"]),
    ("unrecognized arguments: %s", ["%s"]),
])
def test_placeholders(text, fields):
    assert placeholders(text) == fields


def test_pofile_compiles_what_gettext_reads():
    po = ('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n'
          '"Plural-Forms: nplurals=1; plural=0;\\n"\n\n'
          '#: a.py\nmsgid "disk nearly full: {space}"\nmsgstr "ổ đĩa gần đầy: {space}"\n\n'
          '#, fuzzy\nmsgid "never"\nmsgstr "chưa bao giờ"\n\n'
          'msgid "one {n} sensor"\nmsgid_plural "{n} sensors"\nmsgstr[0] "{n} cảm biến"\n\n'
          'msgid "a long "\n"message"\nmsgstr ""\n"một thông "\n"báo dài"\n')
    trans = gettext.GNUTranslations(io.BytesIO(pofile.compile_mo(pofile.parse(po))))
    assert trans.gettext("disk nearly full: {space}") == "ổ đĩa gần đầy: {space}"
    assert trans.gettext("never") == "never"  # fuzzy: left out, as msgfmt does
    assert trans.ngettext("one {n} sensor", "{n} sensors", 3) == "{n} cảm biến"
    assert trans.gettext("a long message") == "một thông báo dài"
    assert trans.gettext("not in it") == "not in it"


def test_a_po_syntax_error_names_file_and_line():
    with pytest.raises(pofile.PoError, match=r"x.po:2: "):
        pofile.parse('msgid "a"\nmsgstr b\n', "x.po")


# docs/vi/glossary.md: an English term in a message -> the Vietnamese term its translation must use
GLOSSARY = {r"sensors?": "cảm biến", r"buffer(?:ed|s)?": "bộ đệm", r"node": "trạm",
            r"daemon": "tiến trình nền", r"flood depth": "độ sâu ngập",
            r"uplink is down|connection lost": "mất kết nối",
            r"readings": "số đo", r"central": "máy chủ trung tâm", r"remedy": "cách khắc phục"}
NOT_THE_TERM = {"sensors: expected an array of tables ([[sensors]])"}  # the key [[sensors]], not the word


def test_the_glossary_terms_are_used_in_every_translation():
    entries = pofile.parse(i18n_extract.catalogue_path("vi").read_text(encoding="utf-8"))
    off = []
    for e in entries[1:]:
        if e.msgid in NOT_THE_TERM:
            continue
        # config keys, commands, placeholders, paths and quoted names are not words to translate
        words = re.sub(r"\[[^\]]*\]|`[^`]*`|\{[^}]*\}|\S*[._/]\S*|'[^']*'|\"[^\"]*\"", " ", e.msgid)
        translation = (e.msgstr or e.msgstr_plural.get(0, "")).lower()
        for english, vietnamese in GLOSSARY.items():
            if re.search(rf"(?<![\w-]){english}(?![\w-])", words, re.I) and vietnamese not in translation:
                off.append(f"{e.msgid!r}: {english} -> {vietnamese!r}, translated {translation!r}")
    assert not off, "\n".join(off)


def test_translations_are_nfc_so_the_terminal_width_is_counted_right():
    import unicodedata

    text = i18n_extract.catalogue_path("vi").read_text(encoding="utf-8")
    assert unicodedata.normalize("NFC", text) == text  # diag wraps by code points: one per letter
