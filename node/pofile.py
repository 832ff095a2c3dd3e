"""A small, pure-Python msgfmt: read a gettext ``.po`` catalogue, write the ``.mo`` gettext loads.

Used by the build (setup.py compiles every catalogue into the wheel), by an editable install on
first use (`node.i18n.catalogue`) and by the catalogue test. Standard library only, so setup.py
can load it by path before anything is installed. ``python -m node.pofile IN.po OUT.mo``.

Supports what our catalogues use: ``msgctxt``-free entries, ``msgid_plural``/``msgstr[N]``,
multi-line strings, ``#,`` flags (a ``fuzzy`` entry is left out, as msgfmt does) and comments.
"""

from __future__ import annotations

import ast
import gettext
import io
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    msgid: str
    msgstr: str = ""
    msgid_plural: str | None = None
    msgstr_plural: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    comments: list[str] = field(default_factory=list)
    line: int = 0

    @property
    def translated(self) -> bool:
        if "fuzzy" in self.flags:
            return False
        if self.msgid_plural is not None:
            return bool(self.msgstr_plural) and all(self.msgstr_plural.values())
        return bool(self.msgstr)


class PoError(ValueError):
    """A syntax error in a catalogue, naming the file and line."""


def parse(text: str, name: str = "<po>") -> list[Entry]:
    """The entries of a ``.po`` text, the header (``msgid ""``) first if present."""
    entries: list[Entry] = []
    cur: Entry | None = None
    key: str | None = None
    pending_flags: set[str] = set()
    pending_comments: list[str] = []

    def finish() -> None:
        nonlocal cur
        if cur is not None:
            entries.append(cur)
        cur = None

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#,"):
            finish()
            pending_flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            continue
        if line.startswith("#"):
            finish()
            pending_comments.append(line)
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if cur is None or key is None:
                raise PoError(f"{name}:{number}: a string continues nothing")
            _append(cur, key, _unquote(line, name, number))
            continue
        if keyword == "msgid":
            finish()
            cur = Entry("", flags=pending_flags, comments=pending_comments, line=number)
            pending_flags, pending_comments = set(), []
        elif cur is None:
            raise PoError(f"{name}:{number}: {keyword} before msgid")
        if keyword not in ("msgid", "msgid_plural", "msgstr") and not keyword.startswith("msgstr["):
            raise PoError(f"{name}:{number}: unknown keyword {keyword!r}")
        key = keyword
        assert cur is not None
        if keyword == "msgid_plural":
            cur.msgid_plural = ""
        _append(cur, key, _unquote(rest.strip(), name, number))
    finish()
    return entries


def _unquote(token: str, name: str, number: int) -> str:
    if len(token) < 2 or not (token.startswith('"') and token.endswith('"')):
        raise PoError(f"{name}:{number}: expected a quoted string, got {token!r}")
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        raise PoError(f"{name}:{number}: bad string {token!r}") from None
    if not isinstance(value, str):
        raise PoError(f"{name}:{number}: bad string {token!r}")
    return value


def _append(entry: Entry, key: str, text: str) -> None:
    if key == "msgid":
        entry.msgid += text
    elif key == "msgid_plural":
        entry.msgid_plural = (entry.msgid_plural or "") + text
    elif key == "msgstr":
        entry.msgstr += text
    else:
        index = int(key[len("msgstr["):-1])
        entry.msgstr_plural[index] = entry.msgstr_plural.get(index, "") + text


def compile_mo(entries: list[Entry]) -> bytes:
    """The GNU ``.mo`` bytes of the translated entries (and the header)."""
    table: dict[bytes, bytes] = {}
    for e in entries:
        if e.msgid and not e.translated:
            continue
        if e.msgid_plural is not None:
            key = e.msgid.encode() + b"\0" + e.msgid_plural.encode()
            value = b"\0".join(e.msgstr_plural[i].encode() for i in sorted(e.msgstr_plural))
        else:
            key, value = e.msgid.encode(), e.msgstr.encode()
        table[key] = value
    keys = sorted(table)
    header_size = 7 * 4
    ids_at = header_size
    strs_at = ids_at + 8 * len(keys)
    data_at = strs_at + 8 * len(keys)
    blob = io.BytesIO()
    id_index, str_index = [], []
    for k in keys:
        id_index.append((len(k), data_at + blob.tell()))
        blob.write(k + b"\0")
    for k in keys:
        v = table[k]
        str_index.append((len(v), data_at + blob.tell()))
        blob.write(v + b"\0")
    out = io.BytesIO()
    out.write(struct.pack("<7I", 0x950412DE, 0, len(keys), ids_at, strs_at, 0, 0))
    for length, offset in id_index + str_index:
        out.write(struct.pack("<2I", length, offset))
    out.write(blob.getvalue())
    return out.getvalue()


def compile_file(po: Path, mo: Path) -> None:
    """Write ``mo`` from ``po`` (atomically: a reader never sees half a catalogue)."""
    data = compile_mo(parse(po.read_text(encoding="utf-8"), str(po)))
    tmp = mo.with_name(mo.name + ".tmp")
    mo.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    tmp.replace(mo)


def translations(po: Path, *, cache: Path | None = None) -> gettext.GNUTranslations:
    """A catalogue straight from ``po``; also written to ``cache`` (a ``.mo``) when writable."""
    data = compile_mo(parse(po.read_text(encoding="utf-8"), str(po)))
    if cache is not None:
        try:
            tmp = cache.with_name(f"{cache.name}.{id(data)}.tmp")
            tmp.write_bytes(data)
            tmp.replace(cache)
        except OSError:  # a read-only install: compile in memory each time
            pass
    return gettext.GNUTranslations(io.BytesIO(data))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m node.pofile IN.po OUT.mo", file=sys.stderr)
        return 2
    compile_file(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
