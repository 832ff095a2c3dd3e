"""The real receiver for benchmarks, as its own process (like on the central's server).

``with receiver(db_url, {node: key}) as (url, store)`` registers the nodes, runs
the receiver and yields its URL and a store handle for checking what was stored.

It runs ``streetnode-central serve --listen 127.0.0.1:0`` as shipped.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from central.store import Store

_ENTRY = "import sys; from central.cli import main; sys.exit(main(sys.argv[1:]))"


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


def start_central(args: Sequence[str], timeout: float = 30.0, *,
                  drop_env: Sequence[str] = ()) -> tuple[subprocess.Popen[str], str]:
    """Run ``streetnode-central <args>`` (a ``serve`` command) as its own process, as shipped, in
    our environment less ``drop_env``; returns it and the URL it listens on, once it says so
    (RuntimeError after ``timeout`` s)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    for name in drop_env:
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-c", _ENTRY, *args], stdout=subprocess.PIPE, text=True, env=env)
    try:
        return proc, _wait_for_url(proc, timeout)
    except BaseException:
        stop_central(proc)
        raise


def stop_central(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """SIGTERM (a clean shutdown), SIGKILL if it has not exited within ``timeout`` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def receiver(db_url: str, nodes: dict[str, bytes], args: Sequence[str] = ()) -> Iterator[tuple[str, Store]]:
    """``args``: more ``serve`` options (``--tls-cert F --tls-key F`` for HTTPS)."""
    from central.store import open_store  # here: bench/soak_node.py imports this module, not the central

    store = open_store(db_url)
    try:
        for node_id, key in nodes.items():
            store.add_node(node_id, key, int(time.time() * 1000))
        proc, url = start_central(["serve", "--listen", "127.0.0.1:0", "--db", db_url, *args])
        try:
            yield url, store
        finally:
            stop_central(proc)
    finally:
        store.close()
