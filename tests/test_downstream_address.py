"""The downstream address (docs/resolution.md): the PROXY source (v1/v2, IPv4/IPv6/mapped) or the TCP
peer, read from the set_filter_state object first, else from source.address. When the HCM took that
from X-Forwarded-For (port 0) it is counted in client_ip.downstream_from_xff and, by default
(client_ip.on_downstream_from_xff "refuse"), refused with one warning a minute; "use" takes it."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange, exchange_h2

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

# Default resolution (no header believed): the client is the downstream address; show it and its port.
FORWARD = {"forward": {"headers": ["x-real-ip"], "port_header": "x-client-port"}}
# The same, taking a downstream address derived from X-Forwarded-For (the behaviour before issue 20).
FORWARD_USE = {"client_ip": {"on_downstream_from_xff": "use"}, **FORWARD}
WARNING = "refused since the last warning: their downstream address came from X-Forwarded-For"


def assert_refused_from_xff(ex):
    assert ex.status == 403, ex.response
    assert not ex.reached_upstream
    assert ex.log()["details"] == "client_ip_filter_downstream_from_xff"


@pytest.fixture(scope="module")
def gw(envoy_factory, wasm):
    """Gateway fragments as shipped (PROXY required, set_filter_state, use_remote_address: true)."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD))


@pytest.fixture(scope="module")
def gw_optional_proxy(envoy_factory, wasm):
    """As ``gw``, but connections without a PROXY header are accepted (their TCP peer is the downstream)."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD, allow_requests_without_proxy_protocol=True))


def assert_client(ex, address, port):
    assert ex.status == 200, ex.response
    assert ex.upstream_values("x-real-ip") == [address]
    assert ex.upstream_values("x-client-port") == ([str(port)] if port is not None else [])
    assert ex.log()["client_ip"] == address


@pytest.mark.parametrize("proxy,address,port", [
    (pp.v1("203.0.113.7", sport=40000), "203.0.113.7", 40000),
    (pp.v1("2001:db8::7", sport=40001), "2001:db8::7", 40001),
    (pp.v2("198.51.100.9", sport=40002), "198.51.100.9", 40002),
    (pp.v2("2001:db8:0:0:1::7", sport=40003), "2001:db8::1:0:0:7", 40003),
    (pp.v2("198.51.100.10", sport=40005, tlvs=[(0x04, b""), (0xEA, b"\x01vpce-0123456789abcdef")]),
     "198.51.100.10", 40005),
], ids=["v1-tcp4", "v1-tcp6", "v2-ipv4", "v2-ipv6-rfc5952", "v2-with-tlvs"])
def test_downstream_address_is_the_proxy_protocol_source(gw, echo, proxy, address, port):
    assert_client(exchange(gw, echo, proxy=proxy, source="127.0.0.2"), address, port)


@pytest.mark.parametrize("proxy", [pp.v2("::ffff:203.0.113.8", sport=40004),
                                   pp.v1("::ffff:203.0.113.8", sport=40004)], ids=["v2", "v1-tcp6"])
def test_downstream_ipv4_mapped_proxy_source_is_the_ipv4_address(gw, echo, proxy):
    ex = exchange(gw, echo, proxy=proxy)
    assert_client(ex, "203.0.113.8", 40004)


def test_downstream_address_with_proxy_v2_local_is_the_tcp_peer(gw, echo):
    ex = exchange(gw, echo, proxy=pp.v2_local(), source="127.0.0.3")
    assert_client(ex, "127.0.0.3", int(ex.log()["downstream_direct"].rsplit(":", 1)[1]))


def test_downstream_address_with_proxy_v1_unknown_is_the_tcp_peer(gw, echo):
    ex = exchange(gw, echo, proxy=pp.v1_unknown(), source="127.0.0.4")
    assert_client(ex, "127.0.0.4", int(ex.log()["downstream_direct"].rsplit(":", 1)[1]))


def test_downstream_address_without_proxy_header_is_the_tcp_peer(gw_optional_proxy, echo):
    ex = exchange(gw_optional_proxy, echo, source="127.0.0.5")
    assert_client(ex, "127.0.0.5", int(ex.log()["downstream_direct"].rsplit(":", 1)[1]))


def test_downstream_address_is_an_ipv6_tcp_peer(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration=FORWARD, listen_address="::1",
                                       allow_requests_without_proxy_protocol=True))
    ex = exchange(env, echo)
    assert ex.log()["downstream_direct"].startswith("[::1]:")
    assert_client(ex, "::1", ex.response.local[1])
    ex = exchange_h2(env, echo, headers=[("x-real-ip", "203.0.113.1")])
    assert ex.upstream_values("x-real-ip") == ["::1"]


def test_downstream_address_holds_for_every_request_of_a_keepalive_connection(gw, echo):
    with pp.Connection(gw.port, proxy=pp.v1("203.0.113.21", sport=41000)) as conn:
        for i in range(3):
            tid = f"keepalive-{i}"
            resp = conn.request(pp.build_request(headers=[("x-test-id", tid)], close=(i == 2)))
            assert resp.status == 200
            rec = echo.find("x-test-id", tid)[0]
            assert [v for k, v in rec["headers"] if k == "x-real-ip"] == ["203.0.113.21"]


def test_downstream_address_over_http2(gw_optional_proxy, echo):
    ex = exchange_h2(gw_optional_proxy, echo, haproxy_protocol=True, source="127.0.0.6")
    assert ex.response.version == "HTTP/2"
    assert ex.upstream_values("x-real-ip") == ["127.0.0.6"]


# -- filter state first, source.address second --------------------------------------------------

@pytest.fixture(scope="module")
def gw_xff_remote(envoy_factory, wasm):
    """set_filter_state installed, but the HCM derives the remote address from XFF."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD, use_remote_address=False))


def test_downstream_filter_state_is_preferred_over_source_address(gw_xff_remote, echo):
    before = gw_xff_remote.settled_stats()
    ex = exchange(gw_xff_remote, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "198.51.100.1")])
    assert ex.log()["downstream_remote"] == "198.51.100.1:0"  # source.address would be this
    assert_client(ex, "203.0.113.7", 40000)
    assert E.counter_delta(gw_xff_remote, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


@pytest.fixture(scope="module")
def gw_no_sfs(envoy_factory, wasm):
    """No set_filter_state; use_remote_address: true (source.address is the PROXY source)."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD, set_filter_state=False))


def test_downstream_falls_back_to_source_address_without_filter_state(gw_no_sfs, echo):
    before = gw_no_sfs.settled_stats()
    ex = exchange(gw_no_sfs, echo, proxy=pp.v2("203.0.113.31", sport=40031),
                  headers=[("X-Forwarded-For", "198.51.100.1")])
    assert ex.log()["downstream_fs"] is None
    assert_client(ex, "203.0.113.31", 40031)
    assert E.counter_delta(gw_no_sfs, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


def test_downstream_falls_back_to_mapped_source_address_as_ipv4(gw_no_sfs, echo):
    ex = exchange(gw_no_sfs, echo, proxy=pp.v2("::ffff:203.0.113.32", sport=40032))
    assert_client(ex, "203.0.113.32", 40032)


@pytest.fixture(scope="module")
def gw_no_sfs_xff(envoy_factory, wasm):
    """No set_filter_state and use_remote_address: false: source.address comes from XFF (port 0)."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD, set_filter_state=False,
                                        use_remote_address=False))


@pytest.fixture(scope="module")
def gw_no_sfs_xff_use(envoy_factory, wasm):
    """As ``gw_no_sfs_xff``, with on_downstream_from_xff "use"."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD_USE, set_filter_state=False,
                                        use_remote_address=False))


def test_downstream_from_xff_is_refused_counted_and_warned_about_once_by_default(gw_no_sfs_xff, echo):
    before = gw_no_sfs_xff.settled_stats()
    ex = exchange(gw_no_sfs_xff, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "192.0.2.1, 198.51.100.1")])
    assert_refused_from_xff(ex)
    want = {"client_ip.denied": 1, "client_ip.downstream_from_xff": 1}
    assert E.counter_delta(gw_no_sfs_xff, before, want) == want
    line = gw_no_sfs_xff.wait_log(WARNING)
    assert "[warning]" in line, line
    # A second one within the minute: refused and counted, no second warning (the tick that
    # flushed its count would have logged one).
    before = gw_no_sfs_xff.settled_stats()
    assert_refused_from_xff(exchange(gw_no_sfs_xff, echo, proxy=pp.v1("203.0.113.7", sport=40001),
                                     headers=[("X-Forwarded-For", "198.51.100.1")]))
    assert E.counter_delta(gw_no_sfs_xff, before, want) == want
    assert gw_no_sfs_xff.log_text().count(WARNING) == 1


def test_downstream_from_xff_is_used_and_counted_with_use(gw_no_sfs_xff_use, echo):
    gw = gw_no_sfs_xff_use
    before = gw.settled_stats()
    ex = exchange(gw, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "192.0.2.1, 198.51.100.1")])
    # Envoy reports the last XFF entry with port 0: that is all the filter can see; no port to show.
    assert_client(ex, "198.51.100.1", None)
    want = {"client_ip.allowed": 1, "client_ip.downstream_from_xff": 1}
    assert E.counter_delta(gw, before, want) == want
    assert WARNING not in gw.log_text()


def test_downstream_from_xff_is_not_counted_when_there_is_no_xff(gw_no_sfs_xff, echo):
    before = gw_no_sfs_xff.settled_stats()
    ex = exchange(gw_no_sfs_xff, echo, proxy=pp.v1("203.0.113.7", sport=40000))
    assert_client(ex, "203.0.113.7", 40000)
    assert E.counter_delta(gw_no_sfs_xff, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


@pytest.fixture(scope="module")
def gw_hops_no_sfs(envoy_factory, wasm):
    """No set_filter_state; use_remote_address: true with xff_num_trusted_hops: 1."""
    return envoy_factory(E.EnvoyOptions(configuration=FORWARD, set_filter_state=False,
                                        xff_num_trusted_hops=1))


def test_downstream_from_xff_is_refused_with_xff_num_trusted_hops(gw_hops_no_sfs, echo):
    before = gw_hops_no_sfs.settled_stats()
    ex = exchange(gw_hops_no_sfs, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "198.51.100.2")])
    assert ex.log()["downstream_remote"] == "198.51.100.2:0"
    assert_refused_from_xff(ex)
    want = {"client_ip.denied": 1, "client_ip.downstream_from_xff": 1}
    assert E.counter_delta(gw_hops_no_sfs, before, want) == want


@pytest.fixture(scope="module")
def gw_custom_fs_name(envoy_factory, wasm):
    """The filter looks for another filter-state name than the one set_filter_state writes, so it
    must fall back to source.address (here XFF-derived)."""
    cfg = {"client_ip": {"downstream_filter_state": "other.downstream"}, **FORWARD}
    return envoy_factory(E.EnvoyOptions(configuration=cfg, use_remote_address=False))


@pytest.fixture(scope="module")
def gw_renamed_fs(envoy_factory, wasm):
    """set_filter_state writes the downstream address under another name, and the filter is told
    that name: it must read it there (not fall back to source.address, XFF-derived here)."""
    cfg = {"client_ip": {"downstream_filter_state": "other.downstream"}, **FORWARD}
    return envoy_factory(E.EnvoyOptions(configuration=cfg, use_remote_address=False,
                                        filter_state_key="other.downstream"))


def test_downstream_filter_state_name_is_configurable(gw_renamed_fs, echo):
    before = gw_renamed_fs.settled_stats()
    ex = exchange(gw_renamed_fs, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "198.51.100.3")])
    assert ex.log()["downstream_fs"] == "203.0.113.7:40000"   # written under the custom name
    assert_client(ex, "203.0.113.7", 40000)
    want = {"client_ip.allowed": 1}
    assert E.counter_delta(gw_renamed_fs, before, want) == want


def test_downstream_filter_state_under_another_name_is_not_read(gw_custom_fs_name, echo):
    before = gw_custom_fs_name.settled_stats()
    ex = exchange(gw_custom_fs_name, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "198.51.100.3")])
    # It fell back to source.address, which came from X-Forwarded-For: refused.
    assert_refused_from_xff(ex)
    want = {"client_ip.denied": 1, "client_ip.downstream_from_xff": 1}
    assert E.counter_delta(gw_custom_fs_name, before, want) == want
