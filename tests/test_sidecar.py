"""The shipped manifests' own configurations in a real Envoy: the sidecar inbound (no PROXY,
use_remote_address: false, x-real-ip + XFF append) and the ingress gateway (trusted 10/8, lists,
the admin rule, x-real-ip / x-client-ip / x-client-port)."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange, exchange_h2


@pytest.fixture(scope="module")
def sidecar(envoy_factory, wasm, sidecar_fragments):
    opts = E.EnvoyOptions(fragments=sidecar_fragments)  # configuration as shipped
    assert opts.resolved_use_remote_address() is False
    return envoy_factory(opts)


def test_sidecar_sets_x_real_ip_to_the_peer_not_the_xff_derived_address(sidecar, echo):
    before = sidecar.settled_stats()
    ex = exchange(sidecar, echo, source="127.0.0.2",
                  headers=[("X-Forwarded-For", "198.51.100.1"), ("X-Real-IP", "198.51.100.1")])
    assert ex.status == 200
    assert ex.log()["downstream_remote"] == "198.51.100.1:0"  # what source.address would say
    assert ex.upstream_values("x-real-ip") == ["127.0.0.2"]
    assert ex.xff_entries() == ["198.51.100.1", "127.0.0.2"]
    assert E.counter_delta(sidecar, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


def test_sidecar_appends_the_peer_to_x_forwarded_for(sidecar, echo):
    ex = exchange(sidecar, echo, source="127.0.0.3")
    assert ex.upstream_values("x-forwarded-for") == ["127.0.0.3"]
    assert ex.upstream_values("x-real-ip") == ["127.0.0.3"]


def test_sidecar_over_http2(sidecar, echo):
    ex = exchange_h2(sidecar, echo, source="127.0.0.4", headers=[("x-real-ip", "1.1.1.1")])
    assert ex.upstream_values("x-real-ip") == ["127.0.0.4"]
    assert ex.xff_entries() == ["127.0.0.4"]


def test_sidecar_keepalive_requests_keep_the_peer(sidecar, echo):
    with pp.Connection(sidecar.port, source="127.0.0.5") as conn:
        for i, fwd in enumerate(["198.51.100.1", "198.51.100.2"]):
            tid = f"sidecar-ka-{i}"
            conn.request(pp.build_request(headers=[("x-test-id", tid), ("X-Forwarded-For", fwd)],
                                          close=(i == 1)))
            rec = echo.find("x-test-id", tid)[0]
            assert [v for k, v in rec["headers"] if k == "x-real-ip"] == ["127.0.0.5"]


@pytest.fixture(scope="module")
def gateway(envoy_factory, wasm, gateway_fragments):
    return envoy_factory(E.EnvoyOptions(fragments=gateway_fragments))  # configuration as shipped


def test_gateway_shipped_config_client_from_proxy_protocol(gateway, echo):
    ex = exchange(gateway, echo, proxy=pp.v2("203.0.113.5", sport=45678), headers=[("X-Client-IP", "1.1.1.1")])
    assert ex.status == 200
    assert ex.upstream_values("x-real-ip") == ["203.0.113.5"]
    assert ex.upstream_values("x-client-ip") == ["203.0.113.5"]
    assert ex.upstream_values("x-client-port") == ["45678"]


def test_gateway_shipped_config_trusts_in_cluster_proxies(gateway, echo):
    ex = exchange(gateway, echo, proxy=pp.v1("10.1.2.3"), headers=[("X-Forwarded-For", "198.51.100.7:999")])
    assert ex.status == 200 and ex.upstream_values("x-real-ip") == ["198.51.100.7"]
    ex = exchange(gateway, echo, proxy=pp.v2("fd00::5"), headers=[("X-Forwarded-For", "203.0.113.66")])
    assert ex.status == 403 and not ex.reached_upstream


def test_gateway_shipped_config_admin_rule(gateway, echo):
    ok = exchange(gateway, echo, proxy=pp.v1("203.0.113.10"), host="admin.example.com", path="/admin/x")
    assert ok.status == 200 and ok.log()["rule"] == "admin"
    no = exchange(gateway, echo, proxy=pp.v1("203.0.113.5"), host="admin.example.com", path="/admin/x")
    assert no.status == 403 and no.log()["rule"] == "admin"


def test_gateway_shipped_config_outside_allow_list(gateway, echo):
    ex = exchange(gateway, echo, proxy=pp.v2("2001:db9::1"))
    assert ex.status == 403 and not ex.reached_upstream
