"""``make rate-limit-load``: the per-client local rate limit (docs/rate-limits.md) under load, in a real
Envoy with the shipped manifest's limiter (envoyfilter/ingress-gateway-rate-limit.yaml).

1. **Accuracy.** loadgen, one keep-alive connection per client, closed loop, for ``--duration`` s:
   honest clients 127.0.0.11-14 (each its own key) and one client 127.0.0.66 that forges
   X-Forwarded-For, X-Real-IP and X-Client-IP on every request. Envoy's workers share the buckets
   (``--concurrency 2``). Per client: the requests allowed, against what the bucket allows
   (``max_tokens`` + ``tokens_per_fill`` per ``fill_interval`` of the run), and the allowed rate after
   the burst against the configured rate.
2. **Rotation.** The buckets live in an LRU of ``max_dynamic_descriptors`` keys (the shipped size and
   Envoy's default of 20); a key evicted comes back with a full bucket. An honest client spends its
   bucket (``--rotation-burst`` requests, no refill during the run); an attacker behind a trusted proxy
   (10.0.0.0/8 in the manifest's configuration, 4 keep-alive connections, one X-Forwarded-For address
   per request) then sends from k distinct addresses, and the honest client tries again: still
   limited after k = size - 1, a fresh bucket after k = size. Envoy's memory (admin /memory and RSS)
   is read with the honest client's bucket only and with the LRU full.

Prints a JSON report and writes it to ``--report``; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness import manifests  # noqa: E402
from harness import procs  # noqa: E402
from harness import proxyproto as pp  # noqa: E402
from reliability.envoy_ext import TunedEnvoy, UpstreamEnvoy  # noqa: E402
from reliability.soak import LOADGEN, REPO  # noqa: E402

MANIFEST = REPO / "envoyfilter" / "ingress-gateway-rate-limit.yaml"
LIMITER = "envoy.filters.http.local_ratelimit"
HONEST = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"]
FORGER = "127.0.0.66"
TRUSTED_PROXY = "10.0.0.1"
ROTATION_CLIENT = "203.0.113.50"
ATTACKER_BASE = int(ipaddress.IPv4Address("100.64.0.0"))


def shipped_limiter() -> dict:
    frags = manifests.load(MANIFEST)
    return next(copy.deepcopy(f) for f in frags.http_filters if f["name"] == LIMITER)


def duration_s(text: str) -> float:
    assert text.endswith("s"), text
    return float(text[:-1])


def start(workdir: Path, upstream: UpstreamEnvoy, limiter: dict, direct: bool, name: str) -> TunedEnvoy:
    frags = manifests.load(MANIFEST)
    opts = E.EnvoyOptions(fragments=frags, concurrency=2, allow_requests_without_proxy_protocol=direct,
                          http_filter_overrides={LIMITER: limiter})
    return TunedEnvoy(opts, upstream_port=upstream.port, workdir=str(workdir), name=name).start()


# -- 1. accuracy ------------------------------------------------------------------------------------
def accuracy(workdir: Path, upstream: UpstreamEnvoy, seconds: float) -> dict:
    limiter = shipped_limiter()
    bucket = limiter["typed_config"]["descriptors"][0]["token_bucket"]
    env = start(workdir, upstream, limiter, direct=True, name="accuracy")
    try:
        report_path = workdir / "loadgen-accuracy.json"
        argv = [LOADGEN, "--target", f"127.0.0.1:{env.port}", "--duration-s", str(seconds),
                "--max-requests", "100000000", "--report", str(report_path)]
        for src in HONEST:
            argv += ["--class", f"name=honest-{src},src={src},conns=1,per_conn=0,expect=any"]
        argv += ["--class", f"name=forger,src={FORGER},conns=1,per_conn=0,expect=any,forge=1,"
                            f"forge_ip=127.0.0.99"]
        subprocess.run(argv, check=True, capture_output=True, timeout=seconds + 60)
        load = json.loads(report_path.read_text())
    finally:
        env.stop()
    elapsed = load["elapsed_s"]
    rate = bucket["tokens_per_fill"] / duration_s(bucket["fill_interval"])
    allowed_max = bucket["max_tokens"] + bucket["tokens_per_fill"] * int(elapsed // duration_s(bucket["fill_interval"]) + 1)
    clients = {}
    for name, c in load["classes"].items():
        statuses = {int(k): v for k, v in c["statuses"].items()}
        allowed = statuses.get(200, 0)
        clients[name] = {
            "src": c["src"], "completed": c["completed"], "allowed": allowed,
            "limited": statuses.get(429, 0), "other_status": sum(v for k, v in statuses.items() if k not in (200, 429)),
            "errors": sum(c["errors"].values()),
            "allowed_per_s_after_burst": round((allowed - bucket["max_tokens"]) / elapsed, 3),
        }
    checks = {
        "every_response_200_or_429": all(c["other_status"] == 0 and c["errors"] == 0 for c in clients.values()),
        "no_client_over_its_bucket": all(c["allowed"] <= allowed_max for c in clients.values()),
        "every_client_limited": all(c["limited"] > 0 for c in clients.values()),
        "forger_allowed_no_more_than_an_honest_client": clients["forger"]["allowed"]
            <= max(clients[f"honest-{s}"]["allowed"] for s in HONEST),
    }
    return {"elapsed_s": elapsed, "bucket": bucket, "configured_per_s": rate, "allowed_max": allowed_max,
            "clients": clients, "checks": checks}


# -- 2. rotation ------------------------------------------------------------------------------------
class Attacker:
    """Keep-alive connections (4) from a trusted proxy; each request names another client in
    X-Forwarded-For (the addresses 100.64.0.0 + i, never reused)."""

    def __init__(self, port: int, conns: int = 4):
        self.port = port
        self.conns = conns
        self.next = 0

    def send(self, k: int) -> dict:
        start = self.next
        self.next += k
        statuses: dict = {}
        lock = threading.Lock()

        def worker(offset: int) -> None:
            conn = pp.Connection(self.port, proxy=pp.v2(TRUSTED_PROXY, "10.0.0.2", 40000 + offset, 443))
            try:
                for i in range(start + offset, start + k, self.conns):
                    addr = str(ipaddress.IPv4Address(ATTACKER_BASE + i))
                    raw = pp.build_request(path="/", headers=[("X-Forwarded-For", addr)], close=False)
                    try:
                        status = conn.request(raw).status
                    except (pp.ConnectionClosed, OSError):
                        conn.close()
                        conn = pp.Connection(self.port, proxy=pp.v2(TRUSTED_PROXY, "10.0.0.2", 40000 + offset, 443))
                        status = conn.request(raw).status
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
            finally:
                conn.close()
        threads = [threading.Thread(target=worker, args=(o,)) for o in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return statuses


def honest_status(port: int) -> int:
    return pp.request(port, proxy=pp.v2(ROTATION_CLIENT, "10.0.0.2", 41000, 443)).status


def rotation(workdir: Path, upstream: UpstreamEnvoy, size: int, burst: int) -> dict:
    limiter = shipped_limiter()
    config = limiter["typed_config"]
    config["max_dynamic_descriptors"] = size
    config["descriptors"][0]["token_bucket"] = {"max_tokens": burst, "tokens_per_fill": burst,
                                                "fill_interval": "3600s"}
    env = start(workdir, upstream, limiter, direct=False, name=f"rotation-{size}")
    try:
        spent = [honest_status(env.port) for _ in range(burst + 1)]
        memory_one = env.memory()
        attacker = Attacker(env.port)
        t0 = time.monotonic()
        below = attacker.send(size - 1)
        after_below = honest_status(env.port)       # touches its bucket: most recently used again
        at = attacker.send(size)
        seconds = time.monotonic() - t0
        after_at = honest_status(env.port)
        memory_full = env.memory()
        stats = env.stats(raw=True)
    finally:
        env.stop()
    limited = stats.get("client_ip_rate_limit.http_local_rate_limit.rate_limited", 0)
    per_bucket = (memory_full["allocated"] - memory_one["allocated"]) / max(size - 1, 1)
    return {
        "max_dynamic_descriptors": size, "burst": burst,
        "honest_spends_its_bucket": spent,
        "attacker_keys_then_honest_status": {str(size - 1): after_below, str(size): after_at},
        "attacker_statuses": {str(size - 1): below, str(size): at},
        "attacker_requests_per_s": round((2 * size - 1) / seconds, 1),
        "memory_honest_bucket_only": memory_one, "memory_lru_full": memory_full,
        "allocated_bytes_per_bucket": round(per_bucket, 1),
        "envoy_rate_limited_counter": limited,
        "checks": {
            "honest_spent_its_bucket": spent == [200] * burst + [429],
            "still_limited_after_size_minus_1_keys": after_below == 429,
            "fresh_bucket_after_size_keys": after_at == 200,
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of the accuracy run")
    ap.add_argument("--sizes", default="20,10000,100000", help="max_dynamic_descriptors values to rotate through")
    ap.add_argument("--rotation-burst", type=int, default=10)
    ap.add_argument("--report", default=str(REPO / "tests" / "reliability" / "results" / "rate-limit.json"))
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="client-ip-rate-limit-"))
    upstream = UpstreamEnvoy(str(workdir), concurrency=1).start()
    try:
        report = {"date": time.strftime("%Y-%m-%d", time.gmtime()),
                  "envoy": subprocess.run([E.envoy_binary(), "--version"], capture_output=True,
                                          text=True).stdout.strip().split("version: ")[-1],
                  "accuracy": accuracy(workdir, upstream, args.duration),
                  "rotation": [rotation(workdir, upstream, int(s), args.rotation_burst)
                               for s in args.sizes.split(",")]}
    finally:
        procs.stop(upstream.proc)
    ok = all(report["accuracy"]["checks"].values()) and all(all(r["checks"].values()) for r in report["rotation"])
    report["ok"] = ok
    text = json.dumps(report, indent=2)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
