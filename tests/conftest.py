"""Shared fixtures: real files on temp dirs, real processes, loopback only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "deploy" / "config.example.toml"


@pytest.fixture
def example_config_text() -> str:
    return EXAMPLE_CONFIG.read_text()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a real subprocess."""
    env = dict(os.environ)
    env.pop("STREETNODE_CONFIG", None)
    env.pop("STREETNODE_DEBUG", None)
    env["PYTHONPATH"] = str(ROOT)
    env["HOME"] = str(tmp_path)
    return env


PYTHON = sys.executable
