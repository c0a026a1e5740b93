"""A threaded HTTP/1.1 echo server on loopback: Envoy's upstream in every test.

Each request is answered ``200`` with ``application/json``::

    {"method": "GET", "path": "/x?y", "version": "HTTP/1.1",
     "headers": [["host", "a"], ["x-forwarded-for", "1.2.3.4"], ...],   # wire order, duplicates kept,
     "body": "..."}                                                      # names lower-cased

and recorded in ``EchoServer.requests``, so a test can prove that a refused request never arrived.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo"
    sys_version = ""

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        self.server.record(record)  # type: ignore[attr-defined]
        payload = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _echo

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr log
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, _Handler)
        self.lock = threading.Lock()
        self.requests: list = []

    def record(self, rec: dict) -> None:
        with self.lock:
            self.requests.append(rec)


class EchoServer:
    """``with EchoServer() as up: ... up.port, up.count, up.requests``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port))
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "EchoServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"echo:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    @property
    def requests(self) -> list:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def count(self) -> int:
        """How many requests reached the upstream so far."""
        with self._server.lock:
            return len(self._server.requests)

    def find(self, header: str, value: str) -> list:
        """The recorded requests that carried ``header: value`` (e.g. a test's x-test-id)."""
        header = header.lower()
        return [r for r in self.requests if [header, value] in r["headers"]]

    def __enter__(self) -> "EchoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def header_values(echo: dict, name: str) -> list:
    """All values of header ``name`` (case-insensitive) in an echo record, in order, one per line."""
    name = name.lower()
    return [v for k, v in echo["headers"] if k == name]
