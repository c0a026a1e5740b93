"""docs/resolution.md "Entry" and "Chain": how the forwarding header is split into entries and how the
downstream address closes the chain. Observed through resolution with trusted proxies (every entry
the walk reads decides the client) and trusted hops (which count positions)."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

FORWARD = {"headers": ["x-real-ip"], "port_header": "x-client-port"}
TRUSTED = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "forward": FORWARD}
DS = pp.v1("10.0.0.1", sport=40000)  # a trusted downstream (the proxy in front of Envoy)


@pytest.fixture(scope="module")
def walk(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=TRUSTED))


def xff(*values):
    return [("X-Forwarded-For", v) for v in values]


def resolved(ex):
    """(client address or None, client port or None) as forwarded to the upstream."""
    assert ex.status == 200, ex.response
    ip = ex.upstream_values("x-real-ip")
    port = ex.upstream_values("x-client-port")
    assert len(ip) <= 1 and len(port) <= 1, (ip, port)
    return (ip[0] if ip else None, port[0] if port else None)


@pytest.mark.parametrize("value,client,port", [
    ("203.0.113.5", "203.0.113.5", None),
    ("203.0.113.5:1234", "203.0.113.5", "1234"),
    ("2001:db8::5", "2001:db8::5", None),
    ("[2001:db8::5]", "2001:db8::5", None),
    ("[2001:db8::5]:443", "2001:db8::5", "443"),
    ("2001:DB8:0::5", "2001:db8::5", None),
    ("fe80::1%eth0", "fe80::1", None),
    ("[fe80::1%eth0]:8080", "fe80::1", "8080"),
    ("::ffff:203.0.113.5", "203.0.113.5", None),
    ("[::ffff:203.0.113.5]:99", "203.0.113.5", "99"),
], ids=["ipv4", "ipv4-port", "ipv6-bare-not-split", "ipv6-brackets", "ipv6-brackets-port",
        "ipv6-rfc5952", "ipv6-zone-dropped", "ipv6-zone-brackets-port", "mapped", "mapped-brackets-port"])
def test_entry_forms_are_accepted(walk, echo, value, client, port):
    ex = exchange(walk, echo, proxy=DS, headers=xff(value))
    assert resolved(ex) == (client, port)
    assert ex.log()["client_ip"] == client


def test_entry_spaces_tabs_and_empty_elements_are_skipped(walk, echo):
    before = walk.settled_stats()
    ex = exchange(walk, echo, proxy=DS, headers=xff(" 198.51.100.1 ,\t203.0.113.5\t, , ,10.0.0.2 "))
    assert resolved(ex) == ("203.0.113.5", None)
    # Counters are flushed together: once `allowed` shows, an `invalid` count would too.
    assert E.counter_delta(walk, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


@pytest.mark.parametrize("value", ["unknown", "client.example.com", "1.2.3", "300.1.1.1",
                                   "[2001:db8::5", "2001:db8::5]", "_hidden", "1.2.3.4:port"])
def test_entry_anything_else_is_invalid(walk, echo, value):
    before = walk.settled_stats()
    ex = exchange(walk, echo, proxy=DS, headers=xff(value) + [("X-Real-IP", "198.51.100.99")])
    assert resolved(ex) == (None, None)  # unknown: no x-real-ip, not even the client's own
    assert ex.log()["client_ip"] is None
    assert E.counter_delta(walk, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}


@pytest.mark.parametrize("value", ["203.0.113.5\xff", "203.0.113.5, \xe9t\xe9"], ids=["suffix", "entry"])
def test_entry_with_non_utf8_bytes_is_invalid_and_the_filter_keeps_working(walk, echo, value):
    """HTTP/1 lets obs-text (0x80-0xff) through to the filter: an entry holding it is not an address."""
    before = walk.settled_stats()
    ex = exchange(walk, echo, proxy=DS, headers=xff(value) + [("X-Other", "\xff\xfe")])
    assert resolved(ex) == (None, None)
    ex = exchange(walk, echo, proxy=DS, headers=xff("\xe9t\xe9, 203.0.113.5"))  # unread: fine
    assert resolved(ex) == ("203.0.113.5", None)
    assert E.counter_delta(walk, before, {"client_ip.allowed": 2, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 2, "client_ip.invalid": 1}


def test_chain_is_all_xff_lines_in_wire_order(walk, echo):
    # Walk from the right: the rightmost untrusted entry of the last line is the client.
    ex = exchange(walk, echo, proxy=DS, headers=xff("203.0.113.5", "198.51.100.9, 10.0.0.3"))
    assert resolved(ex)[0] == "198.51.100.9"
    ex = exchange(walk, echo, proxy=DS, headers=xff("198.51.100.9", "203.0.113.5, 10.0.0.3"))
    assert resolved(ex)[0] == "203.0.113.5"


def test_chain_entries_left_of_the_client_are_never_parsed(walk, echo):
    """Garbage the walk never reaches is not parsed (no `client_ip.invalid`): ~2,000 unread
    entries to the left of the client."""
    before = walk.settled_stats()
    long_left = ", ".join(["garbage"] * 2000)
    ex = exchange(walk, echo, proxy=DS, headers=xff(long_left + ", 203.0.113.5, 10.0.0.2"))
    assert resolved(ex)[0] == "203.0.113.5"
    assert E.counter_delta(walk, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


# -- the downstream address closes the chain, once ----------------------------------------------

HOPS1 = {"client_ip": {"trusted_hops": 1}, "forward": FORWARD}


@pytest.fixture(scope="module")
def hops_envoy_appends(envoy_factory, wasm):
    """use_remote_address: true: Envoy itself appends the downstream address to XFF."""
    return envoy_factory(E.EnvoyOptions(configuration=HOPS1, use_remote_address=True))


@pytest.fixture(scope="module")
def hops_no_append(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=HOPS1, use_remote_address=False))


@pytest.mark.parametrize("proxy", [pp.v1("10.0.0.1"), pp.v2("::ffff:10.0.0.1")], ids=["ipv4", "mapped"])
def test_chain_does_not_repeat_downstream_envoy_already_appended(hops_envoy_appends, echo, proxy):
    ex = exchange(hops_envoy_appends, echo, proxy=proxy, headers=xff("198.51.100.1"))
    # Envoy's XFF ends with the downstream: chain [198.51.100.1, 10.0.0.1], one hop left = client.
    assert ex.xff_entries()[-1] in ("10.0.0.1", "::ffff:10.0.0.1")
    assert resolved(ex)[0] == "198.51.100.1"


def test_chain_appends_downstream_when_envoy_did_not(hops_no_append, echo):
    ex = exchange(hops_no_append, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1"))
    assert ex.xff_entries() == ["198.51.100.1"]  # Envoy left XFF alone
    assert resolved(ex)[0] == "198.51.100.1"


def test_chain_does_not_repeat_downstream_already_last_entry(hops_no_append, echo):
    ex = exchange(hops_no_append, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, 10.0.0.1"))
    assert resolved(ex)[0] == "198.51.100.1"


def test_chain_without_header_is_the_downstream_alone(hops_no_append, echo):
    ex = exchange(hops_no_append, echo, proxy=pp.v1("10.0.0.1", sport=40100))
    assert resolved(ex) == ("10.0.0.1", "40100")  # too short for one hop: the downstream


# -- any other header: one value, then the downstream --------------------------------------------

CF = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "header": "CF-Connecting-IP"}, "forward": FORWARD}


@pytest.fixture(scope="module")
def cf(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=CF))


def test_chain_other_header_single_value_then_downstream(cf, echo):
    ex = exchange(cf, echo, proxy=DS, headers=[("cf-connecting-ip", "203.0.113.5:7777")]
                  + xff("198.51.100.1"))  # XFF is not the configured header: ignored
    assert resolved(ex) == ("203.0.113.5", "7777")


def test_chain_other_header_from_untrusted_downstream_is_ignored(cf, echo):
    ex = exchange(cf, echo, proxy=pp.v1("203.0.113.7", sport=40007),
                  headers=[("CF-Connecting-IP", "198.51.100.1")])
    assert resolved(ex) == ("203.0.113.7", "40007")


@pytest.mark.parametrize("headers", [
    [("cf-connecting-ip", "203.0.113.5"), ("CF-Connecting-IP", "203.0.113.6")],
    [("cf-connecting-ip", "203.0.113.5, 203.0.113.6")],
], ids=["two-lines", "two-values"])
def test_chain_other_header_with_more_than_one_value_is_invalid(cf, echo, headers):
    before = cf.settled_stats()
    ex = exchange(cf, echo, proxy=DS, headers=headers)
    assert resolved(ex) == (None, None)
    assert E.counter_delta(cf, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}


# -- the header read is also a header written ------------------------------------------------------

XRIP = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "header": "x-real-ip"},
        "forward": {"headers": ["x-real-ip"], "port_header": "x-client-port"}}


@pytest.fixture(scope="module")
def xrip(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=XRIP))


def test_chain_from_x_real_ip_set_by_a_trusted_proxy_is_read_before_it_is_rewritten(xrip, echo):
    ex = exchange(xrip, echo, proxy=DS, headers=[("X-Real-IP", "203.0.113.5")])
    assert resolved(ex) == ("203.0.113.5", None)
    ex = exchange(xrip, echo, proxy=pp.v1("203.0.113.7", sport=40070), headers=[("X-Real-IP", "10.0.0.5")])
    assert resolved(ex) == ("203.0.113.7", "40070")
