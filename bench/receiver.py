"""The real receiver for benchmarks, as its own process (like on the central's server).

``with receiver(db_url, {node: key}) as (url, store)`` registers the nodes, runs
the receiver and yields its URL and a store handle for checking what was stored.

``stock=True`` runs ``streetnode-central serve --listen 127.0.0.1:0`` as shipped.
By default the same app (`create_app` + `make_server`) is served from a socket
made with ``IPPROTO_TCP``: central's ``bind()`` creates ``socket(AF_INET,
SOCK_STREAM)`` with proto 0, so asyncio does not set TCP_NODELAY on accepted
connections and every response on a kept-alive connection stalls ~40 ms (Nagle
against the client's delayed ACK). Both are measured by bench.drain.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from central.store import Store, open_store

_STOCK = "import sys; from central.cli import main; sys.exit(main(sys.argv[1:]))"
_NODELAY = """
import socket, sys
from central.server import create_app, make_server
from central.store import open_store
store = open_store(sys.argv[-1])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(2048)
sock.setblocking(False)
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
make_server(create_app(store)).run(sockets=[sock])
"""


def _wait_for_url(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening on "):
                return line.split()[-1]
    raise RuntimeError(f"streetnode-central serve did not start (exit code {proc.poll()})")


@contextlib.contextmanager
def receiver(db_url: str, nodes: dict[str, bytes], *, stock: bool = False) -> Iterator[tuple[str, Store]]:
    store = open_store(db_url)
    try:
        for node_id, key in nodes.items():
            store.add_node(node_id, key, int(time.time() * 1000))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = _STOCK if stock else _NODELAY
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--listen", "127.0.0.1:0",
                                 "--db", db_url], stdout=subprocess.PIPE, text=True, env=env)
        try:
            yield _wait_for_url(proc, 30), store
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    finally:
        store.close()
