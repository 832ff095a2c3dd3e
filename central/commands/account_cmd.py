"""`streetnode-central token add|list|revoke` and `user add|list|passwd|remove`: who may read.

A token's secret is printed once, on stdout. A password is read from the terminal (twice) or,
when stdin is not a terminal, from the first line of stdin; never from the command line.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from central.accounts import ROLES, AccountError, Accounts
from central.commands.db import add_db_option, open_db
from node.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="add, list or revoke API tokens (read API access)",
                           description="API tokens for scripts and tools: 'Authorization: Bearer TOKEN'. "
                           "The token is printed once, when created; only its SHA-256 is stored.")
    tsub = token.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    add = tsub.add_parser("add", help="create a token and print it once on stdout")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", choices=ROLES, default="read", help="read (default) or admin")
    add_db_option(add)
    add.set_defaults(func=token_add_cmd)
    ls = tsub.add_parser("list", help="list tokens (never their secrets)")
    add_db_option(ls)
    ls.set_defaults(func=token_list_cmd)
    rm = tsub.add_parser("revoke", help="delete a token: it stops working at once")
    rm.add_argument("name", metavar="NAME")
    add_db_option(rm)
    rm.set_defaults(func=token_revoke_cmd)

    user = sub.add_parser("user", help="add, list or remove operator accounts (console logins)",
                          description="Operator accounts for the console. The password is read from the "
                          "terminal, or from the first line of stdin when it is not a terminal.")
    usub = user.add_subparsers(dest="user_cmd", required=True, metavar="ACTION")
    uadd = usub.add_parser("add", help="create an account (password from the terminal or stdin)")
    uadd.add_argument("name", metavar="NAME")
    uadd.add_argument("--role", choices=ROLES, default="read", help="read (default) or admin")
    add_db_option(uadd)
    uadd.set_defaults(func=user_add_cmd)
    upw = usub.add_parser("passwd", help="set a new password (ends the user's sessions)")
    upw.add_argument("name", metavar="NAME")
    add_db_option(upw)
    upw.set_defaults(func=user_passwd_cmd)
    uls = usub.add_parser("list", help="list accounts")
    add_db_option(uls)
    uls.set_defaults(func=user_list_cmd)
    urm = usub.add_parser("remove", help="delete an account and its sessions")
    urm.add_argument("name", metavar="NAME")
    add_db_option(urm)
    urm.set_defaults(func=user_remove_cmd)


def _with_accounts(db: str | None, fn: object) -> object:
    store = open_db(db)
    try:
        return fn(Accounts(store))  # type: ignore[operator]
    except AccountError as e:
        raise ConfigError(str(e)) from None
    finally:
        store.close()


def read_password(name: str) -> str:
    """From the terminal (asked twice, not echoed) or the first line of a piped stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("password: the two entries differ")
        return first
    line = sys.stdin.readline()
    if not line:
        raise ConfigError("password: expected it on the first line of stdin (nothing was given)")
    return line.rstrip("\r\n")


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) if ms else "never"


def token_add_cmd(args: argparse.Namespace) -> int:
    secret = _with_accounts(args.db, lambda a: a.add_token(args.name, args.role))
    print(secret, flush=True)
    print(f"streetnode-central: token {args.name!r} (role {args.role}) created; it is shown only now. "
          "Use it as 'Authorization: Bearer TOKEN'.", file=sys.stderr)
    return 0


def token_list_cmd(args: argparse.Namespace) -> int:
    tokens = _with_accounts(args.db, lambda a: a.list_tokens())
    print(f"{'token':<24} {'role':<6} {'created (UTC)':<20} {'last used (UTC)':<20}")
    for name, role, created, used in tokens:  # type: ignore[union-attr]
        print(f"{name:<24} {role:<6} {_when(created):<20} {_when(used):<20}")
    return 0


def token_revoke_cmd(args: argparse.Namespace) -> int:
    _with_accounts(args.db, lambda a: a.revoke_token(args.name))
    print(f"streetnode-central: token {args.name!r} revoked", file=sys.stderr)
    return 0


def user_add_cmd(args: argparse.Namespace) -> int:
    password = read_password(args.name)
    _with_accounts(args.db, lambda a: a.add_user(args.name, args.role, password))
    print(f"streetnode-central: user {args.name!r} (role {args.role}) created", file=sys.stderr)
    return 0


def user_passwd_cmd(args: argparse.Namespace) -> int:
    password = read_password(args.name)
    _with_accounts(args.db, lambda a: a.set_password(args.name, password))
    print(f"streetnode-central: password of {args.name!r} changed; its sessions ended", file=sys.stderr)
    return 0


def user_list_cmd(args: argparse.Namespace) -> int:
    users = _with_accounts(args.db, lambda a: a.list_users())
    print(f"{'user':<24} {'role':<6} {'created (UTC)':<20}")
    for name, role, created in users:  # type: ignore[union-attr]
        print(f"{name:<24} {role:<6} {_when(created):<20}")
    return 0


def user_remove_cmd(args: argparse.Namespace) -> int:
    _with_accounts(args.db, lambda a: a.remove_user(args.name))
    print(f"streetnode-central: user {args.name!r} removed", file=sys.stderr)
    return 0
