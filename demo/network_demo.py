#!/usr/bin/env python3
"""`make demo`, second part: client-ip-filter as a NETWORK filter on a TLS passthrough listener.

Starts, on free loopback ports, an app that terminates TLS itself (certificate for app.example.com,
made with openssl) and reads the PROXY header Envoy sends it, and a real Envoy 1.40 built from
envoyfilter/gateway-tls-passthrough.yaml (proxy_protocol and tls_inspector listener filters,
set_filter_state, the filter before tcp_proxy with the manifest's own configuration, the upstream
PROXY protocol socket on the app's cluster). Two TLS clients come "through an L4 load balancer" (a
PROXY v2 header before the handshake): one allowed, one refused. Prints what each client saw, how many
connections the app accepted, the access-log decision and the counters. Stops everything it started.
"""
from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import manifests, procs  # noqa: E402
from harness import network as N  # noqa: E402
from harness.proxyproto import v2  # noqa: E402

APP = "app.example.com"
CASES = [("allowed client 203.0.113.7", "203.0.113.7", 52000),
         ("refused client 198.51.100.99", "198.51.100.99", 52001)]


def main() -> int:
    frags = manifests.load(N.GATEWAY_PASSTHROUGH)
    workdir = Path(tempfile.mkdtemp(prefix="client-ip-network-demo-"))
    print("\nclient-ip-filter demo, network mode: TLS passthrough by SNI, the filter before tcp_proxy\n")
    print(textwrap.indent(json.dumps(N.manifest_configuration(frags), indent=2), "  "))
    print()
    certs = N.Certificates(workdir / "certs", [APP])
    app = N.Upstream("app", tls=certs.pair(APP), expect_proxy=True).start()
    spec = N.NetworkListener(frags, None, chains=[N.Chain("app", [APP])])
    env = N.NetworkEnvoy([spec], {"app": (app.port, N.cluster_merge(frags))}, workdir=str(workdir),
                         name="envoy-network")
    try:
        env.start(timeout=60)
        rows = []
        for what, src, port in CASES:
            before = app.accepted
            out = N.tls_exchange(env.port, APP, certs.client_context(), v2(src, "10.0.0.1", port, 443))
            time.sleep(0.3)
            entry = env.log_entry(f"{src}:{port}")
            closed = "reset by Envoy during the TLS handshake" if "Reset" in (out.error or "") else \
                f"no reply: {out.error}"
            rows.append([what, out.reply or closed,
                         str(app.accepted - before), entry.get("decision") or "-"])
        widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(len(HEADER))]
        for r in [HEADER, ["-" * w for w in widths]] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        print("\nthe app's reply names the PROXY source Envoy sent it (the manifest's upstream PROXY protocol\n"
              "socket); a refused connection is closed before Envoy opens one to the app.")
        # Counters reach /stats with the filter's next flush (every 250 ms).
        decided = lambda: sum(v for k, v in env.counters().items()  # noqa: E731
                              if k in ("client_ip.allowed", "client_ip.denied", "client_ip.dry_run_denied"))
        procs.wait_until(lambda: decided() >= len(CASES), timeout=5, what="the counters' flush")
        print("\ncounters (Envoy /stats):")
        for name, value in sorted(env.counters().items()):
            print(f"  {name:40} {value}")
        print(f"\nEnvoy log, access log and config: {workdir}")
    finally:
        env.stop()
        app.stop()
    return 0


HEADER = ["case (TLS, SNI app.example.com)", "what the client got", "app accepted", "decision"]

if __name__ == "__main__":
    sys.exit(main())
