"""The wheel carries the compiled Vietnamese catalogue (setup.py builds it; it is not committed)."""

from __future__ import annotations

import gettext
import io
import subprocess
import zipfile

from node import pofile
from tests.conftest import ROOT

MO = "node/locale/vi/LC_MESSAGES/streetnode.mo"
PO = "node/locale/vi/LC_MESSAGES/streetnode.po"


def test_the_wheel_holds_the_mo_compiled_from_the_committed_po(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert MO in names and PO in names
        compiled = gettext.GNUTranslations(io.BytesIO(z.read(MO)))
    entries = pofile.parse((ROOT / PO).read_text(encoding="utf-8"))
    assert len(compiled._catalog) >= len(entries) - 1  # type: ignore[attr-defined]  # every entry + header
    assert compiled.gettext("no GPIO pins configured") == "chưa cấu hình chân GPIO nào"


def test_the_installed_node_speaks_vietnamese(installed):
    p = subprocess.run([installed / "opt/streetnode/venv/bin/python", "-m", "node", "--lang", "vi", "--help"],
                       capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("cách dùng: ") and "kiểm tra cảm biến" in p.stdout
