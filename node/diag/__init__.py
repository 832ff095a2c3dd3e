"""Field diagnostics: checks that tell a technician at the pole what is wrong and what to do.

`run_diag(DiagContext(...)) -> Report`; `render.to_text` / `render.to_json` print it;
`Report.exit_code` is 0 (all pass), 1 (warnings) or 2 (failures). See docs/diag.md.

The names below are imported on first use (PEP 562): `streetnode run` registers the
technician commands, which import `node.diag.context`, and must not pay for the checks
(ssl, subprocess) on the daemon's start path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.diag.checks import build_checks, run_diag
    from node.diag.context import DiagContext
    from node.diag.core import Check, Report, Result, Status

__all__ = ["Check", "DiagContext", "Report", "Result", "Status", "build_checks", "run_diag"]

_HOME = {"build_checks": "checks", "run_diag": "checks", "DiagContext": "context", "Check": "core",
         "Report": "core", "Result": "core", "Status": "core"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"node.diag.{_HOME[name]}"), name)
    raise AttributeError(f"module 'node.diag' has no attribute {name!r}")
