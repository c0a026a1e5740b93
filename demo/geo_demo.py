#!/usr/bin/env python3
"""`make demo`, country and network owner (docs/geo.md): the filter reads MaxMind DB files served by a
list server, refuses a country and a network, and tells the app where each client comes from.

Starts, on free loopback ports, an echo upstream, nginx serving two small databases written with
mmdb-writer in MaxMind's layout (documentation addresses mapped to countries and AS numbers), and a
real Envoy 1.40 whose filter has two `mmdb` sources, a `geo` section, `country:`/`asn:` deny entries
and the two headers. Sends one request per case (clients in PROXY v2 headers), prints the status,
the country and AS number the filter found (filter state in the access log) and the headers the
app received. Stops everything it started, also on failure or Ctrl-C.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import geo, listserver  # noqa: E402
from harness.client import exchange  # noqa: E402
from harness.envoy import Envoy, EnvoyOptions  # noqa: E402
from harness.proxyproto import v2  # noqa: E402
from harness.upstream import EchoServer  # noqa: E402

GATEWAY, GATEWAY6 = "10.0.0.1", "2001:db8::1"
COUNTRIES = [("203.0.113.0/25", geo.country("DE")), ("203.0.113.128/25", geo.country("FR")),
             ("198.51.100.0/24", geo.country("KP")), ("192.0.2.0/24", geo.country("NL")),
             ("2001:db8:de::/48", geo.country("DE"))]
NETWORKS = [("203.0.113.0/24", geo.asn(64496, "Example Telecom")),
            ("192.0.2.0/24", geo.asn(64666, "Example Hosting")),
            ("2001:db8:de::/48", geo.asn(64496, "Example Telecom"))]

CONFIG = {
    "sources": {
        "countries": {"cluster": "geo", "authority": "geo.internal", "path": "/country.mmdb",
                      "format": "mmdb", "country_field": "country.iso_code"},
        "networks": {"cluster": "geo", "authority": "geo.internal", "path": "/asn.mmdb",
                     "format": "mmdb", "asn_field": "autonomous_system_number"},
    },
    "geo": {"country": "countries", "asn": "networks"},
    "access": {
        "deny": ["country:KP", "asn:64666"],
        "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["country:DE"]}],
    },
    "forward": {"country_header": "x-client-country", "asn_header": "x-client-asn"},
}

# (case, client, extra headers, path, expected status)
CASES = [
    ("client in DE (AS64496)", "203.0.113.7", [], "/", 200),
    ("client in DE, IPv6", "2001:db8:de::7", [], "/", 200),
    ("client in FR forges x-client-country: US", "203.0.113.200", [("x-client-country", "US")], "/", 200),
    ("refused country KP", "198.51.100.9", [], "/", 403),
    ("refused network AS64666 (a hoster, NL)", "192.0.2.10", [], "/", 403),
    ("not in the database, forges x-client-asn", "100.64.0.1", [("x-client-asn", "15169")], "/", 200),
    ("rule admin allows DE only: client in DE", "203.0.113.7", [], "/admin", 200),
    ("rule admin allows DE only: client in FR", "203.0.113.200", [], "/admin", 403),
]


def table(rows: list, header: list) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def row(env, echo, what, src, headers, path) -> tuple:
    gateway = GATEWAY6 if ":" in src else GATEWAY
    ex = exchange(env, echo, proxy=v2(src, gateway, 51000, 443), headers=headers, path=path)
    log = ex.log()
    if ex.reached_upstream:
        at_app = [ex.upstream_value("x-client-country") or "-", ex.upstream_value("x-client-asn") or "-"]
    else:
        at_app = ["(not reached)", "(not reached)"]
    decision = log.get("decision") or "allow"
    if log.get("rule"):
        decision += f" ({log['rule']})"
    return ex, [what, src, str(ex.status), log.get("client_country") or "-", log.get("client_asn") or "-",
                decision] + at_app


def main() -> int:
    workdir = tempfile.mkdtemp(prefix="client-ip-geo-demo-")
    root = Path(workdir) / "geo"
    root.mkdir()
    stamp = time.time() - 60
    listserver.write_file(root / "country.mmdb", geo.db_bytes(COUNTRIES), stamp)
    listserver.write_file(root / "asn.mmdb", geo.db_bytes(NETWORKS, "GeoLite2-ASN"), stamp)
    print("client-ip-filter geo demo: a real Envoy reads MaxMind DB files from nginx (docs/geo.md)\n")
    print("  country.mmdb (written by mmdb-writer, MaxMind's layout): 203.0.113.0/25 DE, "
          "203.0.113.128/25 FR,\n    198.51.100.0/24 KP, 192.0.2.0/24 NL, 2001:db8:de::/48 DE")
    print("  asn.mmdb (GeoLite2 ASN's layout): 203.0.113.0/24 and 2001:db8:de::/48 AS64496, "
          "192.0.2.0/24 AS64666\n")
    print("the filter's configuration:")
    for key, value in CONFIG.items():
        if key == "sources":
            for name, src in value.items():
                print(f'  sources.{name}: {json.dumps(src)}')
        else:
            print(f"  {key}: {json.dumps(value)}")
    print()
    failures = []
    with EchoServer() as echo, listserver.Nginx(str(root), workdir=str(Path(workdir) / "nginx")) as web:
        opts = EnvoyOptions(configuration=CONFIG, clusters=[listserver.envoy_cluster("geo", web.port)])
        with Envoy(opts, upstream_port=echo.port, workdir=workdir, name="envoy-geo") as env:
            for name in ("countries", "networks"):
                env.wait_log(f"source {name}: loaded", timeout=30)
            rows = []
            for what, src, headers, path, want in CASES:
                ex, r = row(env, echo, what, src, headers, path)
                rows.append(r)
                if ex.status != want:
                    failures.append(f"{what}: status {ex.status}, expected {want}")
            print(table(rows, ["case", "client", "status", "country", "asn", "decision (rule)",
                               "x-client-country at app", "x-client-asn at app"]))
            print("\ncountry and asn: the filter state the access log prints "
                  "(%FILTER_STATE(wasm.client_country:PLAIN)%, wasm.client_asn);\n"
                  "the last two columns: what the app received. A forged header never reaches it.")
            print("\nthe filter's log lines about the databases:")
            for line in env.log_text().splitlines():
                message = line.split("client-ip-filter: ", 1)[-1]
                if "wasm log" in line and "][info]" in line and message.startswith("source"):
                    print("  " + message)
        print(f"\nEnvoy log, access log and config: {workdir}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
