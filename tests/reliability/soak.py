"""``make soak``: a bounded soak of the whole chain on loopback.

    loadgen clients, each class bound to its own 127.0.0.x  ->  HAProxy (mode tcp, send-proxy-v2)
      ->  Envoy 1.40 + client-ip-filter (the gateway manifest's fragments)  ->  upstream Envoy (the app)

A known mix of allowed and refused clients, all forging X-Forwarded-For / X-Real-IP / X-Client-IP,
for ``--duration`` seconds (bounded also by ``--max-requests``). The run passes when:
  * every response has its class's status (200 or 403) and no request failed (errors 0);
  * every 200 carried, at the app, ``x-real-ip`` = the client's own source address;
  * the filter's counters moved by exactly what was sent (allowed = the allowed classes' requests,
    denied = the refused classes'), invalid / downstream_from_xff / dry_run_denied by 0, and the app
    received exactly the allowed requests;
  * Envoy's memory at the end is within noise of the start (after a warm-up).
The report (JSON) goes to ``--report``; a summary is printed. Exit status 1 on any failed check.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness.haproxy import HAProxy  # noqa: E402
from reliability.envoy_ext import TunedEnvoy, UpstreamEnvoy  # noqa: E402

REPO = HERE.parents[1]
LOADGEN = os.environ.get("CLIENT_IP_LOADGEN", str(REPO / "target" / "loadgen" / "release" / "loadgen"))

CONFIG = {
    "client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
    "access": {"allow": ["127.0.0.8/29"], "deny": ["127.0.0.13"]},
    "forward": {"headers": ["x-real-ip", "x-client-ip"], "port_header": "x-client-port"},
}

# name, source, connections, requests per connection (0: keep-alive until the server closes),
# expected status. Every class forges client-IP headers naming an allowed address.
CLASSES = [
    ("allowed-keepalive", "127.0.0.11", 2, 0, 200),
    ("allowed-churn", "127.0.0.12", 1, 50, 200),
    ("refused-keepalive", "127.0.0.21", 1, 0, 403),
    ("refused-churn", "127.0.0.22", 1, 20, 403),
    ("refused-deny-list", "127.0.0.13", 1, 0, 403),
]
WASM_COUNTERS = ("client_ip.allowed", "client_ip.denied", "client_ip.invalid",
                 "client_ip.downstream_from_xff", "client_ip.dry_run_denied")


def class_args(expect_any: bool = False, scale: int = 1) -> list:
    args = []
    for name, src, conns, per_conn, status in CLASSES:
        spec = (f"name={name},src={src},conns={conns * scale},per_conn={per_conn},"
                f"expect={'any' if expect_any else status},forge=1,forge_ip=127.0.0.9")
        if status == 200:
            spec += f",seen={src}"
        args += ["--class", spec]
    return args


def run_loadgen(port: int, seconds: float, report: Path, max_requests: int, scale: int = 1,
                sample=None, sample_every: float = 15.0) -> dict:
    argv = [LOADGEN, "--target", f"127.0.0.1:{port}", "--duration-s", str(seconds),
            "--max-requests", str(max_requests), "--report", str(report)] + class_args(scale=scale)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    samples = []
    next_sample = time.monotonic() + sample_every
    while proc.poll() is None:
        time.sleep(0.2)
        if sample and time.monotonic() >= next_sample:
            samples.append(sample())
            next_sample += sample_every
    err = proc.stderr.read()
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err}")
    out = json.loads(report.read_text())
    out["stderr"] = err.strip()
    out["samples"] = samples
    return out


def wasm_counters(env) -> dict:
    """The filter's counters once nothing counted is still waiting in a VM (two reads a flush
    period apart agree: harness.envoy settled_stats), not after a guessed pause."""
    stats = env.settled_stats()
    return {k: int(stats.get(k, 0)) for k in WASM_COUNTERS}


def envoy_http_stats(env) -> dict:
    raw = env.stats(raw=True)
    keep = {}
    for k, v in raw.items():
        if (k.startswith("http.ingress_http.downstream_rq_") and k.split("_")[-1] in
                ("1xx", "2xx", "3xx", "4xx", "5xx", "total")) or "proxy_proto" in k:
            keep[k] = v
    return keep


def delta(after: dict, before: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))
            if isinstance(after.get(k, 0), int)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of measured load")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load before the start")
    ap.add_argument("--max-requests", type=int, default=20_000_000)
    ap.add_argument("--scale", type=int, default=2, help="connections per class = base count x scale")
    ap.add_argument("--report", default=str(REPO / ".work" / "soak" / "report.json"))
    ap.add_argument("--memory-tolerance-kb", type=int, default=8192,
                    help="allowed RSS growth from start to end (noise)")
    args = ap.parse_args()
    assert args.duration <= 3600, "bounded: at most an hour"

    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="client-ip-soak-"))
    up = UpstreamEnvoy(str(work)).start()
    env = TunedEnvoy(E.EnvoyOptions(configuration=CONFIG), upstream_port=up.port, workdir=str(work),
                     name="soak", access_log=False, wasm_log_level="info")
    hap = None
    try:
        env.start()
        hap = HAProxy(env.port, mode="tcp", send_proxy="v2", workdir=str(work), name="soak-haproxy")
        hap.start()
        print(f"soak: loadgen -> haproxy :{hap.port} (send-proxy-v2) -> envoy :{env.port} "
              f"-> upstream :{up.port}; {args.warmup:.0f} s warm-up, {args.duration:.0f} s measured")
        warm = run_loadgen(hap.port, args.warmup, work / "warmup.json", args.max_requests,
                           scale=args.scale)
        warm_errors = sum(sum(c["errors"].values()) for c in warm["classes"].values())

        before = {"wasm": wasm_counters(env), "http": envoy_http_stats(env), "app": up.requests()}
        mem_start = env.memory()

        def sample():
            m = env.memory()
            m["t"] = round(time.monotonic() - t0, 1)
            return m
        t0 = time.monotonic()
        run = run_loadgen(hap.port, args.duration, work / "run.json", args.max_requests,
                          scale=args.scale, sample=sample)
        after = {"wasm": wasm_counters(env), "http": envoy_http_stats(env), "app": up.requests()}
        mem_end = env.memory()
        envoy_alive = env.running
    finally:
        if hap:
            hap.stop()
        env.stop()
        up.stop()

    classes = run["classes"]
    sent = {name: c["sent"] for name, c in classes.items()}
    allowed_sent = sum(c["sent"] for c in classes.values() if c["expect"] == 200)
    refused_sent = sum(c["sent"] for c in classes.values() if c["expect"] == 403)
    counters = delta(after["wasm"], before["wasm"])
    app_requests = after["app"] - before["app"]
    errors = {name: c["errors"] for name, c in classes.items() if c["errors"]}
    rss_growth = mem_end.get("vmrss_kb", 0) - mem_start.get("vmrss_kb", 0)

    checks = [
        ("every response has its class's status",
         all(c["unexpected_status"] == 0 for c in classes.values())),
        ("no request failed (errors 0)", not errors),
        ("every request sent was answered", all(c["sent"] == c["completed"] for c in classes.values())),
        ("the app was told each allowed client's own address",
         all(c["seen_mismatch"] == 0 for c in classes.values())),
        (f"client_ip.allowed == allowed requests sent ({allowed_sent})",
         counters["client_ip.allowed"] == allowed_sent),
        (f"client_ip.denied == refused requests sent ({refused_sent})",
         counters["client_ip.denied"] == refused_sent),
        ("client_ip.invalid, downstream_from_xff, dry_run_denied == 0",
         all(counters[k] == 0 for k in WASM_COUNTERS[2:])),
        (f"the app received exactly the allowed requests ({app_requests})", app_requests == allowed_sent),
        (f"Envoy RSS growth {rss_growth} kB <= {args.memory_tolerance_kb} kB",
         rss_growth <= args.memory_tolerance_kb),
        ("Envoy still running", envoy_alive),
        ("warm-up had no errors", warm_errors == 0),
    ]
    result = {
        "command": " ".join(sys.argv),
        "duration_s": run["elapsed_s"],
        "requests_total": sum(sent.values()),
        "requests_per_s": round(sum(sent.values()) / run["elapsed_s"]),
        "sent_per_class": sent,
        "statuses_per_class": {n: c["statuses"] for n, c in classes.items()},
        "latency_us_per_class": {n: c["latency_us"] for n, c in classes.items()},
        "connections_per_class": {n: c["connects"] for n, c in classes.items()},
        "errors_per_class": errors,
        "filter_counters_delta": counters,
        "app_requests_delta": app_requests,
        "envoy_http_stats_delta": delta(after["http"], before["http"]),
        "memory_start": mem_start,
        "memory_end": mem_end,
        "memory_samples": run["samples"],
        "checks": {name: ok for name, ok in checks},
        "passed": all(ok for _, ok in checks),
        "loadgen": run["stderr"],
    }
    report_path.write_text(json.dumps(result, indent=2) + "\n")

    print(f"soak: {result['requests_total']:,} requests in {run['elapsed_s']:.0f} s "
          f"({result['requests_per_s']:,}/s)")
    for name, c in classes.items():
        print(f"  {name:18s} src {c['src']:11s} sent {c['sent']:>10,}  statuses {c['statuses']}  "
              f"errors {sum(c['errors'].values())}  p99 {c['latency_us']['p99']} us")
    print(f"  filter counters (delta): {counters}; app received {app_requests:,}")
    print(f"  Envoy memory start: RSS {mem_start.get('vmrss_kb')} kB, allocated {mem_start.get('allocated')} B; "
          f"end: RSS {mem_end.get('vmrss_kb')} kB, allocated {mem_end.get('allocated')} B")
    for name, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    print(f"soak: report in {report_path}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
