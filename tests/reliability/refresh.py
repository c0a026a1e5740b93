"""``make refresh``: a 1M-entry list source flipping between two versions under steady load
(docs/sources.md: "the switch is atomic", "parsing never stalls a worker that serves requests").

    loadgen (client X 127.0.0.11, client Y 127.0.0.12, keep-alive)
      -> Envoy (--concurrency 2, access.deny: ["source:big"], refresh_s 10) -> upstream Envoy
    Envoy --(dispatch_http_call, cluster "lists")--> nginx serving big.txt

big.txt has 1,000,000 entries and is replaced every ``--flip`` seconds (atomic rename) by the other
version: version A lists X (and 999,999 addresses 10.0.0.0 + 2k), version B lists Y (and 999,999
others, 10.0.0.1 + 2k), so the versions disagree on both clients: under A, X gets 403 and Y 200;
under B the reverse. Checks:
  * no request fails (loadgen errors 0) and every response is 200 or 403;
  * every response agrees with the list that decided it: the filter writes the versions of the
    source lists its policy was bound to into filter state ``wasm.client_ip_lists`` (``big=N``),
    and the access log records it beside the client and the status of every request. Each request
    names exactly one version of ``big``; within a version every response to X has one status and
    every response to Y the other (a request decided with a half-replaced list, or a version that
    refused both or neither client, fails); the first version is A (X refused); consecutive
    versions alternate between A and B unless the list server's body did not change;
  * at least (duration / flip) - 2 versions were adopted;
  * the worst request latency during a refresh is at most --max-latency-ms: a refresh is the window
    from 2 s before a list change reached the clients (the fetch, the parse on the main thread, the
    publication) to 0.5 s after it (every worker's adoption); loadgen records the time of every
    response slower than 20 ms. The worst latency outside those windows is reported beside it, as
    the machine's own noise;
  * nginx saw one request per refresh (one fetch per Envoy, not one per worker).
A JSON report goes to ``--report``; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness import listserver as L  # noqa: E402
from harness import procs  # noqa: E402
from harness import proxyproto as pp  # noqa: E402
from reliability.envoy_ext import TunedEnvoy, UpstreamEnvoy  # noqa: E402
from reliability.soak import LOADGEN, REPO  # noqa: E402

X, Y = "127.0.0.11", "127.0.0.12"
ENTRIES = 1_000_000
# Fresh connections that must all be refused before the load starts: with 2 workers taking new
# connections in turn (or at random), 20 in a row miss a worker that has not adopted with
# probability at most 2^-20.
ADOPTED_CONNECTIONS = 20


def version(listed_client: str, base: str) -> bytes:
    start = int(ipaddress.IPv4Address(base))
    lines = [f"{ipaddress.IPv4Address(start + 2 * i)}\n" for i in range(ENTRIES - 1)]
    return ("# refresh test list\n" + listed_client + "\n" + "".join(lines)).encode()


def decided_by(lines, clients: dict, since: float) -> dict:
    """Counts of (client, status) per version of ``big`` from the access log's lines
    (``<start time> <client address> <status> <wasm.client_ip_lists>``) of the requests started
    at ``since`` or later (the load; before it the workers were still adopting the first list);
    lines naming no version, several sources or several versions are kept as malformed."""
    versions: dict[int, dict] = {}
    malformed = []
    for raw in lines:
        parts = raw.decode(errors="replace").split()
        try:
            if len(parts) == 4 and float(parts[0]) < since:
                continue
        except ValueError:
            pass
        if len(parts) != 4 or parts[1] not in clients:
            malformed.append(raw.decode(errors="replace").strip())
            continue
        _start, addr, status, lists = parts
        entries = lists.split(",")
        if len(entries) != 1 or not entries[0].startswith("big=") or not entries[0][4:].isdigit():
            malformed.append(raw.decode(errors="replace").strip())
            continue
        counts = versions.setdefault(int(entries[0][4:]), {})
        key = (clients[addr], status)
        counts[key] = counts.get(key, 0) + 1
    return {"versions": versions, "malformed": malformed}


def check_versions(verdicts: dict) -> list[str]:
    """What contradicts "each request was decided by one whole version": a version under which a
    client got both statuses, or X and Y the same; the first version not A (X refused)."""
    problems = []
    kinds = {}
    for v, counts in sorted(verdicts["versions"].items()):
        x = {st for (c, st) in counts if c == "X"}
        y = {st for (c, st) in counts if c == "Y"}
        if len(x) > 1 or len(y) > 1:
            problems.append(f"version {v}: X got {sorted(x)}, Y got {sorted(y)} ({counts})")
        elif x and y and x == y:
            problems.append(f"version {v}: X and Y both got {x.pop()}")
        elif x or y:
            kinds[v] = "A" if (x and "403" in x) or (y and "200" in y) else "B"
    if kinds and kinds[min(kinds)] != "A":
        problems.append(f"the first version ({min(kinds)}) is not A (X refused)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    ap.add_argument("--flip", type=float, default=10.0, help="seconds between list versions")
    ap.add_argument("--conns", type=int, default=2, help="keep-alive connections per client")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--max-latency-ms", type=float, default=50.0)
    ap.add_argument("--report", default=str(REPO / ".work" / "refresh" / "report.json"))
    args = ap.parse_args()
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="client-ip-refresh-"))
    root = work / "www"
    root.mkdir()
    versions = {"A": version(X, "10.0.0.0"), "B": version(Y, "10.0.0.1")}
    L.write_file(root / "big.txt", versions["A"])

    config = {
        "sources": {"big": {"cluster": "lists", "authority": "lists.test", "path": "/big.txt",
                            "refresh_s": 10, "timeout_ms": 10000}},
        "access": {"deny": ["source:big"]},
        "forward": {"headers": ["x-real-ip"]},
    }
    web = L.Nginx(str(root), workdir=str(work / "nginx")).start()
    up = UpstreamEnvoy(str(work)).start()
    opts = E.EnvoyOptions(configuration=config, proxy_protocol=False,
                          clusters=[L.envoy_cluster("lists", web.port)])
    # A short access log line per request: the client, the status and the list versions that
    # decided it (filter state wasm.client_ip_lists, docs/observability.md).
    decisions_log = work / "decisions.log"
    access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": E.FILE_LOG_TYPE, "path": str(decisions_log),
        "log_format": {"text_format_source": {"inline_string":
            "%START_TIME(%s.%3f)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %RESPONSE_CODE% "
            "%FILTER_STATE(wasm.client_ip_lists:PLAIN)%\n"}}}}]
    env = TunedEnvoy(opts, upstream_port=up.port, workdir=str(work), name="refresh", access_log=True,
                     hcm={"access_log": access_log}, wasm_log_level="info", concurrency=args.concurrency)
    flips = []
    stop = threading.Event()

    def flipper():
        current = "A"
        while not stop.wait(args.flip):
            current = "B" if current == "A" else "A"
            L.write_file(root / "big.txt", versions[current])
            flips.append((time.time_ns(), current))

    try:
        env.start()
        # The first version loaded: X refused.
        deadline = time.monotonic() + 30
        while env.counter("client_ip.source.big.fetch_ok") < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the source never loaded:\n" + env.log_tail())
            time.sleep(0.1)
        # Every worker adopted it: X refused on ADOPTED_CONNECTIONS fresh connections in a row
        # (Envoy spreads new connections over the workers), instead of a guessed pause.
        procs.wait_until(lambda: all(pp.request(env.port, source=X).status == 403
                                     for _ in range(ADOPTED_CONNECTIONS)), 30,
                         what="every worker refusing X (version A adopted)")
        loaded = env.settled_stats()
        load_start = time.time()
        loadavg_start = os.getloadavg()[0]
        argv = [LOADGEN, "--target", f"127.0.0.1:{env.port}", "--duration-s", str(args.duration),
                "--max-requests", "100000000", "--report", str(work / "load.json")]
        for name, src in (("X", X), ("Y", Y)):
            argv += ["--class", f"name={name},src={src},conns={args.conns},per_conn=0,expect=any"]
        print(f"refresh: loadgen -> envoy :{env.port} (--concurrency {args.concurrency}); nginx :{web.port} "
              f"big.txt {len(versions['A']) / 1e6:.1f} MB, {ENTRIES} entries, flipping every "
              f"{args.flip:.0f} s for {args.duration:.0f} s")
        requests_before = web.count("/big.txt")
        fetch_ok_before = env.counter("client_ip.source.big.fetch_ok")
        flip_thread = threading.Thread(target=flipper, daemon=True)
        load = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        flip_thread.start()
        err = load.communicate(timeout=args.duration + 60)[1]
        stop.set()
        flip_thread.join()
        if load.returncode != 0:
            raise RuntimeError(f"loadgen failed: {err}")
        classes = json.loads((work / "load.json").read_text())["classes"]
        stats = env.stats()
        requests = web.count("/big.txt") - requests_before
        memory = env.memory()
        loadavg_end = os.getloadavg()[0]
        alive = env.running
    finally:
        stop.set()
        env.stop()
        up.stop()
        web.stop()
    with decisions_log.open("rb") as f:  # complete: Envoy flushes its access log on exit
        verdicts = decided_by(f, {X: "X", Y: "Y"}, since=load_start)

    # Status changes per client, across connection slots, in time order.
    changes = {name: sorted((ts, new) for ts, _w, _old, new in c["transitions"] if _old != 0)
               for name, c in classes.items()}
    fetch_ok = stats.get("client_ip.source.big.fetch_ok", 0) - fetch_ok_before
    # X's flips paired with Y's opposite flips within the workers' adoption skew.
    skew_ns = int(1.5e9)
    unpaired = []
    for ts, new in changes["X"]:
        want = 200 if new == 403 else 403
        if not any(abs(t2 - ts) <= skew_ns and n2 == want for t2, n2 in changes["Y"]):
            unpaired.append((ts, new))
    atomic = check_versions(verdicts)
    logged = sum(n for v in verdicts["versions"].values() for n in v.values())
    statuses = {name: c["statuses"] for name, c in classes.items()}
    worst_ms = max(c["latency_us"]["max"] for c in classes.values()) / 1000
    windows = [(ts - int(2e9), ts + int(0.5e9)) for name in ("X", "Y") for ts, _ in changes[name]]
    slow = sorted(tuple(x) for c in classes.values() for x in c.get("slow", []))
    inside = [us for ts, us in slow if any(a <= ts <= b for a, b in windows)]
    outside = [us for ts, us in slow if not any(a <= ts <= b for a, b in windows)]
    worst_in_ms = max(inside, default=0) / 1000
    worst_out_ms = max(outside, default=0) / 1000
    slowest = sorted(slow, key=lambda x: -x[1])[:10]
    expected_versions = int(args.duration / args.flip) - 2
    x_versions = len({ts // int(1e9) for ts, _ in changes["X"]})
    errors = {n: c["errors"] for n, c in classes.items() if c["errors"]}
    checks = [
        ("no request failed (loadgen errors 0)", not errors),
        ("every request sent was answered", all(c["sent"] == c["completed"] for c in classes.values())),
        ("every response is 200 or 403",
         all(set(s) <= {"200", "403"} for s in statuses.values())),
        (f"every response agrees with the list version that decided it ({logged:,} requests logged, "
         f"each one loadgen completed; "
         f"{len(verdicts['versions'])} versions; problems: {'; '.join(atomic[:5]) or 'none'})",
         not atomic and logged == sum(c["completed"] for c in classes.values())),
        ("every logged request names one version of the list (no mix, none without a list)",
         not verdicts["malformed"]),
        (f"each flip of X's status comes with Y's opposite flip within {skew_ns / 1e9} s", not unpaired),
        (f"at least {expected_versions} versions adopted (X flipped {len(changes['X'])} times)",
         len(changes["X"]) >= expected_versions and fetch_ok >= expected_versions),
        ((f"worst latency during a refresh {worst_in_ms:.1f} ms" if inside else
          "no response of 20 ms or more during a refresh") + f" (limit {args.max_latency_ms} ms; outside "
         f"refreshes: {worst_out_ms:.1f} ms; over the run: {worst_ms:.1f} ms; responses >= 20 ms: "
         f"{len(inside)} during refreshes, {len(outside)} outside)", worst_in_ms <= args.max_latency_ms),
        (f"one request per refresh at nginx ({requests} requests, {fetch_ok} new lists, "
         f"{stats.get('client_ip.source.big.not_modified', 0)} not modified, "
         f"{stats.get('client_ip.source.big.fetch_failed', 0)} failed)",
         requests == fetch_ok + stats.get("client_ip.source.big.not_modified", 0)
         - loaded.get("client_ip.source.big.not_modified", 0)
         + stats.get("client_ip.source.big.fetch_failed", 0)
         - loaded.get("client_ip.source.big.fetch_failed", 0)),
        ("Envoy still running", alive),
    ]
    report = {
        "duration_s": args.duration, "flip_s": args.flip, "concurrency": args.concurrency,
        "entries": ENTRIES, "body_bytes": len(versions["A"]), "flips_written": len(flips),
        "versions_adopted": fetch_ok, "list_server_requests": requests,
        "classes": {n: {k: c[k] for k in ("sent", "completed", "errors", "statuses", "latency_us")}
                    for n, c in classes.items()},
        "x_status_changes": len(changes["X"]), "y_status_changes": len(changes["Y"]),
        "unpaired_flips": unpaired[:20], "requests_logged": logged,
        "responses_per_version": {v: {f"{c} {st}": n for (c, st), n in sorted(m.items())}
                                  for v, m in sorted(verdicts["versions"].items())},
        "malformed_log_lines": verdicts["malformed"][:20], "version_problems": atomic[:20], "worst_latency_ms": worst_ms,
        "worst_latency_during_refresh_ms": worst_in_ms, "worst_latency_outside_refresh_ms": worst_out_ms,
        "slow_during_refresh": len(inside), "slow_outside_refresh": len(outside),
        "slowest": [{"t_s_after_start": round((ts - slow[0][0]) / 1e9, 3) if slow else 0,
                     "ms": us / 1000,
                     "s_to_nearest_change": round(min((abs(ts - t) for n in changes.values() for t, _ in n),
                                                      default=0) / 1e9, 3)}
                    for ts, us in slowest],
        "source_stats": {k: v for k, v in stats.items() if k.startswith("client_ip.source.")},
        "load_average": {"start": round(loadavg_start, 2), "end": round(loadavg_end, 2)},
        "memory": memory, "checks": [{"check": c, "ok": ok} for c, ok in checks],
    }
    report_path.write_text(json.dumps(report, indent=2))
    for c, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {c}")
    total = sum(c["completed"] for c in classes.values())
    print(f"refresh: {total} requests in {args.duration:.0f} s, p99 "
          f"{max(c['latency_us']['p99'] for c in classes.values()) / 1000:.1f} ms, worst {worst_ms:.1f} ms; "
          f"report {report_path}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
