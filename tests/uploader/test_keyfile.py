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


def test_private_key_file_is_loaded_and_stripped(tmp_path):
    p = _write(tmp_path / "node.key", b"  0123abcd\n", 0o600)
    assert load_key(p) == b"0123abcd"
    assert load_key(str(p)) == b"0123abcd"


def test_owner_read_only_is_accepted(tmp_path):
    p = _write(tmp_path / "node.key", b"k", 0o400)
    assert load_key(p) == b"k"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610, 0o601])
def test_group_or_other_access_is_refused_with_chmod_remedy(tmp_path, mode):
    p = _write(tmp_path / "node.key", b"secret", mode)
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
