"""Operator accounts, API tokens and console sessions, stored hashed (no web stack here: the CLI
uses it too). The FastAPI side is central/auth.py.

- Passwords (chosen by people) are hashed with scrypt (``hashlib.scrypt``: OpenSSL's, in the
  standard library, no new dependency), n=2**14, r=8, p=5 (16 MiB, one of OWASP's scrypt settings),
  in a self-describing string ``scrypt$n$r$p$salt$hash`` so the cost can be raised later.
  At most `MAX_CONCURRENT_HASHES` run at once, so a login flood costs bounded memory.
- API tokens and session ids are 256 random bits: a slow hash adds nothing against guessing
  and would make every authenticated request cost 16 MiB and ~0.1 s, so they are stored as
  SHA-256 (what GitHub and others do); the secret is shown once and never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from central.store import Store, StoreError

ROLES = ("read", "admin")  # each role includes the ones before it
TOKEN_PREFIX = "snt_"
SESSION_TTL_MS = 12 * 3600 * 1000  # a session ends 12 h after login...
SESSION_IDLE_MS = 2 * 3600 * 1000  # ...or after 2 h without a request
LAST_USED_EVERY_MS = 60_000  # last_used_ms is written at most once a minute per token/session
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
MAX_CONCURRENT_HASHES = 2

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 5
_SCRYPT_MAXMEM = 64 * 1024 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class AccountError(ValueError):
    """A bad name, role or password, or a name that exists / does not exist."""


class Busy(StoreError):
    """Too many password checks at once; try again shortly."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: a user (console session) or an API token."""

    name: str
    role: str
    kind: str  # "session" or "token"

    def has_role(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Session:
    session_id: str  # the cookie value; shown only now
    principal: Principal
    expires_ms: int


def check_name(name: str, what: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise AccountError(f"{what} {name!r}: expected 1-64 letters, digits, '.', '_', '@' or '-', "
                           "starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"password: expected {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_hash_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not _hash_slots.acquire(timeout=10):
        raise Busy("too many logins at once; try again")
    try:
        return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM,
                              dklen=32)
    finally:
        _hash_slots.release()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


# checked when the user does not exist, so that a wrong name takes as long as a wrong password
_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(bytes(16))}${_b64(bytes(32))}"


class Accounts:
    """Users, tokens and sessions in the store's ``users``/``api_tokens``/``sessions`` tables."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store, self.clock = store, clock

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- users
    def add_user(self, name: str, role: str, password: str) -> None:
        check_name(name, "user")
        check_role(role)
        encoded = hash_password(check_password(password))

        def run(tx: Any) -> None:
            tx.execute("INSERT INTO users (name, role, password_hash, created_ms) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (name) DO NOTHING", (name, role, encoded, self._now_ms()))
            if tx.rowcount != 1:
                raise AccountError(f"user {name!r} already exists")

        self.store.transaction(run, write=True)

    def set_password(self, name: str, password: str) -> None:
        encoded = hash_password(check_password(password))

        def run(tx: Any) -> None:
            tx.execute("UPDATE users SET password_hash = ? WHERE name = ?", (encoded, name))
            if tx.rowcount != 1:
                raise AccountError(f"user {name!r}: no such user")
            tx.execute("DELETE FROM sessions WHERE user_name = ?", (name,))  # log out everywhere

        self.store.transaction(run, write=True)

    def remove_user(self, name: str) -> None:
        def run(tx: Any) -> None:
            tx.execute("DELETE FROM sessions WHERE user_name = ?", (name,))
            tx.execute("DELETE FROM users WHERE name = ?", (name,))
            if tx.rowcount != 1:
                raise AccountError(f"user {name!r}: no such user")

        self.store.transaction(run, write=True)

    def list_users(self) -> list[tuple[str, str, int]]:
        """(name, role, created_ms) of every user, by name."""
        return [(r[0], r[1], int(r[2])) for r in self.store.transaction(
            lambda tx: tx.execute("SELECT name, role, created_ms FROM users ORDER BY name").fetchall())]

    # ---- API tokens
    def add_token(self, name: str, role: str) -> str:
        """Create a token; returns its secret (shown once, stored only as SHA-256)."""
        check_name(name, "token")
        check_role(role)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)

        def run(tx: Any) -> None:
            tx.execute("INSERT INTO api_tokens (name, role, token_sha256, created_ms) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (name) DO NOTHING", (name, role, sha256_hex(secret), self._now_ms()))
            if tx.rowcount != 1:
                raise AccountError(f"token {name!r} already exists (revoke it first)")

        self.store.transaction(run, write=True)
        return secret

    def revoke_token(self, name: str) -> None:
        def run(tx: Any) -> None:
            tx.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
            if tx.rowcount != 1:
                raise AccountError(f"token {name!r}: no such token")

        self.store.transaction(run, write=True)

    def list_tokens(self) -> list[tuple[str, str, int, int | None]]:
        """(name, role, created_ms, last_used_ms) of every token, by name."""
        rows = self.store.transaction(lambda tx: tx.execute(
            "SELECT name, role, created_ms, last_used_ms FROM api_tokens ORDER BY name").fetchall())
        return [(r[0], r[1], int(r[2]), None if r[3] is None else int(r[3])) for r in rows]

    def token_principal(self, secret: str) -> Principal | None:
        if not secret.startswith(TOKEN_PREFIX) or not _SECRET_RE.fullmatch(secret[len(TOKEN_PREFIX):]):
            return None
        digest, now = sha256_hex(secret), self._now_ms()
        rows = self.store.query("SELECT name, role, last_used_ms FROM api_tokens WHERE token_sha256 = ?",
                                (digest,))  # a read connection: a read never waits for an upload
        if not rows:
            return None
        name, role, last_used = rows[0]
        if last_used is None or now - int(last_used) >= LAST_USED_EVERY_MS:  # skipped while a write runs
            self.store.transaction(lambda tx: tx.execute(
                "UPDATE api_tokens SET last_used_ms = ? WHERE name = ?", (now, name)), write=True, wait=False)
        return Principal(name, role, "token")

    # ---- sessions (console)
    def login(self, name: str, password: str) -> Session | None:
        """A new session when ``password`` is the user's; None otherwise (same time either way)."""
        rows = self.store.transaction(lambda tx: tx.execute(
            "SELECT role, password_hash FROM users WHERE name = ? AND disabled = 0", (name,)).fetchall())
        ok = verify_password(password[:MAX_PASSWORD], rows[0][1] if rows else _DUMMY_HASH)
        if not rows or not ok:
            return None
        session_id, now = secrets.token_urlsafe(32), self._now_ms()
        expires = now + SESSION_TTL_MS

        def run(tx: Any) -> None:
            tx.execute("DELETE FROM sessions WHERE expires_ms < ? OR last_used_ms < ?",
                       (now, now - SESSION_IDLE_MS))
            tx.execute("INSERT INTO sessions (id_sha256, user_name, created_ms, last_used_ms, expires_ms) "
                       "VALUES (?, ?, ?, ?, ?)", (sha256_hex(session_id), name, now, now, expires))

        self.store.transaction(run, write=True)
        return Session(session_id, Principal(name, rows[0][0], "session"), expires)

    def session_principal(self, session_id: str) -> Principal | None:
        if not _SECRET_RE.fullmatch(session_id):
            return None
        digest, now = sha256_hex(session_id), self._now_ms()
        rows = self.store.query("SELECT u.name, u.role, s.last_used_ms, s.expires_ms FROM sessions s "
                                "JOIN users u ON u.name = s.user_name "
                                "WHERE s.id_sha256 = ? AND u.disabled = 0", (digest,))
        if not rows:
            return None
        name, role, last_used, expires = rows[0]
        if now >= int(expires) or now - int(last_used) >= SESSION_IDLE_MS:
            return None
        if now - int(last_used) >= LAST_USED_EVERY_MS:
            self.store.transaction(lambda tx: tx.execute(
                "UPDATE sessions SET last_used_ms = ? WHERE id_sha256 = ?", (now, digest)), write=True,
                wait=False)  # skipped while a write runs: the next request updates it
        return Principal(name, role, "session")

    def logout(self, session_id: str) -> None:
        self.store.transaction(lambda tx: tx.execute(
            "DELETE FROM sessions WHERE id_sha256 = ?", (sha256_hex(session_id),)), write=True)
