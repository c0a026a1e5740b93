"""``make adoption``: what adopting a refreshed 1M-entry list costs each worker, without load.

    Envoy (--concurrency 2, access.deny: ["source:big"], refresh_s 10, wasm log at debug)
      --(dispatch_http_call, cluster "lists")--> nginx serving big.txt (make refresh's two versions)

The list flips ``--flips`` times between make refresh's versions A and B; after each refresh every
worker reads the published table from shared data and opens it (seal, checksum, ranges, bucket
index): the time its requests wait. The filter logs both at debug level ("source big: published
table read R ms, opened and decoded D ms"; builds before the seal: "adopted version V (N entries):
read R ms, decoded D ms"), once per VM and refresh; this driver collects those lines. No request
load runs, so the figures are the adoption's own cost on this machine, beside make refresh's worst
latency under load. The machine's load average at the start and the end goes into the record.
A JSON report goes to ``--report``; ``--wasm`` measures another build (for a comparison).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness import listserver as L  # noqa: E402
from harness import procs  # noqa: E402
from reliability.envoy_ext import TunedEnvoy  # noqa: E402
from reliability.refresh import X, Y, version  # noqa: E402
from reliability.soak import REPO  # noqa: E402

LINE = re.compile(r"source big: (?:published table read (\d+) ms, opened and decoded (\d+) ms|"
                  r"adopted version \d+ \(\d+ entries\): read (\d+) ms, decoded (\d+) ms)")


def adoptions(log: str) -> list[tuple[int, int]]:
    """(read ms, opened and decoded ms) of each adoption logged."""
    out = []
    for m in LINE.finditer(log):
        read, decoded = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        out.append((int(read), int(decoded)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flips", type=int, default=4, help="list changes after the first load (default 4)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--wasm", default=None, help="the .wasm to measure (default: make build's)")
    ap.add_argument("--label", default="", help="what build this is (goes into the record)")
    ap.add_argument("--report", default=str(REPO / ".work" / "adoption" / "report.json"))
    args = ap.parse_args()
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="client-ip-adoption-"))
    root = work / "www"
    root.mkdir()
    versions = [version(X, "10.0.0.0"), version(Y, "10.0.0.1")]
    L.write_file(root / "big.txt", versions[0])
    config = {
        "sources": {"big": {"cluster": "lists", "authority": "lists.test", "path": "/big.txt",
                            "refresh_s": 10, "timeout_ms": 10000}},
        "access": {"deny": ["source:big"]},
    }
    load_start = os.getloadavg()
    web = L.Nginx(str(root), workdir=str(work / "nginx")).start()
    opts = E.EnvoyOptions(configuration=config, proxy_protocol=False, wasm_path=args.wasm,
                          clusters=[L.envoy_cluster("lists", web.port)])
    env = TunedEnvoy(opts, workdir=str(work), name="adoption", access_log=False,
                     wasm_log_level="debug", concurrency=args.concurrency)
    per_refresh = args.concurrency  # one adoption per worker VM and refresh
    try:
        env.start()
        for k in range(args.flips + 1):
            if k:
                L.write_file(root / "big.txt", versions[k % 2])
            want = (k + 1) * per_refresh
            procs.wait_until(lambda: len(adoptions(env.log_path.read_text(errors="replace"))) >= want,
                             40, what=f"{want} adoptions logged (refresh {k})")
        log = env.log_path.read_text(errors="replace")
    finally:
        env.stop()
        web.stop()
    load_end = os.getloadavg()
    got = adoptions(log)
    reads = [r for r, _ in got]
    decodes = [d for _, d in got]
    report = {
        "label": args.label, "wasm": args.wasm or "make build", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "concurrency": args.concurrency, "entries": 1_000_000, "body_bytes": len(versions[0]),
        "refreshes": args.flips + 1, "adoptions": len(got),
        "read_ms": {"min": min(reads), "median": statistics.median(reads), "max": max(reads)},
        "decoded_ms": {"min": min(decodes), "median": statistics.median(decodes), "max": max(decodes)},
        "each": [{"read_ms": r, "decoded_ms": d} for r, d in got],
        "load_average": {"start": round(load_start[0], 2), "end": round(load_end[0], 2)},
    }
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"adoption: {len(got)} adoptions of a 1M-entry list; read {report['read_ms']}, opened and "
          f"decoded {report['decoded_ms']} ms; load average {load_start[0]:.1f} -> {load_end[0]:.1f}; "
          f"report {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
