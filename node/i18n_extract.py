"""Every message the node shows a person, extracted from the source, checked against a catalogue.

``python -m node.i18n_extract`` lists what the ``vi`` catalogue lacks; ``--update`` appends the
missing messages to it with an empty ``msgstr`` for a translator (docs/i18n.md).
tests/i18n/test_catalogue.py runs the same checks:

* every ``_("...")``, ``N_("...")`` and ``ngettext("...", "...", n)`` in ``node/`` (an AST scan,
  so a message assembled at run time cannot hide) has a translation in each catalogue;
* a translation keeps the placeholders of its message (``{address:02x}``, ``%s``) exactly;
* in the modules a technician reads (`USER_FACING`), a string that is printed, raised, passed as
  a check's summary/remedy/detail or as argparse help is a ``_()`` call, not a bare literal or
  f-string (``# i18n: no`` on the line exempts one on purpose).
"""

from __future__ import annotations

import argparse
import ast
import re
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent
ROOT = NODE_DIR.parent
CATALOGUE = "locale/{lang}/LC_MESSAGES/streetnode.po"
TRANSLATED = ("vi",)
# modules whose output a technician reads at the terminal (the daemon's log lines are not)
USER_FACING = ("cli.py", "config.py", "keyfile.py", "commands/*.py", "diag/*.py")
MARKERS = {"_", "N_"}
CHECK_CALLS = {"ok", "warn", "fail", "skip"}
TEXT_KEYWORDS = {"help", "description", "epilog", "remedy", "detail", "remedy_on_timeout", "summary"}
LIST_NAMES = {"problems", "fails", "remedies", "states", "errors", "lines"}
INTERNAL_ERRORS = {"AssertionError", "KeyError", "NotImplementedError", "TypeError", "AttributeError"}
EXEMPT = "# i18n: no"
# Bare strings of branches that land in the same train as the catalogue (alerts, fleet, ident:
# #15, #17, #20), so that train stays green; each is wrapped and translated on the next merge of
# main, and this set must then be empty again. (path, the string's words as `bare_strings` shows them)
PENDING: set[tuple[str, str]] = {
    ("node/commands/status.py", "alarm  (GPIO): ,   (on at >= , off below )"),
    ("node/commands/status.py", "config failed: : "),
    ("node/diag/system.py", "configuration valid: , node ,  of  sensors enabled; "),
    ("node/commands/status.py", "WARNING:  ( new epochs, last ): "),
    ("node/commands/status.py", "clock: NOT TRUSTED: claims to be synchronized but is  s off the "
     "central's (more than clock.max_offset); readings are stamped on the central's time and flagged "
     "clock_corrected"),
    ("node/diag/system.py", "check the NTP server this node syncs with (timedatectl timesync-status); a "
     "clock set by hand: sudo date -s with the right UTC time"),
    ("node/diag/system.py", "the clock claims to be synchronized but the central's is  s off (more than "
     "clock.max_offset): the agent does not trust it and stamps readings on the central's time"),
}


@dataclass(frozen=True)
class Message:
    msgid: str
    plural: str | None
    where: str  # path:line of its first use


@dataclass(frozen=True)
class Bare:
    where: str
    text: str


def sources() -> list[Path]:
    return sorted(p for p in NODE_DIR.rglob("*.py") if "locale" not in p.parts)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def messages(paths: list[Path] | None = None) -> dict[str, Message]:
    """msgid -> Message, for every marked string literal in ``paths`` (default: all of node/)."""
    found: dict[str, Message] = {}
    for path in paths if paths is not None else sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            args = node.args
            where = f"{_rel(path)}:{node.lineno}"
            if node.func.id in MARKERS and args and _literal(args[0]) is not None:
                msgid = _literal(args[0])
                assert msgid is not None
                found.setdefault(msgid, Message(msgid, None, where))
            elif node.func.id == "ngettext" and len(args) >= 2:
                one, many = _literal(args[0]), _literal(args[1])
                if one is not None and many is not None:
                    found.setdefault(one, Message(one, many, where))
    return found


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


# ---------------------------------------------------------------- bare strings
_PATHS = re.compile(r"(?:/[\w.*-]+)+/?|`[^`]*`|\$\w+|--[\w-]+")
_WORD = re.compile(r"[A-Za-z]{3,}")


def _has_words(node: ast.expr) -> str | None:
    """The literal text of a str/f-string/concatenation when it holds words a person reads."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _has_words(node.left) or _has_words(node.right)
    if isinstance(node, ast.IfExp):
        return _has_words(node.body) or _has_words(node.orelse)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and
                       isinstance(v.value, str))
    else:
        return None
    return text if _WORD.search(_PATHS.sub(" ", text)) else None


def _texts_of(call: ast.Call) -> Iterator[ast.expr]:
    """The arguments of ``call`` that a person reads, by what is called."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name == "print" and call.args:
        yield call.args[0]
    elif name in CHECK_CALLS:
        yield from call.args[1:]
    elif name == "append" and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and func.value.id in LIST_NAMES and call.args:
        arg = call.args[0]
        yield from arg.elts if isinstance(arg, ast.Tuple) else [arg]
    for kw in call.keywords:
        if kw.arg in TEXT_KEYWORDS:
            yield kw.value


def _user_facing_nodes(paths: list[Path] | None) -> Iterator[tuple[Path, list[str], ast.AST]]:
    """Every AST node of ``paths`` (default: the `USER_FACING` modules), with its file and lines."""
    if paths is None:
        paths = sorted({p for pattern in USER_FACING for p in NODE_DIR.glob(pattern)})
    for path in paths:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, str(path))):
            yield path, lines, node


def bare_strings(paths: list[Path] | None = None) -> list[Bare]:
    """User-facing strings in `USER_FACING` modules that do not go through ``_()``."""
    out: list[Bare] = []
    for path, lines, node in _user_facing_nodes(paths):
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Call):
            candidates += list(_texts_of(node))
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            exc = node.exc.func
            exc_name = exc.id if isinstance(exc, ast.Name) else getattr(exc, "attr", "")
            if exc_name not in INTERNAL_ERRORS:
                candidates.append(node.exc.args[0])
        for expr in candidates:
            words = _has_words(expr)
            if words is None:
                continue
            span = lines[expr.lineno - 1:(expr.end_lineno or expr.lineno)]
            if any(EXEMPT in line for line in span) or (_rel(path), words) in PENDING:
                continue
            out.append(Bare(f"{_rel(path)}:{expr.lineno}", words))
    return sorted(set(out), key=lambda b: b.where)


def _translated(node: ast.expr) -> bool:
    """``_("...")`` or ``_("...").format(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        node = node.func.value
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKERS | {
        "ngettext"}


def fragments(paths: list[Path] | None = None) -> list[Bare]:
    """A translated message glued to English words (``_("daemon ") + "running"``, ``f"{_(x)} now"``):
    a sentence built from pieces, which breaks Vietnamese word order. Separators (``"; "``) are fine."""
    out: list[Bare] = []
    for path, lines, node in _user_facing_nodes(paths):
        glued: str | None = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            for one, other in ((node.left, node.right), (node.right, node.left)):
                if _translated(one) and _has_words(other):
                    glued = _has_words(other)
        elif isinstance(node, ast.JoinedStr):
            inner = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
            if any(_translated(v) for v in inner):
                glued = _has_words(node)
        if glued is not None and EXEMPT not in lines[node.lineno - 1]:
            out.append(Bare(f"{_rel(path)}:{node.lineno}", glued))
    return sorted(set(out), key=lambda b: b.where)


# ---------------------------------------------------------------- placeholders
_PERCENT = re.compile(r"%(?:\((\w+)\))?[sdr]")


def placeholders(text: str) -> list[str]:
    """``{name:spec}`` fields and ``%s``/``%(name)s`` conversions of a message, sorted."""
    fields: list[str] = []
    try:
        for _literal_text, name, spec, conversion in string.Formatter().parse(text):
            if name is not None:
                fields.append("{" + name + (f"!{conversion}" if conversion else "") +
                              (f":{spec}" if spec else "") + "}")
    except ValueError:
        fields.append("<unbalanced braces>")
    fields += [m.group(0) for m in _PERCENT.finditer(text)]
    return sorted(fields)


# ---------------------------------------------------------------- catalogue checks
def catalogue_path(lang: str) -> Path:
    return NODE_DIR / CATALOGUE.format(lang=lang)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def po_entry(m: Message, translation: str = "", *, fuzzy: bool = False) -> str:
    """The lines of a catalogue entry for ``m`` (an empty msgstr: for the translator)."""
    head = f"#: {m.where.rpartition(':')[0]}\n" + ("#, fuzzy\n" if fuzzy else "")  # no line: stays true
    if m.plural is not None:
        return head + f"msgid {_quote(m.msgid)}\nmsgid_plural {_quote(m.plural)}\nmsgstr[0] " \
            f"{_quote(translation)}\n"
    return head + f"msgid {_quote(m.msgid)}\nmsgstr {_quote(translation)}\n"


def _order(where: str) -> tuple[str, int]:
    path, _colon, line = where.rpartition(":")
    return path, int(line)


def problems(lang: str) -> tuple[list[Message], list[str]]:
    """(messages the catalogue lacks or leaves untranslated, placeholder mismatches)."""
    from node import pofile

    path = catalogue_path(lang)
    entries = {e.msgid: e for e in pofile.parse(path.read_text(encoding="utf-8"), str(path))} \
        if path.exists() else {}
    missing, mismatched = [], []
    for msgid, m in sorted(messages().items(), key=lambda kv: _order(kv[1].where)):
        e = entries.get(msgid)
        if e is None or not e.translated:
            missing.append(m)
            continue
        if (e.msgid_plural is None) != (m.plural is None):
            kind = "a plural" if m.plural else "not a plural"
            mismatched.append(f"{_rel(path)}:{e.line}: msgid {msgid!r} is {kind} message in the source "
                              f"({m.where}): run `python -m node.i18n_extract --update`")
            continue
        want = placeholders(msgid)
        translations = list(e.msgstr_plural.values()) if e.msgid_plural is not None else [e.msgstr]
        for text in translations:
            got = placeholders(text)
            if got != want:
                mismatched.append(f"{_rel(path)}:{e.line}: msgid {msgid!r} has placeholders {want}, its "
                                  f"translation {got}: keep exactly the same ones (they may move)")
    return missing, mismatched


def report(lang: str) -> str:
    """What a developer must fix, with the exact lines to add; empty when all is well."""
    missing, mismatched = problems(lang)
    out = []
    if missing:
        out.append(f"{len(missing)} message(s) have no {lang!r} translation in "
                   f"{_rel(catalogue_path(lang))}. Add these entries there and fill in msgstr (or run "
                   f"`python -m node.i18n_extract --update`: it adds them with an empty msgstr, then "
                   f"translate; terms: docs/{lang}/glossary.md; how: docs/i18n.md):\n")
        out += [po_entry(m) for m in missing]
    out += mismatched
    bare = bare_strings()
    if bare:
        out.append(f"{len(bare)} user-facing string(s) do not go through the catalogue. Wrap each in _() "
                   "with named placeholders, e.g. _(\"cannot read {path}: {reason}\").format(path=p, "
                   "reason=r), and add it to the catalogues (docs/i18n.md); a string that is not for "
                   f"people gets '{EXEMPT}' on its line:")
        out += [f"  {b.where}: {b.text!r}" for b in bare]
    glued = fragments()
    if glued:
        out.append(f"{len(glued)} message(s) are glued to English words: a sentence from pieces keeps "
                   "English word order. Make each variant one whole message with placeholders "
                   "(docs/i18n.md, 'One whole sentence per message'):")
        out += [f"  {b.where}: {b.text!r}" for b in glued]
    return "\n".join(out)


def update(lang: str) -> int:
    """Rewrite the catalogue in source order: every message, its translation kept (an empty msgstr
    for a new one), messages no longer in the source kept at the end as ``#~`` comments.
    Returns how many messages still need a translation."""
    from node import pofile

    path = catalogue_path(lang)
    text = path.read_text(encoding="utf-8")
    entries = pofile.parse(text, str(path))
    header = text[:text.index("\n\n") + 1] if "\n\n" in text else text
    old = {e.msgid: e for e in entries if e.msgid}
    current = sorted(messages().values(), key=lambda m: _order(m.where))
    out = [header]
    untranslated = 0
    for m in current:
        e = old.get(m.msgid)
        done = e.msgstr_plural.get(0, "") if e and e.msgid_plural is not None else (e.msgstr if e else "")
        fuzzy = bool(e and "fuzzy" in e.flags)
        untranslated += not done or fuzzy
        out.append("\n" + po_entry(m, done, fuzzy=fuzzy))
    gone = [e for msgid, e in old.items() if msgid not in {m.msgid for m in current}]
    for e in gone:
        out.append("\n#~ msgid " + _quote(e.msgid) + "\n#~ msgstr " + _quote(e.msgstr) + "\n")
    path.write_text("".join(out), encoding="utf-8")
    return untranslated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.i18n_extract", description=__doc__.split("\n")[0])
    parser.add_argument("--lang", default=TRANSLATED[0], choices=TRANSLATED)
    parser.add_argument("--update", action="store_true", help="append missing messages (empty msgstr)")
    args = parser.parse_args(argv)
    if args.update:
        left = update(args.lang)
        print(f"{_rel(catalogue_path(args.lang))} rewritten in source order; {left} message(s) to translate")
        return 0
    text = report(args.lang)
    print(text or f"{args.lang}: every message translated, placeholders intact")
    return 1 if text else 0


if __name__ == "__main__":
    sys.exit(main())
