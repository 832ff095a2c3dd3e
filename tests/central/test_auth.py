"""Authenticated reads: API tokens and console sessions with roles, stored hashed; the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from fastapi import APIRouter, Depends

from central import accounts as accounts_mod
from central.accounts import AccountError, Accounts
from central.auth import SESSION_COOKIE, require_role
from central.server import serve_in_thread
from tests.central.helpers import KEY, NODE, get, now_ms
from tests.conftest import ROOT

PASSWORD = "correct horse battery staple"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def admin_router(ctx):
    api = APIRouter(dependencies=[Depends(require_role("admin"))])

    @api.post("/test/admin-action")
    def action() -> dict:
        return {"done": True}

    return api


@pytest.fixture
def central(store):
    store.add_node(NODE, KEY, now_ms())
    clock = Clock()
    url, stop = serve_in_thread(store, accounts=Accounts(store, clock=clock), extra_routers=[admin_router])
    yield url, store, clock
    stop()


def dump(store) -> str:
    """Every row of the account tables, as text."""
    def run(tx):
        return [tx.execute(f"SELECT * FROM {t}").fetchall() for t in ("users", "api_tokens", "sessions")]
    return repr(store.transaction(run))


def test_tokens_are_stored_hashed_and_revocable(store):
    accounts = Accounts(store)
    secret = accounts.add_token("grafana", "read")
    assert secret.startswith("snt_") and secret not in dump(store)
    assert accounts_mod.sha256_hex(secret) in dump(store)
    principal = accounts.token_principal(secret)
    assert (principal.name, principal.role, principal.kind) == ("grafana", "read", "token")
    assert accounts.token_principal(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_token("grafana", "admin")
    accounts.revoke_token("grafana")
    assert accounts.token_principal(secret) is None
    with pytest.raises(AccountError):
        accounts.add_token("bad name", "read")
    with pytest.raises(AccountError):
        accounts.add_token("x", "root")


def test_passwords_are_scrypt_hashed(store):
    accounts = Accounts(store)
    accounts.add_user("ana", "admin", PASSWORD)
    text = dump(store)
    assert PASSWORD not in text and "scrypt$16384$8$5$" in text
    assert accounts.login("ana", "wrong password!") is None
    assert accounts.login("nobody", PASSWORD) is None
    session = accounts.login("ana", PASSWORD)
    assert session.principal.role == "admin" and session.session_id not in dump(store)
    with pytest.raises(AccountError, match="12 to"):
        accounts.add_user("bo", "read", "short")
    accounts.set_password("ana", PASSWORD + "!")  # ends every session of the user
    assert accounts.session_principal(session.session_id) is None


def test_bearer_token_roles(central):
    url, store, _ = central
    reader = {"Authorization": f"Bearer {Accounts(store).add_token('reader', 'read')}"}
    admin = {"Authorization": f"Bearer {Accounts(store).add_token('boss', 'admin')}"}
    assert get(url + "/v1/nodes", reader).status_code == 200
    assert get(url + "/v1/nodes", admin).status_code == 200  # admin includes read
    r = requests.post(url + "/test/admin-action", headers=reader, timeout=10)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert requests.post(url + "/test/admin-action", headers=admin, timeout=10).json() == {"done": True}
    for bad in ("Bearer snt_nope", "Basic dXNlcjpwdw==", "Bearer "):
        r = requests.get(url + "/v1/nodes", headers={"Authorization": bad}, timeout=10)
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized"), bad


def test_console_session_cookie(central):
    url, store, clock = central
    Accounts(store).add_user("ana", "admin", PASSWORD)
    Accounts(store).add_user("rui", "read", PASSWORD)
    browser = requests.Session()
    r = browser.post(url + "/v1/session", json={"user": "ana", "password": "wrong"}, timeout=30)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    assert SESSION_COOKIE not in browser.cookies
    r = browser.post(url + "/v1/session", json={"user": "ana", "password": PASSWORD}, timeout=30)
    assert r.status_code == 200 and r.json()["role"] == "admin"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert browser.get(url + "/v1/nodes", timeout=10).status_code == 200
    assert browser.get(url + "/v1/session", timeout=10).json() == {"name": "ana", "role": "admin",
                                                                   "kind": "session"}
    # a change made with the cookie must come from the central's own pages
    r = browser.post(url + "/test/admin-action", timeout=10)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    r = browser.post(url + "/test/admin-action", headers={"Origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403
    assert browser.post(url + "/test/admin-action", headers={"Origin": url}, timeout=10).status_code == 200
    # idle for longer than the idle timeout: logged out
    clock.t += accounts_mod.SESSION_IDLE_MS / 1000 + 1
    r = browser.get(url + "/v1/nodes", timeout=10)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
    # a read-only user cannot act; logging out ends the session on the server
    reader = requests.Session()
    reader.post(url + "/v1/session", json={"user": "rui", "password": PASSWORD}, timeout=30)
    assert reader.post(url + "/test/admin-action", headers={"Origin": url}, timeout=10).status_code == 403
    stolen = reader.cookies[SESSION_COOKIE]
    assert reader.delete(url + "/v1/session", headers={"Origin": url}, timeout=10).json() == {"ok": True}
    r = requests.get(url + "/v1/nodes", cookies={SESSION_COOKIE: stolen}, timeout=10)
    assert r.status_code == 401


def test_sessions_end_after_their_lifetime(central):
    url, store, clock = central
    Accounts(store).add_user("ana", "read", PASSWORD)
    browser = requests.Session()
    browser.post(url + "/v1/session", json={"user": "ana", "password": PASSWORD}, timeout=30)
    step_s = accounts_mod.SESSION_IDLE_MS / 1000 / 2
    while clock.t < 1_800_000_000 + accounts_mod.SESSION_TTL_MS / 1000 - step_s:
        assert browser.get(url + "/v1/nodes", timeout=10).status_code == 200  # active: kept alive
        clock.t += step_s
    clock.t += step_s
    assert browser.get(url + "/v1/nodes", timeout=10).status_code == 401


def cli(args, env, stdin=""):
    return subprocess.run([sys.executable, "-m", "central.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)


def test_cli_token_and_user(tmp_path, cli_env):
    db = ["--db", f"sqlite:///{tmp_path / 'c.db'}"]
    r = cli(["token", "add", "grafana", "--role", "read", *db], cli_env)
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("snt_") and r.stdout.count("\n") == 1 and secret not in r.stderr
    assert "shown only now" in r.stderr
    listing = cli(["token", "list", *db], cli_env)
    assert "grafana" in listing.stdout and secret not in listing.stdout
    again = cli(["token", "add", "grafana", *db], cli_env)
    assert again.returncode == 78 and "already exists" in again.stderr and again.stdout == ""
    assert cli(["token", "revoke", "grafana", *db], cli_env).returncode == 0
    assert cli(["token", "revoke", "grafana", *db], cli_env).returncode == 78
    # the password comes from stdin (or the terminal), never from the command line
    r = cli(["user", "add", "ana", "--role", "admin", *db], cli_env, stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    r = cli(["user", "add", "bo", *db], cli_env, stdin="short\n")
    assert r.returncode == 78 and "password" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli(["user", "add", "cy", *db], cli_env, stdin="")
    assert r.returncode == 78 and "stdin" in r.stderr
    assert cli(["user", "add", "dee", "--password", "x", *db], cli_env).returncode == 2
    assert "ana" in cli(["user", "list", *db], cli_env).stdout
    from central.store import open_store

    store = open_store(db[1])
    try:
        assert Accounts(store).login("ana", PASSWORD).principal.role == "admin"
    finally:
        store.close()
