#!/usr/bin/env python3
"""The documents' figures, from the runs recorded in the repository.

Every measured figure in BENCHMARKS.md, RELIABILITY.md, README.md and docs/ is either in a file
generated from a record (BENCHMARKS.md, from bench/results/bench.json and, in its native section,
bench/results/instructions.json) or between markers

    <!-- fig:NAME -->the figure<!-- /fig -->

whose text this tool renders from the record NAME's entry in FIGURES names. Records:

  bench/results/bench.json           written by `make bench` (bench/envoy_bench.py --record)
  bench/results/instructions.json    written by `make bench-instructions` (bench/instructions.py)
  bench/results/native-memory.json   written by `make native-memory` (bench/native_memory.py)
  tests/reliability/results/fuzz.json  written by `make fuzz` (tools/fuzz_record.py)
  tests/reliability/results/{soak,reconfig,reconfig-ecds,refresh}.json  written by `make soak`,
                                     `make reconfig`, `make refresh` (the drivers' --report)
  tests/reliability/results/rate-limit.json  written by `make rate-limit-load`
  tests/reliability/results/ipset-differential.txt  written by `make differential`
  tests/reliability/results/geo-differential.txt  written by `make geo-differential`
  bench/results/geo-reader.txt       written by `make geo-compare` (bench/geo_reader_compare.py)
  tests/reliability/results/{hostile-json,retired}{,-before}.txt  written by `make hostile-json`,
                                     `make retired` (read by tools/figures_text.py)
  tests/reliability/results/{reconfig-gradual,adoption}.json  written by `make reconfig`, `make adoption`
  tests/test_spoofing_corpus.py      the corpus itself: its cases (and groups) are counted, not typed
  Makefile                           the targets' durations are its variables (FUZZ_SECONDS, ...)

A figure whose record is missing renders as "not recorded (run `make X`)": a document never shows
a number no run in the repository produced.

    tools/figures.py --write    (make docs-figures) regenerate BENCHMARKS.md and every marker
    tools/figures.py            check: print each disagreement, exit 1 if any (tests/test_figures.py)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figures_text import (header, hostile_cases, hostile_headline, hostile_table, hostile_times,  # noqa: E402
                          retired_run, retired_table)

REPO = Path(__file__).resolve().parent.parent
BENCH_RECORD = REPO / "bench" / "results" / "bench.json"
RESULTS = REPO / "tests" / "reliability" / "results"
FUZZ_RECORD = RESULTS / "fuzz.json"
DOCUMENTS = ["README.md", "RELIABILITY.md", "BENCHMARKS.md", *sorted(
    str(p.relative_to(REPO)) for p in [*REPO.glob("*/README.md"), *(REPO / "docs").glob("*.md")])]
MARKER = re.compile(r"<!-- fig:([a-z0-9_.-]+) -->(.*?)<!-- /fig -->", re.S)


def load(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def missing(command: str) -> str:
    return f"not recorded (run `{command}`)"


# -- the bench record -------------------------------------------------------------------------------

def from_record(record: str, command: str) -> Callable[[Callable[[dict], str]], Callable[[], str]]:
    """Figures of the record that the module constant named ``record`` points to (read when a figure
    renders, so a test can point it elsewhere) and ``command`` writes: each renders "not recorded"
    when the record, or the case the figure reads, is missing from it."""
    def figure(fn: Callable[[dict], str]) -> Callable[[], str]:
        def render() -> str:
            rec = load(globals()[record])
            if rec is None:
                return missing(command)
            try:
                return fn(rec)
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                return missing(command) + " (this figure's case was not in the recorded run)"
        return render
    return figure


bench = from_record("BENCH_RECORD", "make bench")


# The targets bench/envoy_bench.py records (medians of per-round ratios), by the cases they compare.
TARGETS = {
    ("E100k", "E10"): "(E) 100,000 entries / (E) 10 entries",
    ("E10k", "F10k"): "(E) 10,000 entries / (F) RBAC 10,000 principals",
    ("N-C", "N-B"): "connections: (N-C) / (N-B) no-op network filter",
    ("N-R10k", "N-FR10k"): "refused connections: (N-R10k) / (N-FR10k) network RBAC 10,000 principals",
    ("S1M", "I1M"): "(S1M) 1,000,000 from a source / (I1M) the same inline",
}


def ratio(rec: dict, a: str, b: str) -> float:
    """The recorded ratio of case a's requests/s to case b's (a target, or the summary's vs_A/vs_B)."""
    if b in ("A", "B"):
        return rec["summary"][a][f"vs_{b}"]
    (value,) = [t["value"] for t in rec["targets"] if t["what"] == TARGETS[(a, b)]]
    return value


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def per_worker(rec: dict, case: str) -> str:
    mem = rec["memory"]
    return f"{(mem[f'{case}@3']['rss_kib'] - mem[f'{case}@1']['rss_kib']) / 2048:.0f} MiB"


NATIVE_MEMORY_RECORD = REPO / "bench" / "results" / "native-memory.json"
INSTRUCTIONS_RECORD = REPO / "bench" / "results" / "instructions.json"


# figures of `make bench-instructions`' record (bench/results/instructions.json)
instructions = from_record("INSTRUCTIONS_RECORD", "make bench-instructions")


def instructions_ratio(rec: dict, case: str) -> str:
    """(A)'s instructions per request divided by ``case``'s, as recorded."""
    return f"{rec['cases'][case]['a_over_case']:.2f}×"


# figures of `make native-memory`'s record (bench/results/native-memory.json)
native_memory = from_record("NATIVE_MEMORY_RECORD", "make native-memory")


NATIVE_MEMORY_CASES = [("A", "no filter"),
                       ("native-S1M", "native build, 1,000,000-entry list source"),
                       ("wasm-S1M", "wasm build, 1,000,000-entry list source"),
                       ("native-GEO", "native build, country and ASN databases"),
                       ("wasm-GEO", "wasm build, country and ASN databases")]


def native_memory_table(rec: dict) -> str:
    """docs/native.md's memory table: every case of the record at --concurrency 1 and 3."""
    runs, a1 = rec["runs"], rec["runs"]["A@1"]["rss_kib"]
    rows = ["| case | RSS at --concurrency 1 | RSS at 3 | per extra worker | over no filter at 1 | ready s (1 / 3) |",
            "| --- | --: | --: | --: | --: | --: |"]
    for case, what in NATIVE_MEMORY_CASES:
        one, three = runs[f"{case}@1"], runs[f"{case}@3"]
        rows.append(f"| {what} | {mib(one['rss_kib'])} | {mib(three['rss_kib'])} | "
                    f"{rec['per_extra_worker_mib'][case]:.1f} MiB | {mib(one['rss_kib'] - a1)} | "
                    f"{one['ready_s']:.2f} / {three['ready_s']:.2f} |")
    load = rec.get("load_before"), rec.get("load_after")
    files = rec.get("geo_files") or {}
    rows += ["", f"(`make native-memory`, {rec['started_at']}, {rec['envoy_version'].split('version: ')[-1]}; "
                 f"databases: country.mmdb {files.get('country.mmdb', 0) / 1e6:.1f} MB, asn.mmdb "
                 f"{files.get('asn.mmdb', 0) / 1e6:.1f} MB; load average {load[0][0]:.2f} before, "
                 f"{load[1][0]:.2f} after, on {rec['machine']['cores']} cores: the machine was shared, "
                 "which moves the ready times, not the RSS)"]
    return "\n".join(rows)


def native_ratio(rec: dict, key: str) -> str:
    """A ratio of the native build's cases (envoy_bench.py native_ratios, e.g. "DM-C/A")."""
    value = rec["native_ratios"][key]
    if value != value:  # NaN: a case of the pair did not run
        raise ValueError(key)
    return f"{value:.2f}×"


def bench_summary(rec: dict) -> str:
    """The cost headlines of docs/internals.md, from the record."""
    s = rec["summary"]
    a = rec["args"]
    lines = [f"In the recorded run ({a['rounds']} interleaved round{'s' if a['rounds'] != 1 else ''} of {a['seconds']} s, "
             f"{rec['started_at']}; bench/results/bench.json):"]
    size = (rec.get("sizes") or {}).get("client_ip_filter.wasm (make build)")
    if size:
        budget = next((t["goal"] for t in rec.get("targets", []) if t.get("what") == "release .wasm"), None)
        shown = f" (budget {budget} KiB)" if budget else ""
        lines.append(f"  - the release `.wasm` was {size / 1024:.1f} KiB{shown};")
    hc = rec.get("host_calls", {}).get("C")
    if hc and "B" in s and "C" in s:
        calls = ", ".join(f"`{k}`" for k in hc["calls"])
        lines.append(f"  - with its default configuration the filter makes {hc['per_context']:.0f} host calls "
                     f"per request (counted: {calls}) and ran at {s['C']['vs_B']:.2f}× the requests/s of a "
                     "no-op wasm filter"
                     + (f"; the no-op filter making the same calls and nothing else ran at "
                        f"{s['B-calls']['vs_B']:.2f}×;" if "B-calls" in s else ";"))
    if "E100k" in s and "E10" in s:
        lines.append(f"  - the lookup cost did not grow with the list: 100,000 entries at "
                     f"{ratio(rec, 'E100k', 'E10'):.2f}× of 10"
                     + (f", and 1,000,000 entries from a list source at {ratio(rec, 'S1M', 'I1M'):.2f}× of "
                        "the same list inline;" if "S1M" in s and "I1M" in s else ";"))
    if "E10k" in s and "F10k" in s:
        lines.append(f"  - with 10,000 allow-list entries it served {ratio(rec, 'E10k', 'F10k'):.1f}× the "
                     "requests/s of Envoy's RBAC with 10,000 `remote_ip` principals (what an "
                     "`AuthorizationPolicy` with `ipBlocks` compiles to);")
    if {"N-R10k", "N-FR10k", "N-C", "N-B"} <= s.keys():
        lines.append(f"  - as a network filter it refused connections at {ratio(rec, 'N-R10k', 'N-FR10k'):.1f}× "
                     "the rate of network "
                     f"RBAC with 10,000 principals, and accepted them at {ratio(rec, 'N-C', 'N-B'):.2f}× a "
                     "no-op network filter.")
    return "\n".join(lines)


# -- the fuzz record ---------------------------------------------------------------------------------

def fuzz(fn: Callable[[dict], str]) -> Callable[[], str]:
    def render() -> str:
        rec = load(FUZZ_RECORD)
        return missing("make fuzz") if rec is None else fn(rec)
    return render


def fuzz_table(rec: dict) -> str:
    rows = ["| target | executions | seconds | crashes | committed corpus after the run |",
            "| --- | --: | --: | --: | --: |"]
    for t in rec["targets"]:
        rows.append(f"| `{t['target']}` | {t['executions']:,} | {t['seconds']} | {t['crashes']} | "
                    f"{t['corpus_files']} files |")
    return "\n".join(rows)


def fuzz_summary(rec: dict) -> str:
    total = sum(t["executions"] for t in rec["targets"])
    crashes = sum(t["crashes"] for t in rec["targets"])
    return (f"{len(rec['targets'])} targets, {total / 1e6:.1f} million executions in all "
            f"({rec['seconds_per_target']} s per target, {rec['date']}), {crashes} crashes")


def corpus_size() -> str:
    """The committed fuzz corpus, counted from the tree: files and bytes."""
    files = [p for p in (REPO / "fuzz" / "corpus").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files):,} files, about {size / 1000:,.0f} KB"


# -- the reliability drivers' reports ---------------------------------------------------------------

def checks(rec: dict) -> str:
    """"all N checks held", or the ones that did not."""
    items = rec["checks"]
    items = items.items() if isinstance(items, dict) else [(c["check"], c["ok"]) for c in items]
    failed = [name for name, ok in items if not ok]
    total = len(list(items))
    return f"all {total} checks held" if not failed else f"FAILED: {'; '.join(failed)}"


def driver(name: str, command: str, fn: Callable[[dict], str]) -> Callable[[], str]:
    def render() -> str:
        rec = load(RESULTS / f"{name}.json")
        return missing(command) if rec is None else fn(rec)
    return render


def soak_summary(r: dict) -> str:
    errors = sum(sum(e.values()) if isinstance(e, dict) else e for e in r["errors_per_class"].values())
    return (f"{r['requests_total']:,} requests in {r['duration_s']:.0f} s ({r['requests_per_s']:,}/s), "
            f"{errors} errors; {checks(r)}")


def reconfig_summary(r: dict) -> str:
    good = [p for p in r["pushes"] if p["expect"] is not None]
    effect = r["effect_s"]["max"]
    return (f"{len(r['pushes'])} pushes by {r['via'].upper()} ({len(good)} good), "
            f"{sum(r['requests_per_client'].values()):,} requests, new policy in effect within "
            + (f"{effect * 1000:.0f} ms" if effect is not None else "–") + f"; {checks(r)}")


def refresh_summary(r: dict) -> str:
    total = sum(c["completed"] for c in r["classes"].values())
    return (f"1M-entry list, {r['versions_adopted']} versions adopted in {r['duration_s']:.0f} s under "
            f"load: {total:,} requests, worst latency during a refresh "
            f"{r['worst_latency_during_refresh_ms']:.1f} ms, {r['list_server_requests']} requests at the "
            f"list server; {checks(r)}")


def refresh_table(r: dict) -> str:
    """The refresh run's figures, one per row (make refresh's record)."""
    cls = r["classes"]
    total = sum(c["completed"] for c in cls.values())
    failed = sum(sum(e.values()) if isinstance(e, dict) else e for c in cls.values() for e in [c["errors"]])
    p50 = max(c["latency_us"]["p50"] for c in cls.values()) / 1000
    p99 = max(c["latency_us"]["p99"] for c in cls.values()) / 1000
    stats = r.get("source_stats", {})
    rss = r.get("memory", {}).get("vmrss_kb")
    per_client = " / ".join(f"{n} {c['completed']:,}" for n, c in cls.items())
    rows = [("load", f"{r['duration_s']:.0f} s, Envoy `--concurrency {r['concurrency']}`, the list flipped every "
                     f"{r['flip_s']:g} s"),
            ("requests", f"{total:,} ({per_client}), {failed} failed"),
            ("latency p50 / p99 (loadgen's bucket bounds)", f"≤ {p50:g} / ≤ {p99:g} ms"),
            ("list versions", f"{r['flips_written']} written, {r['versions_adopted']} adopted; X changed status "
                              f"{r['x_status_changes']} times, Y {r['y_status_changes']}"),
            ("worst latency during a refresh", f"{r['worst_latency_during_refresh_ms']:.1f} ms "
                                               f"({r['slow_during_refresh']} responses of 20 ms or more)"),
            ("worst latency outside refreshes", f"{r['worst_latency_outside_refresh_ms']:.1f} ms "
                                                f"({r['slow_outside_refresh']} responses of 20 ms or more)"),
            ("requests at the list server", f"{r['list_server_requests']} ("
                                            f"{stats.get('client_ip.source.big.not_modified', 0)} answered "
                                            "not modified over the whole run)"),
            ("Envoy RSS at the end", f"{rss / 1024:.0f} MiB" if rss else "–"),
            ("the machine's load average (1 min) at the start → the end",
             f"{r['load_average']['start']:g} → {r['load_average']['end']:g}" if "load_average" in r
             else "not recorded (a run before refresh.py recorded it)"),
            ("checks", checks(r))]
    return "\n".join(["| | |", "| --- | --- |"] + [f"| {a} | {b} |" for a, b in rows])


def gradual_summary(r: dict) -> str:
    failed = sum(sum(e.values()) if isinstance(e, dict) else e for e in r["errors"].values())
    good = [p for p in r["pushes"] if p["expect"] is not None]
    e = r["effect_s"]
    took = (f"{e['min']:.3f}–{e['max']:.3f} s" if e.get("min") is not None and e.get("max") is not None
            else "–")
    conns = r.get("conns_per_client", 3) * len(r["requests_per_client"])
    return (f"the new policy took effect in {took}, and {failed} requests failed ({len(good)} good pushes, "
            f"{conns} connections under load)")


def adoption_summary(r: dict) -> str:
    rd, dc = r["read_ms"], r["decoded_ms"]
    return (f"{r['adoptions']} adoptions over {r['refreshes']} refreshes ({r['label'] or r['wasm']}, {r['date']}, "
            f"load average {r['load_average']['start']:g} → {r['load_average']['end']:g}): read "
            f"{rd['min']}–{rd['max']} ms (median {rd['median']:g}), opened and decoded "
            f"{dc['min']}–{dc['max']} ms (median {dc['median']:g})")


def adoption_versus() -> str:
    now, before = load(RESULTS / "adoption.json"), load(RESULTS / "adoption-before-seal.json")
    if now is None or before is None:
        return missing("make adoption")
    return (f"{now['decoded_ms']['median']:g} ms now and {before['decoded_ms']['median']:g} ms before the seal "
            f"(ranges {now['decoded_ms']['min']}–{now['decoded_ms']['max']} and "
            f"{before['decoded_ms']['min']}–{before['decoded_ms']['max']} ms)")


def rate_limit_accuracy(r: dict) -> str:
    a = r["accuracy"]
    clients, bucket = a["clients"], a["bucket"]
    allowed = sorted({c["allowed"] for c in clients.values()})
    sent = sorted(c["completed"] for c in clients.values())
    after = min(c["allowed_per_s_after_burst"] for c in clients.values())
    return (f"{len(clients)} clients for {a['elapsed_s']:.1f} s, one forging X-Forwarded-For, X-Real-IP and "
            f"X-Client-IP: each got {'–'.join(f'{n:,}' for n in allowed)} requests through of "
            f"{sent[0]:,}–{sent[-1]:,} sent (the bucket: {bucket['max_tokens']}, then "
            f"{bucket['tokens_per_fill']} per {bucket['fill_interval']}; at most {a['allowed_max']:,}), "
            f"{after:.2f} a second after the burst against {a['configured_per_s']:g} configured; {checks(a)}")


def rate_limit_rotation_table(r: dict) -> str:
    rows = ["| `max_dynamic_descriptors` | after k = size − 1 | after k = size | attacker keys/s | "
            "allocated, 1 bucket → LRU full | RSS | per bucket |", "|---|---|---|---|---|---|---|"]
    for x in r["rotation"]:
        size = x["max_dynamic_descriptors"]
        after = x["attacker_keys_then_honest_status"]
        one, full = x["memory_honest_bucket_only"], x["memory_lru_full"]
        rows.append(f"| {size:,} | {after[str(size - 1)]} | {after[str(size)]} | "
                    f"{x['attacker_requests_per_s']:,.0f} | {one['allocated'] / 1e6:.2f} → "
                    f"{full['allocated'] / 1e6:.2f} MB | {one['vmrss_kb'] / 1e3:.0f} → "
                    f"{full['vmrss_kb'] / 1e3:.0f} MB | {x['allocated_bytes_per_bucket']:,.0f} B |")
    return "\n".join(rows)


def rate_limit_size(r: dict, size: int) -> dict:
    return next(x for x in r["rotation"] if x["max_dynamic_descriptors"] == size)


def rate_limit_shipped(r: dict) -> str:
    x = rate_limit_size(r, 10_000)
    after = x["attacker_keys_then_honest_status"]
    seconds = (2 * 10_000 - 1) / x["attacker_requests_per_s"] / 2
    return (f"after 9,999 other keys the client was still limited ({after['9999']}), after 10,000 it had "
            f"a fresh bucket ({after['10000']}); one trusted proxy (4 keep-alive connections) cycled 10,000 keys in about "
            f"{seconds:.1f} s; {x['allocated_bytes_per_bucket']:,.0f} bytes a bucket")


def rate_limit_memory(r: dict) -> str:
    parts = []
    for x in r["rotation"]:
        if x["max_dynamic_descriptors"] < 1000:
            continue
        one, full = x["memory_honest_bucket_only"], x["memory_lru_full"]
        parts.append(f"{x['max_dynamic_descriptors']:,} buckets: +{(full['allocated'] - one['allocated']) / 1e6:.1f} MB "
                     f"allocated, Envoy's RSS {one['vmrss_kb'] / 1e3:.0f} → {full['vmrss_kb'] / 1e3:.0f} MB")
    return "; ".join(parts)


def soak_table(r: dict) -> str:
    """Per class: connections, requests, statuses, errors, latency (the soak's record)."""
    rows = ["| class | connections opened | requests sent | statuses | errors | p50 / p99 latency |",
            "| --- | --: | --: | --- | --: | --- |"]
    for name, sent in r["sent_per_class"].items():
        statuses = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["statuses_per_class"][name].items()))
        errors = r["errors_per_class"].get(name, 0)
        errors = sum(errors.values()) if isinstance(errors, dict) else errors
        lat = r["latency_us_per_class"].get(name) or {}
        shown = (f"≤ {lat['p50'] / 1000:g} / ≤ {lat['p99'] / 1000:g} ms"  # loadgen's bucket bounds
                 if isinstance(lat, dict) and "p50" in lat and "p99" in lat else "–")
        rows.append(f"| {name} | {r['connections_per_class'][name]:,} | {sent:,} | {statuses} | "
                    f"{errors} | {shown} |")
    c = r["filter_counters_delta"]
    m0, m1 = r["memory_start"], r["memory_end"]
    rows += ["", f"Filter counters over the window: `client_ip.allowed` {c.get('client_ip.allowed', 0):,}, "
             f"`client_ip.denied` {c.get('client_ip.denied', 0):,}; the app received "
             f"{r['app_requests_delta']:,} requests. Envoy RSS {m0.get('vmrss_kb', 0):,} kB at the start, "
             f"{m1.get('vmrss_kb', 0):,} kB at the end; {checks(r)}."]
    return "\n".join(rows)


def reconfig_table(lds: Optional[dict], ecds: Optional[dict]) -> str:
    """The two reconfiguration runs side by side (a run without a record: "not recorded")."""
    def col(r: Optional[dict], fn: Callable[[dict], str]) -> str:
        return missing("make reconfig") if r is None else fn(r)

    def requests(r: dict) -> str:
        per = r["requests_per_client"]
        return f"{sum(per.values()):,} ({' / '.join(f'{v:,}' for v in per.values())})"

    def pushes(r: dict, good: bool) -> str:
        ps = [p for p in r["pushes"] if (p["expect"] is not None) == good]
        key = "good_max" if good else "broken_max"
        return f"{len(ps)}, decided within {r['lds_decided_ms'][key]:.1f} ms of the rename"

    def effect(r: dict) -> str:
        e = r["effect_s"]
        if e["max"] is None:
            return "–"
        return f"within {e['max'] * 1000:.0f} ms (mean {e['mean'] * 1000:.0f} ms, {e['count']} flips)"

    rows_of = [
        ("requests (per client)", requests),
        ("failed requests", lambda r: str(sum(sum(e.values()) if isinstance(e, dict) else e
                                              for e in r["errors"].values()))),
        ("good pushes", lambda r: pushes(r, True)),
        ("broken pushes", lambda r: pushes(r, False)),
        ("new policy on every connection", effect),
        ("connections closed by Envoy (per client)",
         lambda r: " / ".join(f"{v:,}" for v in r["server_closes_per_client"].values())),
        ("checks", checks),
    ]
    rows = ["| | LDS | ECDS |", "| --- | --- | --- |"]
    for label, fn in rows_of:
        rows.append(f"| {label} | {col(lds, fn)} | {col(ecds, fn)} |")
    return "\n".join(rows)


def reconfig_figure() -> str:
    lds, ecds = load(RESULTS / "reconfig.json"), load(RESULTS / "reconfig-ecds.json")
    if lds is None and ecds is None:
        return missing("make reconfig")
    return reconfig_table(lds, ecds)


# -- the differential test's record -----------------------------------------------------------------

DIFF_RECORD = RESULTS / "ipset-differential.txt"
DIFF_LINE = re.compile(r"ipset differential: (\d+) lists, (\d+) lookups, (\d+) inside, (\d+) outside")


def differential() -> str:
    try:
        text = DIFF_RECORD.read_text()
    except FileNotFoundError:
        return missing("make differential")
    m = DIFF_LINE.search(text)
    if m is None:
        return missing("make differential") + " (the record holds no result line)"
    lists, lookups, inside, outside = (int(g) for g in m.groups())
    first = text.splitlines()[0]
    when = f" ({first.split('#', 1)[1].strip()})" if first.startswith("$") and "#" in first else ""
    return (f"{lists:,} lists, {lookups:,} lookups ({inside:,} inside, {outside:,} outside), "
            f"0 disagreements{when}")


# -- the geo differential test's record --------------------------------------------------------------

GEO_DIFF_RECORD = RESULTS / "geo-differential.txt"
GEO_DIFF_LINE = re.compile(r"geo differential: (\S+): (\d+) lookups \((\d+) IPv4, (\d+) IPv6\), "
                           r"(\d+) known, (\d+) denied, (\d+) disagreements")


def geo_differential() -> str:
    try:
        text = GEO_DIFF_RECORD.read_text()
    except FileNotFoundError:
        return missing("make geo-differential")
    rows = GEO_DIFF_LINE.findall(text)
    if not rows:
        return missing("make geo-differential") + " (the record holds no result line)"
    first = text.splitlines()[0]
    when = f" ({first.split('#', 1)[1].strip()})" if first.startswith("$") and "#" in first else ""
    parts = [f"{name}: {int(n):,} lookups ({int(v4):,} IPv4, {int(v6):,} IPv6; {int(known):,} held), "
             f"{int(bad):,} disagreements" for name, n, v4, v6, known, _, bad in rows]
    return "; ".join(parts) + when
# -- the text records of make hostile-json and make retired (read by tools/figures_text.py) ------

HOSTILE_RECORD = RESULTS / "hostile-json.txt"
HOSTILE_BEFORE = RESULTS / "hostile-json-before.txt"
RETIRED_RECORD = RESULTS / "retired.txt"
RETIRED_BEFORE = RESULTS / "retired-before.txt"


def hostile(fn: Callable[[list[dict], list[dict]], str]) -> Callable[[], str]:
    def render() -> str:
        after, before = hostile_cases(HOSTILE_RECORD), hostile_cases(HOSTILE_BEFORE)
        if not after or not before:
            return missing("make hostile-json")
        return fn(before, after)
    return render


def retired(fn: Callable[[dict, dict], str]) -> Callable[[], str]:
    def render() -> str:
        before, after = retired_run(RETIRED_BEFORE), retired_run(RETIRED_RECORD)
        if before is None or after is None:
            return missing("make retired")
        return fn(before, after)
    return render


def geo_bench_ratio(r: dict) -> str:
    ratio = ((r.get("geo") or {}).get("ratios") or {}).get("GEO-C20/CIDR-C20")
    if ratio is None:
        return missing("make bench") + " (no GEO cases in the record)"
    return f"{ratio:.2f}×"


def geo_bench_rss(r: dict) -> str:
    mem = (r.get("geo") or {}).get("memory") or {}
    parts = []
    for conc in (1, 3):
        g, a = mem.get(f"GEO-BOTH@{conc}"), mem.get(f"A@{conc}")
        if g and a:
            parts.append(f"{(g['rss_kib'] - a['rss_kib']) / 1024:.0f} MiB more than no filter at "
                         f"--concurrency {conc} (every worker ready in {g['ready_s']:.1f} s)")
    return "; ".join(parts) if parts else missing("make bench") + " (no GEO-BOTH in the record)"


# -- the geo reader comparison's record (make geo-compare) ---------------------------------------------

GEO_READER_RECORD = REPO / "bench" / "results" / "geo-reader.txt"


def geo_readers() -> Optional[list[dict]]:
    try:
        text = GEO_READER_RECORD.read_text()
    except FileNotFoundError:
        return None
    out: list[dict] = []
    for line in text.splitlines():
        if line.startswith("geo reader: "):
            out.append({"label": line[len("geo reader: "):], "parse": {}})
        elif out and (m := re.match(r"\s+wasm: (\d+) bytes \(([+-]\d+)", line)):
            out[-1]["wasm"], out[-1]["delta"] = int(m.group(1)), int(m.group(2))
        elif out and (m := re.match(r"\s+parse (\S+): ([\d.]+) ms native", line)):
            out[-1]["parse"][m.group(1)] = float(m.group(2))
        elif out and (m := re.match(r"\s+envoy --concurrency (\d+): every worker ready in ([\d.]+) s, "
                                   r"RSS ([\d.]+) MiB", line)):
            out[-1].setdefault("envoy", {})[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
        elif out and (m := re.match(r"\s+differential: (\w+)", line)):
            bad = [int(x) for x in re.findall(r"(\d+) disagreements", line)]
            lookups = sum(int(x) for x in re.findall(r"(\d+) lookups", line))
            out[-1]["differential"] = f"{m.group(1)}, {sum(bad):,} disagreements in {lookups:,} lookups"
    return out


def geo_reader_table() -> str:
    readers = geo_readers()
    if not readers:
        return missing("make geo-compare")
    when = GEO_READER_RECORD.read_text().splitlines()[0].split("#", 1)[-1].strip()
    rows = ["| reader | release `.wasm` | against ours | parse country.mmdb | parse asn.mmdb | "
            "in Envoy, both databases: every worker ready, RSS (1 worker; 3 workers) | differential |",
            "| --- | --: | --: | --: | --: | --: | --- |"]
    for r in readers:
        env = r.get("envoy") or {}
        envoy = "; ".join(f"{env[c][0]:.2f} s, {env[c][1]:.0f} MiB" for c in (1, 3) if c in env) or "–"
        rows.append(f"| {r['label']} | {r['wasm']:,} bytes | {r['delta']:+,} bytes | "
                    f"{r['parse'].get('country.mmdb', float('nan')):.0f} ms | "
                    f"{r['parse'].get('asn.mmdb', float('nan')):.0f} ms | {envoy} | {r.get('differential', '–')} |")
    rows.append("")
    rows.append(f"(`make geo-compare`, {when}; parse times native, the median of the runs; in Envoy: "
                "bench/envoy_bench.py's GEO-BOTH alone, one run)")
    return "\n".join(rows)


# -- the Makefile's variables: what the long targets run ---------------------------------------------

def make_vars() -> dict:
    out = {}
    for line in (REPO / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", line)
        if m:
            out.setdefault(m.group(1), m.group(2))
    return out


def reliability_durations() -> str:
    v = make_vars()
    return (f"soak {v['RELIABILITY_SOAK_SECONDS']} s, refresh {v['RELIABILITY_REFRESH_SECONDS']} s, fuzz "
            f"{len(v['FUZZ_TARGETS'].split())} × {v['RELIABILITY_FUZZ_SECONDS']} s, retired "
            f"{v['RELIABILITY_RETIRED_RECONFIGS']} reconfigurations")


def timings_table() -> str:
    v = make_vars()
    n = len(v["FUZZ_TARGETS"].split())
    rows = ["| target | what it runs (the Makefile's variables) |", "| --- | --- |",
            f"| `make fuzz` | {n} targets × {v['FUZZ_SECONDS']} s (`FUZZ_SECONDS`) of fuzzing, plus the build "
            "and a corpus merge per target |",
            f"| `make soak` | {v['SOAK_SECONDS']} s (`SOAK_SECONDS`) measured, after a warm-up |",
            "| `make reconfig` | an LDS run and an ECDS run |",
            f"| `make refresh` | {v['REFRESH_SECONDS']} s (`REFRESH_SECONDS`) of load, after generating "
            "the two 1M-entry versions |",
            f"| `make reliability` | every driver above in sequence: {reliability_durations()} |",
            f"| `make fuzz-short` (in `make test`) | {n} corpus replays + {n} × {v['FUZZ_SHORT_SECONDS']} s "
            "(`FUZZ_SHORT_SECONDS`) of fuzzing |"]
    return "\n".join(rows)


# -- the spoofing corpus: counted from the code ------------------------------------------------------

def corpus() -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    import test_spoofing_corpus as corpus_module  # noqa: E402
    cases = corpus_module.CASES
    refused = [c for c in cases if c.client is None]
    invalid = [c for c in refused if "client_ip.invalid" in corpus_module.expected_counters(c)]
    return {"cases": len(cases), "refused": len(refused), "admitted": len(cases) - len(refused),
            "requests": 2 * len(cases), "invalid": len(invalid),
            "filter_decides": sum(1 for c in cases if c.filter_decides),
            "forged_forwarding": sum(1 for c in cases if c.forged_forwarding)}


GROUP = re.compile(r"^\s*# -- (\d+)\. (.*?)\s*-*\s*$")


def corpus_groups() -> list[tuple[str, int]]:
    """The corpus's groups (its ``# -- N. title ---`` comments inside CASES) and how many cases each
    holds, read from the module's syntax tree: every element of CASES belongs to the last group
    comment above it."""
    import ast
    path = REPO / "tests" / "test_spoofing_corpus.py"
    source = path.read_text()
    lines = source.splitlines()
    (node,) = [n for n in ast.parse(source).body if isinstance(n, ast.Assign)
               and any(getattr(t, "id", None) == "CASES" for t in n.targets)]
    heads = [(i + 1, m.group(2)) for i, line in enumerate(lines[node.lineno - 1:node.end_lineno],
                                                            start=node.lineno - 1)
             if (m := GROUP.match(line))]
    counts = {title: 0 for _, title in heads}
    for elt in node.value.elts:
        above = [title for line, title in heads if line < elt.lineno]
        if not above:
            raise ValueError(f"case at line {elt.lineno} is in no group")
        counts[above[-1]] += 1
    return list(counts.items())


def corpus_groups_table() -> str:
    rows = ["| group (tests/test_spoofing_corpus.py) | cases |", "| --- | --: |"]
    groups = corpus_groups()
    rows += [f"| {i}. {title} | {n} |" for i, (title, n) in enumerate(groups, start=1)]
    rows.append(f"| **total** | **{sum(n for _, n in groups)}** |")
    return "\n".join(rows)


FIGURES: dict[str, Callable[[], str]] = {
    "bench.summary": bench(bench_summary),
    "bench.s1m.rss1": bench(lambda r: mib(r["memory"]["S1M@1"]["rss_kib"])),
    "bench.s1m.per_worker": bench(lambda r: per_worker(r, "S1M")),
    "bench.i1m.rss1": bench(lambda r: mib(r["memory"]["I1M@1"]["rss_kib"])),
    "bench.i1m.per_worker": bench(lambda r: per_worker(r, "I1M")),
    "bench.a.rss1": bench(lambda r: mib(r["memory"]["A@1"]["rss_kib"])),
    "bench.wasm_kib": bench(lambda r: f"{r['sizes']['client_ip_filter.wasm (make build)'] / 1024:.1f} KiB"),
    "bench.geo.c20": bench(lambda r: geo_bench_ratio(r)),
    "bench.geo.rss": bench(lambda r: geo_bench_rss(r)),
    # the native build (the dynamic module; bench/envoy_bench.py DM- cases, docs/native.md)
    "bench.native.vs_a": bench(lambda r: native_ratio(r, "DM-C/A")),
    "bench.native.vs_wasm": bench(lambda r: native_ratio(r, "DM-C/C")),
    "bench.native.e10k_vs_rbac": bench(lambda r: native_ratio(r, "DM-E10k/F10k")),
    "bench.native.instr_vs_a": instructions(lambda r: instructions_ratio(r, "DM-C")),
    "bench.native.instr_wasm_vs_a": instructions(lambda r: instructions_ratio(r, "C")),
    "bench.native.instr_noop_vs_a": instructions(lambda r: instructions_ratio(r, "DM-NOOP")),
    "bench.native.instr_calls_vs_a": instructions(lambda r: instructions_ratio(r, "DM-CALLS")),
    "bench.native.instr_rbac_vs_a": instructions(lambda r: instructions_ratio(r, "F10")),
    "bench.native.instr_per_request": instructions(
        lambda r: f"{r['cases']['DM-C']['ir_per_request'] / 1000:,.1f}k"),
    "native_memory.native_rss1": native_memory(lambda r: mib(r["runs"]["native-S1M@1"]["rss_kib"])),
    "native_memory.native_per_worker": native_memory(lambda r: f"{r['per_extra_worker_mib']['native-S1M']:.0f} MiB"),
    "native_memory.wasm_per_worker": native_memory(lambda r: f"{r['per_extra_worker_mib']['wasm-S1M']:.0f} MiB"),
    "native_memory.native_geo_over_a": native_memory(
        lambda r: mib(r["runs"]["native-GEO@1"]["rss_kib"] - r["runs"]["A@1"]["rss_kib"])),
    "native_memory.native_geo_per_worker": native_memory(
        lambda r: f"{r['per_extra_worker_mib']['native-GEO']:.0f} MiB"),
    "native_memory.wasm_geo_over_a": native_memory(
        lambda r: mib(r["runs"]["wasm-GEO@1"]["rss_kib"] - r["runs"]["A@1"]["rss_kib"])),
    "native_memory.wasm_geo_per_worker": native_memory(lambda r: f"{r['per_extra_worker_mib']['wasm-GEO']:.0f} MiB"),
    "native_memory.table": native_memory(native_memory_table),
    "fuzz.table": fuzz(fuzz_table),
    "fuzz.summary": fuzz(fuzz_summary),
    "fuzz.corpus": corpus_size,
    "spoof.cases": lambda: str(corpus()["cases"]),
    "spoof.refused": lambda: str(corpus()["refused"]),
    "spoof.admitted": lambda: str(corpus()["admitted"]),
    "spoof.requests": lambda: str(corpus()["requests"]),
    "spoof.invalid": lambda: str(corpus()["invalid"]),
    "spoof.filter_decides": lambda: str(corpus()["filter_decides"]),
    "spoof.forged_forwarding": lambda: str(corpus()["forged_forwarding"]),
    "spoof.groups": corpus_groups_table,
    "diff.last_run": differential,
    "geo.diff": geo_differential,
    "geo.readers": geo_reader_table,
    "make.fuzz_targets": lambda: str(len(make_vars()["FUZZ_TARGETS"].split())),
    "make.fuzz_seconds": lambda: make_vars()["FUZZ_SECONDS"],
    "make.fuzz_short_seconds": lambda: make_vars()["FUZZ_SHORT_SECONDS"],
    "make.soak_seconds": lambda: make_vars()["SOAK_SECONDS"],
    "make.refresh_seconds": lambda: make_vars()["REFRESH_SECONDS"],
    "timings.table": timings_table,
    "soak.summary": driver("soak", "make soak", soak_summary),
    "soak.table": driver("soak", "make soak", soak_table),
    "reconfig.table": reconfig_figure,
    "reconfig.lds": driver("reconfig", "make reconfig", reconfig_summary),
    "reconfig.ecds": driver("reconfig-ecds", "make reconfig", reconfig_summary),
    "refresh.summary": driver("refresh", "make refresh", refresh_summary),
    "refresh.table": driver("refresh", "make refresh", refresh_table),
    "refresh.body": driver("refresh", "make refresh", lambda r: f"{r['body_bytes'] / 1e6:.1f} MB"),
    "reconfig.gradual": driver("reconfig-gradual", "make reconfig", gradual_summary),
    "adoption.summary": driver("adoption", "make adoption", adoption_summary),
    "adoption.before_seal": driver("adoption-before-seal", "tests/reliability/adoption.py --wasm <a build of 1947c7c> --report tests/reliability/results/adoption-before-seal.json", adoption_summary),
    "adoption.vs_before_seal": adoption_versus,
    "make.reliability": lambda: reliability_durations(),
    "rate_limit.accuracy": driver("rate-limit", "make rate-limit-load", rate_limit_accuracy),
    "rate_limit.rotation": driver("rate-limit", "make rate-limit-load", rate_limit_rotation_table),
    "rate_limit.shipped": driver("rate-limit", "make rate-limit-load", rate_limit_shipped),
    "rate_limit.memory": driver("rate-limit", "make rate-limit-load", rate_limit_memory),
    "hostile_json.table": hostile(hostile_table),
    "hostile_json.times": hostile(hostile_times),
    "hostile_json.headline": hostile(hostile_headline),
    "hostile_json.body": hostile(lambda b, a: f"{a[0]['body_mib']:g} MiB"),
    "hostile_json.before_run": lambda: header(HOSTILE_BEFORE.read_text()) if HOSTILE_BEFORE.exists() else missing("make hostile-json"),
    "hostile_json.after_run": lambda: header(HOSTILE_RECORD.read_text()) if HOSTILE_RECORD.exists() else missing("make hostile-json"),
    "retired.table": retired(retired_table),
    "retired.reconfigs": retired(lambda b, a: str(a["reconfigs"])),
    "retired.settle": retired(lambda b, a: f"{a['settle']:g}"),
    "retired.settled_allocated": retired(lambda b, a: f"{a['settled'][1]:.1f} MiB"),
    "retired.before_run": retired(lambda b, a: b["header"]),
    "retired.after_run": retired(lambda b, a: a["header"]),
}


def bench_document() -> Optional[str]:
    """BENCHMARKS.md as the record renders it (None without a record)."""
    rec = load(BENCH_RECORD)
    if rec is None:
        return None
    sys.path.insert(0, str(REPO / "bench"))
    import envoy_bench  # noqa: E402
    return envoy_bench.report(rec, load(INSTRUCTIONS_RECORD))


def rendered(text: str) -> str:
    cache: dict[str, str] = {}

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in FIGURES:
            raise KeyError(f"unknown figure {name!r}")
        if name not in cache:
            cache[name] = FIGURES[name]()
        value = cache[name]
        if "\n" in m.group(2) or "\n" in value:  # a block: keep it on lines of its own
            value = "\n" + value.strip("\n") + "\n"
        return f"<!-- fig:{name} -->{value}<!-- /fig -->"
    return MARKER.sub(one, text)


def text_problems(doc: str, text: str) -> list[str]:
    """Each marked figure of ``text`` (the document ``doc``) that disagrees with its record."""
    out = []
    for (name, shown), (_, want) in zip(MARKER.findall(text), MARKER.findall(rendered(text))):
        if shown != want:
            out.append(f"{doc}: figure {name} shows {shown.strip()[:80]!r}, its record gives "
                       f"{want.strip()[:80]!r}")
    return out


def problems() -> list[str]:
    """Each disagreement between a document and its record."""
    out = []
    seen: set[str] = set()
    for doc in DOCUMENTS:
        path = REPO / doc
        if not path.exists():
            continue
        text = path.read_text()
        seen.update(n for n, _ in MARKER.findall(text))
        out += text_problems(doc, text)
    for name in sorted(set(FIGURES) - seen):
        out.append(f"figure {name} is in no document (tools/figures.py FIGURES)")
    bench_md = bench_document()
    current = (REPO / "BENCHMARKS.md").read_text()
    if bench_md is None:
        out.append("BENCHMARKS.md has no record: bench/results/bench.json is missing (run `make bench`)")
    elif bench_md != current:
        out.append("BENCHMARKS.md differs from what bench/results/bench.json (and instructions.json) render "
                   "(run `make docs-figures`)")
    return out


def write() -> None:
    bench_md = bench_document()
    if bench_md is not None:
        (REPO / "BENCHMARKS.md").write_text(bench_md)
    for doc in DOCUMENTS:
        path = REPO / doc
        if path.exists():
            text = path.read_text()
            new = rendered(text)
            if new != text:
                path.write_text(new)
                print(f"figures: rewrote {doc}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate the documents' figures")
    args = ap.parse_args()
    if args.write:
        write()
    bad = problems()
    for p in bad:
        print("figures: " + p, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
