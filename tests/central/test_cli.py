"""`streetnode-central` as a real subprocess: node add/list/rotate, serve on a free port."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import requests

from central.store import open_store
from node import protocol
from tests.central.helpers import body_of, ingest_counts, make_batch, post
from tests.conftest import ROOT

CLI = [sys.executable, "-m", "central.cli"]


def run(args, env, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, **kw)


def start_server(args, env):
    proc = subprocess.Popen([*CLI, "serve", "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            m = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
            assert m, line
            return proc, m.group(1)
        assert proc.poll() is None, proc.stderr.read()
    proc.kill()
    raise AssertionError("no 'listening on' line within 20 s")


def add_node(db, env, node="pole-1"):
    r = run(["node", "add", node, "--db", db], env)
    assert r.returncode == 0, r.stderr
    key_text = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key_text)
    assert "shown only now" in r.stderr
    return protocol.parse_key(key_text)


def test_node_add_list_rotate(tmp_path, cli_env):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    key = add_node(db, cli_env)
    again = run(["node", "add", "pole-1", "--db", db], cli_env)
    assert again.returncode == 78 and "already exists" in again.stderr and again.stdout == ""
    assert "Traceback" not in again.stderr
    bad = run(["node", "add", "no spaces", "--db", db], cli_env)
    assert bad.returncode == 78 and "ID 'no spaces'" in bad.stderr
    listing = run(["node", "list", "--db", db], cli_env)
    assert listing.returncode == 0 and re.search(r"^pole-1\s+never\s+0", listing.stdout, re.M)
    rotated = run(["node", "rotate", "pole-1", "--db", db], cli_env)
    assert rotated.returncode == 0 and protocol.parse_key(rotated.stdout) != key
    s = open_store(db)
    try:
        assert s.node_key("pole-1") == protocol.parse_key(rotated.stdout)
    finally:
        s.close()
    assert run(["node", "rotate", "ghost", "--db", db], cli_env).returncode == 78


@pytest.mark.parametrize("node_id", ["evil\n", "pole-1\n", "\npole", "a b", ".lead", "x" * 65, "pölé"])
def test_node_ids_are_matched_whole(tmp_path, cli_env, node_id):
    """`node add $'evil\\n'` once succeeded ("$" let the newline through); ids are fullmatched."""
    r = run(["node", "add", node_id, "--db", f"sqlite:///{tmp_path / 'c.db'}"], cli_env)
    assert r.returncode == 78 and "expected 1-64 letters" in r.stderr and r.stdout == "", r.stderr
    assert not protocol.is_node_id(node_id) and not protocol.is_node_id(node_id + "\x00")


def test_default_db_lives_in_the_state_dir(tmp_path, cli_env):
    cli_env["STREETNODE_CENTRAL_STATE"] = str(tmp_path)
    r = run(["node", "add", "pole-9"], cli_env)
    assert r.returncode == 0, r.stderr
    s = open_store(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        assert s.node_key("pole-9") == protocol.parse_key(r.stdout)
    finally:
        s.close()


@pytest.mark.parametrize(("args", "code", "text"), [
    (["node", "list", "--db", "mysql://x"], 69, "expected sqlite:///path or postgresql://"),
    (["node", "list", "--db", "sqlite:////nonexistent/dir/c.db"], 69, "does not exist"),
    (["node", "list", "--db", "postgresql://postgres@127.0.0.1:1/none"], 69, "cannot connect"),
    (["serve", "--listen", "localhost"], 78, "expected HOST:PORT"),
    (["serve", "--tls-cert", "x.pem"], 78, "--tls-cert and --tls-key"),
])
def test_bad_arguments_one_line_and_exit_code(cli_env, args, code, text):
    r = run(args, cli_env)
    assert r.returncode == code, r.stderr
    assert text in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_subprocess_survives_sigkill(tmp_path, cli_env):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    key = add_node(db, cli_env)
    proc, url = start_server(["--db", db], cli_env)
    try:
        r = post(url, body_of(make_batch(range(50))), key=key)
        assert r.json()["stored"] == 50
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    proc, url = start_server(["--db", db], cli_env)
    try:
        r = post(url, body_of(make_batch(range(60))), key=key)
        assert ingest_counts(r) == {"stored": 10, "duplicates": 50, "gaps": 0, "incidents": 0}
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful; uvicorn re-raises the signal after shutdown
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)


@pytest.mark.postgres
def test_serve_subprocess_on_postgres(pg_url, cli_env):
    key = add_node(pg_url, cli_env)
    proc, url = start_server(["--db", pg_url], cli_env)
    try:
        r = post(url, body_of(make_batch(range(20))), key=key)
        assert r.json()["stored"] == 20
        token = run(["token", "add", "ops", "--db", pg_url], cli_env).stdout.strip()
        assert requests.get(url + "/v1/nodes", timeout=10).status_code == 401
        nodes = requests.get(url + "/v1/nodes", headers={"Authorization": f"Bearer {token}"},
                             timeout=10).json()["nodes"]
        assert nodes[0]["readings"] == 20
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_serve_on_a_busy_port_exits_69(tmp_path, cli_env):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run(["serve", "--listen", f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'c.db'}"], cli_env)
    assert r.returncode == 69 and f"--listen 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_node_add_prints_the_install_command(tmp_path, cli_env):
    db = f"sqlite:///{tmp_path / 'c.db'}"
    r = run(["node", "add", "pole-7", "--db", db, "--url", "https://central.city.example"], cli_env)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert ("sudo deploy/install.sh --node-id pole-7 --central-url https://central.city.example "
            "--key-file pole-7.key") in r.stderr
    assert key not in r.stderr  # the key only on stdout, never in a suggested command line


# A node installed with plain `pip install .` has no web stack: simulate that environment
# by hiding fastapi/uvicorn from the import system of a child interpreter.
_WITHOUT_EXTRA = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('fastapi', 'uvicorn', 'starlette'):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from central.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_help_and_clear_error_without_the_central_extra(tmp_path, cli_env):
    def run_bare(*args):
        return subprocess.run([sys.executable, "-c", _WITHOUT_EXTRA, *args], capture_output=True,
                              text=True, env=cli_env, timeout=60)
    r = run_bare("--help")
    assert r.returncode == 0 and "serve" in r.stdout, r.stderr
    r = run_bare("serve", "--db", f"sqlite:///{tmp_path / 'c.db'}")
    assert r.returncode == 69
    assert "pip install 'streetnode[central]'" in r.stderr and "Traceback" not in r.stderr
