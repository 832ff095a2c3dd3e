"""`streetnode-central config ...` and `node set-group` as real subprocesses."""

from __future__ import annotations

import re

from tests.central.test_cli import run


def test_push_refuses_a_typo_with_the_nodes_message_and_exit_78(tmp_path, cli_env):
    db = ["--db", f"sqlite:///{tmp_path / 'c.db'}"]
    assert run(["node", "add", "pole-1", "--group", "ward-3", *db], cli_env).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[upload]\nintervall = "10s"\n[node]\nid = "other"\n')
    r = run(["config", "push", "--group", "ward-3", str(bad), *db], cli_env)
    assert r.returncode == 78 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        "streetnode-central: config: upload.intervall: unknown key; did you mean 'interval'?",
        "streetnode-central: config: node.id: may not come from the central (the pole's identity); set it "
        "in the pole's own file"]
    junk = tmp_path / "junk.toml"
    junk.write_text("[upload\n")
    r = run(["config", "push", "--node", "pole-1", str(junk), *db], cli_env)
    assert r.returncode == 78 and "not valid TOML" in r.stderr and len(r.stderr.splitlines()) == 1
    history = run(["config", "history", "--group", "ward-3", *db], cli_env)
    assert history.stdout.endswith("no configuration pushed\n")


def test_push_show_history_rollback_status(tmp_path, cli_env):
    db = ["--db", f"sqlite:///{tmp_path / 'c.db'}"]
    for node in ("pole-1", "pole-2"):
        assert run(["node", "add", node, *db], cli_env).returncode == 0
    r = run(["node", "set-group", "pole-2", "ward-3", *db], cli_env)
    assert r.returncode == 0 and r.stdout == "node pole-2: group ward-3\n"
    assert run(["node", "set-group", "ghost", "ward-3", *db], cli_env).returncode == 78
    layer = tmp_path / "a.toml"
    layer.write_text('[upload]\ninterval = "10s"\n')
    check = run(["config", "push", "--check", "--group", "ward-3", str(layer), *db], cli_env)
    assert check.returncode == 0 and check.stdout.startswith("checked: group ward-3 would accept ")
    assert '+interval = "10s"' in check.stdout
    nothing = run(["config", "history", "--group", "ward-3", *db], cli_env)
    assert nothing.stdout.endswith("no configuration pushed\n")
    r = run(["config", "push", "--group", "ward-3", str(layer), "--author", "alice", *db], cli_env)
    assert r.returncode == 0 and r.stdout.startswith("pushed group ward-3 version 1 by alice (1 node)\n")
    layer.write_text('[upload]\ninterval = "20s"\n')
    r = run(["config", "push", "--group", "ward-3", str(layer), "--canary", "5%", *db], cli_env)
    assert r.returncode == 0 and "rollout: canaries pole-2 first" in r.stdout
    assert '+interval = "20s"' in r.stdout
    show = run(["config", "show", "--node", "pole-2", *db], cli_env).stdout
    assert "desired: g2 hash " in show and "applied: not reported yet" in show and 'interval = "20s"' in show
    hist = run(["config", "history", "--group", "ward-3", *db], cli_env).stdout
    assert re.search(r"^\s+1 .* alice\s+2\s+push ", hist, re.M) and re.search(r"^\s+2 ", hist, re.M)
    r = run(["config", "rollback", "--group", "ward-3", *db], cli_env)
    assert r.returncode == 0
    assert r.stdout.startswith("rolled back to version 1: pushed group ward-3 version 3")
    status = run(["config", "status", *db], cli_env).stdout
    assert re.search(r"^pole-2\s+ward-3\s+g3\s+-\s+pending", status, re.M)
    assert re.search(r"^pole-1\s+-\s+-\s+-", status, re.M)
    listing = run(["node", "list", *db], cli_env).stdout
    assert listing.splitlines()[0].endswith(" config")
