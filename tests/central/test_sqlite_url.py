"""Issue #10: `sqlite:///relative.db` made `/relative.db` at the file system root."""

from __future__ import annotations

import subprocess

import pytest

from central.store import StoreError, open_store
from tests.conftest import PYTHON, ROOT


def test_three_slashes_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///sub.db").close()
    assert (tmp_path / "sub.db").exists()


def test_four_slashes_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    open_store(f"sqlite:///{tmp_path}/abs.db").close()  # tmp_path starts with '/': four slashes
    assert (tmp_path / "abs.db").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///dir/"])
def test_a_url_without_a_file_is_rejected(url):
    with pytest.raises(StoreError, match="expected sqlite:///relative/central.db or sqlite:////absolute"):
        open_store(url)


def test_cli_creates_the_relative_file_in_its_working_directory(tmp_path, cli_env):
    cli_env["PYTHONPATH"] = str(ROOT)
    r = subprocess.run([PYTHON, "-m", "central.cli", "node", "add", "n1", "--db", "sqlite:///rel.db"],
                       cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rel.db").exists()
