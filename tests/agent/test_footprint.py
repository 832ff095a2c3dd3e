"""What the daemon keeps out of its process (memory footprint, issue #6); figures: bench/agent.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from node.buffer import store
from tests.agent.conftest import NODE, start_node, state, stop_node, wait_for, write_config
from tests.conftest import ROOT


def _mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_daemon_uploads_without_loading_charset_detection(tmp_path, central, node_env):
    url, store_, key = central
    cfg = write_config(tmp_path, url=url, key=key)
    p = start_node(cfg, node_env)
    try:
        wait_for(lambda: store_.count_readings(NODE) >= 10, what="uploads", proc=p)
        wait_for(lambda: state(tmp_path).get("upload", {}).get("last_success_at"), what="state", proc=p)
        maps = _mapped(p.pid)
        assert "_sqlite3" in maps and "_ssl" in maps  # the check sees the extension modules it loaded
        assert "charset_normalizer" not in maps
        st = state(tmp_path)["upload"]
        assert st["last_error"] is None and st["clock_offset_ms"] is not None  # JSON answers parsed
    finally:
        rc, err = stop_node(p, signal.SIGTERM)
    assert rc == 0, err
    assert "RequestsDependencyWarning" not in err and "Traceback" not in err


def test_the_daemon_imports_no_other_command_and_no_test_buffer(tmp_path, central, node_env):
    """Every module the daemon imports stays for its years: `run` registers only itself (#22)."""
    url, store_, key = central
    entry = ("import atexit, sys; from node.cli import main; "  # node/__main__.py, telling what it imported
             "atexit.register(lambda: print('MODULES', *sorted(sys.modules), file=sys.stderr)); "
             "sys.exit(main(sys.argv[1:]))")
    cfg = write_config(tmp_path, url=url, key=key)
    p = subprocess.Popen([sys.executable, "-c", entry, "--config", str(cfg), "run"], cwd=ROOT, env=node_env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store_.count_readings(NODE) >= 10, what="uploads", proc=p)
    finally:
        rc, err = stop_node(p, signal.SIGTERM)
    assert rc == 0, err[-2000:]
    imported = next(line.split()[1:] for line in err.splitlines() if line.startswith("MODULES "))
    assert {"node.commands.run", "node.buffer.sqlite", "node.uploader"} <= set(imported)  # the check sees
    assert [m for m in imported if m.startswith("node.commands.")] == ["node.commands.options",
                                                                       "node.commands.run"]
    assert "node.buffer.memory" not in imported and "node.diag.context" not in imported


def test_registering_the_commands_does_not_import_the_checks(cli_env):
    code = ("import sys, node.cli; node.cli.build_parser(); "
            "print(sorted(m for m in ('node.diag.checks', 'ssl', 'subprocess') if m in sys.modules)); "
            "from node.diag import run_diag, Status; print(run_diag.__module__, Status.__module__)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "node.diag.checks node.diag.core"]


def test_buffer_connections_use_the_small_page_cache(tmp_path):
    db = store.connect(tmp_path / "b.db", page_size=store.DEFAULT_PAGE_SIZE, autocheckpoint=100)
    try:
        assert db.execute("PRAGMA cache_size").fetchone()[0] == -store.CACHE_KIB
    finally:
        db.close()
