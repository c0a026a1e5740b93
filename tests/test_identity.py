"""docs/private-link.md "Private-link identities": PROXY v2 TLVs crafted here (HAProxy cannot send arbitrary
TLVs) into a real Envoy 1.40 configured by the shipped manifests, over both reading routes:

* ``fs``: envoyfilter/ingress-gateway-private-link.yaml -- the proxy_protocol listener filter's own filter
  state (``tlv_location: FILTER_STATE``, ``value_string_encoding: BASE64``), all three kinds;
* ``md``: envoyfilter/ingress-gateway-private-link-metadata.yaml -- dynamic metadata copied by
  set_filter_state, no encoding (Envoy 1.29+): AWS only;
* ``md64``: the same route with ``value_string_encoding: BASE64`` on each rule and a copy per kind (what an
  Envoy 1.39+ operator who keeps dynamic metadata writes), with the configuration of the ``fs`` manifest.

And istio-examples/wasmplugin-private-link.yaml as Istio builds it: ``gatewayTopology.proxyProtocol``'s
plain listener filter swapped for the manifest's one (REMOVE, INSERT_FIRST).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import exchange
from harness.proxyproto import tlv_aws_vpce, tlv_azure_link, tlv_gcp_psc

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

REPO = manifests.REPO
FS_MANIFEST = REPO / "envoyfilter" / "ingress-gateway-private-link.yaml"
MD_MANIFEST = REPO / "envoyfilter" / "ingress-gateway-private-link-metadata.yaml"
PLUGIN_EXAMPLE = REPO / "istio-examples" / "wasmplugin-private-link.yaml"

# The identities the manifests' configurations list.
VPCE_A = "vpce-0a1b2c3d4e5f60718"       # allowed, and the only one the admin rule allows
VPCE_B = "vpce-0123456789abcdef0"       # allowed
VPCE_DENIED = "vpce-0badbadbadbadbad0"  # denied
VPCE_OTHER = "vpce-0000111122223333f"   # not listed
AZURE_LINK = 123456                     # allowed in the fs manifest
GCP_PSC = 49477946121388034             # allowed in the fs manifest
LISTED_NET_ADDR = "203.0.113.7"         # inside LISTED_NET, allowed beside the identities (below)
UNLISTED_ADDR = "198.51.100.20"         # in no list
DENIED_ADDR = "203.0.113.66"

LINK_HEADER = "x-client-link"
KINDS = ("aws_vpce_id", "azure_link_id", "gcp_psc_id")
TLV_TYPES = {"aws_vpce_id": 0xEA, "azure_link_id": 0xEE, "gcp_psc_id": 0xE0}


def md64_fragments() -> manifests.Fragments:
    """The metadata route on Envoy 1.39+: BASE64 on every rule, one set_filter_state copy per kind."""
    frags = manifests.load(MD_MANIFEST)
    pp_filter = frags.proxy_protocol
    pp_filter["typed_config"]["rules"] = [
        {"tlv_type": TLV_TYPES[k], "on_tlv_present": {"key": k, "value_string_encoding": "BASE64"}}
        for k in KINDS]
    sfs = frags.set_filter_state
    entries = sfs["typed_config"]["on_new_connection"]
    template = next(e for e in entries if e["object_key"] == "client_ip.aws_vpce_id")
    for key in KINDS[1:]:
        entry = copy.deepcopy(template)
        entry["object_key"] = f"client_ip.{key}"
        entry["format_string"]["text_format_source"]["inline_string"] = \
            f"%DYNAMIC_METADATA(envoy.filters.listener.proxy_protocol:{key})%"
        entries.append(entry)
    frags.listener_filters = [pp_filter]
    frags.network_filters = [sfs]
    return frags


LISTED_NET = "203.0.113.0/24"


def with_addresses(frags: manifests.Fragments) -> dict:
    """The manifest's configuration with an allowed CIDR and a denied address beside its identities,
    to show how addresses and identities combine in one list. The shipped private-link manifests list
    endpoint ids only (behind an endpoint the source address is the consumer's choice, see
    docs/private-link.md)."""
    cfg = frags.configuration()
    cfg["access"]["allow"].append(LISTED_NET)
    cfg["access"]["deny"].append(DENIED_ADDR)
    return cfg


@pytest.fixture(scope="module")
def routes(envoy_factory, wasm):
    """One Envoy per reading route, started on first use."""
    started: dict = {}

    def get(route: str) -> E.Envoy:
        if route not in started:
            if route == "fs":
                frags = manifests.load(FS_MANIFEST)
                opts = E.EnvoyOptions(fragments=frags, configuration=with_addresses(frags))
            elif route == "md":
                frags = manifests.load(MD_MANIFEST)
                opts = E.EnvoyOptions(fragments=frags, configuration=with_addresses(frags))
            else:
                opts = E.EnvoyOptions(fragments=md64_fragments(),
                                      configuration=with_addresses(manifests.load(FS_MANIFEST)))
            started[route] = envoy_factory(opts)
        return started[route]
    return get


def send(env, echo, tlvs=(), src=UNLISTED_ADDR, headers=(), path="/", host="example.com"):
    return exchange(env, echo, proxy=pp.v2(src, "10.0.0.1", 40000, 443, tlvs=list(tlvs)),
                    headers=headers, path=path, host=host)


def counted_invalid(env, before: dict, expected: int) -> int:
    """How much client_ip.link_invalid grew since ``before``. Counters reach /stats with the
    filter's next flush: a count is waited for; "none" is read once every count has been flushed."""
    if expected:
        delta = E.counter_delta(env, before, {"client_ip.link_invalid": expected},
                                prefix="client_ip.link_invalid")
        return delta.get("client_ip.link_invalid", 0)
    after = env.settled_stats()
    return after.get("client_ip.link_invalid", 0) - before.get("client_ip.link_invalid", 0)


# -- kinds, their text, both routes --------------------------------------------------------------

READ_CASES = [
    ("fs", "aws", tlv_aws_vpce(VPCE_A), f"aws-vpce:{VPCE_A}"),
    ("fs", "azure", tlv_azure_link(AZURE_LINK), f"azure-link:{AZURE_LINK}"),
    ("fs", "gcp", tlv_gcp_psc(GCP_PSC), f"gcp-psc:{GCP_PSC}"),
    ("md", "aws", tlv_aws_vpce(VPCE_A), f"aws-vpce:{VPCE_A}"),
    ("md64", "aws", tlv_aws_vpce(VPCE_A), f"aws-vpce:{VPCE_A}"),
    ("md64", "azure", tlv_azure_link(AZURE_LINK), f"azure-link:{AZURE_LINK}"),
    ("md64", "gcp", tlv_gcp_psc(GCP_PSC), f"gcp-psc:{GCP_PSC}"),
]


@pytest.mark.parametrize("route,kind,tlv,text", READ_CASES, ids=[f"{r}-{k}" for r, k, _, _ in READ_CASES])
def test_listed_identity_admits_an_unlisted_address_and_goes_to_link_header_and_log(routes, echo, route,
                                                                                    kind, tlv, text):
    env = routes(route)
    ex = send(env, echo, [tlv], src=UNLISTED_ADDR, headers=[(LINK_HEADER, "forged")])
    assert ex.status == 200, ex.response.text
    assert ex.upstream_values(LINK_HEADER) == [text]
    log = ex.log()
    assert log["client_link"] == text
    assert log["client_ip"] == UNLISTED_ADDR


def test_ids_with_bytes_that_are_not_utf8_stay_exact_with_base64(routes, echo):
    # 0xE2, 0xFF, 0x80 are exactly the bytes Envoy turns into '!' without BASE64.
    env = routes("fs")
    for tlv, text in ((tlv_azure_link(0x0080FEFF), "azure-link:8453887"),
                      (tlv_gcp_psc(0xFF80000102C3A921), "gcp-psc:18410715281031932193")):
        ex = send(env, echo, [tlv], src=LISTED_NET_ADDR)
        assert ex.upstream_values(LINK_HEADER) == [text]


@pytest.mark.parametrize("tlv", [tlv_azure_link(AZURE_LINK), tlv_gcp_psc(GCP_PSC)], ids=["azure", "gcp"])
def test_aws_only_metadata_manifest_ignores_other_tlvs(routes, echo, tlv):
    """The md manifest has a rule and a copy for the AWS TLV only: an Azure or GCP TLV is not kept
    by Envoy, so it is absent (not invalid)."""
    env = routes("md")
    before = env.settled_stats()
    ex = send(env, echo, [tlv], src=LISTED_NET_ADDR)
    assert ex.status == 200 and ex.upstream_values(LINK_HEADER) == []
    assert counted_invalid(env, before, 0) == 0


def test_metadata_copy_without_base64_of_an_azure_tlv_is_invalid_and_counted(envoy_factory, echo, wasm):
    """Envoy 1.40 hands the copy over with '!' for every byte that is not valid UTF-8 (Azure LinkID
    123456 arrives as the bytes of LinkID 74048): never trusted, counted."""
    frags = md64_fragments()
    for rule in frags.listener_filters[0]["typed_config"]["rules"]:
        del rule["on_tlv_present"]["value_string_encoding"]
    env = envoy_factory(E.EnvoyOptions(fragments=frags, configuration={
        "access": {"allow": [f"azure-link:{AZURE_LINK}", f"azure-link:74048"]},
        "forward": {"link_header": LINK_HEADER}}))
    before = env.settled_stats()
    ex = send(env, echo, [tlv_azure_link(AZURE_LINK)], src=UNLISTED_ADDR)
    # Neither the real LinkID nor the one its '!'-mangled bytes spell is believed.
    assert ex.status == 403
    assert ex.log()["client_link"] is None
    assert counted_invalid(env, before, 1) == 1


# -- lists ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["fs", "md"])
def test_allow_list_is_address_or_identity(routes, echo, route):
    env = routes(route)
    assert send(env, echo, [tlv_aws_vpce(VPCE_B)], src=UNLISTED_ADDR).status == 200
    assert send(env, echo, [], src=LISTED_NET_ADDR).status == 200
    assert send(env, echo, [tlv_aws_vpce(VPCE_OTHER)], src=LISTED_NET_ADDR).status == 200
    refused = send(env, echo, [tlv_aws_vpce(VPCE_OTHER)], src=UNLISTED_ADDR)
    assert refused.status == 403 and not refused.reached_upstream
    assert refused.log()["client_link"] == f"aws-vpce:{VPCE_OTHER}"
    assert send(env, echo, [], src=UNLISTED_ADDR).status == 403


@pytest.mark.parametrize("route", ["fs", "md"])
def test_deny_identity_refuses_even_from_an_allowed_address(routes, echo, route):
    env = routes(route)
    ex = send(env, echo, [tlv_aws_vpce(VPCE_DENIED)], src=LISTED_NET_ADDR)
    assert ex.status == 403 and not ex.reached_upstream
    assert ex.log()["decision"] == "deny"
    # A denied address is refused whatever identity it carries.
    assert send(env, echo, [tlv_aws_vpce(VPCE_A)], src=DENIED_ADDR).status == 403


@pytest.mark.parametrize("route", ["fs", "md64"])
def test_rule_lists_hold_identities(routes, echo, route):
    env = routes(route)
    admin = dict(host="admin.example.com", path="/admin/users")
    ok = send(env, echo, [tlv_aws_vpce(VPCE_A)], src=UNLISTED_ADDR, **admin)
    assert ok.status == 200 and ok.log()["rule"] == "admin"
    # Allowed at the top level, but not by the admin rule.
    for tlv in (tlv_aws_vpce(VPCE_B), tlv_azure_link(AZURE_LINK)):
        ex = send(env, echo, [tlv], src=LISTED_NET_ADDR, **admin)
        assert ex.status == 403 and ex.log()["rule"] == "admin"


# -- forwarding ----------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["fs", "md"])
def test_forged_link_header_is_removed_without_an_identity(routes, echo, route):
    env = routes(route)
    forged = [(LINK_HEADER, f"aws-vpce:{VPCE_A}"), ("X-Client-Link", "x"), (LINK_HEADER, "y")]
    ex = send(env, echo, [], src=LISTED_NET_ADDR, headers=forged)
    assert ex.status == 200
    assert ex.upstream_values(LINK_HEADER) == []
    assert ex.log()["client_link"] is None


def test_forged_link_header_is_replaced_by_the_identity(routes, echo):
    env = routes("fs")
    forged = [(LINK_HEADER, f"aws-vpce:{VPCE_DENIED}"), (LINK_HEADER, "y")]
    ex = send(env, echo, [tlv_aws_vpce(VPCE_B)], src=UNLISTED_ADDR, headers=forged)
    assert ex.upstream_values(LINK_HEADER) == [f"aws-vpce:{VPCE_B}"]


# -- malformed TLVs ------------------------------------------------------------------------------

MALFORMED = [
    ("aws-wrong-subtype", tlv_aws_vpce(VPCE_A, subtype=0x02)),
    ("aws-no-subtype", (0xEA, VPCE_A.encode())),
    ("aws-short-id", tlv_aws_vpce("vpce-0a1b2c3")),
    ("aws-oversized", tlv_aws_vpce("vpce-" + "a" * 4000)),
    ("aws-uppercase", tlv_aws_vpce(VPCE_A.upper().replace("VPCE", "vpce"))),
    ("aws-non-ascii", (0xEA, b"\x01vpce-0a1b2c3d4e5f6071\xc3\xa9")),
    ("aws-crlf-nul", (0xEA, b"\x01vpce-0a1b2c3d\r\nx-evil: 1\x00")),
    ("azure-wrong-subtype", tlv_azure_link(AZURE_LINK, subtype=0x00)),
    ("azure-wrong-length", (0xEE, b"\x01\x40\xe2\x01")),
    ("gcp-wrong-length", (0xE0, b"\x00" * 9)),
]


@pytest.mark.parametrize("route", ["fs", "md64"])
@pytest.mark.parametrize("name,tlv", MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_tlv_is_absent_and_counted(routes, echo, route, name, tlv):
    env = routes(route)
    before = env.settled_stats()
    ex = send(env, echo, [tlv], src=UNLISTED_ADDR, headers=[(LINK_HEADER, "forged")])
    assert ex.status == 403, "a malformed TLV must not count as any identity"
    assert ex.log()["client_link"] is None
    assert counted_invalid(env, before, 1) == 1
    # From an allowed address the request goes on, without the header.
    ok = send(env, echo, [tlv], src=LISTED_NET_ADDR, headers=[(LINK_HEADER, "forged")])
    assert ok.status == 200 and ok.upstream_values(LINK_HEADER) == []


def test_empty_tlv_is_absent_and_not_counted(routes, echo):
    for route in ("fs", "md"):
        env = routes(route)
        before = env.settled_stats()
        assert send(env, echo, [(0xEA, b"")], src=UNLISTED_ADDR).status == 403
        assert counted_invalid(env, before, 0) == 0


@pytest.mark.parametrize("route,wins", [("fs", "last"), ("md", "first"), ("md64", "first")])
def test_repeated_tlv_gives_the_value_envoy_keeps(routes, echo, route, wins):
    """Envoy 1.40 keeps the last of a repeated TLV in FILTER_STATE and the first in dynamic metadata;
    whichever it is, it is one identity, decided like any other."""
    env = routes(route)
    first, last = tlv_aws_vpce(VPCE_OTHER), tlv_aws_vpce(VPCE_A)
    ex = send(env, echo, [first, last], src=UNLISTED_ADDR)
    expected = VPCE_A if wins == "last" else VPCE_OTHER
    assert ex.log()["client_link"] == f"aws-vpce:{expected}"
    assert ex.status == (200 if expected == VPCE_A else 403)


def test_identity_is_read_per_connection_for_every_request(routes, echo):
    env = routes("fs")
    with pp.Connection(env.port, proxy=pp.v2(UNLISTED_ADDR, "10.0.0.1", tlvs=[tlv_aws_vpce(VPCE_B)])) as c:
        for _ in range(3):
            r = c.request(pp.build_request(headers=[(LINK_HEADER, "forged")], close=False))
            assert r.status == 200
            assert r.upstream_header_values(LINK_HEADER) == [f"aws-vpce:{VPCE_B}"]


# -- configurations without identities read none -------------------------------------------------

def test_configuration_without_identities_reads_no_tlv(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(fragments=manifests.load(FS_MANIFEST),
                                       configuration={"access": {"allow": ["203.0.113.0/24"]}}))
    before = env.settled_stats()
    ex = send(env, echo, [tlv_aws_vpce(VPCE_A), (0xEE, b"bad")], src=LISTED_NET_ADDR,
              headers=[(LINK_HEADER, "kept")])
    assert ex.status == 200
    # Not configured: the header is the client's business, no identity is read, logged or counted.
    assert ex.upstream_values(LINK_HEADER) == ["kept"]
    assert ex.log()["client_link"] is None
    assert counted_invalid(env, before, 0) == 0
    assert "aws_vpce_id" not in env.log_text()


# -- configuration errors ------------------------------------------------------------------------

BAD = [
    ("identity-in-trusted-proxies", {"client_ip": {"trusted_proxies": ["10.0.0.0/8", f"aws-vpce:{VPCE_A}"]}},
     [f'client_ip.trusted_proxies[1]: "aws-vpce:{VPCE_A}" is an identity entry']),
    ("uppercase-vpce", {"access": {"allow": ["aws-vpce:vpce-0A1B2C3D"]}},
     ['access.allow[0]: "aws-vpce:vpce-0A1B2C3D" is not an identity']),
    ("azure-out-of-range", {"access": {"rules": [{"name": "r", "deny": ["azure-link:4294967296"]}]}},
     ['access.rules[0].deny[0]: "azure-link:4294967296" is not an identity']),
    ("gcp-not-decimal", {"access": {"deny": ["gcp-psc:0x10"]}}, ['access.deny[0]: "gcp-psc:0x10"']),
    ("bad-link-header", {"forward": {"link_header": "x client link"}}, ['forward.link_header: "x client link"']),
    ("link-header-is-an-address-header", {"forward": {"headers": ["x-real-ip"], "link_header": "x-real-ip"}},
     ["forward.link_header", "x-real-ip"]),
]


@pytest.mark.parametrize("configuration,needles", [(c, n) for _, c, n in BAD], ids=[i for i, _, _ in BAD])
def test_identity_config_error_envoy_refuses_to_start(envoy_factory, wasm, configuration, needles):
    refused = envoy_factory.refused(E.EnvoyOptions(fragments=manifests.load(FS_MANIFEST),
                                                   configuration=configuration))
    assert refused.exit_status not in (None, 0), "Envoy started with a bad configuration"
    errors = refused.filter_lines("error")
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"


# -- the WasmPlugin example and gatewayTopology.proxyProtocol -------------------------------------

ISTIO_PLAIN_PROXY_PROTOCOL = {
    "name": manifests.PROXY_PROTOCOL,
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3."
                              "ProxyProtocol"}}


def istio_listener_filters(path: Path) -> list:
    """The gateway listener filters after Istio applied ``path``'s LISTENER_FILTER patches to what
    ``gatewayTopology.proxyProtocol`` installs (a plain proxy_protocol filter): REPLACE swaps the
    filter the match names, REMOVE drops it, INSERT_FIRST puts the value in front (istio pilot
    listener_patch.go; tests/test_istio_xds.py checks the result with Istio's own translation)."""
    filters = [copy.deepcopy(ISTIO_PLAIN_PROXY_PROTOCOL)]
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "EnvoyFilter":
            continue
        for p in doc["spec"]["configPatches"]:
            if p["applyTo"] != "LISTENER_FILTER":
                continue
            op, value = p["patch"]["operation"], copy.deepcopy(p["patch"].get("value"))
            if op == "REPLACE":
                name = p["match"]["listener"]["listenerFilter"]
                filters = [value if f["name"] == name else f for f in filters]
            elif op == "REMOVE":
                name = p["match"]["listener"]["listenerFilter"]
                filters = [f for f in filters if f["name"] != name]
            elif op == "INSERT_FIRST":
                filters.insert(0, value)
            else:
                raise AssertionError(f"{path}: LISTENER_FILTER {op} not emulated")
    return filters


class ListenerFiltersEnvoy(E.Envoy):
    """The harness Envoy with exactly ``listener_filters`` (the harness puts at most one)."""

    def __init__(self, opts, listener_filters, **kw):
        super().__init__(opts, **kw)
        self.listener_filters = listener_filters

    def write_config(self):
        boot = E.bootstrap(self.opts, self.port, self.admin_port, self.upstream_port,
                           str(self.access_log_path))
        (lst,) = boot["static_resources"]["listeners"]
        lst["listener_filters"] = copy.deepcopy(self.listener_filters)
        self.config_path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return self.config_path


def plugin_fragments() -> manifests.Fragments:
    """What an Istio gateway gets from wasmplugin-private-link.yaml: the WasmPlugin's filter (as
    test_istio_in_envoy builds it) and the companion EnvoyFilter's set_filter_state."""
    import test_istio_in_envoy as istio
    companion = manifests.load(PLUGIN_EXAMPLE)
    frags = manifests.Fragments(source=PLUGIN_EXAMPLE, context="GATEWAY")
    frags.network_filters = companion.network_filters
    frags.http_filters = [istio.istio_wasm_filter(istio.doc_of_kind(PLUGIN_EXAMPLE, "WasmPlugin"))]
    return frags


@pytest.fixture(scope="module")
def start_listener_envoy(echo, wasm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("identity_listeners")
    started = []

    def start(frags, listener_filters):
        env = ListenerFiltersEnvoy(E.EnvoyOptions(fragments=frags), listener_filters,
                                   upstream_port=echo.port, workdir=str(workdir), name=f"lf{len(started)}")
        started.append(env)
        return env.start()
    try:
        yield start
    finally:
        for env in started:
            env.stop()


def test_wasmplugin_example_allows_its_two_vpc_endpoints_behind_gateway_topology(start_listener_envoy, echo):
    filters = istio_listener_filters(PLUGIN_EXAMPLE)
    assert [f["name"] for f in filters] == [manifests.PROXY_PROTOCOL]
    assert filters[0]["typed_config"]["rules"], "the swapped-in filter must carry the TLV rule"
    env = start_listener_envoy(plugin_fragments(), filters)
    for vpce in (VPCE_A, VPCE_B):
        ex = send(env, echo, [tlv_aws_vpce(vpce)], src=UNLISTED_ADDR)
        assert ex.status == 200 and ex.upstream_values(LINK_HEADER) == [f"aws-vpce:{vpce}"]
        assert ex.upstream_values("x-real-ip") == [UNLISTED_ADDR]
    for tlvs in ([tlv_aws_vpce(VPCE_OTHER)], []):
        assert send(env, echo, tlvs, src=LISTED_NET_ADDR).status == 403


def test_gateway_topology_alone_gives_no_tlv_so_the_vpce_allow_list_refuses(start_listener_envoy, echo):
    """Without the LISTENER_FILTER patches Istio's plain listener filter keeps no TLV: nobody is admitted."""
    env = start_listener_envoy(plugin_fragments(), [copy.deepcopy(ISTIO_PLAIN_PROXY_PROTOCOL)])
    assert send(env, echo, [tlv_aws_vpce(VPCE_A)], src=UNLISTED_ADDR).status == 403


def test_envoyfilter_variant_with_gateway_topology_fails_every_connection(start_listener_envoy, echo):
    """Both present: the INSERT_FIRST filter reads the PROXY header, then Istio's own waits for a
    second one that never comes and Envoy closes the connection."""
    filters = istio_listener_filters(FS_MANIFEST)
    assert [f["name"] for f in filters] == [manifests.PROXY_PROTOCOL] * 2
    env = start_listener_envoy(manifests.load(FS_MANIFEST), filters)
    before = env.stats(raw=True)
    with pytest.raises((pp.ConnectionClosed, ConnectionResetError)):
        send(env, echo, [tlv_aws_vpce(VPCE_A)], src=UNLISTED_ADDR)
    after = env.stats(raw=True)
    errors = {k: after[k] - before.get(k, 0) for k in after if k.endswith("downstream_cx_proxy_proto_error")}
    assert sum(errors.values()) >= 1, errors
