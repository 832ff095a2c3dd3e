"""The installer in Vietnamese under a Vietnamese locale: every line it prints, and its summary.

The table of lines lives in deploy/install.sh (``MESSAGES_VI``, keyed by the English printf
format); ``t "FORMAT" ARGS`` prints one. These tests keep the table and the script in step.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.deploy.conftest import INSTALL_SH, base_args, run_install

SCRIPT = INSTALL_SH.read_text(encoding="utf-8")
USED = set(re.findall(r'(?<![\w-])t "([^"$]*)"', SCRIPT))
TABLE = dict(re.findall(r'^\s+\["([^"]*)"\]="([^"]*)"$', SCRIPT, re.M))
REPORTER = re.compile(r'\b(?:say|warn|changed|unchanged|skipped|removed|die \$EX_\w+) "(?!\$\(t )([^"]*)"')
VARIABLES = re.compile(r"\$\{?[\w\[\]*@:-]+\}?|\$\([^)]*\)")
VI = {"LANG": "vi_VN.UTF-8", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": ""}


def test_every_line_the_installer_prints_has_a_vietnamese_translation():
    assert len(USED) > 80
    missing = sorted(USED - set(TABLE))
    assert not missing, ("add these lines to MESSAGES_VI in deploy/install.sh (terms: docs/vi/glossary.md):\n"
                         + "\n".join(f'    ["{m}"]="..."' for m in missing))
    assert not sorted(set(TABLE) - USED), "MESSAGES_VI has lines install.sh no longer prints"
    for english, vietnamese in TABLE.items():
        assert english.count("%s") == vietnamese.count("%s"), (english, vietnamese)


def test_no_line_is_printed_without_t():
    bare = []
    for number, line in enumerate(SCRIPT.splitlines(), 1):
        if "# i18n: no" in line:
            continue
        m = REPORTER.search(line)
        if m and re.search(r"[A-Za-z]{3,}", VARIABLES.sub("", m.group(1))):
            bare.append(f"deploy/install.sh:{number}: {line.strip()}")
    assert not bare, ("print these through t \"FORMAT\" ARGS (and add FORMAT to MESSAGES_VI):\n"
                      + "\n".join(bare))


@pytest.mark.parametrize(("env", "lang"), [
    ({"LANG": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "en_US.UTF-8", "LANGUAGE": "vi:en"}, "vi"),
    ({"LANG": "C.UTF-8", "LANGUAGE": "vi"}, "en"),
    ({"LANG": "vi_VN.UTF-8", "LC_ALL": "C"}, "en"),
    ({"LANG": "en_GB.UTF-8", "LC_MESSAGES": "vi_VN"}, "vi"),
    ({}, "en"),
])
def test_the_installer_chooses_the_language_as_the_node_does(env, lang):
    from node.i18n import detect

    function = re.search(r"^installer_lang\(\) \{.*?^\}", SCRIPT, re.S | re.M).group(0)
    p = subprocess.run(["bash", "-c", function + "\ninstaller_lang"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", **env}, timeout=10)
    assert p.stdout.strip() == lang == detect(env)


def test_a_bad_value_is_one_vietnamese_line(tmp_path):
    r = run_install("--root", tmp_path, "--no-system", "--node-id", "cột 7", env=VI)
    assert r.rc == 78
    assert r.err == ("install.sh: lỗi: --node-id: cần 1-64 chữ cái, chữ số, '.', '_' hoặc '-', bắt đầu "
                     "bằng chữ cái hoặc chữ số, nhưng nhận được 'cột 7'\n")


def test_install_and_second_run_in_vietnamese(tmp_path, wheel, node_key):
    root = tmp_path / "root"
    root.mkdir()
    first = run_install(*base_args(root, wheel), "--node-id", "hn-test-0019", "--central-url",
                        "https://central.example.org", "--key-file", node_key, env=VI)
    assert first.rc == 0, first.out + first.err
    lines = first.out.splitlines()
    assert lines[0] == f"install.sh: đang cài streetnode từ {wheel} vào {root}"
    assert "đã thay đổi: /etc/streetnode/config.toml (mới, quyền 0640)" in lines
    assert "bỏ qua: gói apt (--no-system)" in lines
    assert "không đổi: /etc/streetnode/config.toml hợp lệ (streetnode config check)" in lines
    changes = [ln for ln in lines if ln.startswith("đã thay đổi: ")]
    assert lines[-1] == f"install.sh: {len(changes)} thay đổi" and len(changes) > 5
    assert not any(ln.startswith(("changed:", "unchanged:", "skipped:")) for ln in lines)
    again = run_install(*base_args(root, wheel), env=VI)
    assert again.rc == 0, again.err
    assert again.out.splitlines()[-1] == "install.sh: 0 thay đổi"
    assert "không đổi: /etc/streetnode/node.key (giữ nguyên)" in again.out
