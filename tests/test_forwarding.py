"""docs/forwarding.md "Forwarding": headers (removed, then set to the client), port_header,
x_forwarded_for keep / append / replace; header names case-insensitive."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange, exchange_h2

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds


def xff(*values):
    return [("X-Forwarded-For", v) for v in values]


TRUSTED = ["10.0.0.0/8"]


# -- headers and port_header ------------------------------------------------------------------------

HEADERS = {"client_ip": {"trusted_proxies": TRUSTED},
           "forward": {"headers": ["X-Real-IP", "x-client-ip"], "port_header": "X-Client-Port"}}


@pytest.fixture(scope="module")
def fwd(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=HEADERS, accept_http_10=True,
                                        allow_requests_without_proxy_protocol=True))


SMUGGLED = [("X-Real-IP", "6.6.6.6"), ("x-real-ip", "7.7.7.7"), ("X-CLIENT-IP", "8.8.8.8"),
            ("x-client-port", "1"), ("X-Client-Port", "2")]


def test_forward_headers_are_set_once_to_the_client_replacing_client_values(fwd, echo):
    # configured as "X-Real-IP" / "X-Client-Port": names are case-insensitive, and every client line
    # of any case is removed before the one value is set
    ex = exchange(fwd, echo, proxy=pp.v1("203.0.113.7", sport=40007), headers=SMUGGLED)
    assert ex.upstream_values("x-real-ip") == ["203.0.113.7"]
    assert ex.upstream_values("x-client-ip") == ["203.0.113.7"]
    assert ex.upstream_values("x-client-port") == ["40007"]


def test_forward_client_can_never_smuggle_its_own_values_when_client_unknown(fwd, echo):
    ex = exchange(fwd, echo, proxy=pp.v1("10.0.0.1"), headers=xff("nonsense") + SMUGGLED)
    assert ex.status == 200
    assert ex.upstream_values("x-real-ip") == []
    assert ex.upstream_values("x-client-ip") == []
    assert ex.upstream_values("x-client-port") == []


def test_forward_port_header_from_an_entry_port(fwd, echo):
    ex = exchange(fwd, echo, proxy=pp.v1("10.0.0.1"), headers=xff("[2001:db8::5]:5555"))
    assert ex.upstream_values("x-real-ip") == ["2001:db8::5"]
    assert ex.upstream_values("x-client-port") == ["5555"]


def test_forward_port_header_removed_when_client_port_unknown(fwd, echo):
    ex = exchange(fwd, echo, proxy=pp.v1("10.0.0.1"), headers=xff("203.0.113.5") + SMUGGLED)
    assert ex.upstream_values("x-real-ip") == ["203.0.113.5"]
    assert ex.upstream_values("x-client-port") == []


def test_forward_headers_over_http2(fwd, echo):
    ex = exchange_h2(fwd, echo, headers=[("x-real-ip", "6.6.6.6"), ("x-client-port", "1")],
                     haproxy_protocol=True, source="127.0.0.7")
    assert ex.response.version == "HTTP/2"
    assert ex.upstream_values("x-real-ip") == ["127.0.0.7"]
    assert ex.upstream_values("x-client-ip") == ["127.0.0.7"]
    assert len(ex.upstream_values("x-client-port")) == 1 and ex.upstream_values("x-client-port") != ["1"]


def test_forward_headers_over_http10(fwd, echo):
    ex = exchange(fwd, echo, proxy=pp.v2("203.0.113.10", sport=40010), version="HTTP/1.0",
                  headers=[("x-real-ip", "6.6.6.6")])
    assert ex.status == 200
    assert ex.upstream_values("x-real-ip") == ["203.0.113.10"]
    assert ex.upstream_values("x-client-port") == ["40010"]


# -- x_forwarded_for: keep ---------------------------------------------------------------------------

@pytest.mark.parametrize("use_remote_address", [True, False], ids=["envoy-appends", "envoy-leaves"])
def test_x_forwarded_for_keep_leaves_it_as_it_came(envoy_factory, echo, wasm, use_remote_address):
    env = envoy_factory(E.EnvoyOptions(configuration={"client_ip": {"trusted_proxies": TRUSTED},
                                                      "forward": {"x_forwarded_for": "keep"}},
                                       use_remote_address=use_remote_address))
    ex = exchange(env, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, 10.0.0.2"))
    expected = ["198.51.100.1", "10.0.0.2"] + (["10.0.0.1"] if use_remote_address else [])
    assert ex.xff_entries() == expected
    assert len(ex.upstream_values("x-forwarded-for")) == 1
    assert ex.upstream_values("x-real-ip") == ["198.51.100.1"]


# -- x_forwarded_for: append -------------------------------------------------------------------------

APPEND = {"forward": {"x_forwarded_for": "append"}}


@pytest.fixture(scope="module")
def append_no_ura(envoy_factory, wasm):
    """A sidecar-like HCM (use_remote_address: false) never appends the downstream itself."""
    return envoy_factory(E.EnvoyOptions(configuration=APPEND, use_remote_address=False))


@pytest.mark.parametrize("proxy,headers,expected", [
    (pp.v1("203.0.113.7"), xff("198.51.100.1"), ["198.51.100.1", "203.0.113.7"]),
    (pp.v1("203.0.113.7"), xff("198.51.100.1, 203.0.113.7"), ["198.51.100.1", "203.0.113.7"]),
    (pp.v1("203.0.113.7"), [], ["203.0.113.7"]),
    (pp.v2("::ffff:203.0.113.8"), xff("198.51.100.1"), ["198.51.100.1", "203.0.113.8"]),
    (pp.v2("2001:db8::7"), xff("198.51.100.1"), ["198.51.100.1", "2001:db8::7"]),
], ids=["appended", "already-last", "no-header", "mapped-as-ipv4", "ipv6"])
def test_x_forwarded_for_append_adds_downstream_unless_already_last(append_no_ura, echo, proxy, headers,
                                                                     expected):
    ex = exchange(append_no_ura, echo, proxy=proxy, headers=headers)
    assert ex.xff_entries() == expected
    assert len(ex.upstream_values("x-forwarded-for")) == 1


def test_x_forwarded_for_append_does_not_double_what_envoy_appended(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration=APPEND, use_remote_address=True))
    ex = exchange(env, echo, proxy=pp.v1("203.0.113.7"), headers=xff("198.51.100.1"))
    assert ex.xff_entries() == ["198.51.100.1", "203.0.113.7"]


# -- x_forwarded_for: replace ------------------------------------------------------------------------

REPLACE = {"client_ip": {"trusted_proxies": TRUSTED}, "forward": {"x_forwarded_for": "replace"}}


@pytest.fixture(scope="module")
def replace(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=REPLACE))


def test_x_forwarded_for_replace_sets_the_client_alone(replace, echo):
    ex = exchange(replace, echo, proxy=pp.v1("10.0.0.1"), headers=xff("192.0.2.9, 198.51.100.1:81, 10.0.0.2"))
    assert ex.upstream_values("x-forwarded-for") == ["198.51.100.1"]


def test_x_forwarded_for_replace_with_untrusted_downstream(replace, echo):
    ex = exchange(replace, echo, proxy=pp.v1("203.0.113.7"), headers=xff("198.51.100.1"))
    assert ex.upstream_values("x-forwarded-for") == ["203.0.113.7"]


def test_x_forwarded_for_replace_removes_it_when_client_unknown(replace, echo):
    ex = exchange(replace, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, bogus, 10.0.0.2"))
    assert ex.status == 200
    assert ex.upstream_values("x-forwarded-for") == []


# -- defaults and an empty header list ---------------------------------------------------------------

@pytest.mark.parametrize("configuration", ["", "{}"], ids=["empty-string", "empty-object"])
def test_forward_defaults_set_x_real_ip_only(envoy_factory, echo, wasm, configuration):
    env = envoy_factory(E.EnvoyOptions(configuration=configuration))
    ex = exchange(env, echo, proxy=pp.v1("203.0.113.7"),
                  headers=[("x-real-ip", "6.6.6.6"), ("x-client-port", "1")] + xff("198.51.100.1"))
    assert ex.upstream_values("x-real-ip") == ["203.0.113.7"]
    assert ex.upstream_values("x-client-port") == ["1"]             # no port_header by default
    assert ex.xff_entries() == ["198.51.100.1", "203.0.113.7"]      # keep (Envoy appended)


def test_forward_empty_header_list_touches_no_header(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration={"forward": {"headers": []}}))
    ex = exchange(env, echo, proxy=pp.v1("203.0.113.7"), headers=[("x-real-ip", "6.6.6.6")])
    assert ex.upstream_values("x-real-ip") == ["6.6.6.6"]
    assert ex.log()["client_ip"] == "203.0.113.7"
