#!/usr/bin/env python3
"""`make demo`, rate limits (docs/rate-limits.md): the filter keys each request by its client, Envoy's
local rate limit filter counts one bucket per key.

Starts, on free loopback ports, an echo upstream and a real Envoy 1.40 built from
envoyfilter/ingress-gateway-rate-limit.yaml (the filter writes the key into x-client-ip-key, the local
rate limit filter after it reads that header), with the bucket made small for the demo (3 requests,
no refill). Client A sends until it is limited, client B is not affected, then A forges
X-Forwarded-For, X-Real-IP and the key header itself: still limited. Prints each request's status and
the key the filter gave it (the filter state the access log prints), then the counters. Local
limiter only: no rate limit service. Stops everything it started, also on failure or Ctrl-C.
"""
from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import manifests, procs  # noqa: E402
from harness.client import exchange  # noqa: E402
from harness.envoy import Envoy, EnvoyOptions  # noqa: E402
from harness.proxyproto import v2  # noqa: E402
from harness.upstream import EchoServer  # noqa: E402

MANIFEST = REPO / "envoyfilter" / "ingress-gateway-rate-limit.yaml"
LIMITER = "envoy.filters.http.local_ratelimit"
BURST = 3
A, B, GATEWAY = "203.0.113.7", "203.0.113.8", "10.0.0.1"

CASES = [(f"client A, request {i + 1}", A, []) for i in range(BURST + 1)] + [
    ("client B", B, []),
    ("client A forges X-Forwarded-For", A, [("X-Forwarded-For", "203.0.113.99")]),
    ("client A forges X-Real-IP", A, [("X-Real-IP", "203.0.113.98")]),
    ("client A forges the key header", A, [("x-client-ip-key", "203.0.113.97/32")]),
    ("client B again", B, []),
]


def table(rows: list, header: list) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main() -> int:
    frags = manifests.load(MANIFEST)
    limiter = next(copy.deepcopy(f) for f in frags.http_filters if f["name"] == LIMITER)
    limiter["typed_config"]["descriptors"][0]["token_bucket"] = {
        "max_tokens": BURST, "tokens_per_fill": BURST, "fill_interval": "3600s"}
    workdir = tempfile.mkdtemp(prefix="client-ip-rate-limit-demo-")
    print(f"client-ip-filter rate-limit demo: {MANIFEST.relative_to(REPO)} in a real Envoy, the\n"
          f"per-key bucket made {BURST} requests with no refill (the manifest: 100, then 10 a second)\n")
    with EchoServer() as echo, \
            Envoy(EnvoyOptions(fragments=frags, http_filter_overrides={LIMITER: limiter}),
                  upstream_port=echo.port, workdir=workdir) as env:
        before = env.counters()
        rows = []
        for what, src, headers in CASES:
            ex = exchange(env, echo, proxy=v2(src, GATEWAY, 51000, 443), headers=headers)
            sent = ", ".join(f"{n}: {v}" for n, v in headers) or "-"
            app_key = ex.upstream_value("x-client-ip-key") if ex.upstream else "(not reached)"
            rows.append([what, sent, str(ex.status), ex.log().get("client_ip_key") or "-", app_key])
        procs.wait_until(lambda: env.counters().get("client_ip.rate_limit.keyed", 0)
                         - before.get("client_ip.rate_limit.keyed", 0) >= len(CASES),
                         timeout=5, what="the counters' flush")
        print(table(rows, ["case", "headers sent", "status", "key (filter state)", "x-client-ip-key at app"]))
        print("\n429: Envoy's local rate limit filter refused it (x-ratelimit-* headers on the reply); the\n"
              "forged headers changed nothing: the key is the filter's, from the PROXY protocol source.")
        stats = env.stats(raw=True)
        print("\ncounters (Envoy /stats):")
        for name, value in sorted(env.counters().items()):
            if name.startswith("client_ip.rate_limit") or name in ("client_ip.allowed",):
                print(f"  {name:48} {value}")
        for name in ("client_ip_rate_limit.http_local_rate_limit.ok",
                     "client_ip_rate_limit.http_local_rate_limit.rate_limited"):
            print(f"  {name:48} {stats.get(name, 0)}")
        print(f"\nEnvoy log, access log and config: {workdir}")
        statuses = [r[2] for r in rows]
    want = ["200"] * BURST + ["429", "200", "429", "429", "429", "200"]
    if statuses != want:
        print(f"unexpected statuses {statuses}, expected {want}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
