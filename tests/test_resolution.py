"""docs/resolution.md "Resolving the client address": default (no header believed), trusted_proxies
(walk from the right), trusted_hops (count), on_invalid."""
import pytest

from harness import envoy as E
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

FORWARD = {"headers": ["x-real-ip"], "port_header": "x-client-port"}


def xff(*values):
    return [("X-Forwarded-For", v) for v in values]


def resolved(ex):
    assert ex.status == 200, ex.response
    ip, port = ex.upstream_values("x-real-ip"), ex.upstream_values("x-client-port")
    assert len(ip) <= 1 and len(port) <= 1, (ip, port)
    return (ip[0] if ip else None, port[0] if port else None)


# -- default ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration={"forward": FORWARD}))


def test_default_resolution_believes_no_header(default, echo):
    ex = exchange(default, echo, proxy=pp.v1("10.0.0.1", sport=40000),
                  headers=xff("198.51.100.1") + [("X-Real-IP", "198.51.100.2"),
                                                 ("True-Client-IP", "198.51.100.3")])
    assert resolved(ex) == ("10.0.0.1", "40000")


# -- trusted_proxies -------------------------------------------------------------------------------

TRUSTED = {"client_ip": {"trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.1"]},
           "forward": FORWARD}


@pytest.fixture(scope="module")
def trusted(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=TRUSTED))


def test_trusted_proxies_walk_stops_at_first_untrusted(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, 203.0.113.9, 10.0.0.2"))
    assert resolved(ex) == ("203.0.113.9", None)


def test_trusted_proxies_untrusted_downstream_ignores_header(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("203.0.113.7", sport=40007), headers=xff("10.0.0.2, 10.0.0.3"))
    assert resolved(ex) == ("203.0.113.7", "40007")


def test_trusted_proxies_all_trusted_gives_leftmost(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1"), headers=xff("10.0.0.3:3333, 10.0.0.2"))
    assert resolved(ex) == ("10.0.0.3", "3333")


def test_trusted_proxies_trusted_downstream_without_header_is_the_client(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1", sport=40001))
    assert resolved(ex) == ("10.0.0.1", "40001")


def test_trusted_proxies_single_address_entry(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("192.0.2.1"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "198.51.100.1"
    ex = exchange(trusted, echo, proxy=pp.v1("192.0.2.2"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "192.0.2.2"


def test_trusted_proxies_ipv6_cidr(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v2("2001:db8:ffff::1"), headers=xff("2001:db8::5, 203.0.113.5"))
    assert resolved(ex)[0] == "203.0.113.5"
    ex = exchange(trusted, echo, proxy=pp.v2("2001:db8:fffe::1"), headers=xff("203.0.113.5"))
    assert resolved(ex)[0] == "2001:db8:fffe::1"


def test_trusted_proxies_mapped_downstream_matches_ipv4_cidr(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v2("::ffff:10.0.0.1"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "198.51.100.1"


def test_trusted_proxies_mapped_entry_matches_ipv4_cidr(trusted, echo):
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, ::ffff:10.0.0.2"))
    assert resolved(ex)[0] == "198.51.100.1"


def test_on_invalid_unknown_where_the_walk_reads_an_invalid_entry(trusted, echo):
    before = trusted.settled_stats()
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1"),
                  headers=xff("198.51.100.1, garbage, 10.0.0.2") + [("x-client-port", "1")])
    assert resolved(ex) == (None, None)
    assert ex.log()["client_ip"] is None
    assert E.counter_delta(trusted, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}


def test_on_invalid_entry_the_walk_does_not_read_is_not_counted(trusted, echo):
    before = trusted.settled_stats()
    ex = exchange(trusted, echo, proxy=pp.v1("10.0.0.1"), headers=xff("garbage, 203.0.113.9, 10.0.0.2"))
    assert resolved(ex)[0] == "203.0.113.9"
    assert E.counter_delta(trusted, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


# -- configuration forms: mapped CIDR, host bits -----------------------------------------------------

FORMS = {"client_ip": {"trusted_proxies": ["::ffff:10.0.0.0/104", "172.16.1.2/12"]}, "forward": FORWARD}


@pytest.fixture(scope="module")
def forms(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=FORMS))


def test_trusted_proxies_mapped_cidr_is_the_ipv4_cidr(forms, echo):
    ex = exchange(forms, echo, proxy=pp.v1("10.9.9.9"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "198.51.100.1"
    ex = exchange(forms, echo, proxy=pp.v1("11.0.0.1"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "11.0.0.1"


def test_cidr_with_host_bits_is_accepted_as_its_network_with_a_warning(forms, echo):
    ex = exchange(forms, echo, proxy=pp.v1("172.20.0.1"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "198.51.100.1"
    ex = exchange(forms, echo, proxy=pp.v1("172.32.0.1"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "172.32.0.1"
    warnings = [l for l in forms.filter_lines("warning") if "172.16.1.2/12" in l]
    assert warnings, "no filter warning naming 172.16.1.2/12 in the Envoy log"


def test_host_bits_warnings_are_listed_up_to_ten_then_counted(envoy_factory, wasm, echo):
    # 2,000 sloppy CIDRs must not make 2,000 log lines per configure.
    sloppy = [f"10.{i // 250}.{i % 250}.1/24" for i in range(2000)]
    env = envoy_factory(E.EnvoyOptions(configuration={"client_ip": {"trusted_proxies": sloppy},
                                                      "forward": FORWARD}))
    ex = exchange(env, echo, proxy=pp.v1("10.3.7.9"), headers=xff("198.51.100.1"))
    assert resolved(ex)[0] == "198.51.100.1"  # 10.3.7.1/24 is used as 10.3.7.0/24
    summary = "1990 more CIDRs have host bits set (not listed)"
    # the warnings reach the log file a little after the listener serves
    def complete():
        warned = [l for l in env.filter_lines("warning") if "host bits" in l]
        count = sum(summary in l for l in warned)
        return count and len(warned) == 11 * count
    try:
        procs.wait_until(complete, 5, what="each configure's ten warnings and summary")
    except TimeoutError:
        pass  # the assertions below say what is missing
    lines = [l for l in env.filter_lines("warning") if "host bits" in l]
    summaries = [l for l in lines if summary in l]
    assert summaries, "\n".join(lines[-5:])
    # Each configure (Envoy runs it once per VM) lists 10 and counts the rest.
    assert len(lines) == 11 * len(summaries), len(lines)
    assert any("client_ip.trusted_proxies[9]: \"10.0.9.1/24\"" in l for l in lines)
    assert not any("trusted_proxies[10]:" in l for l in lines)


# -- trusted_hops ------------------------------------------------------------------------------------

HOPS = {"client_ip": {"trusted_hops": 2}, "forward": FORWARD}


@pytest.fixture(scope="module")
def hops(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=HOPS))


def test_trusted_hops_picks_the_entry_n_places_left_of_downstream(hops, echo):
    # chain: 198.51.100.1, 203.0.113.9, 10.0.0.2, [downstream 10.0.0.1]
    ex = exchange(hops, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, 203.0.113.9:9999", "10.0.0.2"))
    assert resolved(ex) == ("203.0.113.9", "9999")


def test_trusted_hops_does_not_look_at_trust(hops, echo):
    ex = exchange(hops, echo, proxy=pp.v1("203.0.113.7"), headers=xff("198.51.100.1, 198.51.100.2"))
    assert resolved(ex)[0] == "198.51.100.1"


@pytest.mark.parametrize("headers", [xff("10.0.0.2"), []], ids=["one-entry", "no-header"])
def test_trusted_hops_chain_too_short_gives_downstream(hops, echo, headers):
    ex = exchange(hops, echo, proxy=pp.v1("10.0.0.1", sport=40011), headers=headers)
    assert resolved(ex) == ("10.0.0.1", "40011")


def test_trusted_hops_invalid_entry_at_the_hop_is_unknown(hops, echo):
    before = hops.settled_stats()
    ex = exchange(hops, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1, unknown, 10.0.0.2"))
    assert resolved(ex) == (None, None)
    assert E.counter_delta(hops, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}


def test_trusted_hops_invalid_entry_left_of_the_hop_is_not_read(hops, echo):
    before = hops.settled_stats()
    ex = exchange(hops, echo, proxy=pp.v1("10.0.0.1"), headers=xff("garbage, 203.0.113.9, 10.0.0.2"))
    assert resolved(ex)[0] == "203.0.113.9"
    assert E.counter_delta(hops, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


# -- on_invalid: downstream --------------------------------------------------------------------------

ON_INVALID_DS = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "on_invalid": "downstream"},
                 "forward": FORWARD}


@pytest.fixture(scope="module")
def on_invalid_ds(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=ON_INVALID_DS))


def test_on_invalid_downstream_uses_the_downstream_address(on_invalid_ds, echo):
    before = on_invalid_ds.settled_stats()
    ex = exchange(on_invalid_ds, echo, proxy=pp.v1("10.0.0.1", sport=40012),
                  headers=xff("198.51.100.1, not-an-ip, 10.0.0.2"))
    assert resolved(ex) == ("10.0.0.1", "40012")
    assert ex.log()["client_ip"] == "10.0.0.1"
    assert E.counter_delta(on_invalid_ds, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}
