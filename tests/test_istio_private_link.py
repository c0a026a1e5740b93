"""Private link through Istio's own translation (tests/harness/istio.py): the shipped private-link
manifests, served by istio-xds to a real gateway Envoy, with PROXY v2 headers carrying the AWS
PrivateLink TLV (0xEA, subtype 0x01, the VPC endpoint id) as an NLB endpoint service sends them.

The manifest sets (each beside the gateway Service, httpbin and its Gateway/VirtualService):

* ``wasmplugin``: istio-examples/wasmplugin-private-link.yaml (WasmPlugin and its EnvoyFilter) on the
  annotated gateway of istio-examples/ingress-gateway.yaml (gatewayTopology.proxyProtocol);
* ``envoyfilter``: envoyfilter/ingress-gateway-private-link.yaml (TLVs into filter state, Envoy 1.39+);
* ``envoyfilter-metadata``: envoyfilter/ingress-gateway-private-link-metadata.yaml (TLV into dynamic
  metadata, copied into filter state by set_filter_state).

Values under test are the manifests' own: endpoints vpce-0a1b2c3d4e5f60718 and vpce-0123456789abcdef0
allowed, vpce-0badbadbadbadbad0 denied (EnvoyFilter sets), the id in x-client-link at the app.
"""
from __future__ import annotations

import pytest

from harness import istio as I
from harness import proxyproto as pp
from harness.istio_sets import APP_PORT, EF, EX, POD_IPS, VERSIONS, Gateway, arrived
from harness.upstream import header_values

PL_APP_IP = "127.0.0.81"   # this module's httpbin Pod (another address than the other Istio tests')

VPCE_A = "vpce-0a1b2c3d4e5f60718"        # allowed
VPCE_B = "vpce-0123456789abcdef0"        # allowed
VPCE_DENIED = "vpce-0badbadbadbadbad0"   # denied (EnvoyFilter sets)
VPCE_OTHER = "vpce-0000111122223333f"    # not listed

SETS = {
    "wasmplugin": ([EX / "wasmplugin-private-link.yaml"], "annotation"),
    "envoyfilter": ([EF / "ingress-gateway-private-link.yaml"], None),
    "envoyfilter-metadata": ([EF / "ingress-gateway-private-link-metadata.yaml"], None),
}
# The oldest Istio minor each set is for (its header): the filter-state sets need Envoy 1.39 (Istio
# 1.31) for tlv_location and value_string_encoding; the metadata set is for Istio 1.21+.
SINCE = {"wasmplugin": (1, 31), "envoyfilter": (1, 31), "envoyfilter-metadata": (1, 21)}


def minor(version: str) -> tuple:
    return tuple(int(x) for x in version.split(".")[:2])


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(PL_APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=[(v, s) for v in VERSIONS for s in SETS if minor(v) >= SINCE[s]],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def gateway(request, wasm, app, tmp_path_factory):
    version, name = request.param
    gw = Gateway(version, name, wasm, tmp_path_factory.mktemp(f"pl-{version}-{name}"),
                 pod_ips={**POD_IPS, "httpbin": PL_APP_IP}, routes=SETS)
    gw.set = name
    yield gw
    gw.stop()


def through_link(gateway, vpce=None, src="198.18.0.10"):
    """A request through the NLB: PROXY v2 from ``src``, with the endpoint's TLV when ``vpce`` is set."""
    tlvs = [pp.tlv_aws_vpce(vpce)] if vpce else []
    return gateway.request(src, proxy=pp.v2(src, "10.0.0.1", 40000, 80, tlvs=tlvs))


@pytest.mark.parametrize("vpce", [VPCE_A, VPCE_B])
def test_listed_endpoint_reaches_the_app_with_its_id_in_the_link_header(gateway, app, vpce):
    tid, resp = through_link(gateway, vpce)
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-client-link") == [f"aws-vpce:{vpce}"]
    assert header_values(rec, "x-real-ip") == ["198.18.0.10"]


def test_endpoint_not_in_the_allow_list_is_refused_before_the_app(gateway, app):
    tid, resp = through_link(gateway, VPCE_OTHER)
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_connection_without_an_endpoint_tlv_is_refused(gateway, app):
    tid, resp = through_link(gateway, None)
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_denied_endpoint_is_refused(gateway, app):
    """Denied in the EnvoyFilter sets; wasmplugin-private-link.yaml has no deny list, so there the
    endpoint is refused as not listed."""
    tid, resp = through_link(gateway, VPCE_DENIED)
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_forged_link_header_of_a_listed_endpoint_is_replaced(gateway, app):
    tid, resp = gateway.request("198.18.0.10", headers=[("x-client-link", f"aws-vpce:{VPCE_B}")],
                                proxy=pp.v2("198.18.0.10", "10.0.0.1", 40000, 80, tlvs=[pp.tlv_aws_vpce(VPCE_A)]))
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-client-link") == [f"aws-vpce:{VPCE_A}"]


def test_forged_link_header_without_a_tlv_is_refused(gateway, app):
    tid, resp = gateway.request("198.18.0.10", headers=[("x-client-link", f"aws-vpce:{VPCE_A}")],
                                proxy=pp.v2("198.18.0.10", "10.0.0.1", 40000, 80))
    assert resp.status == 403
    assert arrived(app, tid) == []
