"""Error hierarchy of the node and the exit codes the CLI maps them to.

Exit codes (documented in README):
  0  success
  1  runtime failure (or diag: warnings)
  2  usage error (or diag: failures)
  69 EX_UNAVAILABLE: a required service or device is not reachable
  74 EX_IOERR: the state directory or buffer cannot be used
  77 EX_NOPERM: a key file or device has the wrong permissions
  78 EX_CONFIG: the configuration is invalid
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable

EX_OK = 0
EX_FAILURE = 1
EX_USAGE = 2
EX_UNAVAILABLE = 69
EX_IOERR = 74
EX_NOPERM = 77
EX_CONFIG = 78


class StreetnodeError(Exception):
    """Root of every error the node raises on purpose."""

    exit_code = EX_FAILURE


class ConfigError(StreetnodeError, ValueError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    exit_code = EX_CONFIG

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class KeyFileError(StreetnodeError, PermissionError):
    """The node key file is missing, empty or readable by others."""

    exit_code = EX_NOPERM


class StorageError(StreetnodeError, OSError):
    """The state directory or the buffer cannot be used at all."""

    exit_code = EX_IOERR


# ---- the CLI edge of both programs (streetnode, streetnode-central): here, not in node.cli, so the
# central's CLI shares it without importing the node's command line
def debug_enabled() -> bool:
    return os.environ.get("STREETNODE_DEBUG", "") not in ("", "0")


def run_guarded(func: object, args: object, prog: str, *, translate: Callable[[str], str] = str) -> int:
    """Call ``func(args)``, turning expected errors into messages and exit codes; ``translate`` gives
    each message template in the reader's language (the node's CLI passes node.i18n's ``_``)."""
    try:
        return int(func(args) or 0)  # type: ignore[operator]
    except ConfigError as e:
        if debug_enabled():
            traceback.print_exc()
        for line in e.problems:
            print(translate("{prog}: config: {problem}").format(prog=prog, problem=line), file=sys.stderr)
        return e.exit_code
    except StreetnodeError as e:
        if debug_enabled():
            traceback.print_exc()
        print(translate("{prog}: error: {message}").format(prog=prog, message=e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # the CLI edge: no traceback unless asked
        if debug_enabled():
            traceback.print_exc()
        else:
            template = translate("{prog}: internal error: {kind}: {message} (set STREETNODE_DEBUG=1 for a "
                                 "traceback)")
            print(template.format(prog=prog, kind=type(e).__name__, message=e), file=sys.stderr)
        return EX_FAILURE
