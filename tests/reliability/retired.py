"""``make retired``: Envoy's memory over many reconfigurations of a filter whose source holds
1,000,000 entries. Each configuration is new (its deny list differs by one address), so each one
publishes its own table in Envoy's shared data (8 MB for a million IPv4 ranges); proxy-wasm cannot
delete a key, and a replaced configuration's table used to stay until Envoy restarted. The filter now
overwrites a replaced configuration's values with empty ones once no VM uses it (its lease has been
free for 30 s; docs/sources.md).

    Envoy (--concurrency 2, the filter by file-based ECDS, as Istio delivers a WasmPlugin)
      --(dispatch_http_call, cluster "lists")--> nginx (big.txt: 1,000,000 addresses, 12.8 MB)

For each of ``--reconfigs`` pushes: the new configuration is accepted, its list loaded (its
fetcher's "loaded with 1000000 entries" line), then Envoy's RSS and tcmalloc's allocated bytes are
read. After the last, the run waits ``--settle`` s (the 30 s retirement wait and a check period) and
reads them again. The run output (one line per step) goes to stdout and ``--out``."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness import listserver as L  # noqa: E402
from harness import procs  # noqa: E402
from reliability.envoy_ext import EcdsEnvoy, UpstreamEnvoy  # noqa: E402

ENTRIES = 1_000_000
LOADED = f"source big: loaded with {ENTRIES} entries"


def configuration(i: int) -> dict:
    return {
        "sources": {"big": {"cluster": "lists", "authority": "lists.test", "path": "/big.txt",
                            "refresh_s": 3600, "timeout_ms": 10000}},
        "access": {"deny": ["source:big", f"198.18.{i // 256}.{i % 256}"]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reconfigs", type=int, default=50)
    ap.add_argument("--settle", type=float, default=45.0)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", default=None)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    work = Path(tempfile.mkdtemp(prefix="client-ip-retired-"))
    root = work / "www"
    root.mkdir()
    L.write_file(root / "big.txt", L.big_text_list(ENTRIES))
    web = L.Nginx(str(root), workdir=str(work / "nginx")).start()
    up = UpstreamEnvoy(str(work)).start()
    opts = E.EnvoyOptions(configuration=configuration(0), proxy_protocol=False,
                          clusters=[L.envoy_cluster("lists", web.port)])
    env = EcdsEnvoy(opts, upstream_port=up.port, workdir=str(work), name="retired", access_log=False,
                    wasm_log_level="info", concurrency=args.concurrency)

    def loaded() -> int:
        return env.log_text().count(LOADED)

    def memory(step: str) -> dict:
        m = env.memory()
        say(f"{step}: rss {m.get('vmrss_kb', 0) / 1024:.1f} MiB, "
            f"allocated {m.get('allocated', 0) / 2**20:.1f} MiB, "
            f"heap {m.get('heap_size', 0) / 2**20:.1f} MiB")
        return m

    say(f"$ tests/reliability/retired.py --reconfigs {args.reconfigs} --settle {args.settle:.0f} "
        f"--concurrency {args.concurrency}   # {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        + (f", {args.label}" if args.label else ""))
    try:
        env.start()
        procs.wait_until(lambda: loaded() >= 1, 60, interval=0.2, what="the first list")
        first = memory("configuration 0 loaded")
        for i in range(1, args.reconfigs + 1):
            outcome = env.push_filter(configuration(i), timeout=30)["outcome"]
            if outcome != "accepted":
                raise RuntimeError(f"configuration {i}: {outcome}")
            procs.wait_until(lambda: loaded() >= i + 1, 60, interval=0.2,
                             what=f"configuration {i}'s list")
            last = memory(f"configuration {i} loaded")
        time.sleep(args.settle)
        settled = memory(f"{args.settle:.0f} s after the last")
        needle = "emptied the shared lists of a replaced configuration ("
        lines_emptied = [l for l in env.log_text().splitlines() if needle in l]
        emptied = {l.split(needle, 1)[1].split(")", 1)[0] for l in lines_emptied}
        say(f"replaced configurations emptied: {len(emptied)} of {args.reconfigs} "
            f"({len(lines_emptied)} log lines: a configuration may be emptied by more than one VM)")
        say(f"rss: {first['vmrss_kb'] / 1024:.1f} MiB after the first load, "
            f"{last['vmrss_kb'] / 1024:.1f} MiB after {args.reconfigs} reconfigurations, "
            f"{settled['vmrss_kb'] / 1024:.1f} MiB {args.settle:.0f} s later")
        alive = env.running
    finally:
        env.stop()
        up.stop()
        web.stop()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
