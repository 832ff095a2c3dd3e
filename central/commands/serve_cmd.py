"""`streetnode-central serve [--listen HOST:PORT] [--db URL] [--tls-cert F --tls-key F] [--config F]`."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from typing import Any

from central import limits, require_extra
from central.commands.db import add_db_option, open_db
from node.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP receiver",
                       description="Run the receiver. Prints 'listening on URL' once bound "
                       "(use --listen 127.0.0.1:0 for a free port).")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to bind (default: 127.0.0.1:8080, loopback only)")
    add_db_option(p)
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    p.add_argument("--max-body", type=int, default=limits.DEFAULT_MAX_BODY, metavar="BYTES",
                   help="largest compressed body accepted (default: %(default)s)")
    p.add_argument("--max-decompressed", type=int, default=limits.DEFAULT_MAX_DECOMPRESSED, metavar="BYTES",
                   help="largest decompressed body accepted (default: %(default)s)")
    p.add_argument("--config", metavar="FILE",
                   help="the central's TOML config: [[forward]] sinks (MQTT / ThingsBoard), "
                   "[console] settings; see docs/central.md")
    p.set_defaults(func=serve_cmd)


# top-level tables of the central's config file and the area that reads each
CONFIG_SECTIONS = ("forward", "console")


def load_config(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: not valid TOML: {e}") from None
    for key in doc:
        if key not in CONFIG_SECTIONS:
            raise ConfigError(f"--config {path}: {key}: unknown section "
                              f"(known: {', '.join(CONFIG_SECTIONS)})")
    return doc


def serve_cmd(args: argparse.Namespace) -> int:
    require_extra("streetnode-central serve")
    from central import server

    try:
        server.parse_listen(args.listen)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key: give both or neither")
    for name in ("max_body", "max_decompressed"):
        if getattr(args, name) < 1024:
            raise ConfigError(f"--{name.replace('_', '-')}: expected at least 1024 bytes")
    from central.console.config import parse_console
    from central.forward.config import parse_sinks

    config = load_config(args.config)
    sinks = parse_sinks(config)
    console = parse_console(config)
    store = open_db(args.db)
    forwarders = []
    try:
        if sinks:
            from central.forward.forwarder import log, start_forwarders

            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("streetnode-central: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            forwarders = start_forwarders(store, sinks)
        server.serve_forever(store, args.listen, tls_cert=args.tls_cert, tls_key=args.tls_key,
                             announce=lambda line: print(line, flush=True),
                             max_body=args.max_body, max_decompressed=args.max_decompressed, console=console)
    except OSError as e:
        print(f"streetnode-central: error: --listen {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 69
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        store.close()
    return 0
