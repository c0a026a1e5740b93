"""Host calls per request (or connection), counted, for `make bench`'s "host calls/req" column and
tests/test_host_calls.py.

The counting builds (`make build-counting`: the filter and the no-op filter with the cargo feature
`count-host-calls`, adapters/proxy-wasm/src/host.rs `count`) count every host call a request or a
connection makes, by ABI function, and report the totals from the root's tick as counters `client_ip.host_calls.<call>`,
with `client_ip.host_calls.contexts` the number of HTTP streams and connections they were made for.
The root's own calls (configure, tick, flushes, list fetches) are not counted.

Here every wasm case of the bench runs in one Envoy built from those .wasm files; each case in turn
gets REQUESTS requests (connections for the N- cases), and its figures are the counters' increase
over them, divided by the contexts counted.
"""
from __future__ import annotations

import time
from pathlib import Path

import envoy_bench as B

PREFIX = "client_ip.host_calls."
CONTEXTS = PREFIX + "contexts"
REQUESTS = 40


def uses_wasm(case: dict) -> bool:
    """The case has a wasm filter (the only ones whose host calls are counted)."""
    return any(f.get("typed_config", {}).get("@type") in (B.WASM, B.NETWORK_WASM) for f in case["filters"])


def host_call_stats(envoy: B.Envoy) -> dict[str, int]:
    """The host-call counters, by contract name (Envoy prints proxy-wasm metrics under `wasmcustom.`)."""
    out: dict[str, int] = {}
    for name, value in envoy.stats().items():
        at = name.find(PREFIX)
        if at >= 0:
            out[name[at:]] = out.get(name[at:], 0) + value
    return out


def wait_contexts(envoy: B.Envoy, before: dict, n: int, timeout: float = 10.0) -> dict:
    """The counters once ``n`` more contexts than in ``before`` were reported (the calls of a
    context are reported with it, in the same tick)."""
    deadline = time.monotonic() + timeout
    while True:
        now = host_call_stats(envoy)
        got = now.get(CONTEXTS, 0) - before.get(CONTEXTS, 0)
        if got >= n:
            return now
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{got} of {n} contexts reported after {timeout} s")
        time.sleep(0.05)


def settled(envoy: B.Envoy, timeout: float = 10.0) -> dict:
    """The counters once two reads a tick and more apart agree (nothing left to report)."""
    deadline = time.monotonic() + timeout
    first = host_call_stats(envoy)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        second = host_call_stats(envoy)
        if second == first:
            return second
        first = second
    raise RuntimeError("host-call counters still moving")


def one(case: dict, port: int) -> None:
    """One request (an HTTP case) or one connection (an N- case) to the case's listener."""
    if case.get("refuses"):
        if not B.refused(port):
            raise RuntimeError(f"case {case['name']}: a connection was not refused")
        return
    status, _ = B.http_get(port)
    if status != 200:
        raise RuntimeError(f"case {case['name']}: answered {status}")


def count(envoy_bin: str, all_cases: list[dict], workdir: Path, source_port: int = 0,
          requests: int = REQUESTS) -> dict[str, dict]:
    """{case: {"contexts": n, "calls": {ABI call: per context}, "per_context": total per context}}
    for each wasm case of ``all_cases`` (built from the counting .wasm files)."""
    counted = [c for c in all_cases if uses_wasm(c)]
    ports = {c["name"]: B.free_port() for c in counted}
    admin = B.free_port()
    listeners, clusters = B.with_sink([B.listener(c, ports[c["name"]]) for c in counted], counted)
    envoy = B.Envoy(envoy_bin, B.bootstrap(listeners, admin, clusters, source_port), workdir,
                    "envoy-host-calls", "")
    out: dict[str, dict] = {}
    try:
        envoy.wait_serving(list(ports.values()),
                           refusing=tuple(ports[c["name"]] for c in counted if c.get("refuses")),
                           loading={ports[c["name"]] for c in counted if c.get("source")})
        before = settled(envoy)
        for c in counted:
            for _ in range(requests):
                one(c, ports[c["name"]])
            after = wait_contexts(envoy, before, requests)
            contexts = after.get(CONTEXTS, 0) - before.get(CONTEXTS, 0)
            calls = {k[len(PREFIX):]: (v - before.get(k, 0)) / contexts for k, v in sorted(after.items())
                     if k != CONTEXTS and v != before.get(k, 0)}
            out[c["name"]] = {"contexts": contexts, "calls": calls,
                              "per_context": sum(calls.values())}
            before = after
    finally:
        envoy.stop()
    return out


def fmt(per_context: float) -> str:
    """A count per request: whole numbers as such, else two decimals."""
    return f"{per_context:.0f}" if abs(per_context - round(per_context)) < 0.005 else f"{per_context:.2f}"
