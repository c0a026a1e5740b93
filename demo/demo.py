#!/usr/bin/env python3
"""`make demo`: client-ip-filter in a real Envoy, fed real PROXY protocol traffic.

Starts, on free loopback ports, an echo upstream, a real Envoy 1.40 built from the ingress-gateway
manifest (envoyfilter/ingress-gateway.yaml: proxy_protocol listener filter, set_filter_state, the
filter with the manifest's own configuration, plus one allow entry for the demo's HAProxy client)
and HAProxy sending PROXY v2. Sends one request per case, prints what was sent, the status, the
client-IP headers the app received and the filter's decision, then the counters. Stops everything it
started, also on failure or Ctrl-C.
"""
from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import manifests, procs  # noqa: E402
from harness.client import exchange  # noqa: E402
from harness.envoy import Envoy, EnvoyOptions  # noqa: E402
from harness.haproxy import HAProxy  # noqa: E402
from harness.proxyproto import v1, v2  # noqa: E402
from harness.upstream import EchoServer  # noqa: E402

GATEWAY = "10.0.0.1"  # the address the load balancer talks to (the PROXY header's destination)

# (what it shows, PROXY header, extra request headers, host, path)
CASES = [
    ("PROXY v1, allowed client", v1("203.0.113.7", GATEWAY, 51000, 443), [], "example.com", "/"),
    ("PROXY v2 IPv4, allowed address", v2("198.51.100.7", GATEWAY, 51001, 443), [], "example.com", "/"),
    ("PROXY v2 IPv6", v2("2001:db8::7", "2001:db8::1", 51002, 443), [], "example.com", "/"),
    ("PROXY v2 mapped IPv4 ::ffff:203.0.113.9", v2("::ffff:203.0.113.9", "::ffff:10.0.0.1", 51003, 443),
     [], "example.com", "/"),
    ("trusted proxy 10.1.2.3 forwards for 203.0.113.20",
     v2("10.1.2.3", GATEWAY, 51004, 443), [("X-Forwarded-For", "203.0.113.20")], "example.com", "/"),
    ("spoof: refused client forges XFF and X-Real-IP", v1("192.0.2.66", GATEWAY, 51005, 443),
     [("X-Forwarded-For", "203.0.113.5"), ("X-Real-IP", "203.0.113.5")], "example.com", "/"),
    ("spoof: allowed client forges X-Real-IP", v1("203.0.113.7", GATEWAY, 51006, 443),
     [("X-Real-IP", "1.2.3.4"), ("x-client-ip", "1.2.3.4")], "example.com", "/"),
    ("refused client (not in allow list)", v2("198.51.100.99", GATEWAY, 51007, 443), [], "example.com", "/"),
    ("deny list beats allow list", v2("203.0.113.66", GATEWAY, 51008, 443), [], "example.com", "/"),
    ("rule admin: allowed client, not admin", v2("203.0.113.7", GATEWAY, 51009, 443), [],
     "admin.example.com", "/admin/users"),
    ("rule admin: the admin address", v2("203.0.113.10", GATEWAY, 51010, 443), [],
     "admin.example.com", "/admin/users"),
]

# HAProxy (send-proxy-v2) in front of Envoy: each client binds its own loopback address, which the
# PROXY header carries. The demo allows the first on purpose; the second stays outside the list.
HAPROXY_ALLOWED = "127.0.0.2"
HAPROXY_REFUSED = "127.0.0.3"


def row_of(what: str, ex) -> list:
    up = ex.upstream
    if up is None:
        real_ip = client_ip = port = xff = "(not reached)"
    else:
        real_ip = ex.upstream_value("x-real-ip") or "-"
        client_ip = ex.upstream_value("x-client-ip") or "-"
        port = ex.upstream_value("x-client-port") or "-"
        xff = ", ".join(ex.xff_entries()) or "-"
    log = ex.log()
    # wasm.client_ip_decision is written for refusals only: absent means allowed.
    decision = log.get("decision") or "allow (-)"
    if log.get("rule") not in (None, "", "-"):
        decision += f" ({log['rule']})"
    return [what, str(ex.status), log.get("client_ip") or "unknown", decision, real_ip, client_ip, port, xff]


def table(rows: list, header: list) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main() -> int:
    fragments = manifests.gateway()
    config = fragments.configuration()
    config["access"]["allow"].append(HAPROXY_ALLOWED)
    workdir = tempfile.mkdtemp(prefix="client-ip-demo-")
    print("client-ip-filter demo: real Envoy + the ingress-gateway manifest's configuration, with\n"
          f"{HAPROXY_ALLOWED} (the demo's allowed HAProxy client) added to access.allow\n")
    print(textwrap.indent(json.dumps(config, indent=2), "  "))
    print()
    with EchoServer() as echo, \
            Envoy(EnvoyOptions(fragments=fragments, configuration=config), upstream_port=echo.port,
                  workdir=workdir) as env, \
            HAProxy(backend_port=env.port, mode="tcp", send_proxy="v2", workdir=workdir) as hap:
        before = env.counters()
        rows = [row_of(what, exchange(env, echo, proxy=proxy, headers=headers, host=host, path=path))
                for what, proxy, headers, host, path in CASES]
        # A real PROXY v2 sender: HAProxy, with the client bound to its own loopback address.
        for source, what in ((HAPROXY_ALLOWED, "allowed"), (HAPROXY_REFUSED, "not in allow list")):
            ex = exchange(hap_env(env, hap), echo, source=source)
            rows.append(row_of(f"HAProxy send-proxy-v2, client {source} ({what})", ex))
        # Counters reach /stats with the filter's next flush (at most a second).
        sent = len(rows)
        decided = lambda: sum(v - before.get(k, 0) for k, v in env.counters().items()  # noqa: E731
                              if k in ("client_ip.allowed", "client_ip.denied", "client_ip.dry_run_denied"))
        procs.wait_until(lambda: decided() >= sent, timeout=5, what="the counters' flush")
        print(table(rows, ["case", "status", "client", "decision", "x-real-ip", "x-client-ip",
                           "x-client-port", "X-Forwarded-For at app"]))
        print("\nclient and decision: the filter state the access log prints "
              "(%FILTER_STATE(wasm.client_ip:PLAIN)%, wasm.client_ip_decision, wasm.client_ip_rule;\n"
              "an allowed request leaves the decision absent: '-');\n"
              "the header columns: what the app (an echo upstream) received; refused requests never reach it.")
        print("\ncounters (Envoy /stats):")
        for name, value in sorted(env.counters().items()):
            print(f"  {name:40} {value}")
        print(f"\nEnvoy log, access log and config: {workdir}")
    return 0


class _Via:
    """Sends through HAProxy while finding the request's log line in the Envoy behind it."""

    def __init__(self, env, port):
        self._env, self.port = env, port

    def __getattr__(self, name):
        return getattr(self._env, name)


def hap_env(env, hap):
    return _Via(env, hap.port)


if __name__ == "__main__":
    sys.exit(main())
