"""The CloudFront list source through Istio's own translation (tests/harness/istio.py): the shipped
manifests served by istio-xds to a real gateway Envoy, whose filter fetches an ip-ranges.json from a
local nginx over TLS (the manifests' TLS origination, with a test CA) and trusts X-Forwarded-For only
from a proxy address inside the CloudFront ranges it lists.

The manifest sets (each beside the gateway Service, httpbin and its Gateway/VirtualService):

* ``wasmplugin``: istio-examples/wasmplugin-cloudfront-gateway.yaml (ServiceEntry, DestinationRule,
  WasmPlugin) with the set_filter_state EnvoyFilter of wasmplugin-ingress-gateway.yaml (its header says
  so), on the annotated gateway of istio-examples/ingress-gateway.yaml;
* ``envoyfilter``: envoyfilter/ingress-gateway-cloudfront.yaml (with its CLUSTER patch).

Test-only changes (tests/istio/README.md): the list server's address (loopback nginx instead of
ip-ranges.amazonaws.com:443: a ServiceEntry ``endpoints`` entry; the CLUSTER patch's socket address)
and the CA that signs its certificate (DestinationRule ``caCertificates``; the CLUSTER patch's
``trusted_ca``) instead of the proxy image's system bundle. TLS origination with SNI stays.
"""
from __future__ import annotations

import pytest
import yaml

from harness import istio as I
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.istio_sets import APP_PORT, EF, EX, POD_IPS, VERSIONS, Gateway, arrived
from harness.network import Certificates
from harness.upstream import header_values

CF_APP_IP = "127.0.0.82"     # this module's httpbin Pod (another address than the other Istio tests')
AWS_HOST = "ip-ranges.amazonaws.com"
# What the served ip-ranges.json lists: CloudFront edges, and an AMAZON range that is not CloudFront.
CLOUDFRONT_V4 = [("13.33.0.0/16", "CLOUDFRONT", "GLOBAL"), ("3.5.140.0/22", "AMAZON", "ap-northeast-2")]
CLOUDFRONT_V6 = [("2600:9000::/28", "CLOUDFRONT", "GLOBAL")]
EDGE, EDGE_V6, NOT_AN_EDGE = "13.33.1.1", "2600:9000::1", "3.5.140.9"
CLIENT, DENIED_CLIENT = "198.51.100.20", "192.0.2.50"   # the manifests deny 192.0.2.0/24


def set_filter_state_envoyfilter() -> dict:
    (doc,) = [d for d in I.documents((EX / "wasmplugin-ingress-gateway.yaml").read_text())
              if d["kind"] == "EnvoyFilter"]
    return doc


def wasmplugin_files(workdir, port: int, ca) -> list:
    """wasmplugin-cloudfront-gateway.yaml with the list server at loopback and the test CA."""
    docs = I.documents((EX / "wasmplugin-cloudfront-gateway.yaml").read_text())
    for d in docs:
        if d["kind"] == "ServiceEntry":
            d["spec"]["endpoints"] = [{"address": "127.0.0.1",
                                       "ports": {d["spec"]["ports"][0]["name"]: port}}]
        if d["kind"] == "DestinationRule":
            (pl,) = d["spec"]["trafficPolicy"]["portLevelSettings"]
            pl["tls"]["caCertificates"] = str(ca)
    out = workdir / "wasmplugin-cloudfront-gateway.yaml"
    out.write_text(yaml.safe_dump_all(docs + [set_filter_state_envoyfilter()]))
    return [out]


def envoyfilter_files(workdir, port: int, ca) -> list:
    """ingress-gateway-cloudfront.yaml with its CLUSTER patch at loopback and the test CA."""
    (doc,) = I.documents((EF / "ingress-gateway-cloudfront.yaml").read_text())
    (cluster,) = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
    value = cluster["patch"]["value"]
    sock = value["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (sock["address"], sock["port_value"]) == (AWS_HOST, 443)
    sock["address"], sock["port_value"] = "127.0.0.1", port
    tls = value["transport_socket"]["typed_config"]
    tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] = str(ca)
    out = workdir / "ingress-gateway-cloudfront.yaml"
    out.write_text(yaml.safe_dump(doc))
    return [out]


SETS = {"wasmplugin": (wasmplugin_files, "annotation"), "envoyfilter": (envoyfilter_files, None)}


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(CF_APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module")
def ranges(tmp_path_factory):
    """nginx serving ip-ranges.json over TLS, as ip-ranges.amazonaws.com (a test CA signs it)."""
    work = tmp_path_factory.mktemp("cf-lists")
    certs = Certificates(work / "certs", [AWS_HOST])
    root = work / "root"
    root.mkdir()
    L.write_file(root / "ip-ranges.json", L.aws_ip_ranges(CLOUDFRONT_V4, CLOUDFRONT_V6))
    server = L.Nginx(str(root), workdir=str(work / "nginx"), tls=certs.pair(AWS_HOST))
    server.ca = certs.ca
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=[(v, s) for v in VERSIONS for s in SETS],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def gateway(request, wasm, app, ranges, tmp_path_factory):
    version, name = request.param
    work = tmp_path_factory.mktemp(f"cf-{version}-{name}")
    make_files, pc = SETS[name]
    routes = {name: (make_files(work, ranges.port, ranges.ca), pc)}
    fetched_before = ranges.count("/ip-ranges.json", 200)
    gw = Gateway(version, name, wasm, work, pod_ips={**POD_IPS, "httpbin": CF_APP_IP}, routes=routes)
    gw.set = name
    try:
        # the ranges are in: nginx served them through the gateway's TLS cluster, and a denied client
        # behind an edge is refused (until then the edge itself is the client, and passes)
        procs.wait_until(lambda: ranges.count("/ip-ranges.json", 200) > fetched_before, 30,
                         what="the gateway fetching ip-ranges.json")
        procs.wait_until(lambda: via(gw, EDGE, DENIED_CLIENT)[1].status == 403, 15, interval=0.2,
                         what="the CloudFront ranges in force")
    except Exception:
        gw.stop()
        raise
    yield gw
    gw.stop()


def via(gateway, proxy_addr, client):
    """A request arriving from ``proxy_addr`` (the PROXY v2 source) that names ``client`` in XFF."""
    dst = "fd00::1" if ":" in proxy_addr else "10.0.0.1"
    return gateway.request(proxy_addr, headers=[("X-Forwarded-For", client)],
                           proxy=pp.v2(proxy_addr, dst, 40000, 80))


@pytest.mark.parametrize("edge", [EDGE, EDGE_V6])
def test_cloudfront_edge_is_trusted_and_its_client_reaches_the_app(gateway, app, edge):
    tid, resp = via(gateway, edge, CLIENT)
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == [CLIENT]


def test_denied_client_behind_a_cloudfront_edge_is_refused(gateway, app):
    tid, resp = via(gateway, EDGE, DENIED_CLIENT)
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_address_outside_the_cloudfront_ranges_is_not_trusted_with_x_forwarded_for(gateway, app):
    # an AMAZON range of the same file, not CloudFront: its XFF is ignored, it is the client itself
    tid, resp = via(gateway, NOT_AN_EDGE, CLIENT)
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == [NOT_AN_EDGE]


def test_address_outside_the_ranges_cannot_hide_behind_an_allowed_header(gateway, app):
    tid, resp = via(gateway, DENIED_CLIENT, CLIENT)
    assert resp.status == 403
    assert arrived(app, tid) == []
