"""docs/sources.md, a source's list across a change of configuration, in real Envoy: the filter
delivered by file-based ECDS (as Istio delivers a WasmPlugin; the in-flight case also by LDS, a
whole new listener as the EnvoyFilter manifests deliver it), its list from a fault-injecting
server. A reconfiguration while the list fetch is in flight (the server answers slowly); the same
configuration pushed again (it reuses the published list, with no fetch and no unavailable
moment); a source no list names (never fetched); a 304 before any body (a failure, retried).
The adapter's side of the same paths, with a fake host, is src/adapter/sources_tests.rs."""
import pytest

from harness import envoy as E
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange
from reliability.envoy_ext import EcdsEnvoy, TunedEnvoy

A, B = "192.0.2.1", "192.0.2.2"
SLOW_S = 4.0


def source(path: str, **extra) -> dict:
    return dict({"cluster": "faults", "authority": "lists.test", "path": path, "refresh_s": 10,
                 "timeout_ms": 10000, "on_unavailable": "refuse"}, **extra)


def status(env, echo, src: str) -> int:
    return exchange(env, echo, proxy=pp.v2(src)).status


def wait_status(env, echo, src: str, want: int, timeout: float) -> None:
    procs.wait_until(lambda: status(env, echo, src) == want, timeout, interval=0.05,
                     what=f"{src} -> {want}")


# Fresh connections in a row that must all get the answer: Envoy spreads new connections over its
# two workers, so 20 in a row miss a worker that has not adopted the list with probability 2^-20.
EVERY_WORKER = 20


def wait_every_worker(env, echo, src: str, want: int, timeout: float) -> None:
    """Waits until every worker answers ``src`` with ``want`` (each adopts a list on its own tick)."""
    procs.wait_until(lambda: all(status(env, echo, src) == want for _ in range(EVERY_WORKER)), timeout,
                     interval=0.05, what=f"{src} -> {want} on every worker")


@pytest.fixture
def faults():
    server = L.FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def ecds(wasm, echo, faults, tmp_path):
    """Starts an Envoy (two workers) whose filter comes from a watched ECDS file."""
    started = []

    def start(configuration: dict, via: str = "ecds"):
        opts = E.EnvoyOptions(configuration=configuration, clusters=[L.envoy_cluster("faults", faults.port)])
        kw = dict(upstream_port=echo.port, workdir=str(tmp_path), name=f"{via}{len(started)}",
                  access_log=False, wasm_log_level="debug", concurrency=2)
        if via == "ecds":
            env = EcdsEnvoy(opts, **kw)
        else:  # a whole new listener through the watched LDS file, Envoy drained as Istio runs it
            env = TunedEnvoy(opts, dynamic=True, flags={"--drain-strategy": "immediate", "--drain-time-s": 45}, **kw)
            env.push_filter = lambda c: env.push_listener(E.copy_options(opts, configuration=c))
        started.append(env)
        env.start()
        return env
    yield start
    for env in started:
        env.stop()


def completed(env, cluster: str = "faults") -> int:
    stats = env.stats(raw=True)
    return stats.get(f"cluster.{cluster}.upstream_rq_completed", 0)


@pytest.mark.parametrize("via", ["ecds", "lds"])
def test_a_reconfiguration_while_the_fetch_is_in_flight_fetches_again_and_the_late_body_decides_nothing(
        ecds, faults, echo, via):
    faults.set("/list", "slow", (f"{A}\n".encode(), SLOW_S))
    first = {"sources": {"big": source("/list")}, "access": {"deny": ["source:big"]}}
    env = ecds(first, via)
    procs.wait_until(lambda: faults.count("/list") >= 1, 10, what="the first fetch sent")
    assert status(env, echo, A) == 503  # the list is unavailable while its body is on its way
    # The list server's list changes, and the configuration is replaced during the fetch.
    faults.set("/list", "ok", f"{B}\n".encode())
    second = {"sources": {"big": source("/list")}, "access": {"deny": ["source:big", "198.51.100.1"]}}
    assert env.push_filter(second)["outcome"] == "accepted"
    # The new configuration fetches for itself (it does not wait for the old fetch) ...
    wait_every_worker(env, echo, B, 403, 10)
    assert faults.count("/list") == 2
    # ... and once the slow response to the old configuration's fetch has come in, the list that
    # decides is still the new configuration's.
    procs.wait_until(lambda: completed(env) >= 2, SLOW_S + 10, what="the slow response completed")
    for src, want in ((A, 200), (B, 403)):
        for _ in range(EVERY_WORKER):
            assert status(env, echo, src) == want, src
    assert "panicked" not in env.log_path.read_text(errors="replace")


def test_the_same_configuration_pushed_again_reuses_the_published_list_without_a_fetch(ecds, faults, echo):
    faults.set("/list", "ok", f"{A}\n".encode())
    configuration = {"sources": {"big": source("/list")}, "access": {"deny": ["source:big"]}}
    env = ecds(configuration)
    wait_every_worker(env, echo, A, 403, 10)
    fetched = faults.count("/list")
    assert env.push_filter(configuration)["outcome"] == "accepted"
    # No moment without the list (on_unavailable refuse would answer 503), and no new fetch.
    for _ in range(20):
        assert status(env, echo, A) == 403
        assert status(env, echo, B) == 200
    assert faults.count("/list") == fetched


def test_a_source_no_list_names_is_never_fetched(ecds, faults, echo):
    faults.set("/list", "ok", f"{A}\n".encode())
    faults.set("/unused", "ok", f"{B}\n".encode())
    env = ecds({"sources": {"big": source("/list"), "unused": source("/unused")},
                "access": {"deny": ["source:big"]}})
    wait_status(env, echo, A, 403, 10)
    assert faults.count("/list") == 1
    assert faults.count("/unused") == 0
    assert env.counter("client_ip.source.big.fetch_ok") == 1
    assert not [k for k in env.stats() if k.startswith("client_ip.source.unused.")]


def test_a_304_before_any_body_is_a_failure_and_the_source_stays_unavailable_until_a_body(
        ecds, faults, echo):
    faults.set("/list", "status", (304, b""))
    env = ecds({"sources": {"big": source("/list")}, "access": {"deny": ["source:big"]}})
    procs.wait_until(lambda: env.counter("client_ip.source.big.fetch_failed") >= 1, 10,
                     what="the 304 counted as a failed fetch")
    assert env.counter("client_ip.source.big.not_modified") == 0
    assert env.counter("client_ip.source.big.fetch_ok") == 0
    assert status(env, echo, B) == 503  # no list: refused as unavailable, not decided by an empty one
    # A failure is retried sooner than refresh_s (10 s): the body then is the list.
    faults.set("/list", "ok", f"{A}\n".encode())
    wait_every_worker(env, echo, A, 403, 8)
    for _ in range(EVERY_WORKER):
        assert status(env, echo, B) == 200
    assert env.counter("client_ip.source.big.fetch_ok") == 1
