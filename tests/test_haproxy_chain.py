"""A real chain: clients on distinct loopback addresses -> HAProxy (send-proxy-v2 / send-proxy) ->
Envoy with the gateway fragments. The filter must see each client's own address."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange_h2, new_test_id

CONFIG = {"access": {"allow": ["127.0.0.2"]},
          "forward": {"headers": ["x-real-ip"], "port_header": "x-client-port"}}


@pytest.fixture(scope="module")
def gw(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=CONFIG))


@pytest.fixture(scope="module")
def tcp_v2(gw, haproxy_factory):
    return haproxy_factory(gw.port, mode="tcp", send_proxy="v2")


@pytest.fixture(scope="module")
def tcp_v1(gw, haproxy_factory):
    return haproxy_factory(gw.port, mode="tcp", send_proxy="v1")


@pytest.fixture(scope="module")
def http_v2(gw, haproxy_factory):
    return haproxy_factory(gw.port, mode="http", send_proxy="v2", forwardfor=True)


def via(hap, echo, source, headers=()):
    tid = new_test_id("hap")
    resp = pp.request(hap.port, source=source, headers=[("x-test-id", tid)] + list(headers))
    hits = echo.find("x-test-id", tid)
    return resp, (hits[0] if hits else None)


def values(rec, name):
    return [v for k, v in rec["headers"] if k == name]


@pytest.mark.parametrize("which", ["tcp_v2", "tcp_v1"])
def test_haproxy_chain_allows_client_by_its_own_address(request, echo, which):
    hap = request.getfixturevalue(which)
    resp, rec = via(hap, echo, "127.0.0.2", headers=[("X-Real-IP", "127.0.0.3")])
    assert resp.status == 200
    assert values(rec, "x-real-ip") == ["127.0.0.2"]
    assert values(rec, "x-client-port") == [str(resp.local[1])]  # the client's own source port


@pytest.mark.parametrize("which", ["tcp_v2", "tcp_v1"])
def test_haproxy_chain_refuses_other_client_before_upstream(request, echo, which):
    hap = request.getfixturevalue(which)
    resp, rec = via(hap, echo, "127.0.0.3", headers=[("X-Forwarded-For", "127.0.0.2")])
    assert resp.status == 403 and resp.body == b"access denied\n"
    assert rec is None


def test_haproxy_http_mode_client_cannot_spoof_through_xff(gw, http_v2, echo):
    before = gw.settled_stats()
    resp, rec = via(http_v2, echo, "127.0.0.3", headers=[("X-Forwarded-For", "127.0.0.2"),
                                                           ("X-Real-IP", "127.0.0.2")])
    assert resp.status == 403 and rec is None
    resp, rec = via(http_v2, echo, "127.0.0.2", headers=[("X-Forwarded-For", "127.0.0.9")])
    assert resp.status == 200
    assert values(rec, "x-real-ip") == ["127.0.0.2"]
    xff = [e.strip() for v in values(rec, "x-forwarded-for") for e in v.split(",")]
    assert xff[:2] == ["127.0.0.9", "127.0.0.2"]  # HAProxy's option forwardfor appended the client
    assert E.counter_delta(gw, before, {"client_ip.allowed": 1, "client_ip.denied": 1}) == \
        {"client_ip.allowed": 1, "client_ip.denied": 1}


def test_haproxy_chain_http2_through_tcp_mode(gw, tcp_v2, echo):
    ex = exchange_h2(gw, echo, port=tcp_v2.port, source="127.0.0.2")
    assert ex.response.version == "HTTP/2" and ex.status == 200
    assert ex.upstream_values("x-real-ip") == ["127.0.0.2"]
    assert ex.log()["protocol"] == "HTTP/2"
    ex = exchange_h2(gw, echo, port=tcp_v2.port, source="127.0.0.3")
    assert ex.status == 403 and not ex.reached_upstream


def test_haproxy_chain_many_clients_on_one_envoy(gw, tcp_v2, echo):
    for i in range(6):
        source = "127.0.0.2" if i % 2 == 0 else "127.0.0.3"
        resp, rec = via(tcp_v2, echo, source)
        if source == "127.0.0.2":
            assert resp.status == 200 and rec is not None, (i, resp.status)
            assert values(rec, "x-real-ip") == [source]
        else:
            assert resp.status == 403 and rec is None, (i, resp.status)
