"""A webhook endpoint of our own on loopback: every POST's headers and body go to a callback,
whose return value is the status of the (empty) answer. The alerts tests' signature-checking
receiver and bench/alerts.py's arrival clock are both built on it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PostHook:
    def __init__(self, on_post: Callable[[Message, bytes], int], path: str = "/hook") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(on_post(self.headers, body))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
