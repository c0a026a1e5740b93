"""The two builds behave the same (docs/native.md): side by side, the wasm build and the native build
(the Envoy dynamic module) get the same configuration and the same traffic, and what a client, an
operator and Envoy see is compared field by field:

* a refused request: status, body, response headers, the access-log line (decision, rule, details,
  flags, filter state), the counters, and the filter's decision log line;
* a configuration error: Envoy's exit status, the filter's error line (its key path and value), and
  Envoy's own rejection (the listener is not created);
* a failing list server: what the source's requests get while it fails, its counters, and the warning
  the filter logs once.

Unlike the both_builds modules (each build on its own), these run both builds at once and compare
them with each other; the messages are compared without the log prefix each build's Envoy component
adds (``filter_message``).
"""
from __future__ import annotations

import re

import pytest

from harness import envoy as E
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

BUILDS = ("wasm", "native")
CONFIG = {
    "access": {"allow": ["203.0.113.0/24"], "deny": ["203.0.113.66"],
               "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]}]},
    "forward": {"headers": ["x-real-ip"], "port_header": "x-client-port"},
}
# The response headers Envoy varies per response, not per build.
VOLATILE = {"date"}


def filter_message(line: str) -> str:
    """The filter's own text of a log line, without Envoy's prefix ("[time][thread][level][component]
    [file:line] ") and, for proxy-wasm, its "wasm log <root> <vm>: "."""
    text = re.sub(r"^\[[^\]]*\]\[[^\]]*\]\[[^\]]*\]\[[^\]]*\] \[[^\]]*\] ", "", line)
    return re.sub(r"^wasm log [^:]*: ", "", text)


@pytest.fixture(scope="module")
def pair(envoy_factory, wasm, native_so):
    return {b: envoy_factory(E.EnvoyOptions(configuration=CONFIG, build=b)) for b in BUILDS}


def seen(env, echo, src: str, path: str = "/") -> dict:
    """Everything observable about one request from ``src`` through ``env``."""
    def decisions() -> list:
        return [filter_message(l) for l in env.filter_lines("debug") if f"client={src} " in l]
    before, lines_before = env.settled_stats(), len(decisions())
    ex = exchange(env, echo, proxy=pp.v1(src), path=path)
    log = ex.log()
    delta = procs.wait_until(lambda: E.counter_delta(env, before, None) or None, 3, what="the counters")
    # the log file is flushed after the response: wait for this request's line
    decision = procs.wait_until(lambda: decisions()[lines_before:] or None, 5, what="the decision line")
    return {
        "status": ex.status,
        "body": ex.response.body,
        "headers": sorted((k, v) for k, v in ex.response.headers if k not in VOLATILE),
        "reached_upstream": ex.reached_upstream,
        "access_log": {k: log[k] for k in ("status", "details", "flags", "client_ip", "decision", "rule",
                                          "client_ip_key", "client_link")},
        "counters": delta,
        "decision_line": decision,
    }


@pytest.mark.parametrize("src,path", [("192.0.2.1", "/"), ("203.0.113.66", "/"), ("203.0.113.5", "/admin")],
                         ids=["not-allowed", "denied", "rule-refused"])
def test_a_refused_request_looks_the_same_in_both_builds(pair, echo, src, path):
    wasm_seen, native_seen = (seen(pair[b], echo, src, path) for b in BUILDS)
    assert wasm_seen["status"] == 403 and not wasm_seen["reached_upstream"], wasm_seen
    assert native_seen == wasm_seen


def test_an_allowed_request_looks_the_same_in_both_builds(pair, echo):
    results = {}
    for b in BUILDS:
        ex = exchange(pair[b], echo, proxy=pp.v1("203.0.113.7", sport=40123))
        results[b] = (ex.status, ex.upstream_values("x-real-ip"), ex.upstream_values("x-client-port"))
    assert results["wasm"] == (200, ["203.0.113.7"], ["40123"])
    assert results["native"] == results["wasm"]


REFRESH_S = 10  # the smallest refresh_s (docs/sources.md)
BAD = {"access": {"allow": ["203.0.113.0/24", "10.0.0.300/8"]}}


def test_a_configuration_error_is_refused_the_same_way_in_both_builds(envoy_factory, wasm, native_so):
    refused = {b: envoy_factory.refused(E.EnvoyOptions(configuration=BAD, build=b)) for b in BUILDS}
    for b, r in refused.items():
        assert r.exit_status not in (None, 0), f"{b}: Envoy started with a bad configuration"
    errors = {b: [filter_message(l) for l in r.filter_lines("error")] for b, r in refused.items()}
    assert errors["wasm"] == ['invalid configuration: access.allow[1]: "10.0.0.300/8" is not an IP address or CIDR']
    assert errors["native"] == errors["wasm"]
    assert refused["native"].exit_status == refused["wasm"].exit_status
    # Envoy's own refusal, in each build's wording: the configuration is not loaded, the listener
    # never exists.
    for b, r in refused.items():
        (main,) = [l for l in r.log.splitlines() if "][critical][main]" in l and "initializing config" in l]
        assert "starting main dispatch loop" not in r.log, b


def test_a_failing_list_server_is_handled_the_same_way_in_both_builds(envoy_factory, wasm, native_so, echo):
    server = L.FaultServer().start()
    try:
        server.set("/deny.txt", "ok", b"192.0.2.9\n")
        config = {"sources": {"feed": {"cluster": "feed", "authority": "lists.test", "path": "/deny.txt",
                                       "refresh_s": REFRESH_S, "timeout_ms": 1000}},
                  "access": {"deny": ["source:feed"]}}
        envs = {b: envoy_factory(E.EnvoyOptions(configuration=config, build=b,
                                                clusters=[L.envoy_cluster("feed", server.port)]))
                for b in BUILDS}

        def status(b: str) -> int:
            return exchange(envs[b], echo, proxy=pp.v1("192.0.2.9")).status
        for b in BUILDS:  # the list loaded: its address is denied
            procs.wait_until(lambda: status(b) == 403, 10, interval=0.1, what=f"{b}: the feed's list in force")
        befores = {b: envs[b].settled_stats() for b in BUILDS}
        fetches = server.count("/deny.txt")
        server.set("/deny.txt", "status", (500, b"oops\n"))
        procs.wait_until(lambda: server.count("/deny.txt") >= fetches + 2, REFRESH_S + 6, interval=0.1,
                         what="both builds refreshing against the failing server")

        def failed(b: str):
            d = E.counter_delta(envs[b], befores[b], None)
            return d if d.get("client_ip.source.feed.fetch_failed", 0) >= 1 else None
        deltas = {b: procs.wait_until(lambda: failed(b), 5, what=f"{b}: fetch_failed counted") for b in BUILDS}
        # the last good list stays in force, in both
        assert {b: status(b) for b in BUILDS} == {"wasm": 403, "native": 403}
        assert set(deltas["native"]) == set(deltas["wasm"]), deltas
        def warned(b: str):
            return [filter_message(l) for l in envs[b].filter_lines("warning") if "source feed:" in l] or None
        # (the log file is flushed a little after the counter moves)
        warnings = {b: procs.wait_until(lambda: warned(b), 5, what=f"{b}: the warning") for b in BUILDS}
        assert len(warnings["wasm"]) == 1 and "status 500" in warnings["wasm"][0], warnings
        assert warnings["native"] == warnings["wasm"]
        gauges = {b: {k for k in envs[b].stats() if k.startswith("client_ip.source.feed.")} for b in BUILDS}
        assert gauges["native"] == gauges["wasm"], gauges
    finally:
        server.stop()


def test_an_allow_list_naming_a_list_server_that_never_answers_refuses_in_both_builds(envoy_factory, wasm,
                                                                                      native_so, echo):
    """The source never loads (its cluster's port is closed): the allow list naming it stays in force
    and holds no address, so every client is refused, by both builds (fail closed, docs/sources.md)."""
    config = {"sources": {"feed": {"cluster": "nowhere", "authority": "lists.test", "path": "/allow.txt"}},
              "access": {"allow": ["source:feed"]}}
    closed = procs.free_port()
    got = {}
    for b in BUILDS:
        env = envoy_factory(E.EnvoyOptions(configuration=config, build=b,
                                           clusters=[L.envoy_cluster("nowhere", closed)]))
        procs.wait_until(lambda: env.counter("client_ip.source.feed.fetch_failed") >= 1, 10,
                         what=f"{b}: the first fetch failed")
        ex = exchange(env, echo, proxy=pp.v1("192.0.2.44"))
        got[b] = (ex.status, ex.reached_upstream, ex.log()["decision"])
    assert got["wasm"] == (403, False, "deny")
    assert got["native"] == got["wasm"]
