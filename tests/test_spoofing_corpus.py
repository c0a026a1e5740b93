"""The spoofing corpus (issue 5): attack requests through real Envoy 1.40 (V8) with the filter, an allow
list and a deny list, under both ``use_remote_address`` settings. Every case asserts its outcome:

  * refused: status 403 with the deny body, the upstream never saw the request, and the filter's
    counters moved by exactly ``denied`` (+ ``invalid`` when the walk had to read a bad entry);
  * admitted: status 200, the upstream saw it once, and the client-IP headers the app got
    (``x-real-ip``, ``x-client-ip``, ``true-client-ip``, ``x-client-port``) say the real client,
    once each, whatever the client wrote; ``allowed`` moved by exactly one.

Peers have shipped these bugs: Traefik #3646 (any X-Forwarded-For entry could match), Istio #7679 (XFF
not sanitised at the gateway), Envoy #25517 (a port in the selected XFF entry fell back to another
address), Higress (the leftmost, client-written XFF entry). The trusted proxy most cases come through,
10.0.0.9, is itself on the allow list: a walk that falls back to the downstream address on a bad
entry, or that skips an entry it cannot read, admits the attacker, so those bugs fail here too.

The cases can fail: ``test_corpus_detects_an_unprotected_envoy`` runs every case against the same
Envoy without the filter and requires each case's check to report it, and
``test_corpus_detects_trusting_every_forwarder`` requires the forged-forwarding cases to be caught
when the filter believes every proxy (the Traefik/Higress class of bug).

Private-link identities (docs/private-link.md): the corpus Envoy runs the listener filter of
envoyfilter/ingress-gateway-private-link.yaml (TLV rules) with ``allow_requests_without_proxy_protocol``,
and the configuration allow-lists one VPC endpoint and names a link header. Section 6 forges that
header, sends malformed TLVs claiming the endpoint, and connects without a PROXY header;
``test_proxy_header_from_a_host_other_than_the_load_balancer_is_refused`` shows the one defence against
a client that writes its own PROXY header (and TLVs) to such a listener: a filter chain that only
accepts the load balancer's direct address.

Issue 20 (sections 7-10): a host rule's authority with a port that is not all digits (Envoy strips
whatever follows the last colon when it matches a virtual host, and the corpus Envoy routes
``admin.example.com`` to its own virtual host with ``ignore_port_in_host_matching``, as Istio's
gateways do); headers naming a client that the app would still read (``X_Real_IP``, which CGI, WSGI
and Rack fold into ``x-real-ip``, ``Forwarded``, ``CF-Connecting-IP``, …): every admitted case checks
that the app gets none of ``forward.strip`` and no other spelling of the filter's own headers; a path
rule escaped by another form of the path (``;`` parameters, dot segments, ``%2F``, case); and, on an
Envoy without ``set_filter_state`` whose HTTP connection manager takes the downstream address from
X-Forwarded-For, a client naming an allowed address there. Each failed against the build before its
fix (see the commit that added it).

Leading zeros (``010.0.0.1``) are decided: not an address, neither 8.0.0.1 (octal) nor 10.0.0.1
(decimal); the same for every inet_aton form (``3405803781``, ``0xcb.0.113.5``, ``203.0.29445``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Union

import pytest

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import new_test_id
from harness.envoy import counter_delta
from reliability.envoy_ext import TunedEnvoy

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

ATTACKER = "198.51.100.66"        # the attacker's real address: neither allowed nor trusted
ATTACKER6 = "2001:db9::66"        # outside 2001:db8::/32
TARGET = "203.0.113.5"            # an allowed address the attacker claims
DENIED = "203.0.113.66"           # inside the allowed range but on the deny list
PROXY_OK = "10.0.0.9"             # a trusted proxy that is also allowed (health checks, say)
PROXY = "10.0.0.5"                # a trusted proxy, not allowed
PROXY6 = "fd00::9"                # a trusted IPv6 proxy
CLIENT = "203.0.113.7"            # a real, allowed client
H2_ATTACKER, H2_CLIENT, H2_PROXY = "127.0.0.66", "127.0.0.7", "127.0.0.10"  # curl's loopback sources
BARE_SOURCE = "127.0.0.1"         # a connection without a PROXY header comes from its TCP peer
VPCE = "vpce-0a1b2c3d4e5f60718"   # the allowed VPC endpoint
LINK_HEADER = "x-client-link"
PRIVATE_LINK = manifests.REPO / "envoyfilter" / "ingress-gateway-private-link.yaml"

ADMIN = "203.0.113.10"            # the one client the admin rules allow
CONFIG = {
    "client_ip": {"trusted_proxies": ["10.0.0.0/8", "fd00::/8", H2_PROXY]},
    "access": {"allow": ["203.0.113.0/24", "2001:db8::/32", PROXY_OK, H2_CLIENT, f"aws-vpce:{VPCE}"],
               "deny": [DENIED],
               "rules": [{"name": "admin-host", "hosts": ["admin.example.com"], "allow": [ADMIN]},
                         {"name": "admin-path", "path_prefixes": ["/admin"], "path_case": "insensitive",
                          "allow": [ADMIN]}]},
    "forward": {"headers": ["x-real-ip", "x-client-ip", "true-client-ip"],
                "port_header": "x-client-port", "link_header": LINK_HEADER},
}
CLIENT_IP_HEADERS = ("x-real-ip", "x-client-ip", "true-client-ip")
# The filter's own headers (and X-Forwarded-For): the app may get them only spelled so.
OWN_HEADERS = CLIENT_IP_HEADERS + ("x-client-port", LINK_HEADER, "x-forwarded-for")
# forward.strip's default, less the headers this configuration writes: never reach the app.
STRIPPED = ("forwarded", "cf-connecting-ip", "x-cluster-client-ip", "fastly-client-ip")
FORGED = ("X-Real-IP", TARGET), ("X-Client-IP", TARGET), ("True-Client-IP", TARGET), ("X-Client-Port", "1")
BIG = ", ".join([TARGET] * 4600)  # ~60 KB, 4,600 entries

Value = Union[str, bytes]


@dataclass(frozen=True)
class Case:
    id: str
    headers: tuple                      # (name, value) pairs, sent byte for byte (str as UTF-8)
    src: str = ATTACKER                 # PROXY source (h2: curl's bound loopback source)
    via: str = "v2"                     # "v2", "v1" (PROXY versions, raw HTTP/1.x) or "h2" (curl)
    version: str = "HTTP/1.1"
    client: Optional[str] = None        # None: refused; else the client the app must be told
    port: Optional[str] = None          # the x-client-port the app must get (None: none; "*": any)
    invalid: bool = False               # the walk reads an invalid entry (counted)
    status: int = 403                   # for refusals
    sport: int = 40123
    filter_decides: bool = True         # False: Envoy itself refuses (the filter never runs)
    forged_forwarding: bool = False     # a filter trusting every proxy would admit it
    tlvs: tuple = ()                    # PROXY v2 TLVs (type, value)
    link: Optional[str] = None          # the link header the app must get (None: none)
    link_invalid: bool = False          # a TLV of the wrong shape is read (counted)
    bare: bool = False                  # no PROXY header at all (the listener allows that)
    host: str = "example.com"           # the Host header (HTTP/1.x)
    path: str = "/spoof"                # the request target (HTTP/1.x)
    rule: Optional[str] = None          # the rule that decides (its counters move)
    xff_downstream: bool = False        # Envoy took the downstream address from X-Forwarded-For


def xff(value: Value) -> tuple:
    return (("X-Forwarded-For", value),)


A, T, D = ATTACKER, TARGET, DENIED
CASES = [
    # -- 1. the attacker connects directly and forges every header that names a client -------------
    Case("direct-xff", xff(T), forged_forwarding=True),
    Case("direct-xff-ending-in-a-trusted-proxy", xff(f"{T}, {PROXY}"), forged_forwarding=True),
    Case("direct-xff-ending-in-the-allowed-proxy", xff(f"{T}, {PROXY_OK}"), forged_forwarding=True),
    Case("direct-xff-repeated-lines", (("X-Forwarded-For", T), ("X-Forwarded-For", T)),
         forged_forwarding=True),
    Case("direct-xff-mixed-case-name", (("x-FoRwArDeD-fOr", T),), forged_forwarding=True),
    Case("direct-x-real-ip", (("X-Real-IP", T),)),
    Case("direct-x-real-ip-mixed-case-repeated", (("X-REAL-IP", T), ("x-real-ip", T))),
    Case("direct-x-client-ip", (("X-Client-IP", T),)),
    Case("direct-true-client-ip", (("True-Client-IP", T),)),
    Case("direct-cf-connecting-ip", (("CF-Connecting-IP", T),)),
    Case("direct-forwarded-rfc7239", (("Forwarded", f"for={T};proto=https"),)),
    Case("direct-x-envoy-external-address", (("X-Envoy-External-Address", T),)),
    Case("direct-x-original-forwarded-for", (("X-Original-Forwarded-For", T),)),
    Case("direct-every-header-at-once", xff(T) + FORGED + (("Forwarded", f"for={T}"),),
         forged_forwarding=True),
    Case("direct-proxy-v1", xff(T), via="v1", forged_forwarding=True),
    Case("direct-ipv6", xff("2001:db8::5"), src=ATTACKER6, forged_forwarding=True),
    Case("direct-ipv6-proxy-v1", xff("2001:db8::5"), src=ATTACKER6, via="v1", forged_forwarding=True),
    Case("direct-mapped-source-forging-mapped-entry", xff(f"::ffff:{T}"), src=f"::ffff:{A}",
         forged_forwarding=True),
    Case("direct-60kb-xff-4600-entries", xff(BIG), forged_forwarding=True),
    Case("direct-http10", xff(T) + (("X-Real-IP", T),), version="HTTP/1.0", forged_forwarding=True),
    Case("direct-over-envoy-header-limit", xff(BIG + ", " + BIG), status=431, filter_decides=False),
    Case("direct-h2", xff(H2_CLIENT) + (("X-Real-IP", H2_CLIENT),), src=H2_ATTACKER, via="h2",
         forged_forwarding=True),
    Case("direct-h2-repeated-xff", (("x-forwarded-for", H2_CLIENT), ("x-forwarded-for", H2_PROXY)),
         src=H2_ATTACKER, via="h2", forged_forwarding=True),
    Case("direct-h2-60kb-xff", xff(", ".join([H2_CLIENT] * 4600)), src=H2_ATTACKER, via="h2",
         forged_forwarding=True),
    # -- 2. a denied address hiding behind the mapped and other equivalent forms -------------------
    Case("denied-mapped-proxy-v2-source", (), src=f"::ffff:{D}"),
    Case("denied-mapped-proxy-v1-source", (), src=f"::ffff:{D}", via="v1"),
    Case("denied-mapped-entry", xff(f"::ffff:{D}"), src=PROXY_OK),
    Case("denied-mapped-hex-entry-with-port", xff("[::ffff:cb00:7142]:8080"), src=PROXY_OK),
    Case("denied-entry-with-port", xff(f"{D}:443"), src=PROXY_OK),
    Case("denied-entry-with-zone", xff(f"{D}%eth0"), src=PROXY_OK, invalid=True),
    # -- 3. behind a trusted proxy, which appended the attacker's real address ----------------------
    Case("behind-proxy-forged-left-entry", xff(f"{T}, {A}"), src=PROXY_OK, forged_forwarding=True),
    Case("behind-proxy-proxy-added-own-line", (("X-Forwarded-For", T), ("X-Forwarded-For", A)),
         src=PROXY_OK, forged_forwarding=True),
    Case("behind-proxy-mixed-case-lines", (("X-FORWARDED-FOR", T), ("x-forwarded-for", A)),
         src=PROXY_OK, forged_forwarding=True),
    Case("behind-proxy-leftmost-is-forged", xff(f"{T}, 203.0.113.6, 10.0.0.7, {A}"), src=PROXY_OK,
         forged_forwarding=True),
    Case("behind-proxy-forged-trusted-hop", xff(f"{T}, 10.0.0.7, {A}"), src=PROXY,
         forged_forwarding=True),
    Case("behind-proxy-forged-x-real-ip", xff(A) + (("X-Real-IP", T),), src=PROXY_OK),
    Case("behind-proxy-60kb-xff", xff(BIG + ", " + A), src=PROXY_OK, forged_forwarding=True),
    Case("behind-proxy-attacker-entry-with-port", xff(f"{T}, {A}:4444"), src=PROXY_OK,
         forged_forwarding=True),
    Case("behind-proxy-attacker-entry-bracketed-ipv6-port", xff(f"2001:db8::5, [{ATTACKER6}]:443"),
         src=PROXY6, forged_forwarding=True),
    Case("behind-proxy-mapped-forged-entry", xff(f"::ffff:{T}, {A}"), src=PROXY_OK,
         forged_forwarding=True),
    Case("behind-proxy-whitespace-and-empty-elements", xff(f"{T} , , \t,{A} ,"), src=PROXY_OK,
         forged_forwarding=True),
    Case("behind-proxy-only-empty-elements", xff(" , ,\t, "), src=PROXY),
    Case("behind-proxy-h2", xff(f"{H2_CLIENT}, {A}"), src=H2_PROXY, via="h2", forged_forwarding=True),
    Case("behind-proxy-http10", xff(f"{T}, {A}"), src=PROXY_OK, version="HTTP/1.0",
         forged_forwarding=True),
    # -- 4. an entry the walk must read that is not an address (or not the address it looks like) ---
    Case("entry-leading-zeros", xff("203.0.113.010"), src=PROXY_OK, invalid=True),
    Case("entry-leading-zero-first-octet", xff("0203.0.113.5"), src=PROXY_OK, invalid=True),
    Case("entry-leading-zeros-10-net", xff("010.0.0.9"), src=PROXY_OK, invalid=True),
    Case("entry-five-octets", xff(f"{T}.7"), src=PROXY_OK, invalid=True),
    Case("entry-trailing-dot", xff(f"{T}."), src=PROXY_OK, invalid=True),
    Case("entry-arabic-indic-digits", xff("٢٠٣.٠.١١٣.٥"), src=PROXY_OK, invalid=True),
    Case("entry-fullwidth-digits", xff("２０３.０.１１３.５"), src=PROXY_OK, invalid=True),
    Case("entry-fullwidth-dots", xff("203．0．113．5"), src=PROXY_OK, invalid=True),
    Case("entry-utf8-nbsp", xff(f"{T}\u00a0"), src=PROXY_OK, invalid=True),
    Case("entry-obs-text-byte", xff(T.encode() + b"\xa0"), src=PROXY_OK, invalid=True),
    Case("entry-obs-text-only", xff(b"\xff\xfe\xfd"), src=PROXY_OK, invalid=True),
    Case("entry-ipv4-compatible-ipv6", xff(f"::{T}"), src=PROXY_OK),
    Case("entry-bracketed-ipv4", xff(f"[{T}]"), src=PROXY_OK, invalid=True),
    Case("entry-bracketed-ipv4-with-port", xff(f"[{T}]:80"), src=PROXY_OK, invalid=True),
    Case("entry-zone-on-ipv4", xff(f"{T}%25"), src=PROXY_OK, invalid=True),
    Case("entry-zone-smuggling-an-address", xff(f"fe80::1%{T}"), src=PROXY_OK),
    Case("entry-port-out-of-range", xff(f"{T}:99999"), src=PROXY_OK, invalid=True),
    Case("entry-port-six-digits", xff(f"{T}:000080"), src=PROXY_OK, invalid=True),
    Case("entry-empty-port", xff(f"{T}:"), src=PROXY_OK, invalid=True),
    Case("entry-double-port", xff(f"{T}:80:80"), src=PROXY_OK, invalid=True),
    Case("entry-space-inside", xff(f"{T} 1.2.3.4"), src=PROXY_OK, invalid=True),
    Case("entry-quoted", xff(f'"{T}"'), src=PROXY_OK, invalid=True),
    Case("entry-forwarded-syntax", xff(f"for={T}"), src=PROXY_OK, invalid=True),
    Case("entry-unknown", xff("unknown"), src=PROXY_OK, invalid=True),
    Case("entry-host-name", xff("allowed.example.com"), src=PROXY_OK, invalid=True),
    Case("entry-inet-aton-integer", xff("3405803781"), src=PROXY_OK, invalid=True),
    Case("entry-inet-aton-hex", xff("0xcb.0.113.5"), src=PROXY_OK, invalid=True),
    Case("entry-inet-aton-three-parts", xff("203.0.29445"), src=PROXY_OK, invalid=True),
    Case("entry-h2-arabic-digits", xff("١٢٧.٠.٠.٧"), src=H2_PROXY, via="h2", invalid=True),
    # -- 5. admitted clients: whatever they write, the app is told who they are ---------------------
    Case("admitted-forges-client-ip-headers", FORGED, src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-repeated-mixed-case-forgeries",
         (("X-REAL-IP", A), ("x-real-ip", T), ("X-Client-Port", "1"), ("x-client-port", "2"),
          ("TRUE-CLIENT-IP", T), ("X-Client-Ip", T)), src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-empty-client-ip-headers", (("X-Real-IP", ""), ("X-Client-IP", " "),
                                              ("X-Client-Port", "")), src=CLIENT, client=CLIENT,
         port="40123"),
    Case("admitted-obs-text-in-x-real-ip", (("X-Real-IP", b"\xff" + T.encode()),), src=CLIENT,
         client=CLIENT, port="40123"),
    Case("admitted-mapped-proxy-source", FORGED, src=f"::ffff:{CLIENT}", client=CLIENT, port="40123"),
    Case("admitted-proxy-v1", FORGED, src=CLIENT, via="v1", client=CLIENT, port="40123"),
    Case("admitted-ignores-60kb-xff", xff(", ".join([A] * 4000)) + FORGED, src=CLIENT, client=CLIENT,
         port="40123"),
    Case("admitted-behind-proxy-entry-with-port", xff(f"{A}, {T}:5555") + FORGED, src=PROXY,
         client=T, port="5555"),
    Case("admitted-behind-proxy-entry-without-port", xff(f"{A}, {T}") + FORGED, src=PROXY, client=T),
    Case("admitted-http10", FORGED, src=CLIENT, version="HTTP/1.0", client=CLIENT, port="40123"),
    Case("admitted-h2", (("x-real-ip", A), ("x-client-port", "1")), src=H2_CLIENT, via="h2",
         client=H2_CLIENT, port="*"),
    # -- 6. private-link identities: the link header, TLVs, connections without a PROXY header ------
    Case("link-header-forged-without-tlv", ((LINK_HEADER, f"aws-vpce:{VPCE}"),)),
    Case("link-header-forged-mixed-case-repeated", (("X-Client-Link", f"aws-vpce:{VPCE}"),
                                                    (LINK_HEADER, f"aws-vpce:{VPCE}"))),
    Case("link-header-forged-behind-proxy", xff(A) + ((LINK_HEADER, f"aws-vpce:{VPCE}"),), src=PROXY_OK),
    Case("link-header-forged-h2", ((LINK_HEADER, f"aws-vpce:{VPCE}"),), src=H2_ATTACKER, via="h2"),
    Case("link-tlv-wrong-subtype", (), tlvs=((0xEA, b"\x02" + VPCE.encode()),), link_invalid=True),
    Case("link-tlv-without-subtype", (), tlvs=((0xEA, VPCE.encode()),), link_invalid=True),
    Case("link-tlv-uppercase-id", (), tlvs=((0xEA, b"\x01" + VPCE.upper().encode()),), link_invalid=True),
    Case("link-tlv-id-with-suffix", (), tlvs=((0xEA, b"\x01" + VPCE.encode() + b"\r\nx: 1"),),
         link_invalid=True),
    Case("link-tlv-id-prefix-only", (), tlvs=((0xEA, b"\x01" + VPCE[:12].encode()),), link_invalid=True),
    Case("link-tlv-oversized", (), tlvs=((0xEA, b"\x01" + VPCE.encode() * 200),), link_invalid=True),
    Case("link-tlv-allowed-id-as-another-kind", (), tlvs=((0xE0, VPCE.encode()[:8]),)),
    Case("bare-connection-forges-xff-and-link-header", xff(T) + ((LINK_HEADER, f"aws-vpce:{VPCE}"),),
         src=BARE_SOURCE, bare=True, forged_forwarding=True),
    Case("bare-connection-forges-x-real-ip", (("X-Real-IP", T),), src=BARE_SOURCE, bare=True),
    Case("admitted-client-forges-link-header", ((LINK_HEADER, f"aws-vpce:{VPCE}"),) + FORGED, src=CLIENT,
         client=CLIENT, port="40123"),
    Case("admitted-endpoint-forges-another-link", ((LINK_HEADER, "aws-vpce:vpce-0000000000000000f"),
                                                   (LINK_HEADER, "x")),
         tlvs=((0xEA, b"\x01" + VPCE.encode()),), client=A, port="40123", link=f"aws-vpce:{VPCE}"),
    # -- 7. issue 20: a host rule's port is whatever follows the last colon (Envoy routes it so) ----
    Case("host-rule-non-numeric-port", (), src=CLIENT, host="admin.example.com:x", rule="admin-host"),
    Case("host-rule-port-with-trailing-letters", (), src=CLIENT, host="admin.example.com:443x",
         rule="admin-host"),
    # -- 8. issue 20: headers naming a client that the app still reads, in any spelling ------------
    Case("admitted-x_real_ip-underscores", (("X_Real_IP", T),), src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-own-headers-underscored", (("x_client-ip", T), ("True_Client_IP", T),
                                              ("X_Client_Port", "1"), ("x_client_link", f"aws-vpce:{VPCE}"),
                                              ("X_Forwarded_For", T)),
         src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-forwarded-rfc7239", (("Forwarded", f"for={T};proto=https"),), src=CLIENT,
         client=CLIENT, port="40123"),
    Case("admitted-cf-connecting-ip", (("CF-Connecting-IP", T),), src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-x-cluster-client-ip", (("X-Cluster-Client-IP", T),), src=CLIENT, client=CLIENT,
         port="40123"),
    Case("admitted-strip-list-underscored", (("CF_Connecting_IP", T), ("Fastly_Client_IP", T),
                                             ("x_cluster_client_ip", T), ("FORWARDED", f"for={T}")),
         src=CLIENT, client=CLIENT, port="40123"),
    Case("admitted-behind-proxy-forwarded", xff(f"{A}, {T}") + (("Forwarded", f"for={A}"),), src=PROXY,
         client=T),
    Case("admitted-h2-strip-list", (("forwarded", f"for={A}"), ("cf-connecting-ip", A)), src=H2_CLIENT,
         via="h2", client=H2_CLIENT, port="*"),
    # -- 9. issue 20: a path rule decided for every form of the path an upstream may route --------
    Case("path-rule-leading-parameter-segment", (), src=CLIENT, path="/;x/admin/users", rule="admin-path"),
    Case("path-rule-dot-segment-with-parameter", (), src=CLIENT, path="/.;/admin", rule="admin-path"),
    Case("path-rule-dot-dot-segment-with-parameter", (), src=CLIENT, path="/x/..;/admin",
         rule="admin-path"),
    Case("path-rule-other-case", (), src=CLIENT, path="/Admin/users", rule="admin-path"),
    Case("path-rule-encoded-slashes-normalising-away", (), src=CLIENT, path="/admin%2F..%2Fpublic",
         rule="admin-path"),
]
IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"

# Room for the ~60 KB header cases: Envoy's default limit is 60 KiB for all headers together; its
# HTTP/1 codec also refuses any single header line over 64 KiB (431) whatever this says.
HCM = {"max_request_headers_kb": 96}


def request_bytes(case: Case, test_id: str) -> bytes:
    lines = [f"GET {case.path} HTTP/{case.version.split('/')[1]}".encode(), b"Host: " + case.host.encode(),
             b"x-test-id: " + test_id.encode()]
    for name, value in case.headers:
        value = value if isinstance(value, bytes) else value.encode("utf-8")
        lines.append(name.encode() + b": " + value)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send(env, case: Case) -> tuple:
    """Send one case; return (test_id, response)."""
    tid = new_test_id("spoof")
    if case.via == "h2":
        headers = [("x-test-id", tid)] + [(n, v if isinstance(v, str) else v.decode("latin-1"))
                                          for n, v in case.headers]
        return tid, pp.curl(env.port, path="/spoof", headers=headers, haproxy_protocol=True,
                            source=case.src)
    dst = "::1" if ":" in case.src else "10.0.0.1"
    if case.bare:
        header = b""
    elif case.via == "v1":
        header = pp.v1(case.src, dst, case.sport, 443)
    else:
        header = pp.v2(case.src, dst, case.sport, 443, tlvs=case.tlvs)
    source = case.src if case.bare else None
    with pp.Connection(env.port, proxy=header, source=source) as conn:
        return tid, conn.request(request_bytes(case, tid))


def problems(case: Case, echo, tid: str, resp) -> list:
    """What is wrong with the outcome of ``case`` (empty: as expected)."""
    out = []
    seen = echo.find("x-test-id", tid)
    if case.client is None:
        if resp.status != case.status:
            out.append(f"status {resp.status}, expected {case.status}")
        if case.status == 403 and resp.body != b"access denied\n":
            out.append(f"body {resp.body[:80]!r}")
        if seen:
            out.append(f"reached the upstream {len(seen)} time(s)")
        return out
    if resp.status != 200:
        out.append(f"status {resp.status}, expected 200")
    if len(seen) != 1:
        out.append(f"reached the upstream {len(seen)} times")
        return out
    got = {}
    for name, value in seen[0]["headers"]:
        got.setdefault(name, []).append(value)
        folded = name.lower().replace("_", "-")
        if folded in STRIPPED:
            out.append(f"app got {name}: {value!r} (forward.strip)")
        elif folded in OWN_HEADERS and name != folded:
            out.append(f"app got {name}: {value!r}, another spelling of {folded}")
    for name in CLIENT_IP_HEADERS:
        if got.get(name) != [case.client]:
            out.append(f"app got {name}: {got.get(name)}, expected [{case.client!r}]")
    if got.get(LINK_HEADER) != ([case.link] if case.link else None):
        out.append(f"app got {LINK_HEADER}: {got.get(LINK_HEADER)}, expected {case.link!r}")
    port = got.get("x-client-port")
    if case.port == "*":
        if not (port and len(port) == 1 and port[0].isdigit() and port[0] not in ("1", "2")):
            out.append(f"app got x-client-port: {port}, expected the client's own port")
    elif port != ([case.port] if case.port else None):
        out.append(f"app got x-client-port: {port}, expected {case.port!r}")
    return out


def expected_counters(case: Case) -> dict:
    if not case.filter_decides:
        return {}
    outcome = "allowed" if case.client else "denied"
    out = {f"client_ip.{outcome}": 1}
    if case.rule:
        out[f"client_ip.rule.{case.rule}.{outcome}"] = 1
    if case.xff_downstream:
        out["client_ip.downstream_from_xff"] = 1
    if case.invalid:
        out["client_ip.invalid"] = 1
    if case.link_invalid:
        out["client_ip.link_invalid"] = 1
    return out


# Two virtual hosts: admin.example.com (marked for the app by x-vhost) and every other name, matched
# without the port as Istio's gateways do (``ignore_port_in_host_matching``).
ROUTES = {"name": "local", "ignore_port_in_host_matching": True, "virtual_hosts": [
    {"name": "admin", "domains": ["admin.example.com"],
     "request_headers_to_add": [{"header": {"key": "x-vhost", "value": "admin"}}],
     "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "5s"}}]},
    {"name": "all", "domains": ["*"],
     "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "echo", "timeout": "5s"}}]}]}


def start(workdir, echo, configuration=CONFIG, wasm=True, use_remote_address=True, name="envoy",
          set_filter_state=None, build=None):
    opts = E.EnvoyOptions(fragments=manifests.load(PRIVATE_LINK), configuration=configuration, wasm=wasm,
                          build=build,
                          accept_http_10=True, use_remote_address=use_remote_address,
                          allow_requests_without_proxy_protocol=True, set_filter_state=set_filter_state)
    return TunedEnvoy(opts, upstream_port=echo.port, workdir=str(workdir), name=name,
                      hcm={**HCM, "route_config": ROUTES}).start()


def decided(env, tid: str) -> dict:
    """What reached the upstream and what the filter decided, from the access log (for messages)."""
    try:
        entry = env.access_log_entry(tid, timeout=3.0)
    except Exception as e:  # noqa: BLE001 - only for a failure message
        return {"access_log": repr(e)}
    return {k: entry.get(k) for k in ("status", "details", "decision", "rule", "client_ip", "authority",
                                      "path", "upstream_host")}


@pytest.fixture(scope="module", params=[True, False], ids=["use_remote_address=true",
                                                          "use_remote_address=false"])
def gateway(request, echo, wasm, build, tmp_path_factory):
    env = start(tmp_path_factory.mktemp("spoof"), echo, use_remote_address=request.param,
                name=f"spoof-{build}-ura-{str(request.param).lower()}", build=build)
    yield env
    env.stop()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_spoofing_case(gateway, echo, case):
    before = gateway.settled_stats()
    tid, resp = send(gateway, case)
    found = problems(case, echo, tid, resp)
    assert found == [], (found, echo.find("x-test-id", tid)[:1], decided(gateway, tid))
    want = expected_counters(case)
    assert counter_delta(gateway, before, expected=want) == want


# -- 10. issue 20: an Envoy without set_filter_state whose HTTP connection manager takes the downstream
# address from X-Forwarded-For (use_remote_address false, e.g. a WasmPlugin alone on a sidecar): the
# filter cannot know who connected, and refuses (client_ip.on_downstream_from_xff "refuse", the default).
XFF_DOWNSTREAM_CASES = [
    Case("xff-downstream-names-an-allowed-client", xff(T), xff_downstream=True),
    Case("xff-downstream-names-the-allowed-proxy", xff(f"{A}, {PROXY_OK}"), xff_downstream=True),
    Case("xff-downstream-names-an-allowed-client-h2", xff(H2_CLIENT), src=H2_ATTACKER, via="h2",
         xff_downstream=True),
]


@pytest.fixture(scope="module")
def sidecar_without_filter_state(echo, wasm, build, tmp_path_factory):
    env = start(tmp_path_factory.mktemp("spoof-xff-downstream"), echo, use_remote_address=False,
                set_filter_state=False, name=f"spoof-xff-downstream-{build}", build=build)
    yield env
    env.stop()


@pytest.mark.parametrize("case", XFF_DOWNSTREAM_CASES, ids=[c.id for c in XFF_DOWNSTREAM_CASES])
def test_downstream_address_from_xff_is_refused(sidecar_without_filter_state, echo, case):
    env = sidecar_without_filter_state
    before = env.settled_stats()
    tid, resp = send(env, case)
    found = problems(case, echo, tid, resp)
    assert found == [], (found, echo.find("x-test-id", tid)[:1], decided(env, tid))
    want = expected_counters(case)
    assert counter_delta(env, before, expected=want) == want
    assert decided(env, tid)["details"] == "client_ip_filter_downstream_from_xff"


def test_corpus_size():
    """The issue asks for at least 50 attack requests; each runs under both settings."""
    assert len(CASES) >= 50
    assert sum(c.client is None for c in CASES) >= 50


def test_filter_survives_the_corpus(gateway, echo):
    """After every case (obs-text bytes, 60 KB headers...), the VM still serves: no panic left
    the filter failing closed for everyone. The test sends the whole corpus itself, so it checks
    the same thing run alone as after the per-case tests."""
    log_before = len(gateway.log_text())
    answered = 0
    for case in CASES:
        _, resp = send(gateway, case)
        answered += resp.status in (200, case.status)
    assert answered == len(CASES), f"{len(CASES) - answered} of {len(CASES)} cases got another answer"
    case = Case("after-the-corpus", FORGED, src=CLIENT, client=CLIENT, port="40123")
    tid, resp = send(gateway, case)
    assert problems(case, echo, tid, resp) == []
    log = gateway.log_text()[log_before:]
    for trap in ("panicked", "RuntimeError", gateway.tag("critical")):
        assert trap not in log, [line for line in log.splitlines() if trap in line][:3]


def test_corpus_detects_an_unprotected_envoy(echo, envoy_bin, tmp_path_factory):
    """Every case must be able to fail: without the filter, each one's check reports the attack."""
    env = start(tmp_path_factory.mktemp("spoof-nofilter"), echo, wasm=False, name="nofilter")
    try:
        missed = []
        for case in CASES:
            if not case.filter_decides:
                continue
            tid, resp = send(env, case)
            if not problems(case, echo, tid, resp):
                missed.append(case.id)
        assert missed == [], f"cases that pass without the filter: {missed}"
    finally:
        env.stop()


def test_corpus_detects_trusting_every_forwarder(echo, wasm, build, tmp_path_factory):
    """A filter that believes every forwarder (trusted_proxies 0.0.0.0/0, ::/0) is the bug class of
    Traefik #3646 and Higress; every forged-forwarding case must catch it."""
    naive = {**CONFIG, "client_ip": {"trusted_proxies": ["0.0.0.0/0", "::/0"]}}
    env = start(tmp_path_factory.mktemp("spoof-naive"), echo, configuration=naive, name="naive", build=build)
    try:
        missed = []
        for case in CASES:
            if not case.forged_forwarding:
                continue
            tid, resp = send(env, case)
            if not problems(case, echo, tid, resp):
                missed.append(case.id)
        assert missed == [], f"forged-forwarding cases a trust-everyone filter passes: {missed}"
    finally:
        env.stop()


LB_ONLY = manifests.REPO / "envoyfilter" / "ingress-gateway-load-balancer-only.yaml"


def load_balancer_only_match(load_balancer: str) -> dict:
    """The shipped FILTER_CHAIN MERGE value of envoyfilter/ingress-gateway-load-balancer-only.yaml, its
    placeholder ranges filled in with ``load_balancer`` (a /32), as an operator fills in theirs."""
    (value,) = [v for apply_to, op, v in manifests.load(LB_ONLY).others
                if apply_to == "FILTER_CHAIN" and op == "MERGE"]
    match = value["filter_chain_match"]
    match["direct_source_prefix_ranges"] = [{"address_prefix": load_balancer, "prefix_len": 32}]
    return match


class LoadBalancerOnlyEnvoy(TunedEnvoy):
    """The corpus Envoy whose filter chain accepts only connections whose direct (TCP) peer is the
    load balancer (the shipped ``filter_chain_match.direct_source_prefix_ranges``): listener filters run
    first, so the PROXY header is read, but a connection from any other host finds no filter chain."""

    def __init__(self, *args, load_balancer: str, **kw):
        super().__init__(*args, **kw)
        self.load_balancer = load_balancer

    def patch_listener(self, lst: dict) -> dict:
        lst = super().patch_listener(lst)
        for chain in lst["filter_chains"]:
            chain.setdefault("filter_chain_match", {}).update(load_balancer_only_match(self.load_balancer))
        return lst


def test_proxy_header_from_a_host_other_than_the_load_balancer_is_refused(echo, wasm, build, tmp_path_factory):
    """A listener that allows requests without a PROXY header believes any PROXY header, TLVs included:
    whoever reaches it can claim an allowed VPC endpoint. Limiting the filter chain to the load
    balancer's direct address closes that: the same bytes from another host get no answer."""
    load_balancer, other_host = "127.0.0.2", "127.0.0.3"
    opts = E.EnvoyOptions(fragments=manifests.load(PRIVATE_LINK), configuration=CONFIG,
                          allow_requests_without_proxy_protocol=True, build=build)
    env = LoadBalancerOnlyEnvoy(opts, upstream_port=echo.port, workdir=str(tmp_path_factory.mktemp("spoof-lb")),
                                name="lb-only", load_balancer=load_balancer).start()
    try:
        claim = pp.v2(ATTACKER, "10.0.0.1", 40123, 443, tlvs=[(0xEA, b"\x01" + VPCE.encode())])
        tid = new_test_id("spoof")
        raw = request_bytes(Case("claim", ()), tid)
        with pp.Connection(env.port, proxy=claim, source=load_balancer) as conn:
            resp = conn.request(raw)
        assert resp.status == 200 and resp.upstream_header_values(LINK_HEADER) == [f"aws-vpce:{VPCE}"]
        tid = new_test_id("spoof")
        with pp.Connection(env.port, proxy=claim, source=other_host) as conn:
            conn.send(request_bytes(Case("claim", ()), tid))
            assert conn.closed_by_peer(), "a host other than the load balancer got an answer"
        assert echo.find("x-test-id", tid) == []
    finally:
        env.stop()


# -- 11. rate limits (docs/rate-limits.md): a forged header never buys a fresh bucket -----------------
# The Envoy of envoyfilter/ingress-gateway-rate-limit.yaml (the filter writes the key header, the local
# rate limit filter counts per key) with a bucket of RL_BURST requests and no refill during the run.
# The attacker spends its bucket once; then every case, whatever it forges, must still get 429. The
# cases can fail: a limiter keyed by Envoy's own remote_address (taken from X-Forwarded-For) gives
# the XFF cases a fresh bucket, and the same limiter without the filter in front gives the key-header
# cases one.
RL_MANIFEST = manifests.REPO / "envoyfilter" / "ingress-gateway-rate-limit.yaml"
RL_LIMITER = "envoy.filters.http.local_ratelimit"
RL_KEY_HEADER = "x-client-ip-key"
RL_BURST = 3
RL_ATTACKER = "203.0.113.200"
RL_ATTACKER6 = "2001:db8:66:66::1"


@dataclass(frozen=True)
class RateCase:
    id: str
    headers: tuple
    src: str = RL_ATTACKER
    xff: bool = False          # a limiter keyed by Envoy's remote_address gives it a fresh bucket
    key_header: bool = False   # a limiter reading a key header the filter did not write does


RATE_CASES = [
    RateCase("rl-xff-another-client", xff("203.0.113.1"), xff=True),
    RateCase("rl-xff-chain-ending-in-a-trusted-proxy", xff(f"203.0.113.2, {PROXY}"), xff=True),
    RateCase("rl-xff-garbage", xff("not-an-address")),
    RateCase("rl-xff-exempt-address", xff("198.51.100.7"), xff=True),
    RateCase("rl-xff-repeated-lines", (("X-Forwarded-For", "203.0.113.3"), ("X-Forwarded-For", "203.0.113.4")),
             xff=True),
    RateCase("rl-x-real-ip", (("X-Real-IP", "203.0.113.5"),)),
    RateCase("rl-true-client-ip", (("True-Client-IP", "203.0.113.6"),)),
    RateCase("rl-forwarded", (("Forwarded", "for=203.0.113.7"),)),
    RateCase("rl-key-header-another-client", ((RL_KEY_HEADER, "203.0.113.8/32"),), key_header=True),
    RateCase("rl-key-header-mixed-case", (("X-Client-IP-Key", "203.0.113.9/32"),), key_header=True),
    RateCase("rl-key-header-repeated", ((RL_KEY_HEADER, "203.0.113.10/32"), (RL_KEY_HEADER, "x")),
             key_header=True),
    RateCase("rl-key-header-unknown", ((RL_KEY_HEADER, "unknown"),), key_header=True),
    RateCase("rl-key-header-exempt-key", ((RL_KEY_HEADER, "198.51.100.7/32"),), key_header=True),
    RateCase("rl-key-header-and-xff", ((RL_KEY_HEADER, "203.0.113.11/32"),) + xff("203.0.113.11"),
             xff=True, key_header=True),
    RateCase("rl-key-header-underscore-spelling", (("x_client_ip_key", "203.0.113.12/32"),)),
    RateCase("rl-ipv6-another-address-of-the-64", (), src="2001:db8:66:66:ffff::2"),
    RateCase("rl-ipv6-another-address-forging-xff", xff("2001:db8:77::1"), src="2001:db8:66:66::3", xff=True),
]
RATE_IDS = [c.id for c in RATE_CASES]
assert len(set(RATE_IDS)) == len(RATE_IDS), "rate-limit case ids must be unique"


def rl_start(workdir, echo, wasm=True, remote_address=False, name="rl", build=None):
    """The rate-limit manifest's Envoy; ``remote_address``: its limiter keyed by Envoy's
    ``remote_address`` action instead, on a connection manager that takes it from X-Forwarded-For."""
    frags = manifests.load(RL_MANIFEST)
    limiter = next(copy.deepcopy(f) for f in frags.http_filters if f["name"] == RL_LIMITER)
    config = limiter["typed_config"]
    config["descriptors"][0]["token_bucket"] = {"max_tokens": RL_BURST, "tokens_per_fill": RL_BURST,
                                                "fill_interval": "3600s"}
    if remote_address:
        config["descriptors"][0]["entries"] = [{"key": "remote_address"}]
        config["rate_limits"] = [{"actions": [{"remote_address": {}}]}]
    opts = E.EnvoyOptions(fragments=frags, wasm=wasm, use_remote_address=not remote_address,
                          http_filter_overrides={RL_LIMITER: limiter}, build=build)
    return E.Envoy(opts, upstream_port=echo.port, workdir=str(workdir), name=name).start()


def rl_send(env, src: str, headers=()) -> int:
    lines = [(n, v) for n, v in headers]
    dst = "::1" if ":" in src else "10.0.0.1"
    return pp.request(env.port, proxy=pp.v2(src, dst, 40123, 443), headers=lines).status


def rl_spend(env, own_key: bool = False) -> None:
    """The attackers (IPv4 and one IPv6 /64) spend their buckets: RL_BURST pass, then 429.
    ``own_key``: each sends the key the filter would write (for a limiter without the filter)."""
    for src, key in ((RL_ATTACKER, f"{RL_ATTACKER}/32"), (RL_ATTACKER6, "2001:db8:66:66::/64")):
        headers = [(RL_KEY_HEADER, key)] if own_key else []
        got = [rl_send(env, src, headers) for _ in range(RL_BURST + 1)]
        assert got == [200] * RL_BURST + [429], (src, got)


@pytest.fixture(scope="module")
def rate_limited(echo, wasm, build, tmp_path_factory):
    env = rl_start(tmp_path_factory.mktemp("spoof-rl"), echo, name=f"rl-{build}", build=build)
    rl_spend(env)
    yield env
    env.stop()


@pytest.mark.parametrize("case", RATE_CASES, ids=RATE_IDS)
def test_rate_limit_case(rate_limited, case):
    assert rl_send(rate_limited, case.src, case.headers) == 429, "a forged header gave a fresh bucket"


@pytest.mark.parametrize("remote_address,flag", [(True, "xff"), (False, "key_header")],
                         ids=["limiter-keyed-by-remote-address", "limiter-without-the-filter"])
def test_rate_limit_corpus_detects_a_forgeable_key(echo, wasm, tmp_path_factory, remote_address, flag):
    """Every XFF case must get a fresh bucket from a limiter keyed by Envoy's remote_address, and
    every key-header case from the shipped limiter without the filter in front of it."""
    env = rl_start(tmp_path_factory.mktemp("spoof-rl-naive"), echo, wasm=remote_address,
                   remote_address=remote_address, name=f"rl-naive-{flag}")
    try:
        rl_spend(env, own_key=not remote_address)
        missed = [c.id for c in RATE_CASES if getattr(c, flag) and rl_send(env, c.src, c.headers) == 429]
        assert missed == [], f"cases this forgeable limiter still limits: {missed}"
        assert sum(getattr(c, flag) for c in RATE_CASES) >= 5
    finally:
        env.stop()
