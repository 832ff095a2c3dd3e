"""What a technician reads in Vietnamese, pinned: diag with three faults, a config error, --help.

The commands run as the technician types them (``LANG=vi_VN.UTF-8 streetnode ...``) on emulated
hardware under a fake Pi (tests/diag/conftest.py). What moves from run to run (temporary paths,
today's date, the run's duration) is replaced by a token before comparing; the disk check sees
a fixed file system. ``STREETNODE_UPDATE_GOLDEN=1`` rewrites the files (then read the diff).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from node.cli import main
from tests.conftest import PYTHON, ROOT
from tests.diag.conftest import config_text, make_sysroot

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("STREETNODE_UPDATE_GOLDEN") == "1"
# 4 GiB card, 1.5 GiB free for everyone: a PASS on every machine
FIXED_DISK = os.statvfs_result((4096, 4096, 1_000_000, 450_000, 400_000, 250_000, 200_000, 200_000, 0, 255))


def normalize(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<tmp>")
    text = re.sub(r"(mã băm|hash) [0-9a-f]{16}", r"\1 <hash>", text)  # the config's hash holds its path
    text = re.sub(r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", "DD/MM/YYYY hh:mm:ss", text)
    text = re.sub(r"(/dev/i2c-1, )\S+( đọc/ghi được )\(\S+ 0660\)", r"\1<user>\2(<owner> 0660)", text)
    # the emulated ranger times a real echo: its last digit may move on a loaded machine
    text = re.sub(r"độ sâu ngập=-?\d+,\d cm, khoảng cách=\d+,\d cm", "độ sâu ngập=N cm, khoảng cách=N cm",
                  text)
    return re.sub(r"trong \d+,\d giây:", "trong N giây:", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with STREETNODE_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def technician(tmp_path, monkeypatch, capsys):
    """``LANG=vi_VN.UTF-8 streetnode ARGS`` in this process: (exit code, stdout, stderr)."""
    sysroot = make_sysroot(tmp_path / "sysroot")
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text(state))
    monkeypatch.setenv("LANG", "vi_VN.UTF-8")
    monkeypatch.setenv("STREETNODE_SYSROOT", str(sysroot))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("STREETNODE_FAULTS", raising=False)
    monkeypatch.setattr("node.diag.system.os.statvfs", lambda path: FIXED_DISK)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["-c", str(cfg), *args])
        out = capsys.readouterr()
        return code, normalize(out.out, tmp_path), normalize(out.err, tmp_path)

    return run


@pytest.mark.parametrize(("fault", "name"), [
    ("weather:absent", "diag-weather-absent.txt"),  # the BME280 does not answer on the bus
    ("flood:dead_echo", "diag-flood-dead-echo.txt"),  # the ranger's echo line is dead
    ("air:nack", "diag-air-nack.txt"),  # the PM sensor NACKs every transfer
])
def test_diag_with_a_fault_in_vietnamese(technician, fault, name):
    code, out, err = technician("diag", "--emulate", "storm", "--fault", fault)
    assert code == 2 and err == ""
    check_golden(name, out)


def test_a_config_error_in_vietnamese(tmp_path, cli_env):
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nid = "hn 01"\nstate_dr = "/x"\n\n[upload]\ninterval = "soon"\n\n'
                   '[[sensors]]\ntype = "bme28"\nname = "weather"\n')
    env = {**{k: v for k, v in cli_env.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")},
           "LANG": "vi_VN.UTF-8"}
    p = subprocess.run([PYTHON, "-m", "node", "config", "check", str(bad)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 78 and p.stdout == ""
    check_golden("config-error.txt", normalize(p.stderr, tmp_path))


@pytest.mark.parametrize(("args", "name"), [((), "help.txt"), (("diag",), "help-diag.txt")])
def test_help_in_vietnamese(cli_env, args, name):
    env = {**{k: v for k, v in cli_env.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")},
           "LANG": "vi_VN.UTF-8", "COLUMNS": "100"}
    p = subprocess.run([PYTHON, "-m", "node", *args, "--help"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    check_golden(name, p.stdout)


def test_a_usage_error_in_vietnamese(cli_env):
    env = {**cli_env, "LANG": "vi_VN.UTF-8", "COLUMNS": "100"}
    env.pop("LANGUAGE", None)
    p = subprocess.run([PYTHON, "-m", "node", "read", "--interval"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("cách dùng: streetnode read")
    assert "streetnode read: lỗi: tham số --interval: cần một giá trị" in p.stderr


def test_read_scan_and_identify_in_vietnamese(technician):
    code, out, err = technician("read", "--emulate", "storm", "--fault", "air:nack")
    assert code == 1, err
    assert "air        LỖI: air ở 0x12: đọc khung dữ liệu: NACK (không có phản hồi) [errno 121] (kiểm tra " \
           "dây nối, điện trở kéo lên và nguồn)" in out.splitlines()
    assert re.search(r"^weather    nhiệt độ +\d+,\d\d °C +tốt$", out, re.M), out
    assert out.startswith("-- ") and "(giả lập: storm)" in out.splitlines()[0]
    code, out, err = technician("scan", "--emulate", "storm", "--fault", "weather:absent")
    assert code == 1
    assert "cấu hình: weather (bme280) ở 0x76: KHÔNG THẤY" in out.splitlines()
    assert "cấu hình: air (pm25) ở 0x12: có trả lời" in out.splitlines()
    code, out, err = technician("identify", "--emulate", "--seconds", "0.2")
    assert code == 0
    assert err == "trạm hn-test-0001: đang nháy đèn LED trạng thái ở GPIO27 trong 0,2 giây (Ctrl-C để dừng)\n"
