"""docs/rate-limits.md, the global variant: two Envoys (two replicas of a gateway) configured by
envoyfilter/ingress-gateway-global-rate-limit.yaml send the filter's key to one rate limit service
(github.com/envoyproxy/ratelimit at the commit tests/ratelimit/go.mod pins, ``make
ratelimit-service``) backed by Debian's Redis, both on loopback. The service's limits are
istio-examples/ratelimit-service.yaml's, with the limit lowered to LIMIT a ``unit`` (an hour: one
fixed window for the whole module unless it starts within WINDOW_MARGIN_S of the hour, which is
waited out first).

The service counts with one Redis INCRBY per request and key in a fixed window, without a local
cache by default (``LOCAL_CACHE_SIZE_IN_BYTES`` 0): its documented accuracy is then exact within a
window. The tests assert exactly LIMIT requests pass per key across both Envoys, also when both
send at once.
"""
from __future__ import annotations

import shutil
import threading
import time

import pytest

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.ratelimit import RateLimitService, Redis

MANIFEST = manifests.REPO / "envoyfilter" / "ingress-gateway-global-rate-limit.yaml"
CLUSTER = "client-ip-ratelimit"
KEY_HEADER = "x-client-ip-key"
LIMIT = 6
WINDOW_MARGIN_S = 30
EXEMPT = "198.51.100.7"


def wait_for_a_window_with_room(margin: float = WINDOW_MARGIN_S) -> None:
    """The hour's fixed window must not end during the module: if it ends within ``margin`` s,
    wait until the next one has begun."""
    left = 3600 - time.time() % 3600
    if left < margin:
        deadline = time.time() + left + 1
        while time.time() < deadline:
            time.sleep(min(1.0, max(deadline - time.time(), 0)))


@pytest.fixture(scope="module")
def replicas(envoy_factory, wasm, tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run `make redis`")
    wait_for_a_window_with_room()
    workdir = tmp_path_factory.mktemp("global-rate-limit")
    redis = Redis(str(workdir)).start()
    service = RateLimitService(str(workdir), redis, requests_per_unit=LIMIT, unit="hour")
    try:
        service.start()
        frags = manifests.load(MANIFEST)
        opts = E.EnvoyOptions(fragments=frags, clusters=[service.envoy_cluster(CLUSTER)])
        envs = [envoy_factory(opts), envoy_factory(opts)]
        yield envs, service
    finally:
        service.stop()
        redis.stop()


def send(env: E.Envoy, src: str, headers=()) -> pp.Response:
    return pp.request(env.port, proxy=pp.v2(src), headers=list(headers))


def test_the_global_limit_holds_across_two_envoys(replicas):
    (a, b), _ = replicas
    client = "203.0.113.60"
    got = [send((a, b)[i % 2], client).status for i in range(LIMIT + 4)]
    assert got == [200] * LIMIT + [429] * 4, got
    limited = send(b, client)
    assert limited.status == 429
    assert limited.header("x-ratelimit-limit") is not None


def test_two_envoys_sending_at_once_allow_exactly_the_limit(replicas):
    (a, b), _ = replicas
    client = "203.0.113.61"
    statuses: list = []
    lock = threading.Lock()

    def burst(env: E.Envoy) -> None:
        for _ in range(2 * LIMIT):
            status = send(env, client).status
            with lock:
                statuses.append(status)
    threads = [threading.Thread(target=burst, args=(env,)) for env in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == LIMIT, f"{statuses.count(200)} of {len(statuses)} allowed, limit {LIMIT}"


def test_another_client_has_its_own_count(replicas):
    (a, b), _ = replicas
    spent = "203.0.113.62"
    assert [send(a, spent).status for _ in range(LIMIT + 1)][-1] == 429
    assert [send(b, "203.0.113.63").status for _ in range(LIMIT)] == [200] * LIMIT


def test_a_forged_key_header_or_xff_gives_no_fresh_count(replicas):
    (a, b), _ = replicas
    client = "203.0.113.64"
    assert [send(a, client).status for _ in range(LIMIT + 1)][-1] == 429
    for headers in ([(KEY_HEADER, "203.0.113.99/32")], [("X-Forwarded-For", "203.0.113.98")],
                    [("X-Real-IP", "203.0.113.97")], [(KEY_HEADER, "unknown")],
                    [("X-Client-IP-Key", f"{EXEMPT}/32")]):
        assert send(b, client, headers).status == 429, headers


def test_one_ipv6_64_shares_one_count_across_envoys(replicas):
    (a, b), _ = replicas
    got = [send((a, b)[i % 2], f"2001:db8:5:5::{i + 1:x}").status for i in range(LIMIT + 1)]
    assert got == [200] * LIMIT + [429], got


def test_an_exempt_client_is_never_limited_nor_asks_the_service(replicas):
    (a, b), _ = replicas
    before = a.stats(raw=True).get("cluster.echo.ratelimit.ok", 0)
    assert [send(a, EXEMPT).status for _ in range(2 * LIMIT)] == [200] * (2 * LIMIT)
    assert a.stats(raw=True).get("cluster.echo.ratelimit.ok", 0) == before
    # (The counter is the right one: a keyed request moves it.)
    assert send(a, "203.0.113.66").status == 200
    assert a.stats(raw=True).get("cluster.echo.ratelimit.ok", 0) == before + 1


def test_the_service_counts_in_redis_one_key_per_client(replicas):
    (a, _), service = replicas
    client = "203.0.113.65"
    assert send(a, client).status == 200
    # The service logs the descriptor it was asked about: the filter's key, nothing the client wrote.
    log = service.log_text()
    assert f"{client}/32" in log, log[-2000:]
