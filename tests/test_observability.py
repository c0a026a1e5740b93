"""docs/observability.md "Observability": counters under their names in /stats, the three filter-state
values in access logs, a debug line per decision and nothing per request at info or above."""
import re
import time

import pytest

from harness import envoy as E
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

CONFIG = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
          "access": {"allow": ["203.0.113.0/24"],
                     "rules": [{"name": "r1", "path_prefixes": ["/r1"], "allow": ["203.0.113.10"]},
                               {"name": "r-dry_2", "path_prefixes": ["/dry"], "allow": ["203.0.113.10"],
                                "mode": "dry_run"}]}}


@pytest.fixture(scope="module")
def obs(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=CONFIG))


def xff(v):
    return [("X-Forwarded-For", v)]


# (path, PROXY source, XFF or None) -> expected access-log triple and counter delta
CASES = [
    ("/", "203.0.113.5", None, ("203.0.113.5", None, None), {"client_ip.allowed": 1}),
    ("/", "192.0.2.1", None, ("192.0.2.1", "deny", None), {"client_ip.denied": 1}),
    ("/r1", "203.0.113.10", None, ("203.0.113.10", None, "r1"),
     {"client_ip.allowed": 1, "client_ip.rule.r1.allowed": 1}),
    ("/r1/x", "203.0.113.5", None, ("203.0.113.5", "deny", "r1"),
     {"client_ip.denied": 1, "client_ip.rule.r1.denied": 1}),
    ("/dry", "203.0.113.5", None, ("203.0.113.5", "dry_run_deny", "r-dry_2"),
     {"client_ip.dry_run_denied": 1, "client_ip.rule.r-dry_2.dry_run_denied": 1}),
    ("/", "10.0.0.1", "junk", (None, "deny", None), {"client_ip.denied": 1, "client_ip.invalid": 1}),
    ("/", "10.0.0.1", "2001:db8::1, 203.0.113.9", ("203.0.113.9", None, None), {"client_ip.allowed": 1}),
]


@pytest.mark.parametrize("path,src,fwd,logged,counters", CASES,
                         ids=["allow", "deny", "rule-allow", "rule-deny", "rule-dry-run", "unknown", "via-xff"])
def test_access_log_filter_state_and_counters_per_decision(obs, echo, path, src, fwd, logged, counters):
    before = obs.settled_stats()
    ex = exchange(obs, echo, proxy=pp.v1(src), path=path, headers=xff(fwd) if fwd else [])
    log = ex.log()
    assert (log["client_ip"], log["decision"], log["rule"]) == logged
    assert E.counter_delta(obs, before, counters) == counters


def test_counters_appear_in_stats_under_their_names(obs, echo):
    for path, src, fwd, _, _ in CASES:
        exchange(obs, echo, proxy=pp.v1(src), path=path, headers=xff(fwd) if fwd else [])
    names = ["client_ip.allowed", "client_ip.denied", "client_ip.dry_run_denied", "client_ip.invalid",
             "client_ip.rule.r1.allowed", "client_ip.rule.r1.denied",
             "client_ip.rule.r-dry_2.dry_run_denied"]

    def missing():
        stats = obs.stats()
        return [n for n in names if not stats.get(n)]
    try:  # counts reach /stats with the next flush
        procs.wait_until(lambda: not missing(), timeout=3, what="every counter in /stats")
    except TimeoutError:
        pass
    assert not missing(), f"not in /stats (or zero): {missing}; raw: {sorted(k for k in obs.stats(raw=True) if 'client_ip' in k)}"


# How each build's counter reaches /stats and /stats/prometheus: Envoy strips proxy-wasm's namespace
# in Prometheus output, not a dynamic module's (docs/native.md "What differs").
RAW_NAMES = {"wasm": ("client_ip.allowed", "wasmcustom.client_ip.allowed"),
             "native": ("dynamicmodulescustom.client_ip.allowed",)}
PROMETHEUS_NAME = {"wasm": r"^(envoy_)?client_ip_allowed", "native": r"^envoy_dynamicmodulescustom_client_ip_allowed"}


def test_counter_names_in_raw_stats(obs, echo):
    """Documents the name Envoy 1.40 prints: proxy-wasm metrics live under `wasmcustom.` in /stats,
    a dynamic module's under `dynamicmodulescustom.` (the harness strips both). Fails if a counter is
    printed under any other name."""
    before = obs.settled_stats()
    exchange(obs, echo, proxy=pp.v1("203.0.113.5"))
    assert E.counter_delta(obs, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}
    raw = [k for k in obs.stats(raw=True) if "client_ip.allowed" in k]
    names = RAW_NAMES[obs.build]
    assert raw and all(k in names for k in raw), raw


def test_counters_show_in_prometheus_stats(obs, echo):
    before = obs.settled_stats()
    exchange(obs, echo, proxy=pp.v1("203.0.113.5"))
    assert E.counter_delta(obs, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}
    text = obs.admin("/stats/prometheus")
    assert re.search(PROMETHEUS_NAME[obs.build] + r"(\{[^}]*\})? [1-9]", text, re.M), \
        [l for l in text.splitlines() if "client_ip" in l][:10]


# The lag the README promises (flushed every 250 ms), and what the test allows on top: Envoy runs
# the tick on its dispatcher, which a busy machine delays. Measured (5 runs of this test, 40 lags,
# 2 cores at load average 4): 0.005-0.236 s, the worst 14 ms short of the period; the 50 ms on top
# is for a tick delayed by a busier machine, and still catches a flush every second tick.
LAG_PROMISED_S = E.FLUSH_S
LAG_TOLERANCE_S = 0.05


def flush_lag(env, before: dict, done: float, name: str = "client_ip.allowed", timeout: float = 5.0) -> float:
    """How long after ``done`` the count of ``name`` reached /stats, at most: reads /stats back to
    back and returns the start of the last read that did not see it yet (so a slow read never
    counts against the filter)."""
    last_miss = done
    deadline = done + timeout
    while time.monotonic() < deadline:
        started = time.monotonic()
        if env.stats().get(name, 0) > before.get(name, 0):
            return max(last_miss - done, 0.0)
        last_miss = started
    raise AssertionError(f"{name} not in /stats {timeout} s after the request")


@pytest.mark.serial  # a 300 ms bound: parallel workers' load would break it, not the filter
def test_counters_lag_stats_by_at_most_a_quarter_of_a_second(obs, echo):
    """Counts are made in the VM and flushed from the root context's tick (every 250 ms): a decision
    shows in /stats within 250 ms (the README's promise; the contract allows a second), never only
    when the VM stops. Eight requests land at different points of the tick."""
    lags = []
    for i in range(8):
        time.sleep(0.03 * i)  # spreads the requests over the tick period; no condition to wait for
        before = obs.settled_stats()
        exchange(obs, echo, proxy=pp.v1("203.0.113.5"))
        lags.append(flush_lag(obs, before, time.monotonic()))
    assert max(lags) <= LAG_PROMISED_S + LAG_TOLERANCE_S, \
        f"counter flush lags (s): {[round(l, 3) for l in lags]}"


LOUD = ["info", "warning", "error", "critical"]


def test_debug_line_per_decision_and_nothing_per_request_at_info_or_above(obs, echo):
    """Exactly one `decision=` debug line per request, and no wasm line at info or above. The last
    request's line (a client of its own) marks the end: every earlier request's line was written
    before its response, so the lines up to the marker are all the requests wrote. A first marker
    (another client of its own) marks the start the same way: an earlier test's line that reached
    the log file late is before it."""
    exchange(obs, echo, proxy=pp.v1("203.0.113.76"))
    first = "decision=allow client=203.0.113.76 "
    procs.wait_until(lambda: first in obs.log_text(), timeout=15, what="the first marker's debug line")
    text = obs.log_text()
    start = text.index("\n", text.rindex(first)) + 1
    n = 20
    for i in range(n):
        exchange(obs, echo, proxy=pp.v1("192.0.2.1" if i % 2 else "203.0.113.5"),
                 headers=xff("junk") if i % 5 == 0 else [])
    exchange(obs, echo, proxy=pp.v1("203.0.113.77"))
    marker = "decision=allow client=203.0.113.77 "
    procs.wait_until(lambda: marker in obs.log_text()[start:], timeout=15, what="the marker's debug line")
    span = obs.log_text()[start:]
    span = span[:span.index(marker)]
    decisions = [l for l in obs.filter_lines(text=span) if " decision=" in l]
    assert len(decisions) == n, f"{n} decisions wrote {len(decisions)} decision lines: {decisions[:3]}"
    assert all(obs.tag("debug") in l for l in decisions), decisions[:3]
    loud = [l for level in LOUD for l in obs.filter_lines(level, text=span)]
    assert loud == [], loud[:5]
