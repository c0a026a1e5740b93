"""``make reconfig``: the filter's configuration swapped live, under steady load, through
filesystem-based dynamic resources (Envoy's LDS reading a watched file, replaced by atomic rename).
``--via ecds`` pushes only the filter instead, through a watched ECDS file (extension config
discovery, the way Istio delivers a WasmPlugin); the listener is then never replaced.

    loadgen (client A 127.0.0.11, client B 127.0.0.12, forging client-IP headers)
      -> HAProxy (send-proxy-v2) -> Envoy (listener from LDS file, wasm filter) -> upstream Envoy

The allow list changes several times (A only, B only, both, neither, A only, ...), with broken
configurations pushed the same way in between (a bad CIDR, bad JSON, an unknown key). For each push:
  * good: Envoy accepts the listener; each client's status flips to the new policy, and the time
    from the file's rename to the last connection's flip is measured (must be <= 1 s);
  * broken: Envoy rejects the listener (``lds.update_rejected``) and the previous policy keeps
    serving: no client's status changes until the next good push.
No request may fail (loadgen errors 0). A JSON report goes to ``--report``; exit status 1 on failure.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import envoy as E  # noqa: E402
from harness.haproxy import HAProxy  # noqa: E402
from reliability.envoy_ext import EcdsEnvoy, TunedEnvoy, UpstreamEnvoy  # noqa: E402
from reliability.soak import LOADGEN, REPO  # noqa: E402

A, B = "127.0.0.11", "127.0.0.12"
BASE = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
        "forward": {"headers": ["x-real-ip"]}}


def policy(allow: list) -> dict:
    return {**BASE, "access": {"allow": allow}}


# (label, configuration, expected statuses {A: .., B: ..} or None for a broken one)
STEPS = [
    ("allow A", policy([A]), {A: 200, B: 403}),           # the starting configuration
    ("allow B", policy([B]), {A: 403, B: 200}),
    ("broken: bad CIDR", json.dumps(policy(["127.0.0.300/32"])), None),
    ("allow both", policy([A, B]), {A: 200, B: 200}),
    ("broken: not JSON", '{"access": {"allow": [', None),
    ("allow neither", policy(["127.0.0.99"]), {A: 403, B: 403}),
    ("broken: unknown key", json.dumps({"acces": {"allow": [A]}}), None),
    ("allow A (/30)", policy(["127.0.0.8/30"]), {A: 200, B: 403}),
    ("allow B (deny A)", {**BASE, "access": {"allow": ["127.0.0.8/29"], "deny": [A]}}, {A: 403, B: 200}),
    ("allow A", policy([A]), {A: 200, B: 403}),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between pushes")
    ap.add_argument("--conns", type=int, default=3, help="keep-alive connections per client")
    ap.add_argument("--report", default=str(REPO / ".work" / "reconfig" / "report.json"))
    ap.add_argument("--max-effect-s", type=float, default=1.0)
    ap.add_argument("--drain-strategy", default="immediate", choices=["immediate", "gradual"],
                    help="Envoy's --drain-strategy (Istio's pilot-agent runs Envoy with immediate)")
    ap.add_argument("--drain-time-s", type=int, default=45, help="Envoy's --drain-time-s (Istio: 45)")
    ap.add_argument("--record-only", action="store_true",
                    help="exit 0 once the report is written, whatever its checks say (the gradual-drain "
                         "comparison of make reconfig, whose lost requests are what it records)")
    ap.add_argument("--via", default="lds", choices=["lds", "ecds"],
                    help="lds: a new listener through the watched LDS file (the EnvoyFilter manifests' "
                         "path); ecds: only the filter, through a watched ECDS file (Istio's WasmPlugin path)")
    args = ap.parse_args()
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="client-ip-reconfig-"))

    def opts(configuration) -> E.EnvoyOptions:
        return E.EnvoyOptions(configuration=configuration)

    up = UpstreamEnvoy(str(work)).start()
    kind = EcdsEnvoy if args.via == "ecds" else TunedEnvoy
    env = kind(opts(STEPS[0][1]), upstream_port=up.port, workdir=str(work), name="reconfig",
               dynamic=args.via == "lds", access_log=False, wasm_log_level="info",
               flags={"--drain-strategy": args.drain_strategy, "--drain-time-s": args.drain_time_s,
                      "--parent-shutdown-time-s": args.drain_time_s + 15})
    hap = None
    pushes = []
    try:
        env.start()
        hap = HAProxy(env.port, mode="tcp", send_proxy="v2", workdir=str(work), name="reconfig-haproxy")
        hap.start()
        duration = args.interval * (len(STEPS) + 1)
        argv = [LOADGEN, "--target", f"127.0.0.1:{hap.port}", "--duration-s", str(duration),
                "--max-requests", "5000000", "--report", str(work / "load.json")]
        for name, src in (("A", A), ("B", B)):
            argv += ["--class", f"name={name},src={src},conns={args.conns},per_conn=0,expect=any,"
                                f"seen={src},forge=1,forge_ip={A if src == B else B}"]
        source = env.ecds_path if args.via == "ecds" else env.lds_path
        print(f"reconfig: loadgen -> haproxy :{hap.port} -> envoy :{env.port} ({args.via.upper()} {source}, "
              f"--drain-strategy {args.drain_strategy} --drain-time-s {args.drain_time_s}); "
              f"{len(STEPS) - 1} pushes, one every {args.interval:.0f} s")
        load = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        time.sleep(args.interval)
        for label, configuration, expect in STEPS[1:]:
            t_wall = time.time_ns()
            res = (env.push_filter(configuration) if args.via == "ecds"
                   else env.push_listener(opts(configuration)))
            pushes.append({"label": label, "expect": expect, "written_ns": t_wall,
                           "outcome": res["outcome"],
                           "decided_ms": round((res["decided"] - res["written"]) * 1000, 1)})
            print(f"  push {label!r}: {res['outcome']} in {pushes[-1]['decided_ms']} ms")
            time.sleep(max(0.0, args.interval - (res["decided"] - res["written"])))
        err = load.communicate(timeout=duration + 30)[1]
        if load.returncode != 0:
            raise RuntimeError(f"loadgen failed: {err}")
        classes = json.loads((work / "load.json").read_text())["classes"]
        counters = {k: v for k, v in env.settled_stats().items() if k.startswith("client_ip.")}
        alive = env.running
        log = env.log_text()
    finally:
        if hap:
            hap.stop()
        env.stop()
        up.stop()

    # For each client: the status over time, per connection slot (worker), from the transitions.
    src_of = {"A": A, "B": B}
    timelines = {}
    for name, c in classes.items():
        per_worker = {}
        for ts, worker, _old, new in c["transitions"]:
            per_worker.setdefault(worker, []).append((ts, new))
        timelines[src_of[name]] = per_worker

    def status_at(src: str, worker: int, t: int) -> int:
        st = 0
        for ts, new in timelines[src][worker]:
            if ts <= t:
                st = new
        return st

    checks = []
    current = STEPS[0][2]
    effects = []
    for i, p in enumerate(pushes):
        t0 = p["written_ns"]
        t_next = pushes[i + 1]["written_ns"] if i + 1 < len(pushes) else None
        if p["expect"] is None:
            ok = p["outcome"] == "rejected"
            checks.append((f"{p['label']}: rejected", ok))
            # The previous policy keeps serving: no status change until the next push.
            changed = []
            for src, workers in timelines.items():
                for w, events in workers.items():
                    for ts, new in events:
                        if ts > t0 and (t_next is None or ts < t_next) and new != current[src]:
                            changed.append((src, w, new))
            checks.append((f"{p['label']}: previous policy kept serving", not changed))
            p["status_changes_after"] = changed
            continue
        checks.append((f"{p['label']}: accepted", p["outcome"] == "accepted"))
        for src in (A, B):
            want = p["expect"][src]
            worst = 0.0
            for w, events in timelines[src].items():
                # The first time this connection slot showed the new status after the push, and no
                # reversion afterwards until the next push.
                after = [(ts, new) for ts, new in events if ts > t0 and (t_next is None or ts < t_next)]
                if want == current[src]:
                    flips = [e for e in after if e[1] != want]
                    if flips:
                        worst = float("inf")
                    continue
                firsts = [ts for ts, new in after if new == want]
                if not firsts:
                    # This slot may have no response in the window at all; check its status at the end.
                    end = t_next if t_next is not None else t0 + int(args.interval * 1e9)
                    if status_at(src, w, end) != want:
                        worst = float("inf")
                    continue
                reverted = any(new != want and ts > firsts[0] for ts, new in after)
                worst = max(worst, float("inf") if reverted else (firsts[0] - t0) / 1e9)
            if want != current[src]:
                effects.append(worst)
            p.setdefault("effect_s", {})[src] = None if worst == float("inf") else round(worst, 3)
            if want == current[src]:
                checks.append((f"{p['label']}: {src} stays {want}", worst == 0.0))
            else:
                checks.append((f"{p['label']}: {src} -> {want} within {args.max_effect_s} s "
                               f"(took {p['effect_s'][src]})", worst <= args.max_effect_s))
        current = p["expect"]

    errors = {n: c["errors"] for n, c in classes.items() if c["errors"]}
    sent = {n: c["sent"] for n, c in classes.items()}
    checks += [
        ("no request failed (loadgen errors 0)", not errors),
        ("every request sent was answered", all(c["sent"] == c["completed"] for c in classes.values())),
        ("the app was told each allowed client's own address",
         all(c["seen_mismatch"] == 0 for c in classes.values())),
        ("counters: allowed + denied == requests sent",
         counters.get("client_ip.allowed", 0) + counters.get("client_ip.denied", 0) == sum(sent.values())),
        ("Envoy still running, no panic", alive and "panicked" not in log),
    ]
    good = [p for p in pushes if p["expect"] is not None]
    finite = [e for e in effects if e != float("inf")]
    result = {
        "command": " ".join(sys.argv),
        "via": args.via,
        "envoy_flags": {"--drain-strategy": args.drain_strategy, "--drain-time-s": args.drain_time_s},
        "requests_per_client": sent,
        "statuses_per_client": {n: c["statuses"] for n, c in classes.items()},
        "server_closes_per_client": {n: c["server_closes"] for n, c in classes.items()},
        "connections_per_client": {n: c["connects"] for n, c in classes.items()},
        "errors": errors,
        "pushes": pushes,
        "lds_decided_ms": {"good_max": max(p["decided_ms"] for p in good),
                           "broken_max": max(p["decided_ms"] for p in pushes if p["expect"] is None)},
        "conns_per_client": args.conns,
        "effect_s": {"min": min(finite) if finite else None,
                     "max": max(finite) if finite else None,
                     "mean": round(sum(finite) / len(finite), 3) if finite else None,
                     "count": len(effects)},
        "filter_counters": counters,
        "checks": {n: ok for n, ok in checks},
        "passed": all(ok for _, ok in checks),
    }
    report_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"reconfig: {sum(sent.values()):,} requests ({sent}), errors {errors or 0}, "
          f"server-initiated closes {result['server_closes_per_client']}")
    print(f"  {args.via.upper()} accept/reject seen by admin: good pushes <= {result['lds_decided_ms']['good_max']} ms, "
          f"broken <= {result['lds_decided_ms']['broken_max']} ms")
    print(f"  new policy fully in effect (rename -> last connection flipped): max "
          f"{result['effect_s']['max']} s, mean {result['effect_s']['mean']} s over {len(effects)} flips")
    for name, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    print(f"reconfig: report in {report_path}")
    return 0 if result["passed"] or args.record_only else 1


if __name__ == "__main__":
    sys.exit(main())
