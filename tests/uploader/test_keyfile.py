"""The node's key file: refused unless present, non-empty and private to its owner."""

from __future__ import annotations

import os

import pytest

from node.errors import EX_NOPERM, KeyFileError
from node.keyfile import load_key


def _write(path, data: bytes, mode: int):
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


HEX = "00112233445566778899aabbccddeeff" * 2


def test_private_key_file_is_loaded_and_decoded(tmp_path):
    p = _write(tmp_path / "node.key", f"  {HEX}\n".encode(), 0o600)
    assert load_key(p) == bytes.fromhex(HEX)
    assert len(load_key(str(p))) == 32


def test_owner_read_only_is_accepted(tmp_path):
    p = _write(tmp_path / "node.key", HEX.upper().encode(), 0o400)
    assert load_key(p) == bytes.fromhex(HEX)


@pytest.mark.parametrize("text", [b"k", HEX[:-1].encode(), (HEX + "0").encode(), b"zz" * 32])
def test_text_that_is_not_a_hex_key_is_refused(tmp_path, text):
    p = _write(tmp_path / "node.key", text, 0o600)
    with pytest.raises(KeyFileError, match="expected 64 hex digits"):
        load_key(p)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601])
def test_group_or_other_access_is_refused_with_chmod_remedy(tmp_path, mode):
    p = _write(tmp_path / "node.key", HEX.encode(), mode)
    with pytest.raises(KeyFileError) as e:
        load_key(p)
    msg = str(e.value)
    assert f"chmod 600 {p}" in msg
    assert f"{mode:04o}" in msg
    assert "\n" not in msg
    assert e.value.exit_code == EX_NOPERM == 77


def test_missing_file_names_the_key_and_path(tmp_path):
    p = tmp_path / "absent.key"
    with pytest.raises(KeyFileError, match="central.key_file: .*absent.key does not exist"):
        load_key(p)


def test_empty_or_blank_file_is_refused(tmp_path):
    p = _write(tmp_path / "node.key", b" \n\t\n", 0o600)
    with pytest.raises(KeyFileError, match="is empty"):
        load_key(p)


def test_directory_is_refused(tmp_path):
    d = tmp_path / "keydir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(d)


def test_keyfile_error_is_also_a_permission_error(tmp_path):
    with pytest.raises(PermissionError):
        load_key(tmp_path / "nope")
