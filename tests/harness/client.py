"""One request through an Envoy under test, with everything a test asserts on in one place.

    ex = exchange(env, echo, proxy=v1("203.0.113.7", "10.0.0.1", 40000, 443),
                  headers=[("x-forwarded-for", "198.51.100.1")])
    ex.status                      # what the client got
    ex.upstream_values("x-real-ip")  # what the upstream received, one item per header line
    ex.reached_upstream            # False for a refused request
    ex.log()                       # the request's access-log entry (waits for the flush)

Every request carries a unique ``x-test-id`` so its upstream record and access-log line are found
even when many tests share one Envoy.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Optional

from . import proxyproto
from .envoy import Envoy
from .upstream import EchoServer

_ids = itertools.count(1)


def new_test_id(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


@dataclass
class Exchange:
    envoy: Envoy
    echo: EchoServer
    test_id: str
    response: proxyproto.Response

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def upstream(self) -> Optional[dict]:
        """The echo record of this request, or None when it never reached the upstream."""
        hits = self.echo.find("x-test-id", self.test_id)
        assert len(hits) <= 1, f"request {self.test_id} reached the upstream {len(hits)} times"
        return hits[0] if hits else None

    @property
    def reached_upstream(self) -> bool:
        return self.upstream is not None

    def upstream_values(self, name: str) -> list:
        """Every value the upstream received for header ``name``, one per line, in order."""
        rec = self.upstream
        assert rec is not None, (f"request {self.test_id} never reached the upstream; client got "
                                 f"{self.status} {self.response.text!r}")
        name = name.lower()
        return [v for k, v in rec["headers"] if k == name]

    def upstream_value(self, name: str) -> Optional[str]:
        """The single value of ``name`` at the upstream; None when absent; fails when repeated."""
        vals = self.upstream_values(name)
        assert len(vals) <= 1, f"{name} reached the upstream {len(vals)} times: {vals}"
        return vals[0] if vals else None

    def xff_entries(self) -> list:
        """The upstream's X-Forwarded-For as a list of trimmed entries (all lines joined)."""
        out = []
        for v in self.upstream_values("x-forwarded-for"):
            out += [e.strip() for e in v.split(",") if e.strip()]
        return out

    def log(self, timeout: float = 5.0) -> dict:
        return self.envoy.access_log_entry(self.test_id, timeout=timeout)


def exchange(env: Envoy, echo: EchoServer, proxy: bytes = b"", headers=(), path: str = "/",
             host: Optional[str] = "example.com", method: str = "GET", body: bytes = b"",
             version: str = "HTTP/1.1", source: Optional[str] = None,
             test_id: Optional[str] = None) -> Exchange:
    """One HTTP/1.x request on a fresh connection to ``env`` (PROXY-prefixed when ``proxy``)."""
    tid = test_id or new_test_id()
    hdrs = [("x-test-id", tid)] + list(headers)
    resp = proxyproto.request(env.port, proxy=proxy, method=method, path=path, host=host,
                              headers=hdrs, body=body, version=version, source=source,
                              target=env.listen_address)
    return Exchange(env, echo, tid, resp)


def exchange_h2(env: Envoy, echo: EchoServer, headers=(), path: str = "/", host: str = "example.com",
                haproxy_protocol: bool = False, source: Optional[str] = None, port: Optional[int] = None,
                test_id: Optional[str] = None) -> Exchange:
    """One HTTP/2 (prior knowledge) request through curl; ``haproxy_protocol`` sends PROXY v1 with
    curl's real addresses; ``port`` overrides the target (e.g. HAProxy in front of ``env``)."""
    tid = test_id or new_test_id()
    hdrs = [("x-test-id", tid)] + list(headers)
    resp = proxyproto.curl(port or env.port, path=path, host=host, headers=hdrs, http2=True,
                           haproxy_protocol=haproxy_protocol, source=source,
                           target=env.listen_address if port is None else "127.0.0.1")
    return Exchange(env, echo, tid, resp)
