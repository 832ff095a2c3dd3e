"""The spec's home in code (#13, old #11, item 6): what node and central share (wire format, record
types, quality flags) lives in node/protocol.py and node/model.py, which import neither the node's
runtime nor the drivers; the central imports nothing else of node/ and nothing of drivers/."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

SHARED = {"node", "node.model", "node.protocol", "node.errors"}
# the threshold rule of the central's alerts is the pole's own alarm rule (one rule, not two copies)
RULES = {"node.hysteresis"}
# the node's config schema: fleet configuration (#17) checks a pushed layer with the node's own code
# (its one-line messages in the reader's language through node.i18n, stdlib gettext only)
CONFIG_SCHEMA = {"node.config", "node.remote_keys", "node.units", "node.i18n"}


def test_every_central_module_imports_only_the_shared_modules():
    code = ("import importlib, pkgutil, sys, central\n"
            "for m in pkgutil.walk_packages(central.__path__, 'central.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('node', 'drivers'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert loaded <= SHARED | CONFIG_SCHEMA | RULES, sorted(loaded - SHARED - CONFIG_SCHEMA - RULES)
    assert "node.protocol" in loaded and "node.model" in loaded


def test_the_shared_modules_import_only_the_standard_library_and_each_other():
    for name in ("model", "protocol", "errors", "hysteresis"):
        tree = ast.parse((ROOT / "node" / f"{name}.py").read_text("utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        ours = {m for m in imported if m.split(".")[0] in ("node", "drivers", "central")}
        assert ours <= {"node.model"}, (name, ours)
        assert all(m.split(".")[0] in sys.stdlib_module_names or m in ours or m == "__future__"
                   for m in imported), (name, imported)


def test_the_drivers_copy_of_the_quality_flags_agrees():
    from drivers.quality import Quality as DriverQuality
    from node.model import Quality

    assert {q.name: q.value for q in Quality} == {q.name: q.value for q in DriverQuality}


def test_the_protocol_page_lists_every_error_code_and_csv_column():
    from central.reads import CSV_COLUMNS

    # the codes of central/errors.py itself (areas register more at import: those are theirs to list)
    tree = ast.parse((ROOT / "central" / "errors.py").read_text("utf-8"))
    table = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "STATUS")
    codes = ast.literal_eval(table)
    text = (ROOT / "docs" / "protocol.md").read_text("utf-8")
    for code, status in codes.items():
        assert f"| {status} | `{code}` |" in text, code
    assert ", ".join(CSV_COLUMNS) in text
