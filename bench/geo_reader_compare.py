#!/usr/bin/env python3
"""`make geo-compare`: our own MaxMind DB reader (src/source/mmdb.rs) against the `maxminddb` crate
(docs/geo.md, "Why our own reader"), measured three ways, written to bench/results/geo-reader.txt:

- the release `.wasm` (`make build`, wasm-opt included) of this tree and of a scratch variant: the
  committed tree (`git archive HEAD`) copied into target/geo-variant/, with
  bench/mmdb-crate/mmdb.rs in place of src/source/mmdb.rs and the crate added to the core's
  dependencies there (never in the repository's own Cargo.toml);
- the parse time of both real databases (`make geo-data`), natively, in examples/geo_lookup.rs of
  each tree: the median of RUNS runs of the source's body read into the table;
- correctness: tests/test_geo_differential.py run against each tree's geo_lookup (GEO_LOOKUP),
  LOOKUPS addresses per database;
- in Envoy, each tree's `.wasm`: bench/envoy_bench.py's GEO-BOTH case (both databases from its list
  server) alone at --concurrency 1 and 3, the time until every worker decides with both and the RSS
  (`--only A,GEO-BOTH --rounds 1 --seconds 1`, its own record in target/).

The variant's crate versions are pinned here (CRATE_DEPS).

    bench/geo_reader_compare.py [--runs 5] [--lookups 200000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANT = REPO / "target" / "geo-variant"
OUT = REPO / "bench" / "results" / "geo-reader.txt"
WASM = Path("target/wasm32-wasip1/release/client_ip_filter.wasm")
LOOKUP = Path("target/release/examples/geo_lookup")
NOOP_WASM = Path("target/bench-noop/wasm32-wasip1/release/noop_filter.wasm")
CRATE_DEPS = 'maxminddb = "=0.26.0"\nipnetwork = "=0.21.1"\n'
DATABASES = [("country.mmdb", "country"), ("asn.mmdb", "asn")]
GEO_DIR = Path(os.environ.get("CLIENT_IP_GEO_DIR") or REPO / ".work" / "geo")


def run(cmd: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), f"(in {cwd.relative_to(REPO) if cwd != REPO else '.'})", flush=True)
    return subprocess.run(cmd, cwd=cwd, check=True, **kw)


def make_variant() -> None:
    if VARIANT.exists():
        shutil.rmtree(VARIANT / "src", ignore_errors=True)
    VARIANT.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(VARIANT)], input=archive, check=True)
    shutil.copy(REPO / "bench" / "mmdb-crate" / "mmdb.rs", VARIANT / "src" / "source" / "mmdb.rs")
    cargo = VARIANT / "Cargo.toml"
    text = cargo.read_text()
    marker = "[dependencies]\n"
    head, tail = text.split(marker, 1)
    cargo.write_text(head + marker + CRATE_DEPS + tail)


def build(tree: Path) -> int:
    env = dict(os.environ)
    env.pop("CLIENT_IP_WASM", None)
    run(["make", "--no-print-directory", "build"], tree, env=env)
    run(["cargo", "build", "-q", "--release", "--example", "geo_lookup"], tree)
    return (tree / WASM).stat().st_size


def parse_ms(tree: Path, db: str, kind: str, runs: int) -> tuple[float, int]:
    times, ranges = [], 0
    for _ in range(runs):
        p = subprocess.run([str(tree / LOOKUP), str(GEO_DIR / db), kind, ""], input="",
                           capture_output=True, text=True, check=True)
        m = re.search(r"parsed (\d+) ranges in ([\d.]+) ms", p.stderr)
        if not m:
            raise SystemExit(f"geo_lookup printed no parse time: {p.stdout} {p.stderr}")
        ranges, ms = int(m.group(1)), float(m.group(2))
        times.append(ms)
    return statistics.median(times), ranges


def differential(tree: Path, lookups: int) -> str:
    env = dict(os.environ, GEO_LOOKUP=str(tree / LOOKUP), GEO_DIFF_LOOKUPS=str(lookups),
               GEO_DIFF_RECORD=str(REPO / "target" / f"geo-diff-{tree.name}.txt"))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_geo_differential.py", "-k", "agree"],
                       cwd=REPO, env=env, capture_output=True, text=True)
    rec = Path(env["GEO_DIFF_RECORD"])
    lines = rec.read_text().splitlines() if rec.exists() else []
    rows = [re.sub(r"^geo differential: ", "", line) for line in lines if line.startswith("geo differential")]
    verdict = "passed" if p.returncode == 0 else "FAILED"
    return f"{verdict}: " + "; ".join(rows) if rows else f"{verdict}: {p.stdout[-400:]}"


def in_envoy(tree: Path, label: str) -> list[str]:
    record = REPO / "target" / f"geo-envoy-{tree.name}.json"
    run([sys.executable, "bench/envoy_bench.py", "--envoy", str(REPO / ".venv" / "bin" / "envoy"),
         "--wasm", str(tree / WASM), "--noop-wasm", str(REPO / NOOP_WASM), "--only", "A,GEO-BOTH",
         "--rounds", "1", "--seconds", "1", "--out", str(record.with_suffix(".md")), "--record", str(record),
         "--workdir", str(REPO / ".work" / f"geo-envoy-{tree.name}")], REPO, stdout=subprocess.DEVNULL)
    mem = json.loads(record.read_text())["geo"]["memory"]
    out = []
    for conc in (1, 3):
        g, a = mem[f"GEO-BOTH@{conc}"], mem[f"A@{conc}"]
        out.append(f"  envoy --concurrency {conc}: every worker ready in {g['ready_s']:.2f} s, "
                   f"RSS {g['rss_kib'] / 1024:.1f} MiB ({(g['rss_kib'] - a['rss_kib']) / 1024:+.1f} MiB against no filter)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lookups", type=int, default=200000)
    args = ap.parse_args()
    make_variant()
    trees = [("own reader (src/source/mmdb.rs)", REPO), ("maxminddb 0.26.0 crate (bench/mmdb-crate/mmdb.rs)", VARIANT)]
    sizes = {label: build(tree) for label, tree in trees}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"$ make geo-compare   # {dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}, commit {commit}, "
             f"median of {args.runs} parses, {args.lookups} differential lookups per database"]
    own = sizes[trees[0][0]]
    for label, tree in trees:
        size = sizes[label]
        lines.append(f"geo reader: {label}")
        lines.append(f"  wasm: {size} bytes ({size - own:+d} against the own reader)")
        for db, kind in DATABASES:
            ms, ranges = parse_ms(tree, db, kind, args.runs)
            lines.append(f"  parse {db}: {ms:.1f} ms native, {ranges} ranges")
        lines.append(f"  differential: {differential(tree, args.lookups)}")
        lines += in_envoy(tree, label)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
