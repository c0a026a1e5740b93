#!/usr/bin/env python3
"""Envoy's memory with a 1,000,000-entry list source and with both geo databases, native build
against wasm build, by worker count (issue 22: "one table per process instead of one per VM").

For each of --concurrency 1 and 3, a fresh Envoy serving one case alone:
  A           no filter (the baseline)
  native-S1M  the dynamic module (``--native``) with bench/envoy_bench.py's (S1M) configuration: an
              allow list of the 1M entries from a list source, fetched from this script's list
              server through an Envoy cluster
  wasm-S1M    the .wasm (``--wasm``) with the same configuration, as envoy_bench.py's (S1M)
  native-GEO  the dynamic module with envoy_bench.py's (GEO-BOTH) configuration: the country and
              the ASN database of `make geo-data` (``--geo-dir``, docs/geo.md) as two `mmdb`
              sources from the same list server, a deny list and both headers
  wasm-GEO    the .wasm with the same configuration, as envoy_bench.py's (GEO-BOTH)
An S1M case is measured once its list is loaded (the source's `entries` gauge at 1,000,000), a GEO
case once 30 requests on fresh connections in a row are answered 200 (its sources refuse until both
databases are in force), each after a few hundred requests on new connections (every worker has
served, so every wasm VM adopted the tables) and a 3 s pause: RSS and peak RSS from
/proc/<pid>/status. The native module holds one copy for the process; the wasm build one per VM, so
the figure that differs is the growth per extra worker. Writes bench/results/native-memory.json
(committed; tools/figures.py renders the docs' figures from it), with the load average before and
after (the machine may be shared: RSS does not depend on it, the ready times do). Standard library
only; reuses envoy_bench.py's lists, list server, listener and process handling. `make
native-memory` builds both builds, fetches the databases and runs it:

  bench/native_memory.py --envoy .venv/bin/envoy --native target/native/libclient_ip_filter_module.so \
      [--wasm target/wasm32-wasip1/release/client_ip_filter.wasm] [--geo-dir .work/geo]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoy_bench as B  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "native-memory.json"
NATIVE_HTTP = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
SOURCE = "million"
# The metric namespaces Envoy puts in front of each build's own metrics.
PREFIX = {"native": "dynamicmodulescustom.", "wasm": "wasmcustom."}
GEO_READY_IN_A_ROW = 30  # fresh connections answered 200 in a row: every worker decides with both


def configuration() -> str:
    """(S1M)'s configuration: an allow list of the million entries from one list source."""
    source = {"cluster": B.SOURCE_CLUSTER, "authority": "bench-lists", "path": B.SOURCE_PATH,
              "refresh_s": 3600, "max_bytes": 64 << 20}
    return json.dumps({"sources": {SOURCE: source}, "access": {"allow": [f"source:{SOURCE}"]}})


def native_filter(path: str, config: str) -> dict:
    """The dynamic-module HTTP filter block with ``config`` as its filter configuration."""
    return {"name": "client-ip-filter", "typed_config": {
        "@type": NATIVE_HTTP,
        "dynamic_module_config": {"module": {"local": {"filename": path}}},
        "filter_name": "client_ip_filter",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}}}


def entries_gauge(env: B.Envoy, case: str) -> int:
    """The million source's entries gauge under the case's build's prefix (-1: not yet there)."""
    try:
        stats = env.stats()
    except (OSError, urllib.error.URLError, ValueError):
        return -1
    return int(stats.get(f"{PREFIX[case.split('-')[0]]}client_ip.source.{SOURCE}.entries", -1))


def wait_geo_ready(env: B.Envoy, port: int, name: str) -> None:
    """Until GEO_READY_IN_A_ROW fresh connections in a row are answered 200 (a worker that has not
    adopted both databases answers 503), within 120 s."""
    deadline, ok = time.monotonic() + 120, 0
    while ok < GEO_READY_IN_A_ROW:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: not every worker serves with both databases; log:\n" + env.log_tail())
        try:
            ok = ok + 1 if B.http_get(port)[0] == 200 else 0
        except (OSError, urllib.error.URLError):
            ok = 0
        if ok == 0:
            time.sleep(0.05)


def measure(envoy: str, case: dict, concurrency: int, source_port: int, workdir: Path) -> dict:
    """One case alone in a fresh Envoy at ``concurrency`` workers: time to ready, RSS, peak RSS."""
    port, admin = B.free_port(), B.free_port()
    env = B.Envoy(envoy, B.bootstrap([B.listener(case, port)], admin, source_port=source_port), workdir,
                  f"{case['name']}-c{concurrency}", "", concurrency=concurrency)
    try:
        ready = env.wait_serving([port], loading={port} if case["name"] != "A" else ())
        if case["name"].endswith("-GEO"):
            wait_geo_ready(env, port, case["name"])
            ready = time.monotonic() - env.started
        elif case["name"] != "A":
            deadline = time.monotonic() + 120
            while entries_gauge(env, case["name"]) != B.MILLION:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{case['name']}: the list did not load; log:\n" + env.log_tail())
                time.sleep(0.1)
            ready = time.monotonic() - env.started
        # Requests on new connections: Envoy spreads them over its workers.
        for _ in range(300):
            B.http_get(port, timeout=5.0)
        time.sleep(3)
        rss, hwm = env.rss_kib()
        print(f"  {case['name']:>10} --concurrency {concurrency}: loaded in {ready:5.2f} s, "
              f"RSS {rss / 1024:6.1f} MiB (peak {hwm / 1024:6.1f} MiB)", flush=True)
        return {"ready_s": round(ready, 3), "rss_kib": rss, "hwm_kib": hwm}
    finally:
        env.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", default=str(REPO / ".venv" / "bin" / "envoy"))
    ap.add_argument("--native", default=str(REPO / "target" / "native" / "libclient_ip_filter_module.so"))
    ap.add_argument("--wasm", default="", help="the .wasm, to measure the wasm build beside it")
    ap.add_argument("--geo-dir", default=str(REPO / ".work" / "geo"),
                    help="make geo-data's country.mmdb and asn.mmdb: the GEO cases")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    geo = {B.GEO_COUNTRY_PATH: Path(args.geo_dir) / "country.mmdb", B.GEO_ASN_PATH: Path(args.geo_dir) / "asn.mmdb"}
    for what, path in (("Envoy", args.envoy), ("native module", args.native)) + (
            (("wasm", args.wasm),) if args.wasm else ()) + tuple(
            (f"geo database (make geo-data) {p.name}", str(p)) for p in geo.values()):
        if not Path(path).is_file():
            print(f"native_memory: the {what} {path} is missing", file=sys.stderr)
            return 2
    print("native_memory: generating the 1,000,000 entries", flush=True)
    million = B.million_entries()
    server = B.ListServer(million, {path: p.read_bytes() for path, p in geo.items()})
    config = configuration()
    geo_config = json.dumps(B.geo_both_configuration())
    builds = [("native", lambda c: native_filter(args.native, c))]
    if args.wasm:
        builds.append(("wasm", lambda c: B.wasm_filter(args.wasm, "client-ip-filter", "client_ip_filter", c)))
    cases = [{"name": "A", "filters": []}]
    for kind, conf in (("S1M", config), ("GEO", geo_config)):
        cases += [{"name": f"{build}-{kind}", "sfs": True, "filters": [make(conf)]} for build, make in builds]
    runs: dict = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="native-memory-") as tmp:
        try:
            for case in cases:
                for conc in (1, 3):
                    runs[f"{case['name']}@{conc}"] = measure(args.envoy, case, conc, server.port, Path(tmp))
        finally:
            server.stop()
    per_worker = {c["name"]: round((runs[f"{c['name']}@3"]["rss_kib"] - runs[f"{c['name']}@1"]["rss_kib"])
                                   / 2 / 1024, 1) for c in cases}
    record = {"started_at": started, "entries": B.MILLION, "envoy_version": B.version([args.envoy, "--version"]),
              "machine": B.machine(), "runs": runs, "per_extra_worker_mib": per_worker,
              "geo_files": {p.name: p.stat().st_size for p in geo.values()},
              "geo_sources": {p.name: (p.with_name(p.name + ".source").read_text().strip()
                                       if p.with_name(p.name + ".source").is_file() else "") for p in geo.values()},
              "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "note": "RSS after the list (S1M) or both databases (GEO) are loaded and every worker has "
                      "served; per extra worker = (RSS at --concurrency 3 - RSS at 1) / 2"}
    Path(args.out).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"native_memory: per extra worker {per_worker} MiB; wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
