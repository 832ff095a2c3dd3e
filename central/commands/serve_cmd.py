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
                       "(use --listen 127.0.0.1:0 for a free port).",
                       epilog=limits.describe_limits() + "\n(docs/protocol.md, \"Limits\")",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="address to bind (default: 127.0.0.1:8080, loopback only)")
    add_db_option(p)
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    p.add_argument("--max-body", type=int, metavar="BYTES",
                   help=f"largest compressed body accepted (default: {limits.DEFAULT_MAX_BODY}; "
                   "overrides [limits] max_body)")
    p.add_argument("--max-decompressed", type=int, metavar="BYTES",
                   help=f"largest decompressed body accepted (default: {limits.DEFAULT_MAX_DECOMPRESSED}; "
                   "overrides [limits] max_decompressed)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="receiver processes sharing the listening socket (default: 1); each has its own "
                   "database connections, so use PostgreSQL for N > 1 (docs/central.md)")
    p.add_argument("--config", metavar="FILE",
                   help="the central's TOML config: [limits], [[forward]] sinks (MQTT / ThingsBoard), "
                   "[console] settings, [alerts] rules and sinks, [retention]; see docs/central.md, "
                   "docs/alerts.md")
    p.set_defaults(func=serve_cmd)


# top-level tables of the central's config file and the area that reads each
CONFIG_SECTIONS = ("forward", "console", "limits", "alerts", "retention")


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
        if getattr(args, name) is not None and getattr(args, name) < 1024:
            raise ConfigError(f"--{name.replace('_', '-')}: expected at least 1024 bytes")
    if not 1 <= args.workers <= 64:
        raise ConfigError(f"--workers {args.workers}: expected 1 to 64 processes")
    from central.alerts.config import parse_alerts
    from central.console.config import parse_console
    from central.forward.config import parse_sinks

    config = load_config(args.config)
    sinks = parse_sinks(config)
    console = parse_console(config)
    alerts_config = parse_alerts(config)
    receiver_limits = limits.parse_limits(config.get("limits"), where=f"--config {args.config} [limits]")
    from central.retention import Maintenance, parse_retention

    policy = parse_retention(config.get("retention"), where=f"--config {args.config} [retention]")
    if sinks:
        from central.forward.forwarder import log

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("streetnode-central: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    store = open_db(args.db)  # migrates, once, before any worker starts
    forwarders: list[Any] = []
    stores = [store]
    alerts, deliveries = None, []
    maintenance = None
    try:
        if args.workers > 1:
            store.close()  # a database connection must never cross a fork
            return _serve_workers(args, sinks, alerts_config, forwarders, stores, policy,
                                  console=console, limits=receiver_limits)
        alerts, deliveries = _start_alerts(store, alerts_config)
        stores.append(open_db(args.db))  # its own connection: never holds the one uploads write on
        maintenance = Maintenance(stores[-1], policy)  # weeks ahead and retention, hourly
        maintenance.start()
        if sinks:
            from central.forward.forwarder import start_forwarders

            forwarders = start_forwarders(store, sinks)
        server.serve_forever(store, args.listen, tls_cert=args.tls_cert, tls_key=args.tls_key,
                             announce=lambda line: print(line, flush=True),
                             limits=receiver_limits, max_body=args.max_body,
                             max_decompressed=args.max_decompressed, console=console, alerts=alerts)
    except OSError as e:
        print(f"streetnode-central: error: --listen {args.listen}: {e.strerror or e}", file=sys.stderr)
        return 69
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        if alerts is not None:
            alerts.stop()
        for delivery in deliveries:
            delivery.stop()
        if maintenance is not None:
            maintenance.stop()
        for each in stores:
            each.close()
    return 0


def _serve_workers(args: argparse.Namespace, sinks: list[Any], alerts_config: Any, forwarders: list[Any],
                   stores: list[Any], policy: Any, **app_options: Any) -> int:
    """``--workers N``: the workers serve requests, each with its own alert engine (rules evaluated
    as its batches are stored); the parent runs what must run once, on a connection of its own
    opened after the workers are forked: forwarders (one per sink across every process, by their
    lease), the silent-node check, alert delivery (queued in the database, polled each second) and
    the hourly maintenance (central/retention.py)."""
    from central import server

    running: list[Any] = []

    def started() -> None:
        stores.append(open_db(args.db))
        engine, deliveries = _start_alerts(stores[-1], alerts_config)
        running.extend([engine, *deliveries] if engine is not None else [])
        from central.retention import Maintenance

        maintenance = Maintenance(stores[-1], policy)
        maintenance.start()
        running.append(maintenance)
        if sinks:
            from central.forward.forwarder import start_forwarders

            forwarders.extend(start_forwarders(stores[-1], sinks))

    def per_worker(store: Any) -> dict[str, Any]:
        from central.alerts.db import AlertsDb
        from central.alerts.engine import AlertEngine

        return {"alerts": AlertEngine(alerts_config, AlertsDb.for_store(store), list_nodes=store.list_nodes)}

    try:
        return server.serve_workers(lambda: open_db(args.db), args.listen, args.workers,
                                    tls_cert=args.tls_cert, tls_key=args.tls_key,
                                    announce=lambda line: print(line, flush=True), on_started=started,
                                    per_worker=per_worker, max_body=args.max_body,
                                    max_decompressed=args.max_decompressed, **app_options)
    finally:
        for each in running:
            each.stop()


def _start_alerts(store: Any, config: Any) -> tuple[Any, list[Any]]:
    """The alert engine of ``[alerts]`` and one delivery worker per sink (always an engine: an admin
    may add rules in the console, central/alerts/stored.py)."""
    from central.alerts.db import AlertsDb
    from central.alerts.delivery import start_delivery
    from central.alerts.engine import AlertEngine, log

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("streetnode-central: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    engine = AlertEngine(config, AlertsDb.for_store(store), list_nodes=store.list_nodes)
    workers = start_delivery(config, lambda: AlertsDb.for_store(store))
    engine.on_enqueued = [w.wake for w in workers]
    engine.start()
    return engine, workers
