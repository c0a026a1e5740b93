"""Spec §9, the connection-level mode: the filter as an Envoy NETWORK filter before tcp_proxy, in
a real Envoy 1.40, behind PROXY protocol (raw v1/v2 headers and a real HAProxy with send-proxy-v2), on a
TLS passthrough listener that routes by SNI (tls_inspector) to upstreams terminating TLS themselves.

Every upstream counts the connections it accepts: "refused" means the client's connection was closed
AND the upstream never accepted one. The listeners are the shipped manifests' patch values
(envoyfilter/gateway-tls-passthrough.yaml, envoyfilter/sidecar-inbound-tcp.yaml,
istio-examples/wasmplugin-network.yaml), see tests/harness/network.py.

Both builds (``both_builds``): the .wasm in ``envoy.filters.network.wasm`` and the dynamic module in
``envoy.filters.network.dynamic_modules`` with the same configuration (NetworkListener.build); the
mismatch tests and the WasmPlugin manifest are the wasm build's own mechanics.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from harness import envoy as E
from harness import haproxy as H
from harness import manifests
from harness import network as N
from harness import procs
from harness import proxyproto as pp

pytestmark = pytest.mark.both_builds

ALPHA, BETA, GAMMA = "alpha.example.com", "beta.example.com", "gamma.example.com"

# The filter configuration of the gateway tests (the manifest's own one runs in its own test).
CONFIG = {
    "filter_type": "network",
    "access": {
        "allow": ["203.0.113.0/24", "2001:db8::/32"],
        "deny": ["203.0.113.66"],
        "rules": [
            {"name": "alpha", "hosts": [ALPHA], "allow": ["203.0.113.0/24", "2001:db8::/32", "127.0.0.1"],
             "deny": ["203.0.113.66"]},
            {"name": "beta", "hosts": [BETA], "allow": ["203.0.113.10", "2001:db8::10"]},
        ],
    },
}
DRY_RUN = {"filter_type": "network", "access": {"mode": "dry_run", "allow": ["203.0.113.0/24"]}}

HEADERS = {"v1": pp.v1, "v2": pp.v2}


def header(version: str, src: str, port: int) -> bytes:
    return HEADERS[version](src, sport=port)


def key(src: str, port: int) -> str:
    """The downstream address as Envoy prints it (mapped addresses stay IPv6 there)."""
    return f"[{src}]:{port}" if ":" in src else f"{src}:{port}"


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("network_mode")


@pytest.fixture(scope="module")
def certs(workdir):
    return N.Certificates(workdir / "certs", [ALPHA, BETA, GAMMA])


@pytest.fixture(scope="module")
def upstreams(certs):
    ups = {
        "alpha": N.Upstream("alpha", tls=certs.pair(ALPHA)).start(),
        "beta": N.Upstream("beta", tls=certs.pair(BETA)).start(),
        # gamma's cluster carries the manifest's upstream PROXY protocol socket: gamma reads the
        # PROXY header, then terminates TLS.
        "gamma": N.Upstream("gamma", tls=certs.pair(GAMMA), expect_proxy=True).start(),
        "plain": N.Upstream("plain").start(),
    }
    yield ups
    for u in ups.values():
        u.stop()


@pytest.fixture(scope="module")
def gateway_frags():
    return manifests.load(N.GATEWAY_PASSTHROUGH)


def clusters(frags, ups) -> dict:
    return {"alpha": (ups["alpha"].port, None), "beta": (ups["beta"].port, None),
            "gamma": (ups["gamma"].port, N.cluster_merge(frags)), "plain": (ups["plain"].port, None)}


PASSTHROUGH_CHAINS = [N.Chain("alpha", [ALPHA]), N.Chain("beta", [BETA]), N.Chain("gamma", [GAMMA]),
                      N.Chain("plain")]


@pytest.fixture(scope="module")
def start(envoy_bin, wasm, build, workdir):
    started = []

    def start(listeners, cluster_map, name=None):
        listeners = [dataclasses.replace(s, build=build) for s in listeners]
        env = N.NetworkEnvoy(listeners, cluster_map, workdir=str(workdir),
                             name=f"{build}-{name or f'net{len(started)}'}")
        started.append(env)
        return env.start(timeout=60)
    yield start
    for env in started:
        env.stop()


@pytest.fixture(scope="module")
def gateway(start, gateway_frags, upstreams):
    spec = N.NetworkListener(gateway_frags, CONFIG, chains=PASSTHROUGH_CHAINS)
    return start([spec], clusters(gateway_frags, upstreams), name="gateway")


@pytest.fixture(scope="module")
def dry_run(start, gateway_frags, upstreams):
    spec = N.NetworkListener(gateway_frags, DRY_RUN, chains=PASSTHROUGH_CHAINS)
    return start([spec], clusters(gateway_frags, upstreams), name="dry_run")


def exchange_counted(env, upstream: N.Upstream, fn):
    """Runs the client exchange ``fn`` with ``env``; returns (outcome, connections the upstream
    accepted), counted once Envoy has closed the exchange's connections and the upstream has
    accepted every one Envoy opened to it (N.settled_count)."""
    opened, accepted = N.upstream_connections(env, upstream.name), upstream.accepted
    outcome = fn()
    return outcome, N.settled_count(env, upstream, opened, accepted)


# -- allowed and refused: v4, v6, mapped; PROXY v1 and v2 --------------------------------------------

ALLOWED = [("v4", "203.0.113.7", "203.0.113.7"), ("v6", "2001:db8::7", "2001:db8::7"),
           ("mapped", "::ffff:203.0.113.8", "203.0.113.8")]
REFUSED = [("v4", "198.51.100.9", "198.51.100.9"), ("v6", "2001:db9::9", "2001:db9::9"),
           ("mapped-denied", "::ffff:203.0.113.66", "203.0.113.66")]


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("kind,src,text", ALLOWED, ids=[a[0] for a in ALLOWED])
def test_allowed_connection_reaches_the_upstream(gateway, upstreams, version, kind, src, text):
    port = N.unique_port()
    out, accepted = exchange_counted(gateway,
        upstreams["plain"], lambda: N.tcp_exchange(gateway.port, header(version, src, port)))
    assert out.reply == "plain proxy=- got=ping", out
    assert accepted == 1
    entry = gateway.log_entry(key(src, port))
    # wasm.client_ip_decision is written for refusals only: absent means allowed.
    assert (entry["client_ip"], entry["decision"], entry["rule"]) == (text, None, None)
    assert entry["upstream_host"] == f"127.0.0.1:{upstreams['plain'].port}"


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("kind,src,text", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_connection_is_closed_before_the_upstream_sees_a_connection(gateway, upstreams, version,
                                                                            kind, src, text):
    port = N.unique_port()
    out, accepted = exchange_counted(gateway,
        upstreams["plain"], lambda: N.tcp_exchange(gateway.port, header(version, src, port)))
    assert not out.served, out
    assert accepted == 0, "the upstream accepted a connection for a refused client"
    entry = gateway.log_entry(key(src, port))
    assert (entry["client_ip"], entry["decision"]) == (text, "deny")
    assert entry["upstream_host"] is None and entry["bytes_received"] == 0


def test_refused_tls_connection_never_reaches_the_tls_upstream(gateway, upstreams, certs):
    port = N.unique_port()
    out, accepted = exchange_counted(gateway, upstreams["alpha"], lambda: N.tls_exchange(
        gateway.port, ALPHA, certs.client_context(), pp.v2("203.0.113.66", sport=port)))
    assert not out.served and out.error, out
    assert accepted == 0
    assert gateway.log_entry(key("203.0.113.66", port))["decision"] == "deny"


# -- TLS passthrough and SNI rules ----------------------------------------------------------------

def test_tls_passthrough_routes_by_sni_to_the_app_that_terminates_tls(gateway, upstreams, certs):
    for name, sni in (("alpha", ALPHA), ("beta", BETA)):
        port = N.unique_port()
        src = "203.0.113.10"
        out, accepted = exchange_counted(gateway, upstreams[name], lambda: N.tls_exchange(
            gateway.port, sni, certs.client_context(), pp.v2(src, sport=port)))
        assert out.reply == f"{name} proxy=- got=ping", out
        assert accepted == 1
        entry = gateway.log_entry(key(src, port))
        assert (entry["sni"], entry["decision"], entry["rule"]) == (sni, None, name)


def test_rule_hosts_match_the_tls_sni(gateway, upstreams, certs):
    # 203.0.113.7 passes the top level and the alpha rule, but the beta rule allows .10 only.
    port = N.unique_port()
    out, accepted = exchange_counted(gateway, upstreams["beta"], lambda: N.tls_exchange(
        gateway.port, BETA, certs.client_context(), pp.v2("203.0.113.7", sport=port)))
    assert not out.served and accepted == 0, out
    entry = gateway.log_entry(key("203.0.113.7", port))
    assert (entry["sni"], entry["decision"], entry["rule"]) == (BETA, "deny", "beta")
    port = N.unique_port()
    out, accepted = exchange_counted(gateway, upstreams["alpha"], lambda: N.tls_exchange(
        gateway.port, ALPHA, certs.client_context(), pp.v2("203.0.113.7", sport=port)))
    assert out.reply == "alpha proxy=- got=ping" and accepted == 1, out
    assert gateway.log_entry(key("203.0.113.7", port))["rule"] == "alpha"


def test_a_connection_without_sni_is_decided_by_the_top_level(gateway, upstreams):
    # 127.0.0.1 is in the alpha rule's allow list only: without SNI the top level refuses it.
    port = N.unique_port()
    out, accepted = exchange_counted(gateway, upstreams["plain"], lambda: N.tcp_exchange(
        gateway.port, pp.v2("127.0.0.1", sport=port)))
    assert not out.served and accepted == 0, out
    entry = gateway.log_entry(key("127.0.0.1", port))
    assert (entry["sni"], entry["decision"], entry["rule"]) == (None, "deny", None)


@pytest.mark.parametrize("sni,upstream,allowed", [(ALPHA, "alpha", True), (BETA, "beta", False)])
def test_openssl_s_client_through_haproxy_send_proxy_v2(gateway, upstreams, certs, workdir, sni, upstream,
                                                        allowed):
    """A real TLS client behind a real L4 balancer: HAProxy (mode tcp, send-proxy-v2) tells Envoy the
    client is 127.0.0.1, which the alpha rule allows and the beta rule does not."""
    with H.HAProxy(backend_port=gateway.port, mode="tcp", send_proxy="v2", workdir=str(workdir),
                   name=f"haproxy-{upstream}") as hap:
        out, accepted = exchange_counted(gateway, upstreams[upstream], lambda: N.s_client(hap.port, sni, certs.ca))
    if allowed:
        assert out.reply and f"{upstream} proxy=- got=ping" in out.reply, out
        assert accepted == 1
    else:
        assert not (out.reply and "got=" in out.reply), out
        assert accepted == 0


# -- passing the address on: the manifest's upstream PROXY protocol socket --------------------------

@pytest.mark.parametrize("src", ["203.0.113.9", "2001:db8::9"])
def test_upstream_proxy_protocol_tells_the_tls_app_the_client_address(gateway, upstreams, certs, src):
    port = N.unique_port()
    out, accepted = exchange_counted(gateway, upstreams["gamma"], lambda: N.tls_exchange(
        gateway.port, GAMMA, certs.client_context(), pp.v1(src, sport=port)))
    assert out.reply == f"gamma proxy={key(src, port)} got=ping", out
    assert accepted == 1


# -- dry run, counters, access log -----------------------------------------------------------------

def test_dry_run_lets_a_refused_connection_through_and_counts_it(dry_run, upstreams):
    before = dry_run.settled_stats()
    port = N.unique_port()
    out, accepted = exchange_counted(dry_run, upstreams["plain"], lambda: N.tcp_exchange(
        dry_run.port, pp.v2("198.51.100.9", sport=port)))
    assert out.reply == "plain proxy=- got=ping" and accepted == 1, out
    entry = dry_run.log_entry(key("198.51.100.9", port))
    assert (entry["client_ip"], entry["decision"]) == ("198.51.100.9", "dry_run_deny")
    assert E.counter_delta(dry_run, before, {"client_ip.dry_run_denied": 1}) == {"client_ip.dry_run_denied": 1}


def test_counters_count_each_connection_once(gateway, certs):
    before = gateway.settled_stats()
    N.tcp_exchange(gateway.port, pp.v2("203.0.113.7", sport=N.unique_port()))      # allowed, top level
    N.tcp_exchange(gateway.port, pp.v1("198.51.100.9", sport=N.unique_port()))     # denied, top level
    N.tls_exchange(gateway.port, BETA, certs.client_context(), pp.v2("203.0.113.7", sport=N.unique_port()))
    N.tls_exchange(gateway.port, ALPHA, certs.client_context(), pp.v2("203.0.113.7", sport=N.unique_port()))
    expected = {"client_ip.allowed": 2, "client_ip.denied": 2, "client_ip.rule.beta.denied": 1,
                "client_ip.rule.alpha.allowed": 1}
    assert E.counter_delta(gateway, before, expected) == expected


def test_tcp_access_log_carries_the_filter_state(gateway):
    """%FILTER_STATE(wasm.client_ip…)% on tcp_proxy's access log: the client as address text (a mapped
    PROXY source logged as its IPv4 address), the decision, the deciding rule."""
    port = N.unique_port()
    N.tcp_exchange(gateway.port, pp.v2("::ffff:203.0.113.44", sport=port))
    entry = gateway.log_entry(key("::ffff:203.0.113.44", port))
    assert entry["client_ip"] == "203.0.113.44" and entry["decision"] is None and entry["rule"] is None
    assert entry["downstream_direct"].startswith("127.0.0.1:")


# -- configuration errors -------------------------------------------------------------------------

BAD = [
    ("forward", {"forward": {"headers": ["x-real-ip"]}}, 'forward: {"headers":["x-real-ip"]} is not available'),
    ("deny_status", {"access": {"deny_status": 403}}, "access.deny_status: 403 is not available"),
    ("deny_body", {"access": {"deny_body": "no"}}, 'access.deny_body: "no" is not available'),
    ("path_prefixes", {"access": {"rules": [{"name": "a", "path_prefixes": ["/x"]}]}},
     'access.rules[0].path_prefixes: ["/x"] is not available'),
    ("trusted_proxies", {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}},
     "client_ip.trusted_proxies: the list is not available"),
    ("trusted_hops", {"client_ip": {"trusted_hops": 1}}, "client_ip.trusted_hops: 1 is not available"),
    ("header", {"client_ip": {"header": "x-real-ip"}}, 'client_ip.header: "x-real-ip" is not available'),
    ("filter_type", {"filter_type": "tcp"}, 'filter_type: "tcp" is not one of "http", "network"'),
]


@pytest.mark.parametrize("name,extra,needle", BAD, ids=[b[0] for b in BAD])
def test_http_only_keys_are_configuration_errors_in_network_mode(envoy_bin, wasm, build, gateway_frags,
                                                                 workdir, name, extra, needle):
    config = dict({"filter_type": "network"}, **extra)
    env = N.NetworkEnvoy([N.NetworkListener(gateway_frags, config, build=build)], {"plain": (9, None)},
                         workdir=str(workdir), name=f"{build}-bad-{name}")
    with pytest.raises(E.EnvoyDied):
        env.start(timeout=60)
    errors = [ln for ln in env.log_text().splitlines() if "invalid configuration:" in ln]
    assert len(errors) == 1 and needle in errors[0], errors
    if name != "filter_type":
        assert 'with filter_type "network"' in errors[0]


# -- a filter_type mismatch never lets traffic through, and never traps -------------------------------

@pytest.fixture(scope="module")
def echo_http(echo):
    return echo


@pytest.fixture(scope="module")
def mismatch(start, gateway_frags, upstreams, echo_http):
    """One Envoy, one worker, one VM (every filter has the manifest's vm_id): a good network filter, an
    HTTP configuration loaded as a network filter, a network configuration loaded as an HTTP filter,
    and a good HTTP filter. A trap in either mismatched filter would kill the VM the good ones share."""
    net = {"filter_type": "network", "access": {"allow": ["203.0.113.0/24"]}}
    http = {"access": {"allow": ["203.0.113.0/24"]}}
    specs = [
        N.NetworkListener(gateway_frags, net, name="good_network"),
        N.NetworkListener(gateway_frags, http, name="http_config_as_network"),
        N.NetworkListener(gateway_frags, net, name="network_config_as_http", http_filter=True,
                          chains=[N.Chain("echo")]),
        N.NetworkListener(gateway_frags, http, name="good_http", http_filter=True, chains=[N.Chain("echo")]),
    ]
    return start(specs, {"plain": (upstreams["plain"].port, None), "echo": (echo_http.port, None)},
                 name="mismatch")


def mismatch_lines(env, configured: str) -> list:
    """The mismatch error lines for ``filter_type: configured`` (waits for the log to be written)."""
    needle = f'filter_type: "{configured}" does not match how Envoy loaded this module'
    env.wait_log(needle)
    return [ln for ln in env.log_text().splitlines() if needle in ln]


@pytest.mark.only_builds("wasm")
def test_http_configuration_loaded_as_a_network_filter_closes_every_connection(mismatch, upstreams, echo_http):
    good, as_network, _, good_http = mismatch.ports
    for _ in range(3):
        out, accepted = exchange_counted(mismatch, upstreams["plain"], lambda: N.tcp_exchange(
            as_network, pp.v2("203.0.113.7", sport=N.unique_port())))
        assert not out.served and accepted == 0, out
    lines = mismatch_lines(mismatch, "http")
    assert len(lines) == 1 and "[error]" in lines[0] and "envoy.filters.network.wasm" in lines[0], lines
    assert mismatch.trapped() == []
    # The shared VM is alive: the good filters on the same worker still decide.
    assert N.tcp_exchange(good, pp.v2("203.0.113.7", sport=N.unique_port())).reply == "plain proxy=- got=ping"
    assert not N.tcp_exchange(good, pp.v2("198.51.100.1", sport=N.unique_port())).served
    assert pp.request(good_http, proxy=pp.v2("203.0.113.7", sport=N.unique_port())).status == 200
    assert pp.request(good_http, proxy=pp.v2("198.51.100.1", sport=N.unique_port())).status == 403


@pytest.mark.only_builds("wasm")
def test_network_configuration_loaded_as_an_http_filter_refuses_every_request(mismatch, upstreams, echo_http):
    good, _, as_http, good_http = mismatch.ports
    before = echo_http.count
    for _ in range(3):
        resp = pp.request(as_http, proxy=pp.v2("203.0.113.7", sport=N.unique_port()))
        assert resp.status == 500, resp
        assert b"configured for a network filter (filter_type)" in resp.body
    assert echo_http.count == before, "a request reached the upstream through a mismatched filter"
    lines = mismatch_lines(mismatch, "network")
    assert len(lines) == 1 and "[error]" in lines[0] and "envoy.filters.http.wasm" in lines[0], lines
    assert mismatch.trapped() == []
    assert pp.request(good_http, proxy=pp.v2("203.0.113.7", sport=N.unique_port())).status == 200
    assert N.tcp_exchange(good, pp.v2("203.0.113.7", sport=N.unique_port())).reply == "plain proxy=- got=ping"


# -- the shipped manifests, as shipped ----------------------------------------------------------------

def test_gateway_passthrough_manifest_runs_with_its_own_configuration(start, gateway_frags, upstreams):
    env = start([N.NetworkListener(gateway_frags, None, chains=[N.Chain("plain")])],
                {"plain": (upstreams["plain"].port, None)}, name="gateway_manifest")
    shipped = N.manifest_configuration(gateway_frags)
    assert shipped["filter_type"] == "network"
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(
        env.port, pp.v2("198.51.100.7", sport=N.unique_port())))
    assert out.served and accepted == 1, out
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(
        env.port, pp.v2("203.0.113.66", sport=N.unique_port())))
    assert not out.served and accepted == 0, out


def test_sidecar_tcp_manifest_decides_on_the_tcp_peer(start, upstreams):
    """The sidecar inbound listener has no PROXY protocol: the client is the TCP peer. The shipped
    configuration allows the mesh ranges (10/8, fd00::/8) only, so a loopback peer is refused; with a
    loopback allow list the real peer address decides."""
    frags = manifests.load(N.SIDECAR_TCP)
    assert frags.proxy_protocol is None and frags.context == "SIDECAR_INBOUND"
    shipped = start([N.NetworkListener(frags, None, proxy_protocol=False)],
                    {"plain": (upstreams["plain"].port, None)}, name="sidecar_manifest")
    out, accepted = exchange_counted(shipped, upstreams["plain"], lambda: N.tcp_exchange(shipped.port, source="127.0.0.2"))
    assert not out.served and accepted == 0, out
    local = {"filter_type": "network", "access": {"allow": ["127.0.0.2"]}}
    env = start([N.NetworkListener(frags, local, proxy_protocol=False)],
                {"plain": (upstreams["plain"].port, None)}, name="sidecar_local")
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(env.port, source="127.0.0.2"))
    assert out.reply == "plain proxy=- got=ping" and accepted == 1, out
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(env.port, source="127.0.0.3"))
    assert not out.served and accepted == 0, out
    lines = procs.wait_until(lambda: len(env.access_log_lines()) >= 2 and env.access_log_lines(), 5,
                             what="both connections in the access log")
    assert [e["client_ip"] for e in lines] == ["127.0.0.2", "127.0.0.3"]


@pytest.mark.only_builds("wasm")
def test_network_wasmplugin_config_runs_in_a_network_filter(start, upstreams):
    """istio-examples/wasmplugin-network.yaml: type NETWORK, pluginConfig as the JSON Istio hands the
    filter, with the file's set_filter_state EnvoyFilter before tcp_proxy."""
    path = manifests.REPO / "istio-examples" / "wasmplugin-network.yaml"
    with open(path) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    (plugin,) = [d for d in docs if d["kind"] == "WasmPlugin"]
    assert plugin["spec"]["type"] == "NETWORK"
    companion = manifests.load(path)
    assert companion.set_filter_state is not None
    frags = manifests.load(N.GATEWAY_PASSTHROUGH)
    frags.network_filters = companion.network_filters + [
        f for f in frags.network_filters if f["typed_config"]["@type"] == N.NETWORK_WASM_TYPE]
    config = json.dumps(plugin["spec"]["pluginConfig"], separators=(",", ":"))
    env = start([N.NetworkListener(frags, config)], {"plain": (upstreams["plain"].port, None)},
                name="wasmplugin_network")
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(
        env.port, pp.v2("203.0.113.7", sport=N.unique_port())))
    assert out.served and accepted == 1, out
    port = N.unique_port()
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(
        env.port, pp.v2("198.51.100.1", sport=port)))
    assert not out.served and accepted == 0, out
    assert env.log_entry(key("198.51.100.1", port))["decision"] == "deny"


def test_without_proxy_protocol_the_tcp_peer_is_the_client_ipv6_too(start, gateway_frags, upstreams):
    """A listener without the proxy_protocol listener filter, on ::1: the client is the real TCP
    peer, here an IPv6 one."""
    config = {"filter_type": "network", "access": {"allow": ["::1"]}}
    env = start([N.NetworkListener(gateway_frags, config, proxy_protocol=False, listen_address="::1")],
                {"plain": (upstreams["plain"].port, None)}, name="ipv6_peer")
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(env.port, host="::1"))
    assert out.reply == "plain proxy=- got=ping" and accepted == 1, out
    (entry,) = procs.wait_until(env.access_log_lines, 5, what="the connection in the access log")
    assert (entry["client_ip"], entry["decision"]) == ("::1", None)  # absent: allowed
    v4_only = {"filter_type": "network", "access": {"allow": ["127.0.0.0/8"]}}
    env = start([N.NetworkListener(gateway_frags, v4_only, proxy_protocol=False, listen_address="::1")],
                {"plain": (upstreams["plain"].port, None)}, name="ipv6_peer_refused")
    out, accepted = exchange_counted(env, upstreams["plain"], lambda: N.tcp_exchange(env.port, host="::1"))
    assert not out.served and accepted == 0, out
