"""Running the receiver: `serve_in_thread` (tests, demo, bench) and `serve_forever` (the CLI).

The app itself is `central.app.create_app`; it is re-exported here for old callers.
"""

from __future__ import annotations

import gc
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from central.app import close_app, create_app
from central.http import (
    HEADER_BYTES,
    Guard,
    GuardMiddleware,
    flush_quiet_logs,
    guarded_protocol,
    quiet_uvicorn_warnings,
)
from central.limits import IngestLimits
from central.store import Store, open_store

__all__ = ["create_app", "parse_listen", "serve_forever", "serve_in_thread", "serve_workers"]

# The event loop waits for the GIL behind a thread decoding or storing a large batch; at Python's
# default 5 ms a small upload's many steps each wait that long (bench/under_attack.py).
SWITCH_INTERVAL_S = 0.001
GC_YOUNG_THRESHOLD = 20_000  # new container objects between collections of the youngest generation
FILES_BESIDES_CONNECTIONS = 256  # the store, logs, the forwarders' sockets: beside max_connections


# ---------------------------------------------------------------- running it
def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[v6]:PORT`` -> (host, port); raises ValueError naming what was expected."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT such as 127.0.0.1:8080")
    return host, int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, writing the log lines held back once it has stopped: on SIGTERM uvicorn
    re-raises the signal after `run`, so nothing after it (`close_app`) would run."""

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        flush_quiet_logs()


def make_server(app: Any, *, tls_cert: str | None = None, tls_key: str | None = None) -> uvicorn.Server:
    """A uvicorn server for the app of `create_app`, with the limits of its context enforced
    (central/http.py: connection cap, head/body deadlines, requests in progress, body budget)."""
    limits: IngestLimits = app.state.central.limits
    guard = Guard(limits)
    app.state.guard = guard
    quiet_uvicorn_warnings()
    config = uvicorn.Config(GuardMiddleware(app, guard), http=guarded_protocol(guard), ws="none",
                            log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                            timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  (a float works)
                            h11_max_incomplete_event_size=HEADER_BYTES)
    return _Server(config)


def raise_file_limit(limits: IngestLimits) -> None:
    """Raise the soft limit of open files to what the connection cap needs (up to the hard limit),
    so a full cap never leaves the receiver unable to accept a connection or open a file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.max_connections + FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < want:
        new_soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))


def serve_in_thread(store: Store | str, *, host: str = "127.0.0.1", port: int = 0,
                    tls_cert: str | None = None, tls_key: str | None = None,
                    startup_timeout: float = 10.0, monotonic: Callable[[], float] = time.monotonic,
                    **app_options: Any) -> tuple[str, Callable[[], None]]:
    """Start the receiver in a daemon thread; returns (base URL, stop).

    ``store`` is a `Store` or a URL (then the store is opened here and closed by ``stop``).
    ``app_options`` go to `create_app` (clock, limits, max_body, max_decompressed, window_ms).
    """
    owned = isinstance(store, str)
    st = open_store(store) if isinstance(store, str) else store
    sock = bind(host, port)
    app = create_app(st, **app_options)
    server = make_server(app, tls_cert=tls_cert, tls_key=tls_key)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="central-server",
                              daemon=True)
    thread.start()
    deadline = monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or monotonic() > deadline:
            sock.close()
            raise RuntimeError("central server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        close_app(app)
        if owned:
            st.close()

    return url_of(sock, tls=bool(tls_cert)), stop


def prepare_process(app: Any) -> None:
    """What a receiver process sets before it serves ``app``: its file limit, the GIL switch
    interval (`SWITCH_INTERVAL_S`; each ``--workers`` process too, #18), and its garbage collector:
    what exists now (modules, the app) lives as long as the process, so it is moved out of the
    collector's sight (``gc.freeze``), and the youngest generation is collected after
    `GC_YOUNG_THRESHOLD` new objects rather than 700, so the rows of a batch, gone when its request
    ends, are not walked over and over while it is stored (#22: collector time per 60 drain batches
    90-140 ms before, 25-70 ms after)."""
    raise_file_limit(app.state.central.limits)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def serve_forever(store: Store, listen: str, *, tls_cert: str | None = None, tls_key: str | None = None,
                  announce: Callable[[str], None] = print, **app_options: Any) -> None:
    """Bind ``listen`` (port 0: a free port), announce ``listening on URL``, serve until SIGINT/SIGTERM."""
    host, port = parse_listen(listen)
    sock = bind(host, port)
    app = create_app(store, **app_options)
    prepare_process(app)
    server = make_server(app, tls_cert=tls_cert, tls_key=tls_key)
    announce(f"listening on {url_of(sock, tls=bool(tls_cert))}")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        close_app(app)


def serve_workers(open_one: Callable[[], Store], listen: str, workers: int, *, tls_cert: str | None = None,
                  tls_key: str | None = None, announce: Callable[[str], None] = print,
                  on_started: Callable[[], None] = lambda: None,
                  per_worker: Callable[[Store], dict[str, Any]] = lambda store: {},
                  **app_options: Any) -> int:
    """`serve --workers N`: bind ``listen`` once, fork ``workers`` processes that each open their own
    store with ``open_one()`` and serve the shared socket; returns the exit status (central/workers.py).
    ``per_worker(store)`` gives more `create_app` options built on the worker's own store."""
    from central.workers import Workers

    host, port = parse_listen(listen)
    sock = bind(host, port)

    def serve_one(shared: socket.socket) -> int:
        store = open_one()
        app = create_app(store, **app_options, **per_worker(store))
        prepare_process(app)  # in each worker (the parent serves nothing and never sets it)
        try:
            make_server(app, tls_cert=tls_cert, tls_key=tls_key).run(sockets=[shared])
        finally:
            close_app(app)
            store.close()
        return 0

    def started() -> None:
        announce(f"listening on {url_of(sock, tls=bool(tls_cert))}")
        on_started()

    try:
        return Workers(sock, workers, serve_one).run(on_started=started)
    finally:
        sock.close()
