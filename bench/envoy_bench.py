#!/usr/bin/env python3
"""`make bench`: client-ip-filter in a real Envoy against Envoy's own baselines (issue 4).

One Envoy (``--concurrency 1``, pinned to CPU 0) serves one listener per case, each with a
direct-response route so that no upstream is measured; wrk (one thread, 32 keep-alive connections,
pinned to CPU 1) drives one case at a time. The cases run interleaved, in a rotated order each
round, and the report gives medians over rounds of the per-round ratios, because absolute figures
move by tens of percent between rounds on these shared machines.

Cases:
  A      no filter
  B      a proxy-wasm filter that does nothing (bench/noop-filter): the floor of any wasm filter
  C      client-ip-filter, default configuration
  D      client-ip-filter, trusted proxies, allow and deny lists, a rule, two forwarded headers
  E10    client-ip-filter, allow list of 10 mixed IPv4/IPv6 entries      (E: default resolution)
  E10k   ... of 10,000 entries
  E100k  ... of 100,000 entries
  F10    native: RBAC, one `remote_ip` principal per entry (10 entries) + x-real-ip header
  F10k   ... 10,000 entries (what an Istio AuthorizationPolicy `ipBlocks` compiles to)
  G      the seed's approach: a Lua filter copying the first X-Forwarded-For address to a header
  RL-H   (C) with `rate_limit` (header x-client-ip-key) and Envoy's local rate limit filter after it
         reading the header (envoyfilter/ingress-gateway-rate-limit.yaml), one bucket per key
  RL-FS  the same with the key in the filter state, read by a CEL expression
         (envoyfilter/ingress-gateway-rate-limit-filter-state.yaml): (RL-H)/(RL-FS) compares the
         variants, (RL-FS)/(C) is what keying and counting cost. The bucket is made too big to refuse
         anything (every response stays 200); wrk's connections are one client, so one key
  S1M    client-ip-filter, allow list of 1,000,000 entries from a list source (docs/sources.md), fetched
         from a loopback HTTP server (in this script) through an Envoy cluster
  I1M    the same 1,000,000 entries inline in the configuration: (S1M) / (I1M) is what a source
         costs per request (goal ≥ 0.95×)
  DM-C   client-ip-filter's native build (the Envoy dynamic module, docs/native.md), default
         configuration: against (A) no filter (goal ≥ 0.9×) and (C) the wasm build
  DM-E10, DM-E10k   the native build, allow list of 10 / 10,000: against (E10)/(E10k) and RBAC (F10)/(F10k)
  DM-NOOP  a dynamic module that does nothing (bench/noop-module, make noop-module): the floor of any
         dynamic-module filter, as (B) is of a wasm one: (DM-NOOP)/(A) is Envoy's own cost of the
         dynamic-module filter, (DM-C)/(DM-NOOP) what client-ip-filter adds (runs when --noop-module
         names it)
  DM-CALLS (DM-NOOP) making exactly (DM-C)'s host calls per request and nothing else (filter state read,
         header lines read, x-real-ip added, filter state written, a counter): (DM-CALLS)/(A) is the best
         any dynamic module doing (DM-C)'s work in Envoy can reach, (DM-C)/(DM-CALLS) the filter's own code
         (the DM- cases run when --module names the .so, `make native`; the native build's memory with
         1,000,000 entries is `make native-memory`'s, bench/results/native-memory.json)
  GEO-C20  client-ip-filter, deny list of 20 countries (`country:XX` entries) from the real country
         database (`make geo-data`, ip-location-db) as an `mmdb` source served by this script
  CIDR-C20 the same decision as a plain list: the 20 countries' networks (examples/geo_lookup.rs
         --cidrs) as a `text` source: (GEO-C20) / (CIDR-C20) is what a country list costs per request
         beside a CIDR list (goal ≥ 0.97×); the client (127.0.0.1) has no country, both allow it
         (the GEO cases run when --geo-dir holds the databases and --geo-lookup the example)
  B-calls  the do-nothing filter making exactly (C)'s four host calls per request and nothing else:
         how much of (C)'s cost the host calls are, and how much the filter's own work in the VM
  B-fs4, B-inc4, B-prop4, B-set4  the do-nothing filter making one kind of host call four times per
         request: the price of each kind (get_property, increment_metric, set_property, set_map_value)
C to E carry the `set_filter_state` network filter as deployed (it records the downstream address).

Connection cases (docs/network-mode.md, the network-filter mode): a new TCP connection per request (wrk sends
`Connection: close`), through tcp_proxy to a direct-response HTTP listener of the same Envoy, so each
connection is a short exchange; the figure is connections per second (for a refusing case: connections
refused per second, which wrk counts as read errors):
  N-A      no filter (tcp_proxy alone)
  N-B      a wasm network filter that does nothing (bench/noop-filter, configuration `network`)
  N-C      client-ip-filter as a network filter, allow list of 10 (the client is inside)
  N-C10k   ... allow list of 10,000
  N-R10k   ... allow list of 10,000 that does not hold the client: every connection refused
  N-F10    native: network RBAC, one `remote_ip` principal per entry (10 entries)
  N-F10k   ... 10,000 entries
  N-FR10k  ... 10,000 entries that do not hold the client: every connection refused
The N- cases carry set_filter_state as deployed, the filter and RBAC sit before tcp_proxy.

Then, for each case alone in a fresh Envoy: its time to ready and its RSS after load; and (S1M),
(I1M) and (A) alone at --concurrency 1 and 3: Envoy's RSS with 1M entries, per worker count (a source's
list is parsed once and copied into each VM; inline, each VM parses the configuration itself).
And GEO-BOTH (both real databases, country and ASN, as sources; a deny list and both headers) alone at
--concurrency 1 and 3: its time to ready (Envoy start until the first request is decided with both
files fetched, parsed once and adopted by every worker) and Envoy's RSS, beside (A)'s.
Then the host calls of every wasm case, counted by the `count-host-calls` builds (bench/host_calls.py).
Writes the run's record, bench/results/bench.json (committed), and BENCHMARKS.md rendered from it
alone (`report`; tools/figures.py regenerates and checks it, and the docs' figures that come from it);
the per-round figures stay in the work directory. Standard library only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
DYNAMIC_MODULE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
LUA = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
SET_FILTER_STATE = "type.googleapis.com/envoy.extensions.filters.network.set_filter_state.v3.Config"
NETWORK_WASM = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
NETWORK_RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
# The cluster of the connection cases: tcp_proxy's upstream, a direct-response HTTP listener of the
# same Envoy (its port is filled in by main()).
SINK_CLUSTER = "sink"

# What every request carries (besides Host): the client came through one proxy (10.1.2.3).
XFF = "203.0.113.7, 10.1.2.3"
PATH = "/api/v1/items?page=2"

LOCAL_RATELIMIT = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
RATE_LIMIT_EXPR = "type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor"
RATE_LIMIT_KEY_HEADER = "x-client-ip-key"


def local_rate_limit_filter(from_header: bool) -> dict:
    """The local rate limit filter of envoyfilter/ingress-gateway-rate-limit.yaml (``from_header``) or
    of its filter-state variant, with a bucket nothing in a bench run exhausts
    (tests/test_rate_limit.py checks that this is the manifests' filter apart from the bucket)."""
    if from_header:
        action = {"request_headers": {"header_name": RATE_LIMIT_KEY_HEADER, "descriptor_key": "client_ip_key"}}
    else:
        action = {"extension": {"name": "envoy.rate_limit_descriptors.expr", "typed_config": {
            "@type": RATE_LIMIT_EXPR, "descriptor_key": "client_ip_key",
            "text": "filter_state['wasm.client_ip_key']"}}}
    percent = {"numerator": 100, "denominator": "HUNDRED"}
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": LOCAL_RATELIMIT, "stat_prefix": "client_ip_rate_limit",
        "filter_enabled": {"default_value": percent, "runtime_key": "client_ip_rate_limit.enabled"},
        "filter_enforced": {"default_value": percent, "runtime_key": "client_ip_rate_limit.enforced"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "max_dynamic_descriptors": 10000,
        "descriptors": [{"entries": [{"key": "client_ip_key"}], "token_bucket": {
            "max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}}],
        "rate_limits": [{"actions": [action]}]}}


LUA_SOURCE = """
function envoy_on_request(handle)
  local xff = handle:headers():get("x-forwarded-for")
  if xff ~= nil then
    local first = string.match(xff, "^%s*([^,%s]+)")
    if first ~= nil then
      handle:headers():replace("x-client-ip", first)
    end
  end
end
"""

WRK_SCRIPT = """
wrk.method = "GET"
wrk.path = "%(path)s"
wrk.headers["Host"] = "www.example.com"
wrk.headers["User-Agent"] = "wrk"
wrk.headers["X-Forwarded-For"] = "%(xff)s"
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"errors\\": %%d, \\"status_errors\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
""" % {"path": PATH, "xff": XFF}

# The connection cases: one request per connection.
WRK_SCRIPT_CLOSE = WRK_SCRIPT.replace('wrk.headers["User-Agent"] = "wrk"\n',
                                      'wrk.headers["User-Agent"] = "wrk"\nwrk.headers["Connection"] = "close"\n')


# ------------------------------------------------------------------------------------------------
# Lists

def entries(n: int, seed: int) -> list[str]:
    """``n`` networks, half IPv4 (/16-/32, a third single addresses) and half IPv6 (/32-/64 in
    2000::/3, a third single addresses), without host bits; the last one is 127.0.0.0/8, so the
    loopback client of the benchmark is inside the list and found only at its very end by a
    linear scan."""
    import ipaddress
    rng = random.Random(seed)
    out = []
    for i in range(n - 1):
        if i % 2 == 0:
            ip = rng.getrandbits(32)
            if rng.randrange(3) == 0:
                out.append(str(ipaddress.IPv4Address(ip)))
            else:
                length = 16 + rng.randrange(17)
                out.append(str(ipaddress.IPv4Network((ip >> (32 - length) << (32 - length), length))))
        else:
            ip = (0x2000 << 112) | (rng.getrandbits(128) >> 3)
            if rng.randrange(3) == 0:
                out.append(str(ipaddress.IPv6Address(ip)))
            else:
                length = 32 + rng.randrange(33)
                out.append(str(ipaddress.IPv6Network((ip >> (128 - length) << (128 - length), length))))
    out.append("127.0.0.0/8")
    return out


# ------------------------------------------------------------------------------------------------
# Envoy configuration

def wasm_filter(path: str, vm_id: str, root_id: str, configuration: str) -> dict:
    return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": WASM, "config": {
        "name": vm_id, "root_id": root_id, "fail_open": False,
        "vm_config": {"vm_id": vm_id, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": path}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": configuration}}}}


def module_filter(path: str, configuration: str) -> dict:
    """The native build's HTTP filter as native/envoy.yaml has it (the module file, the same JSON)."""
    return {"name": "client-ip-filter", "typed_config": {
        "@type": DYNAMIC_MODULE, "dynamic_module_config": {"module": {"local": {"filename": path}}},
        "filter_name": "client_ip_filter",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration}}}


def rbac_filter(nets: list[str]) -> dict:
    principals = []
    for net in nets:
        addr, _, length = net.partition("/")
        if not length:
            length = "128" if ":" in addr else "32"
        principals.append({"remote_ip": {"address_prefix": addr, "prefix_len": int(length)}})
    return {"name": "envoy.filters.http.rbac", "typed_config": {"@type": RBAC, "rules": {
        "action": "ALLOW",
        "policies": {"ip-allow-list": {"permissions": [{"any": True}], "principals": principals}}}}}


def principals_of(nets: list[str]) -> list[dict]:
    out = []
    for net in nets:
        addr, _, length = net.partition("/")
        if not length:
            length = "128" if ":" in addr else "32"
        out.append({"remote_ip": {"address_prefix": addr, "prefix_len": int(length)}})
    return out


def network_wasm_filter(path: str, vm_id: str, root_id: str, configuration: str) -> dict:
    f = wasm_filter(path, vm_id, root_id, configuration)
    f["name"] = "envoy.filters.network.wasm"
    f["typed_config"]["@type"] = NETWORK_WASM
    return f


def network_rbac_filter(nets: list[str]) -> dict:
    return {"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": NETWORK_RBAC, "stat_prefix": "net_rbac", "rules": {
            "action": "ALLOW",
            "policies": {"ip-allow-list": {"permissions": [{"any": True}], "principals": principals_of(nets)}}}}}


def lua_filter() -> dict:
    return {"name": "envoy.filters.http.lua", "typed_config": {
        "@type": LUA, "default_source_code": {"inline_string": LUA_SOURCE}}}


SET_FILTER_STATE_FILTER = {
    "name": "envoy.filters.network.set_filter_state",
    "typed_config": {"@type": SET_FILTER_STATE, "on_new_connection": [{
        "object_key": "client_ip.downstream_address", "factory_key": "envoy.string",
        "format_string": {"text_format_source": {"inline_string": "%DOWNSTREAM_REMOTE_ADDRESS%"}}}]},
}


CALL_NAMES = {"fs": "get_property", "inc": "increment_metric", "prop": "set_property",
              "set": "set_map_value"}


# The native build's comparisons the report shows (BENCHMARKS.md "The native build"; tools/figures.py).
NATIVE_COMPARED = [("DM-C", "C"), ("DM-E10", "E10"), ("DM-E10k", "E10k"), ("DM-E10", "F10"),
                   ("DM-E10k", "F10k"), ("DM-NOOP", "A"), ("DM-CALLS", "A"), ("DM-C", "DM-NOOP"),
                   ("DM-C", "DM-CALLS")]

SOURCE_CLUSTER = "bench-lists"
SOURCE_PATH = "/million.txt"
MILLION = 1_000_000


def million_entries() -> list[str]:
    return entries(MILLION, 4000 + MILLION)


# ---- the geo cases (docs/geo.md): the real databases of `make geo-data` from the list server ------

GEO_COUNTRY_PATH, GEO_ASN_PATH, GEO_CIDR_PATH = "/country.mmdb", "/asn.mmdb", "/deny20.txt"
GEO_NAMES = {"GEO-C20", "CIDR-C20", "GEO-BOTH"}
# The deny list of (GEO-C20), the 20 countries of tests/test_geo_differential.py.
GEO_DENY20 = ["CN", "RU", "KP", "IR", "BR", "IN", "VN", "ID", "PK", "NG",
              "UA", "TR", "EG", "BD", "TH", "PH", "MX", "CO", "AR", "ZA"]


def geo_files(geo_dir: str, geo_lookup: str) -> dict[str, bytes] | None:
    """The list server's files for the GEO cases: both databases and (CIDR-C20)'s list, the networks
    the 20 countries select (examples/geo_lookup.rs --cidrs); None when a database or the example is
    missing (`make geo-data geo-lookup`)."""
    country, asn = Path(geo_dir) / "country.mmdb", Path(geo_dir) / "asn.mmdb"
    if not (country.is_file() and asn.is_file() and Path(geo_lookup).is_file()):
        return None
    cidrs = subprocess.run([geo_lookup, str(country), "country", ",".join(GEO_DENY20), "--cidrs"],
                           capture_output=True, check=True).stdout
    return {GEO_COUNTRY_PATH: country.read_bytes(), GEO_ASN_PATH: asn.read_bytes(), GEO_CIDR_PATH: cidrs}


def geo_source(path: str, **kw) -> dict:
    """A source of the GEO cases from the list server: `on_unavailable: refuse`, so that a listener
    answers 200 only once its file is fetched, parsed and adopted."""
    return {"cluster": SOURCE_CLUSTER, "authority": "bench-lists", "path": path, "refresh_s": 3600,
            "max_bytes": 32 << 20, "max_entries": 4_000_000, "on_unavailable": "refuse", **kw}


def geo_both_configuration() -> dict:
    """(GEO-BOTH)'s configuration: both real databases, a deny list and both headers (also
    bench/native_memory.py's GEO cases)."""
    return {"sources": {"countries": geo_source(GEO_COUNTRY_PATH, format="mmdb", country_field="country_code"),
                        "networks": geo_source(GEO_ASN_PATH, format="mmdb", asn_field="autonomous_system_number")},
            "geo": {"country": "countries", "asn": "networks"},
            "access": {"deny": ["country:KP", "asn:64496"]},
            "forward": {"country_header": "x-client-country", "asn_header": "x-client-asn"}}


def geo_cases(filter_wasm: str, files: dict[str, bytes]) -> list[dict]:
    """(GEO-C20), (CIDR-C20) and (GEO-BOTH): every source `on_unavailable: refuse` (geo_source)."""
    src = geo_source
    country = src(GEO_COUNTRY_PATH, format="mmdb", country_field="country_code")

    def ours(config: dict) -> list[dict]:
        return [wasm_filter(filter_wasm, "client-ip-filter", "client_ip_filter", json.dumps(config))]
    n_cidrs = files[GEO_CIDR_PATH].count(b"\n")
    return [
        {"name": "GEO-C20", "what": "client-ip-filter, deny list of 20 countries (real country database)",
         "sfs": True, "source": True, "filters": ours({
             "sources": {"countries": country}, "geo": {"country": "countries"},
             "access": {"deny": [f"country:{c}" for c in GEO_DENY20]}})},
        {"name": "CIDR-C20", "what": f"the same decision as a CIDR list ({n_cidrs:,} networks, a text source)",
         "sfs": True, "source": True, "filters": ours({
             "sources": {"deny20": src(GEO_CIDR_PATH)}, "access": {"deny": ["source:deny20"]}})},
        {"name": "GEO-BOTH", "what": "both real databases (country, ASN): a deny list and both headers",
         "sfs": True, "source": True, "filters": ours(geo_both_configuration())},
    ]


def geo_memory(envoy: str, by_name: dict[str, dict], workdir: Path, source_port: int, connections: int,
               script: Path, wrk_cpu: str) -> dict[str, dict]:
    """(GEO-BOTH) and (A) alone at --concurrency 1 and 3: time to ready (for GEO-BOTH: until every
    worker decides with both databases) and Envoy's RSS after load."""
    out: dict[str, dict] = {}
    for name in ("A", "GEO-BOTH"):
        c = by_name.get(name)
        if c is None:
            continue
        for conc in (1, 3):
            port, admin = free_port(), free_port()
            e = Envoy(envoy, bootstrap([listener(c, port)], admin, source_port=source_port), workdir,
                      f"envoy-geo-{name}-c{conc}", "", concurrency=conc)
            try:
                e.wait_serving([port], loading={port} if c.get("source") else ())
                # Every worker: 200 on 30 fresh connections in a row (a worker that has not yet
                # adopted the tables answers 503), within 60 s.
                deadline, ok = time.monotonic() + 60, 0
                while ok < 30:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name}: not every worker serves; log:\n" + e.log_tail())
                    ok = ok + 1 if http_get(port)[0] == 200 else 0
                ready = time.monotonic() - e.started
                run_wrk(port, 2, connections, script, wrk_cpu)
                rss, hwm = e.rss_kib()
                out[f"{name}@{conc}"] = {"ready_s": ready, "rss_kib": rss, "hwm_kib": hwm}
                print(f"  geo memory {name:>8} --concurrency {conc}: every worker ready in {ready:5.2f} s, "
                      f"RSS {rss / 1024:6.1f} MiB (peak {hwm / 1024:6.1f} MiB)", flush=True)
            finally:
                e.stop()
    return out


def geo_section(raw: dict) -> list[str]:
    """BENCHMARKS.md "Country and network owner": (GEO-C20) against (CIDR-C20), and both databases'
    time to ready and memory by worker count."""
    summary, geo = raw.get("summary") or {}, raw.get("geo") or {}
    if "GEO-C20" not in summary and not geo.get("memory"):
        return []
    L = ["## Country and network owner (docs/geo.md)", ""]
    ratios = geo.get("ratios") or {}
    if "GEO-C20" in summary and "CIDR-C20" in summary and "GEO-C20/CIDR-C20" in ratios:
        g, c = summary["GEO-C20"], summary["CIDR-C20"]
        L.append(f"A deny list of 20 countries from ip-location-db's country database (GEO-C20) against the "
                 f"same decision as a list of networks (CIDR-C20, {geo.get('cidrs', 0):,} CIDRs from a `text` "
                 f"source): **{ratios['GEO-C20/CIDR-C20']:.2f}×** (goal ≥ 0.97×; {g['rps']:.0f} against "
                 f"{c['rps']:.0f} req/s, Envoy CPU {g['cpu_us_per_req']:.1f} against "
                 f"{c['cpu_us_per_req']:.1f} µs/req). The country entries are turned into one IP set when "
                 "the database is adopted, so a request costs one list lookup either way.")
        L.append("")
    mem = geo.get("memory") or {}
    if mem:
        size = geo.get("file_bytes") or {}
        mb = {k: f"{v / 1e6:.1f} MB" for k, v in size.items()}
        L.append(f"Both real databases (GEO-BOTH: the country database, {mb.get('country.mmdb', '?')}, and the "
                 f"ASN database written from ip-location-db's CSV, {mb.get('asn.mmdb', '?')}) fetched from the "
                 "list server, parsed once per Envoy "
                 "and adopted by every worker; ready = Envoy start until every worker decides with both "
                 "(30 fresh connections in a row answered 200); RSS after 2 s of load:")
        L.append("")
        L.append("| --concurrency | (A) no filter: ready s | RSS MiB | (GEO-BOTH): every worker ready s | RSS MiB | RSS − (A) MiB |")
        L.append("|--:|--:|--:|--:|--:|--:|")
        for conc in (1, 3):
            a, g = mem.get(f"A@{conc}"), mem.get(f"GEO-BOTH@{conc}")
            if not g:
                continue
            a_ready = f"{a['ready_s']:.2f}" if a else "–"
            a_rss = f"{a['rss_kib'] / 1024:.1f}" if a else "–"
            delta = f"{(g['rss_kib'] - a['rss_kib']) / 1024:.1f}" if a else "–"
            L.append(f"| {conc} | {a_ready} | {a_rss} | {g['ready_s']:.2f} | {g['rss_kib'] / 1024:.1f} | {delta} |")
        L.append("")
        L.append("The parse itself, natively and for each reader (ours and the `maxminddb` crate), is in "
                 "[bench/results/geo-reader.txt](bench/results/geo-reader.txt) (`make geo-compare`).")
        L.append("")
    return L


def cases(filter_wasm: str, noop_wasm: str, variants: dict[str, str],
          probes: dict[str, str] | None = None, million: list[str] | None = None,
          module: str | None = None, noop_module: str | None = None,
          module_variants: dict[str, str] | None = None) -> list[dict]:
    """Each case: name, what, http filters, whether set_filter_state goes first, route headers.
    With ``million`` (the 1M entries), also (S1M) from the list source and (I1M) inline. With ``module``
    (the native build's .so), the DM- cases; with ``noop_module`` (bench/noop-module), (DM-NOOP)."""
    allow = {n: entries(n, 4000 + n) for n in (10, 10_000, 100_000)}
    d_config = json.dumps({
        "client_ip": {"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"]},
        "access": {
            "allow": ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"],
            "deny": ["203.0.113.66"],
            "rules": [{"name": "admin", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"],
                       "allow": ["10.20.0.0/16"]}],
        },
        "forward": {"headers": ["x-real-ip", "x-client-ip"]},
    })

    def ours(config: str, wasm: str = filter_wasm, vm: str = "client-ip-filter") -> list[dict]:
        return [wasm_filter(wasm, vm, "client_ip_filter", config)]

    out = [
        {"name": "A", "what": "no filter", "filters": []},
        {"name": "B", "what": "wasm filter that does nothing",
         "filters": [wasm_filter(noop_wasm, "noop-filter", "", "")]},
        {"name": "B-calls", "what": "(B) making (C)'s four host calls, nothing else", "sfs": True,
         "probe": True, "filters": [wasm_filter(noop_wasm, "noop-filter", "", "host-calls")]},
        {"name": "C", "what": "client-ip-filter, default configuration", "filters": ours(""), "sfs": True},
        {"name": "D", "what": "client-ip-filter: trusted proxies, allow+deny, a rule, 2 headers",
         "filters": ours(d_config), "sfs": True},
        {"name": "E10", "what": "client-ip-filter, allow list of 10", "sfs": True,
         "filters": ours(json.dumps({"access": {"allow": allow[10]}}))},
        {"name": "E10k", "what": "client-ip-filter, allow list of 10,000", "sfs": True,
         "filters": ours(json.dumps({"access": {"allow": allow[10_000]}}))},
        {"name": "E100k", "what": "client-ip-filter, allow list of 100,000", "sfs": True,
         "filters": ours(json.dumps({"access": {"allow": allow[100_000]}}))},
        {"name": "F10", "what": "Envoy RBAC remote_ip, 10 principals + x-real-ip",
         "filters": [rbac_filter(allow[10])], "xrealip": True},
        {"name": "F10k", "what": "Envoy RBAC remote_ip, 10,000 principals + x-real-ip",
         "filters": [rbac_filter(allow[10_000])], "xrealip": True},
        {"name": "G", "what": "Lua: first X-Forwarded-For address to a header", "filters": [lua_filter()]},
        {"name": "RL-H", "what": "(C) + rate_limit key header + local rate limit filter", "sfs": True,
         "filters": ours(json.dumps({"rate_limit": {"header": RATE_LIMIT_KEY_HEADER}}))
         + [local_rate_limit_filter(from_header=True)]},
        {"name": "RL-FS", "what": "(C) + rate_limit key in filter state + local rate limit filter (CEL)",
         "sfs": True, "filters": ours(json.dumps({"rate_limit": {}})) + [local_rate_limit_filter(from_header=False)]},
    ]
    source = {"cluster": SOURCE_CLUSTER, "authority": "bench-lists", "path": SOURCE_PATH,
              "refresh_s": 3600, "max_bytes": 64 << 20}
    million_config = json.dumps({"sources": {"million": source}, "access": {"allow": ["source:million"]}})
    if module:
        out += [
            {"name": "DM-C", "what": "native build (dynamic module), default configuration", "sfs": True,
             "filters": [module_filter(module, "")]},
            {"name": "DM-E10", "what": "native build, allow list of 10", "sfs": True,
             "filters": [module_filter(module, json.dumps({"access": {"allow": allow[10]}}))]},
            {"name": "DM-E10k", "what": "native build, allow list of 10,000", "sfs": True,
             "filters": [module_filter(module, json.dumps({"access": {"allow": allow[10_000]}}))]},
        ]
    if noop_module:
        out.append({"name": "DM-NOOP", "what": "dynamic module that does nothing", "sfs": True,
                    "filters": [module_filter(noop_module, "")]})
        out.append({"name": "DM-CALLS", "what": "(DM-NOOP) making (DM-C)'s host calls, nothing else", "sfs": True,
                    "filters": [module_filter(noop_module, "host-calls")]})
    # Other builds of the native filter (e.g. before and after a change), as case DM-C again.
    for label, path in (module_variants or {}).items():
        out.append({"name": f"DM-C-{label}", "what": f"case DM-C, build {label}", "sfs": True, "probe": True,
                    "filters": [module_filter(path, "")]})
    if million is not None:
        out.append({"name": "S1M", "what": "client-ip-filter, allow list of 1,000,000 from a list source",
                    "sfs": True, "source": True, "million": True, "filters": ours(million_config)})
        out.append({"name": "I1M", "what": "client-ip-filter, the same 1,000,000 inline", "sfs": True,
                    "filters": ours(json.dumps({"access": {"allow": million}}))})
    # The connection cases (network filters before tcp_proxy; see the module doc).
    outside = [n for n in allow[10_000] if n != "127.0.0.0/8"] + ["192.0.2.0/24"]

    def net_ours(access: dict) -> list[dict]:
        return [network_wasm_filter(filter_wasm, "client-ip-filter", "client_ip_filter",
                                    json.dumps({"filter_type": "network", "access": access}))]
    out += [
        {"name": "N-A", "what": "TCP: no filter (tcp_proxy alone)", "tcp": True, "filters": []},
        {"name": "N-B", "what": "TCP: wasm network filter that does nothing", "tcp": True,
         "filters": [network_wasm_filter(noop_wasm, "noop-filter", "", "network")]},
        {"name": "N-C", "what": "TCP: client-ip-filter network mode, allow list of 10", "tcp": True, "sfs": True,
         "filters": net_ours({"allow": allow[10]})},
        {"name": "N-C10k", "what": "TCP: client-ip-filter network mode, allow list of 10,000", "tcp": True,
         "sfs": True, "filters": net_ours({"allow": allow[10_000]})},
        {"name": "N-R10k", "what": "TCP: client-ip-filter network mode, 10,000 entries, all refused",
         "tcp": True, "sfs": True, "refuses": True, "filters": net_ours({"allow": outside})},
        {"name": "N-F10", "what": "TCP: network RBAC remote_ip, 10 principals", "tcp": True, "sfs": True,
         "filters": [network_rbac_filter(allow[10])]},
        {"name": "N-F10k", "what": "TCP: network RBAC remote_ip, 10,000 principals", "tcp": True, "sfs": True,
         "filters": [network_rbac_filter(allow[10_000])]},
        {"name": "N-FR10k", "what": "TCP: network RBAC, 10,000 principals, all refused", "tcp": True,
         "sfs": True, "refuses": True, "filters": [network_rbac_filter(outside)]},
    ]
    # Other builds of the filter (e.g. opt-level variants), as cases C and D again.
    for label, path in variants.items():
        out.append({"name": f"C-{label}", "what": f"case C, build {label}", "sfs": True, "probe": True,
                    "filters": ours("", path, f"client-ip-filter-{label}")})
        out.append({"name": f"D-{label}", "what": f"case D, build {label}", "sfs": True, "probe": True,
                    "filters": ours(d_config, path, f"client-ip-filter-{label}")})
    # The do-nothing filter making one kind of host call four times: the price of each kind.
    for label, call in (("fs4", "fs"), ("inc4", "inc"), ("prop4", "prop"), ("set4", "set")):
        out.append({"name": f"B-{label}", "what": f"(B) making 4 × `{CALL_NAMES[call]}`", "sfs": True,
                    "probe": True, "calls": 4, "call": call,
                    "filters": [wasm_filter(noop_wasm, "noop-filter", "", "calls:" + ",".join([call] * 4))]})
    # The do-nothing filter making the named host calls (exploration: the price of each call).
    for label, calls in (probes or {}).items():
        out.append({"name": f"B-{label}", "what": f"(B) making host calls {calls}", "sfs": True,
                    "probe": True, "filters": [wasm_filter(noop_wasm, "noop-filter", "", f"calls:{calls}")]})
    return out


def tcp_listener(case: dict, port: int) -> dict:
    """A connection case: [set_filter_state] [the filter under test] tcp_proxy -> the sink."""
    network = ([SET_FILTER_STATE_FILTER] if case.get("sfs") else []) + case["filters"] + [
        {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
            "@type": TCP_PROXY, "stat_prefix": f"case_{case['name'].replace('-', '_')}",
            "cluster": SINK_CLUSTER}}]
    return {"name": f"case_{case['name']}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": network}]}


def sink(port: int) -> tuple[dict, dict]:
    """The connection cases' upstream: a direct-response HTTP listener, and its cluster."""
    lst = listener({"name": "sink", "filters": []}, port)
    cluster = {"name": SINK_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": SINK_CLUSTER, "endpoints": [{"lb_endpoints": [{
                   "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
    return lst, cluster


def listener(case: dict, port: int) -> dict:
    if case.get("tcp"):
        return tcp_listener(case, port)
    route: dict = {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}
    route_config: dict = {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]}
    if case.get("xrealip"):
        # As the issue has it. Envoy's router applies route-level request_headers_to_add only on the
        # way to an upstream, not for a direct response: see BENCHMARKS.md.
        route_config["request_headers_to_add"] = [{
            "header": {"key": "x-real-ip", "value": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    hcm = {"@type": HCM, "stat_prefix": f"case_{case['name'].replace('-', '_')}", "codec_type": "AUTO",
           # skip_xff_append: on a loopback connection Envoy would append its own interface
           # address (not 127.0.0.1) to X-Forwarded-For; every case sees the header as sent.
           "use_remote_address": True, "skip_xff_append": True, "route_config": route_config,
           "http_filters": case["filters"] + [{"name": "envoy.filters.http.router",
                                               "typed_config": {"@type": ROUTER}}]}
    network = ([SET_FILTER_STATE_FILTER] if case.get("sfs") else []) + [
        {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    return {"name": f"case_{case['name']}",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": network}]}


def bootstrap(listeners: list[dict], admin_port: int, clusters: list | None = None,
              source_port: int = 0) -> dict:
    out = {"node": {"id": "bench", "cluster": "bench"},
           "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
           "static_resources": {"listeners": listeners}}
    clusters = list(clusters or [])
    if source_port:
        clusters.append({
            "name": SOURCE_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": SOURCE_CLUSTER, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                            "port_value": source_port}}}}]}]}})
    if clusters:
        out["static_resources"]["clusters"] = clusters
    return out


def with_sink(listeners: list[dict], cases_: list[dict]) -> tuple[list[dict], list[dict]]:
    """Adds the sink listener and cluster when a connection case needs them."""
    if not any(c.get("tcp") for c in cases_):
        return listeners, []
    lst, cluster = sink(free_port())
    return listeners + [lst], [cluster]


class ListServer:
    """The list server of (S1M): the 1M entries as a text list, from a thread of this script."""

    def __init__(self, lines: list[str], extra: dict[str, bytes] | None = None):
        import http.server
        import threading
        files = {SOURCE_PATH: ("\n".join(lines) + "\n").encode(), **(extra or {})}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                self.send_response(200 if self.path in files else 404)
                payload = files.get(self.path, b"")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------------
# Processes

_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A free loopback port not handed out before in this run: the kernel may give a port back as
    soon as its probe socket closes, and one Envoy with two listeners on it refuses to start."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(port: int, path: str = PATH, timeout: float = 2.0) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"X-Forwarded-For": XFF, "Host": "www.example.com"})
    try:
        with NO_PROXY.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def refused(port: int) -> bool:
    """The listener accepts a connection and closes it without answering a request."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return c.recv(100) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


class Envoy:
    def __init__(self, binary: str, config: dict, workdir: Path, name: str, cpu: str,
                 concurrency: int = 1):
        self.workdir = workdir
        self.admin = config["admin"]["address"]["socket_address"]["port_value"]
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(config))
        self.log = workdir / f"{name}.log"
        argv = [binary, "-c", str(path), "--concurrency", str(concurrency), "--use-dynamic-base-id",
                "-l", "warning", "--log-path", str(self.log)]
        if cpu:
            argv = ["taskset", "-c", cpu] + argv
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_serving(self, ports: list[int], timeout: float = 120.0, refusing: tuple = (),
                     loading=()) -> float:
        """Seconds from start until every listener answers 200 (a port in ``refusing``: until it
        accepts a connection and closes it without an answer). A listener in ``loading`` (a list
        source still being fetched) may answer 403 (or 503: `on_unavailable: refuse`) until then."""
        deadline = time.monotonic() + timeout
        pending = list(ports)
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Envoy exited ({self.proc.returncode}); log:\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise RuntimeError("Envoy not serving in time; log:\n" + self.log_tail())
            if pending[0] in refusing:
                if refused(pending[0]):
                    pending.pop(0)
                else:
                    time.sleep(0.02)
                continue
            try:
                status, _ = http_get(pending[0], timeout=1.0)
                if status in (403, 503) and pending[0] in loading:
                    time.sleep(0.05)
                    continue
                if status != 200:
                    raise RuntimeError(f"listener {pending[0]} answered {status}")
                pending.pop(0)
                continue
            except (OSError, urllib.error.URLError):
                time.sleep(0.02)
        return time.monotonic() - self.started

    def check_source_loaded(self, name: str = "million", entries: int = MILLION) -> None:
        """A list-source case measures nothing unless its list is in force: the source's entries
        gauge (either build's metric prefix) must hold all of it."""
        got = {k: v for k, v in self.stats().items() if k.endswith(f"client_ip.source.{name}.entries")}
        if entries not in got.values():
            raise RuntimeError(f"source {name} not loaded ({got or 'no entries gauge'}); log:\n" + self.log_tail())

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def cpu_ns(self) -> int:
        """CPU time of all of Envoy's threads, in ns (schedstat)."""
        total = 0
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total

    def rss_kib(self) -> tuple[int, int]:
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stats(self) -> dict[str, int]:
        with NO_PROXY.open(f"http://127.0.0.1:{self.admin}/stats?format=json", timeout=5) as r:
            doc = json.load(r)
        return {s["name"]: s["value"] for s in doc.get("stats", []) if "value" in s}

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_wrk(port: int, seconds: float, connections: int, script: Path, cpu: str) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "5s", "-s", str(script),
            f"http://127.0.0.1:{port}{PATH}"]
    if cpu:
        argv = ["taskset", "-c", cpu] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    m = re.search(r"WRKJSON (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def run_case(case: dict, port: int, seconds: float, connections: int, scripts: dict, cpu: str) -> dict:
    """One wrk run of a case. Connection cases open a connection per request; for a refusing case
    the figure is the connections refused per second (wrk's read/connect errors), and a request that
    got an answer is an error."""
    r = run_wrk(port, seconds, connections, scripts["close" if case.get("tcp") else "keep"], cpu)
    if case.get("refuses"):
        r["refused"] = r["errors"]
        r["rps"] = r["errors"] / (r["duration_us"] / 1e6)
        r["errors"], r["status_errors"] = r["requests"], 0
    return r


def proc_stat_cpu() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0
    total = sum(fields[:8])
    return total - idle, steal, total


# ------------------------------------------------------------------------------------------------

WASM_OPT_FLAGS = ["-Oz", "--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
                  "--enable-nontrapping-float-to-int", "--enable-reference-types", "--enable-multivalue"]


def size_steps(workdir: Path) -> tuple[list[dict], dict[str, str]]:
    """Builds the filter with the release profile varied one step at a time (cargo's environment
    overrides, a target directory of its own) and measures each .wasm. Returns the steps and the
    paths of the builds worth running in Envoy."""
    target_dir = REPO / "target" / "bench-sizes"
    # (what, opt-level, strip, wasm-opt level or None, the variant label it runs as in Envoy)
    steps = [
        ("opt-level s, strip debuginfo (the profile before issue 4)", "s", "debuginfo", None, None),
        ("opt-level s, strip = true", "s", "true", None, "s"),
        ("opt-level s, strip = true, wasm-opt -Oz", "s", "true", "-Oz", None),
        ("opt-level z, strip = true", "z", "true", None, None),
        ("opt-level z, strip = true, wasm-opt -Oz (make build)", "z", "true", "-Oz", None),
        ("opt-level 3, strip = true", "3", "true", None, None),
        ("opt-level 3, strip = true, wasm-opt -O3", "3", "true", "-O3", "3"),
    ]
    out, paths = [], {}
    for what, opt, strip, wasm_opt, label in steps:
        env = dict(os.environ, CARGO_PROFILE_RELEASE_OPT_LEVEL=opt, CARGO_PROFILE_RELEASE_STRIP=strip)
        subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
                        "--target-dir", str(target_dir / f"{opt}-{strip}")],
                       cwd=REPO, env=env, check=True)
        built = target_dir / f"{opt}-{strip}" / "wasm32-wasip1" / "release" / "client_ip_filter.wasm"
        path = workdir / f"filter-{opt}-{strip}{'-wasm-opt' + wasm_opt if wasm_opt else ''}.wasm"
        if wasm_opt:
            subprocess.run(["wasm-opt", wasm_opt, *WASM_OPT_FLAGS[1:], str(built), "-o", str(path)], check=True)
        else:
            path.write_bytes(built.read_bytes())
        out.append({"what": what, "bytes": path.stat().st_size})
        print(f"  size: {what}: {path.stat().st_size} bytes", flush=True)
        if label:
            paths[label] = str(path)
    return out, paths


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"cpu": model, "cores": os.cpu_count(), "memory": mem, "kernel": platform.release(),
            "virtualization": virt()}


def virt() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Hypervisor vendor:\s*(\S+)", out)
        return f"VM ({m.group(1)})" if m else "bare metal or unknown"
    except OSError:
        return "unknown"


def version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = (out.stdout + out.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True, help="the client-ip-filter .wasm")
    ap.add_argument("--noop-wasm", required=True, help="the do-nothing filter of case B")
    ap.add_argument("--count-wasm", help="the filter built with count-host-calls (make build-counting): "
                                         "the host-calls column is counted with it")
    ap.add_argument("--count-noop-wasm", help="the no-op filter built with count-host-calls")
    ap.add_argument("--module", help="the native build (the dynamic module .so, make native): cases DM-*")
    ap.add_argument("--noop-module", help="the do-nothing dynamic module (make noop-module): cases DM-NOOP, DM-CALLS")
    ap.add_argument("--module-variant", action="append", default=[], metavar="LABEL=PATH",
                    help="another build of the native filter's .so, run as case DM-C-LABEL")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH",
                    help="another build of the filter, run as cases C-LABEL and D-LABEL")
    ap.add_argument("--probe-calls", action="append", default=[], metavar="LABEL=CALLS",
                    help="case B-LABEL: the do-nothing filter making CALLS (e.g. fs,prop,set) per request")
    ap.add_argument("--geo-dir", default=str(REPO / ".work" / "geo"),
                    help="make geo-data's databases: cases GEO-C20, CIDR-C20, GEO-BOTH")
    ap.add_argument("--geo-lookup", default=str(REPO / "target" / "release" / "examples" / "geo_lookup"),
                    help="examples/geo_lookup.rs (make geo-lookup): CIDR-C20's list")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=3, help="length of one wrk run, s")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--native", help="JSON written by `cargo bench` (BENCH_JSON)")
    ap.add_argument("--native-text", help="the table printed by `cargo bench`")
    ap.add_argument("--sizes", help="JSON {label: bytes} of the .wasm builds to report")
    ap.add_argument("--workdir", default=str(REPO / ".work" / "bench"))
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--record", default=str(REPO / "bench" / "results" / "bench.json"),
                    help="the run's record (committed): BENCHMARKS.md and the docs' figures come from it")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--only", default="", help="comma-separated case names (exploration)")
    ap.add_argument("--no-alone", action="store_true", help="skip the per-case RSS / time-to-ready pass")
    ap.add_argument("--size-steps", action="store_true",
                    help="build the filter with the release profile varied step by step, report each "
                         "size, and run the opt-level \"s\" and 3 builds as cases C-s, D-s, C-3 and D-3")
    args = ap.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "request.lua"
    script.write_text(WRK_SCRIPT)
    script_close = workdir / "request-close.lua"
    script_close.write_text(WRK_SCRIPT_CLOSE)
    scripts = {"keep": script, "close": script_close}
    envoy_cpu, wrk_cpu = ("0", "1") if (os.cpu_count() or 1) >= 2 else ("", "")
    variants = dict(v.split("=", 1) for v in args.variant)
    steps: list[dict] = []
    if args.size_steps:
        print("bench: the .wasm, one release-profile step at a time", flush=True)
        steps, step_paths = size_steps(workdir)
        variants.update(step_paths)
    probes = dict(p.split("=", 1) for p in args.probe_calls)
    wanted = set(args.only.split(",")) if args.only else None
    million = None
    list_server = None
    geo = geo_files(args.geo_dir, args.geo_lookup) if wanted is None or wanted & GEO_NAMES else None
    if wanted is None or wanted & {"S1M", "I1M"}:
        print("bench: generating the 1,000,000 entries of (S1M) and (I1M)", flush=True)
        million = million_entries()
    if million is not None or geo is not None:
        list_server = ListServer(million or [], geo)
    all_cases = cases(os.path.abspath(args.wasm), os.path.abspath(args.noop_wasm), variants, probes,
                      million, os.path.abspath(args.module) if args.module else None,
                      os.path.abspath(args.noop_module) if args.noop_module else None,
                      {k: os.path.abspath(v) for k, v in (m.split("=", 1) for m in args.module_variant)})
    if geo is not None:
        all_cases += geo_cases(os.path.abspath(args.wasm), geo)
    elif wanted is None or wanted & GEO_NAMES:
        print(f"bench: no GEO cases ({args.geo_dir} or {args.geo_lookup} missing: make geo-data geo-lookup)",
              flush=True)
    if args.only:
        keep = set(args.only.split(","))
        all_cases = [c for c in all_cases if c["name"] in keep]
    names = [c["name"] for c in all_cases]
    t_start = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()

    # ---- throughput: all cases in one Envoy, interleaved rounds --------------------------------
    ports = {c["name"]: free_port() for c in all_cases}
    admin = free_port()
    listeners, clusters = with_sink([listener(c, ports[c["name"]]) for c in all_cases], all_cases)
    source_port = list_server.port if list_server else 0
    config = bootstrap(listeners, admin, clusters, source_port)
    refusing = tuple(ports[c["name"]] for c in all_cases if c.get("refuses"))
    print(f"bench: Envoy with {len(all_cases)} listeners (cases {', '.join(names)})", flush=True)
    envoy = Envoy(args.envoy, config, workdir, "envoy-all", envoy_cpu)
    results: dict[str, list[dict]] = {n: [] for n in names}
    busy0, steal0, total0 = proc_stat_cpu()
    own_cpu_ns = 0
    try:
        envoy.wait_serving(list(ports.values()), refusing=refusing,
                           loading={ports[c["name"]] for c in all_cases if c.get("source")})
        if any(c.get("million") for c in all_cases):
            envoy.check_source_loaded()
        for c in all_cases:  # warm-up: V8 tiers up, connections pools and caches settle
            run_case(c, ports[c["name"]], 1, args.connections, scripts, wrk_cpu)
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                case = next(c for c in all_cases if c["name"] == name)
                cpu0 = envoy.cpu_ns()
                r0 = os.times()
                r = run_case(case, ports[name], args.seconds, args.connections, scripts, wrk_cpu)
                r1 = os.times()
                cpu1 = envoy.cpu_ns()
                own_cpu_ns += cpu1 - cpu0 + int(((r1.children_user + r1.children_system)
                                                 - (r0.children_user + r0.children_system)) * 1e9)
                # per request, or per refused connection for a refusing connection case
                r["cpu_us_per_req"] = (cpu1 - cpu0) / 1e3 / max(r.get("refused", r["requests"]), 1)
                r["round"] = rnd
                results[name].append(r)
                print(f"  round {rnd + 1}/{args.rounds} {name:>6}: {r['rps']:9.0f} req/s  "
                      f"p50 {r['p50_us']:6d} us  p99 {r['p99_us']:6d} us  "
                      f"{r['cpu_us_per_req']:6.1f} us CPU/req  errors {r['errors']}+{r['status_errors']}",
                      flush=True)
        stats = envoy.stats()
    finally:
        envoy.stop()
    busy1, steal1, total1 = proc_stat_cpu()
    hz = os.sysconf("SC_CLK_TCK")
    machine_busy_s = (busy1 - busy0) / hz
    others_s = max(machine_busy_s - own_cpu_ns / 1e9, 0.0)
    steal_pct = 100.0 * (steal1 - steal0) / max(total1 - total0, 1)
    wall_s = (total1 - total0) / hz / (os.cpu_count() or 1)

    # ---- each case alone: time to ready, RSS after load ---------------------------------------
    alone: dict[str, dict] = {}
    for c in ([] if args.no_alone else [c for c in all_cases if not c.get("probe")]):
        port, admin = free_port(), free_port()
        lsts, cls = with_sink([listener(c, port)], [c])
        e = Envoy(args.envoy, bootstrap(lsts, admin, cls, source_port), workdir, f"envoy-{c['name']}",
                  envoy_cpu)
        try:
            ready = e.wait_serving([port], refusing=(port,) if c.get("refuses") else (),
                                   loading={port} if c.get("source") else ())
            if c.get("million"):
                e.check_source_loaded()
            run_case(c, port, 2, args.connections, scripts, wrk_cpu)
            rss, hwm = e.rss_kib()
            alone[c["name"]] = {"ready_s": ready, "rss_kib": rss, "hwm_kib": hwm}
            print(f"  alone {c['name']:>6}: ready in {ready:5.2f} s, RSS {rss / 1024:6.1f} MiB "
                  f"(peak {hwm / 1024:6.1f} MiB)", flush=True)
        finally:
            e.stop()

    # ---- 1M entries from a source vs inline: Envoy's RSS by worker count --------------------------
    memory: dict[str, dict] = {}
    mem_cases = [c for c in all_cases if c["name"] in ("A", "S1M", "I1M")]
    for c in ([] if args.no_alone or million is None else mem_cases):
        for conc in (1, 3):
            port, admin = free_port(), free_port()
            e = Envoy(args.envoy, bootstrap([listener(c, port)], admin, source_port=source_port), workdir,
                      f"envoy-{c['name']}-c{conc}", "", concurrency=conc)
            try:
                # (S1M): 200 once the list is loaded (127.0.0.1 is in it)
                ready = e.wait_serving([port], loading={port} if c.get("source") else ())
                if c.get("million"):
                    e.check_source_loaded()
                time.sleep(3)  # every worker adopted the list (they poll every second)
                run_wrk(port, 2, args.connections, script, wrk_cpu)
                rss, hwm = e.rss_kib()
                memory[f"{c['name']}@{conc}"] = {"ready_s": ready, "rss_kib": rss, "hwm_kib": hwm}
                print(f"  memory {c['name']:>4} --concurrency {conc}: ready in {ready:5.2f} s, "
                      f"RSS {rss / 1024:6.1f} MiB (peak {hwm / 1024:6.1f} MiB)", flush=True)
            finally:
                e.stop()

    # ---- both real databases: time to ready and RSS by worker count (geo_memory) -------------------
    geo_record: dict = {}
    if geo is not None:
        by_name = {c["name"]: c for c in all_cases}
        geo_record["cidrs"] = geo[GEO_CIDR_PATH].count(b"\n")
        geo_record["file_bytes"] = {path.lstrip("/"): len(body) for path, body in geo.items()}
        if not args.no_alone:
            geo_record["memory"] = geo_memory(args.envoy, by_name, workdir, source_port, args.connections,
                                              script, wrk_cpu)

    # ---- host calls per request, counted by the counting builds (bench/host_calls.py) -------------
    host_calls_counted: dict[str, dict] = {}
    if args.count_wasm and args.count_noop_wasm:
        import host_calls as HC
        count_cases = cases(os.path.abspath(args.count_wasm), os.path.abspath(args.count_noop_wasm), {},
                            probes, million)
        count_cases = [c for c in count_cases if c["name"] in names]
        print("bench: host calls per request, counted (count-host-calls builds)", flush=True)
        host_calls_counted = HC.count(args.envoy, count_cases, workdir, source_port)
        for n, x in host_calls_counted.items():
            print(f"  host calls {n:>6}: {HC.fmt(x['per_context'])} per request ({x['contexts']} counted): "
                  + ", ".join(f"{k} {HC.fmt(v)}" for k, v in x["calls"].items()), flush=True)
    if list_server:
        list_server.stop()

    elapsed = time.monotonic() - t_start
    load_after = os.getloadavg()

    # ---- figures ---------------------------------------------------------------------------------
    def ratio(a: str, b: str) -> float:
        per_round = []
        for rnd in range(args.rounds):
            ra = [r for r in results.get(a, []) if r["round"] == rnd]
            rb = [r for r in results.get(b, []) if r["round"] == rnd]
            if ra and rb:
                per_round.append(ra[0]["rps"] / rb[0]["rps"])
        return median(per_round)

    summary = {}
    for n in names:
        rs = results[n]
        summary[n] = {
            "rps": median([r["rps"] for r in rs]),
            "rps_min": min(r["rps"] for r in rs), "rps_max": max(r["rps"] for r in rs),
            "p50_us": median([r["p50_us"] for r in rs]), "p99_us": median([r["p99_us"] for r in rs]),
            "cpu_us_per_req": median([r["cpu_us_per_req"] for r in rs]),
            "errors": sum(r["errors"] + r["status_errors"] for r in rs),
            "vs_A": ratio(n, "A") if "A" in names else float("nan"),
            "vs_B": ratio(n, "B") if "B" in names else float("nan"),
        }
    targets = []

    def target(what: str, value: float, goal: float, unit: str = "×", at_most: bool = False) -> None:
        if value == value:  # not NaN
            met = value <= goal if at_most else value >= goal
            targets.append({"what": what, "value": value, "goal": goal, "unit": unit,
                            "at_most": at_most, "met": met})

    target("(C) / (B)", ratio("C", "B"), 0.85)
    target("(D) / (B)", ratio("D", "B"), 0.80)
    target("(E) 100,000 entries / (E) 10 entries", ratio("E100k", "E10"), 0.95)
    target("(E) 10,000 entries / (F) RBAC 10,000 principals", ratio("E10k", "F10k"), 5.0)
    target("connections: (N-C) / (N-B) no-op network filter", ratio("N-C", "N-B"), 0.90)
    target("connections: (N-C10k) / (N-F10k) network RBAC 10,000 principals", ratio("N-C10k", "N-F10k"), 5.0)
    target("refused connections: (N-R10k) / (N-FR10k) network RBAC 10,000 principals",
           ratio("N-R10k", "N-FR10k"), 5.0)
    target("(S1M) 1,000,000 from a source / (I1M) the same inline", ratio("S1M", "I1M"), 0.95)
    target("native: (DM-C) default configuration / (A) no filter", ratio("DM-C", "A"), 0.90)
    target("(GEO-C20) 20 countries / (CIDR-C20) the same as CIDRs", ratio("GEO-C20", "CIDR-C20"), 0.97)
    if geo is not None:
        geo_record["ratios"] = {"GEO-C20/CIDR-C20": ratio("GEO-C20", "CIDR-C20")}
    # What the native build changes, beside its goal (BENCHMARKS.md "The native build").
    native_ratios = {f"{a}/{b}": ratio(a, b) for a, b in [("DM-C", "A")] + NATIVE_COMPARED
                     if a in names and b in names}
    for label in variants:
        target(f"(C-{label}) / (B)", ratio(f"C-{label}", "B"), 0.85)
        target(f"(D-{label}) / (B)", ratio(f"D-{label}", "B"), 0.80)
    if args.native and Path(args.native).exists():
        nat = json.loads(Path(args.native).read_text())
        if "lookup_1M" in nat:
            target("native lookup, 1,000,000 entries, random addresses", nat["lookup_1M"]["median_ns"],
                   50, " ns", True)
        if "lookup_1M_hot" in nat:
            target("native lookup, 1,000,000 entries, 4,096 repeating clients",
                   nat["lookup_1M_hot"]["median_ns"], 50, " ns", True)
        if "decision_1M" in nat:
            target("native full decision, 1,000,000 entries", nat["decision_1M"]["median_ns"], 300, " ns", True)
        if "configure_1M" in nat:
            c1m = nat["configure_1M"]
            target("native configure 1,000,000 entries: time", c1m["median_ms"], 1000, " ms", True)
            target("native configure 1,000,000 entries: heap peak", c1m["peak_heap_mib"], 64, " MiB", True)
    if args.sizes and Path(args.sizes).exists():
        size = json.loads(Path(args.sizes).read_text()).get("client_ip_filter.wasm (make build)")
        if size:
            target("release .wasm", size / 1024, 450, " KiB", True)
    wasm_counters = {k: v for k, v in stats.items() if k.startswith("wasmcustom.client_ip.")}
    module_counters = {k: v for k, v in stats.items() if k.startswith("dynamicmodulescustom.client_ip.")}
    rbac = {k: v for k, v in stats.items() if ".rbac." in k and k.endswith(("allowed", "denied"))}
    rbac.update({k: v for k, v in stats.items() if k.startswith("net_rbac.") and k.endswith(("allowed", "denied"))})

    raw = {"started_at": started_at, "args": vars(args), "machine": machine(), "results": results,
           "size_steps": steps,
           "summary": summary, "alone": alone, "host_calls": host_calls_counted, "memory": memory, "targets": targets, "wasm_counters": wasm_counters,
           "module_counters": module_counters, "native_ratios": native_ratios,
           "rbac": rbac, "geo": geo_record, "load_before": load_before, "load_after": load_after,
           "others_cpu_s": others_s, "machine_busy_s": machine_busy_s, "wall_s": wall_s,
           "steal_pct": steal_pct, "elapsed_s": elapsed}
    # Everything the report shows, so that it is a function of the record alone (tools/figures.py
    # regenerates BENCHMARKS.md from it, tests/test_figures.py checks the two agree).
    raw["cases"] = [{k: c[k] for k in ("name", "what", "call", "calls", "tcp") if k in c}
                    for c in all_cases]
    raw["envoy_version"] = version([args.envoy, "--version"]).split("version:")[-1].strip()
    raw["wrk_version"] = version(["wrk", "-v"])
    raw["sizes"] = json.loads(Path(args.sizes).read_text()) if args.sizes else None
    raw["native_text"] = Path(args.native_text).read_text().rstrip() if args.native_text else None
    (workdir / "results.json").write_text(json.dumps(raw, indent=1))
    record = dict(raw, results=None)  # the per-round figures stay in the work directory
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    Path(args.out).write_text(report(record))
    print(f"bench: wrote {args.record} and {args.out} ({elapsed:.0f} s)")
    bad = [n for n in names if summary[n]["errors"]]
    if bad:
        print(f"bench: errors in cases {bad}", file=sys.stderr)
        return 1
    return 0


def fmt_ratio(x: float) -> str:
    return "–" if x != x else f"{x:.2f}×"


def host_calls(raw: dict, case: dict) -> str:
    """The case's host calls per request, as counted (bench/host_calls.py); "–" for a case without a
    wasm filter or not counted in this run."""
    counted = raw.get("host_calls", {}).get(case["name"])
    if counted is None:
        return "–"
    import host_calls as HC
    return HC.fmt(counted["per_context"])


def calls_text(raw: dict, name: str) -> str:
    """`get_property` 1, … : the counted calls of a case, for the notes."""
    import host_calls as HC
    counted = raw.get("host_calls", {}).get(name, {}).get("calls", {})
    return ", ".join(f"`{k}` {HC.fmt(v)}" for k, v in counted.items()) or "none"


def native_build_section(raw: dict) -> list[str]:
    """BENCHMARKS.md "The native build": the DM- cases against no filter, the wasm build and RBAC
    (medians of the per-round ratios of this run); nothing when the run had no DM- case."""
    s = raw["summary"]
    if "DM-C" not in s:
        return []
    L = ["## The native build (Envoy dynamic module)", "",
         "The same core as an Envoy dynamic module (`make native`, docs/native.md), in the same Envoy, "
         "listeners and rounds as the cases above. Ratios are medians of the per-round ratios of "
         "requests/s.", "",
         "| native case | against | ratio |", "|---|---|--:|"]
    values = raw.get("native_ratios") or {}
    for a, b in [("DM-C", "A")] + NATIVE_COMPARED:
        value = values.get(f"{a}/{b}")
        if value is not None and value == value:
            L.append(f"| {a} | ({b}) {next(c['what'] for c in raw['cases'] if c['name'] == b)} | "
                     f"{value:.2f}× |")
    L.append("")
    if "DM-NOOP" in s:
        L.append("(DM-NOOP) is a dynamic module whose filter does nothing, (DM-CALLS) the same module making "
                 "(DM-C)'s host calls for each request and nothing else (bench/noop-module): (DM-NOOP)/(A) is "
                 "what Envoy's dynamic-module filter costs by itself, (DM-CALLS)/(A) the most any filter "
                 "making those calls can reach, and (DM-C)/(DM-CALLS) what the filter's own code costs.")
        L.append("")
    counters = raw.get("module_counters") or {}
    if counters:
        L.append("Sanity: the native build's counters after the rounds: "
                 + ", ".join(f"`{k}` {v}" for k, v in sorted(counters.items()) if v) + ".")
        L.append("")
    return L


def report(raw: dict) -> str:
    """BENCHMARKS.md, from a run's record alone (bench/results/bench.json)."""
    from types import SimpleNamespace
    args = SimpleNamespace(**raw["args"])
    all_cases = raw["cases"]
    s, alone, m = raw["summary"], raw["alone"], raw["machine"]
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append(f"Generated by `{args.command}` on {raw['started_at']} ({raw['elapsed_s'] / 60:.1f} min for the "
             "Envoy part). Every figure below comes from that run; rerun `make bench` to refresh this "
             "file. What is measured and how: issue 4 and `bench/envoy_bench.py`.")
    L.append("")
    L.append("## Envoy: throughput and cost per request")
    L.append("")
    L.append(f"Envoy {raw['envoy_version']}, one worker "
             f"(`--concurrency 1`) pinned to CPU 0; wrk, 1 thread and {args.connections} keep-alive connections "
             "pinned to CPU 1; a direct-response route (no upstream). Each request: `GET "
             f"{PATH}` with `X-Forwarded-For: {XFF}`; the HTTP connection manager has "
             "`use_remote_address: true` and `skip_xff_append: true` (on a loopback connection Envoy would "
             "append its own interface address rather than 127.0.0.1). "
             f"{args.rounds} rounds of {args.seconds:g} s per case, the cases interleaved in a rotated "
             "order each round, after a 1 s warm-up each. Figures are medians over the rounds; "
             "ratios are medians of the per-round ratios of requests/s. CPU is Envoy's (all its threads) "
             "per request. RSS and time to ready are from a separate Envoy serving that case alone, "
             "after 2 s of load.")
    L.append("")
    L.append("| case | what | host calls/req | req/s | vs (A) | vs (B) | p50 µs | p99 µs | Envoy CPU µs/req | RSS MiB | ready s |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for c in all_cases:
        n = c["name"]
        x = s[n]
        a = alone.get(n, {})
        L.append(f"| {n} | {c['what']} | {host_calls(raw, c)} | {x['rps']:.0f} | {fmt_ratio(x['vs_A'])} | {fmt_ratio(x['vs_B'])} | "
                 f"{x['p50_us']:.0f} | {x['p99_us']:.0f} | {x['cpu_us_per_req']:.1f} | "
                 + (f"{a['rss_kib'] / 1024:.1f} | {a['ready_s']:.2f} |" if a else "– | – |"))
    L.append("")
    L.append("Spread of requests/s over the rounds (min – max): " + "; ".join(
        f"{n} {s[n]['rps_min']:.0f}–{s[n]['rps_max']:.0f}" for n in s) + ".")
    L.append("")
    L.append("## Targets (this run)")
    L.append("")
    L.append("| target | measured | goal | |")
    L.append("|---|--:|--:|---|")
    for t in raw["targets"]:
        unit = t.get("unit", "×")
        digits = 3 if unit == "×" else 1
        sign = "≤" if t.get("at_most") else "≥"
        goal = f"{t['goal']:.2f}" if unit == "×" else f"{t['goal']:g}"
        L.append(f"| {t['what']} | {t['value']:.{digits}f}{unit} | {sign} {goal}{unit} | "
                 f"{'met' if t['met'] else 'MISSED'} |")
    L.append("")
    if raw.get("sizes"):
        sizes = raw["sizes"]
        L.append("## The `.wasm`")
        L.append("")
        L.append("| build | bytes | KiB |")
        L.append("|---|--:|--:|")
        for label, size in sizes.items():
            L.append(f"| {label} | {size} | {size / 1024:.1f} |")
        L.append("")
    if raw.get("size_steps"):
        L.append("What each step of the release profile buys (each built from the same source in this run; "
                 "the `s` and `3` builds also run in Envoy above as cases C-s, D-s, C-3 and D-3, to choose the "
                 "opt-level by measurement):")
        L.append("")
        L.append("| release profile | bytes | KiB |")
        L.append("|---|--:|--:|")
        for st in raw["size_steps"]:
            L.append(f"| {st['what']} | {st['bytes']} | {st['bytes'] / 1024:.1f} |")
        L.append("")
    if "E100k" in alone:
        L.append(f"Envoy's time to ready with 100,000 entries (case E100k alone: process start until the "
                 f"listener answers 200): **{alone['E100k']['ready_s']:.2f} s**, against "
                 f"{alone.get('A', {}).get('ready_s', float('nan')):.2f} s without any filter and "
                 f"{alone.get('C', {}).get('ready_s', float('nan')):.2f} s for the filter with its default "
                 "configuration.")
        L.append("")
    mem = raw.get("memory") or {}
    if mem:
        L.append("## 1,000,000 entries from a list source: memory by worker count")
        L.append("")
        L.append("Envoy serving one case alone, at `--concurrency 1` and `3`, RSS after the list is "
                 "loaded (3 s after the first 200) and 2 s of load. (S1M) fetches the list once per Envoy "
                 "(the main thread's VM parses it) and each VM copies the published table; (I1M) has each "
                 "VM parse the inline configuration itself. The native build's: `make native-memory` "
                 "(bench/results/native-memory.json).")
        L.append("")
        L.append("| case | --concurrency 1 RSS MiB | --concurrency 3 RSS MiB | per extra worker MiB | ready s (1 / 3) |")
        L.append("|---|--:|--:|--:|--:|")
        for n in ("A", "S1M", "I1M"):
            one, three = mem.get(f"{n}@1"), mem.get(f"{n}@3")
            if one and three:
                L.append(f"| {n} | {one['rss_kib'] / 1024:.1f} | {three['rss_kib'] / 1024:.1f} | "
                         f"{(three['rss_kib'] - one['rss_kib']) / 2048:.1f} | "
                         f"{one['ready_s']:.2f} / {three['ready_s']:.2f} |")
        L.append("")
    L += native_build_section(raw)
    L += geo_section(raw)
    if raw.get("native_text"):
        L.append("## Native micro-benchmarks of the core (`cargo bench`)")
        L.append("")
        L.append("Same run, same machine (not pinned; other processes may run). Lookups use random addresses, "
                 "half inside the list, so a large table is read from memory, not from cache. Lists: half "
                 "IPv4 (/16–/32), half IPv6 (/32–/64); decisions use case (D)'s configuration with the allow "
                 "list swapped for one of the given size, and 1,024 different clients.")
        L.append("")
        L.append("```")
        L.append(raw["native_text"])
        L.append("```")
        L.append("")
    L.append("## The machine")
    L.append("")
    L.append(f"- {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, {m['virtualization']}.")
    L.append(f"- wrk: {raw['wrk_version']}.")
    L.append(f"- Load average before / after: {raw['load_before'][0]:.2f} / {raw['load_after'][0]:.2f}. "
             f"During the throughput rounds other processes used {raw['others_cpu_s']:.0f} CPU-seconds of the "
             f"machine's {raw['wall_s'] * (m['cores'] or 1):.0f} (benchmark's own Envoy and wrk excluded); "
             f"hypervisor steal {raw['steal_pct']:.1f}%."
             + (" **The machine was shared with other work during this run**: absolute figures are "
                "depressed and noisy; the interleaved per-round ratios are the figures to read."
                if raw["others_cpu_s"] > 0.05 * raw["wall_s"] * (m["cores"] or 1) else ""))
    L.append(f"- Sanity: the filter's counters after the rounds: "
             + ", ".join(f"`{k}` {v}" for k, v in sorted(raw["wasm_counters"].items()) if v) + "; RBAC: "
             + ", ".join(f"`{k}` {v}" for k, v in sorted(raw["rbac"].items()) if v) + ".")
    L.append("")
    L.append("## Notes")
    L.append("")
    cpu = {n: x["cpu_us_per_req"] for n, x in s.items()}
    probes = [c for c in all_cases if c.get("call") and c["name"] in s and "B" in s]
    if probes:
        priced = "; ".join(
            f"`{CALL_NAMES[c['call']]}` {(cpu[c['name']] - cpu['B']) / c['calls']:.1f} µs "
            f"({(1 - s[c['name']]['vs_B']) / c['calls'] * 100:.1f}% of (B)'s requests/s)" for c in probes)
        L.append(f"- The price of one host call (cases B-fs4 … B-set4: (B) making one kind of call four "
                 f"times; Envoy CPU over (B), divided by 4): {priced}. Each is a round trip from the VM "
                 "through V8's C API into Envoy's ABI layer; the ones that return data (`get_property`) "
                 "call back into the VM to allocate their buffer. These are noisy: a few µs is about the "
                 "spread between rounds.")
    if {"B", "C", "D"} <= cpu.keys():
        per_call = ""
        if "B-calls" in cpu:
            calls = cpu["B-calls"] - cpu["B"]
            own = cpu["C"] - cpu["B-calls"]
            per_call = (f" Case B-calls, the no-op filter making exactly (C)'s four host calls and nothing "
                        f"else, costs {calls:.0f} µs over (B) ({s['B-calls']['vs_B']:.2f}× its requests/s)")
            if own > 2:
                per_call += (f": of (C)'s {cpu['C'] - cpu['B']:.0f} µs, about {calls:.0f} µs are host calls "
                             f"and {own:.0f} µs the filter's own work inside the VM.")
            else:
                per_call += (", as much as (C) itself within this run's noise: (C)'s extra cost is its "
                             "host calls, not its own work inside the VM.")
        L.append(f"- Where the time goes. Per request, (C) costs {cpu['C'] - cpu['B']:.0f} µs and (D) "
                 f"{cpu['D'] - cpu['B']:.0f} µs more Envoy CPU than the no-op filter (B), which itself costs "
                 f"{cpu['B'] - cpu.get('A', float('nan')):.0f} µs more than no filter (A). The core's own work "
                 "is well under 1 µs natively (`cargo bench` below)." + per_call
                 + (f" Host calls per request, counted by the `count-host-calls` builds (the column above): "
                    f"(C) {calls_text(raw, 'C')}; (D) {calls_text(raw, 'D')}. Counters are counted in the "
                    "VM and flushed from the root's tick (not counted: the root's own calls), and "
                    "`wasm.client_ip_decision` is written only for refusals. The header lines are read once "
                    "(`get_map`), to remove `forward.strip` and other spellings of the filter's headers "
                    "(wrk sends none); in (D) the same read serves X-Forwarded-For and `:authority`."
                    if raw.get("host_calls", {}).get("C") and raw["host_calls"].get("D") else ""))
    if {"A", "E10k", "F10k"} <= cpu.keys():
        L.append(f"- (F) with 10,000 principals costs {cpu['F10k'] - cpu['A']:.0f} µs per request over (A) "
                 f"(a linear scan of the principals); for (E) with 10,000 entries to reach 6× its requests/s, "
                 f"(E) would have to cost at most about {cpu['F10k'] / 6:.0f} µs per request in all, "
                 f"against {cpu['A']:.0f} µs for (A) and {cpu.get('B', float('nan')):.0f} µs for the no-op "
                 f"filter (B): only a filter about as cheap as (B) gets there. The list size is not what "
                 f"costs: (E) with 100,000 entries runs at {s['E100k']['vs_A'] / s['E10']['vs_A']:.2f}× "
                 f"the requests/s of (E) with 10 (medians of the ratios to (A)).")
    L.append("- (F) sets `request_headers_to_add` for `x-real-ip` on the route configuration, as the issue "
             "specifies, but Envoy's router applies route-level request headers only when it forwards "
             "upstream, not for a direct response: (F) does its RBAC matching but no header work here, "
             "which flatters it slightly against (E).")
    if any(c.get("tcp") for c in all_cases):
        L.append("- The N- cases count connections, not requests: each wrk request opens a new connection "
                 "(`Connection: close`) that goes through tcp_proxy to a direct-response HTTP listener of the "
                 "same Envoy, so the \"req/s\" column is connections per second and the CPU column includes "
                 "that HTTP listener's work. For the refusing cases (N-R10k, N-FR10k) it is connections "
                 "refused per second (wrk's read errors); every one of them was closed by the filter or RBAC "
                 "without an upstream connection. Ratios of N- cases are read against N-A/N-B, not A/B.")
    L.append("- (B) is `bench/noop-filter`: the same proxy-wasm SDK, release profile, wasm-opt pass and "
             "host-call layer (`adapters/proxy-wasm/src/host.rs`), an HTTP context that returns `Continue`. (C)–(E) share one V8 VM (`vm_id`), as one plugin with several "
             "configurations would.")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
