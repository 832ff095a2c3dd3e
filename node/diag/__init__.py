"""Field diagnostics: checks that tell a technician at the pole what is wrong and what to do.

`run_diag(DiagContext(...)) -> Report`; `render.to_text` / `render.to_json` print it;
`Report.exit_code` is 0 (all pass), 1 (warnings) or 2 (failures). See docs/diag.md.
"""

from node.diag.checks import build_checks, run_diag
from node.diag.context import DiagContext
from node.diag.core import Check, Report, Result, Status

__all__ = ["Check", "DiagContext", "Report", "Result", "Status", "build_checks", "run_diag"]
