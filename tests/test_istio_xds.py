"""The shipped manifests as a user applies them, translated by Istio's own control plane and served to
a real Envoy (tests/harness/istio.py): for each pinned Istio release, with the Envoy that release
ships. Traffic is real: raw PROXY v1/v2 clients and HAProxy ``send-proxy-v2`` in front of the gateway,
an echo app behind it at its Pod's address.

The manifest sets (each the files a user applies, from envoyfilter/ and istio-examples/):

* ``envoyfilter``: envoyfilter/ingress-gateway.yaml on a gateway without gatewayTopology.proxyProtocol;
* ``wasmplugin``: istio-examples/wasmplugin-ingress-gateway.yaml on the injected gateway of
  istio-examples/ingress-gateway.yaml (its pod annotation turns gatewayTopology.proxyProtocol on);
* both with the gateway Service (gateway-service-aws-nlb.yaml), httpbin and its Gateway/VirtualService.

Configuration values under test are the manifests' own (allow 203.0.113.0/24, 198.51.100.7 and
2001:db8::/32, deny 203.0.113.66, trusted proxies 10.0.0.0/8 and fd00::/8).
"""
from __future__ import annotations

import json

import pytest

from harness import istio as I
from harness import proxyproto as pp
from harness.client import new_test_id
from harness.istio_sets import (APP_IP, APP_PORT, COMMON, EF, EX, GATEWAY_HTTP_PORT, POD_IPS, ROUTES,  # noqa: F401
                                VERSIONS, Gateway, arrived, gateway_annotation)
from harness.upstream import header_values


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=[(v, r) for v in VERSIONS for r in ROUTES],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def gateway(request, wasm, app, tmp_path_factory):
    version, route = request.param
    gw = Gateway(version, route, wasm, tmp_path_factory.mktemp(f"gw-{version}-{route}"))
    gw.route, gw.wasm = route, wasm
    yield gw
    gw.stop()


# -- allowed and refused clients, headers at the app ------------------------------------------------

def test_allowed_client_reaches_the_app_with_its_address_in_the_forwarded_headers(gateway, app):
    tid, resp = gateway.request("203.0.113.7")
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.7"]
    assert header_values(rec, "x-client-ip") == ["203.0.113.7"]
    assert header_values(rec, "x-client-port") == ["40000"]


def test_client_outside_the_allow_list_is_refused_before_the_app(gateway, app):
    tid, resp = gateway.request("192.0.2.55")
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_denied_address_inside_an_allowed_range_is_refused(gateway, app):
    tid, resp = gateway.request("203.0.113.66")
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_proxy_v1_client_is_resolved_like_v2(gateway, app):
    tid, resp = gateway.request("198.51.100.7", proxy=pp.v1("198.51.100.7", "10.0.0.1", 40001, 80))
    assert resp.status == 200
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["198.51.100.7"]


def test_ipv6_client_in_an_allowed_range_is_allowed(gateway, app):
    tid, resp = gateway.request("2001:db8::5", proxy=pp.v2("2001:db8::5", "fd00::1", 40002, 80))
    assert resp.status == 200
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["2001:db8::5"]


# -- spoofing -------------------------------------------------------------------------------------

def test_refused_client_forging_x_forwarded_for_with_an_allowed_address_is_refused(gateway, app):
    tid, resp = gateway.request("192.0.2.55", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_refused_client_forging_x_real_ip_is_refused(gateway, app):
    tid, resp = gateway.request("192.0.2.55", headers=[("x-real-ip", "203.0.113.7"),
                                                      ("x-client-ip", "203.0.113.7")])
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_forged_forwarded_headers_of_an_allowed_client_are_replaced(gateway, app):
    tid, resp = gateway.request("203.0.113.8", headers=[("x-real-ip", "198.51.100.7"),
                                                       ("X-Client-IP", "198.51.100.7"),
                                                       ("x-client-port", "1")])
    assert resp.status == 200
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.8"]
    assert header_values(rec, "x-client-ip") == ["203.0.113.8"]
    assert header_values(rec, "x-client-port") == ["40000"]


def test_allowed_client_behind_a_trusted_proxy_in_the_header_is_resolved_through_it(gateway, app):
    # the PROXY source is a trusted proxy (10.0.0.0/8): the client is the XFF entry before it
    tid, resp = gateway.request("10.1.2.3", headers=[("X-Forwarded-For", "203.0.113.9")])
    assert resp.status == 200
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.9"]


def test_connection_without_a_proxy_header_gets_no_response(gateway, app):
    tid = new_test_id("istio")
    raw = pp.build_request("GET", "/get", "httpbin.example.com", [("x-test-id", tid)], b"", "HTTP/1.1",
                           close=True)
    out = pp.raw_exchange(GATEWAY_HTTP_PORT, raw, timeout=3.0)
    assert b"HTTP/1.1 200" not in out
    assert arrived(app, tid) == []


def test_haproxy_send_proxy_v2_client_is_decided_by_its_own_address(gateway, app, haproxy_factory):
    # HAProxy's client is 127.0.0.1, outside the allow list: refused, although XFF names an allowed one
    hap = haproxy_factory(GATEWAY_HTTP_PORT, mode="tcp", send_proxy="v2")
    tid = new_test_id("istio")
    resp = pp.request(hap.port, host="httpbin.example.com", path="/get",
                      headers=[("x-test-id", tid), ("X-Forwarded-For", "203.0.113.7")])
    assert resp.status == 403
    assert arrived(app, tid) == []




# -- what Istio made of the WasmPlugin ------------------------------------------------------------

def http_filter_names(envoy) -> list:
    for c in envoy.config_dump()["configs"]:
        for lst in c.get("dynamic_listeners", []):
            if lst["name"] != f"0.0.0.0_{GATEWAY_HTTP_PORT}":
                continue
            for fc in lst["active_state"]["listener"]["filter_chains"]:
                for f in fc["filters"]:
                    if f["name"] == "envoy.filters.network.http_connection_manager":
                        return [h["name"] for h in f["typed_config"]["http_filters"]]
    raise LookupError("no gateway HTTP listener in the config dump")


def test_the_filter_is_where_istio_put_it(gateway):
    """EnvoyFilter route: first in the HTTP chain (INSERT_FIRST). WasmPlugin route: Istio's
    translation of wasmplugin-ingress-gateway.yaml served over ECDS: root id = pluginName,
    configuration = pluginConfig as JSON, fail closed, the module file."""
    names = http_filter_names(gateway.envoy)
    if gateway.route == "envoyfilter":
        assert names[0] == "client-ip-filter", names
        return
    assert any(n.endswith("istio-system.client-ip-filter~istio-translated-wasmplugin")
               or n.endswith("istio-system.client-ip-filter") for n in names), names
    plugin = next(d for d in I.documents((EX / "wasmplugin-ingress-gateway.yaml").read_text())
                  if d["kind"] == "WasmPlugin")
    (config,) = gateway.envoy.wasm_extension_configs()
    assert config["root_id"] == plugin["spec"]["pluginName"]
    assert json.loads(config["configuration"]["value"]) == plugin["spec"]["pluginConfig"]
    assert config.get("fail_open", False) is False
    assert config.get("failure_policy", "FAIL_CLOSED") == "FAIL_CLOSED"
    assert config["vm_config"]["code"]["local"]["filename"] == gateway.wasm


# -- private link: the listener filter the WasmPlugin example leaves on the gateway ------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_private_link_wasmplugin_leaves_one_proxy_protocol_filter_with_the_tlv_rule(version, wasm, tmp_path):
    """Istio's translation of wasmplugin-private-link.yaml on the annotated gateway: Istio's own
    proxy_protocol filter is gone and the manifest's, with the AWS TLV rule, is the only one."""
    out = I.dump(version, COMMON + [EX / "wasmplugin-private-link.yaml"], wasm, tmp_path, pod_ips=POD_IPS,
                 node_args=["--proxy-config", gateway_annotation()])
    (lst,) = [x for x in out["listeners"] if x["name"] == f"0.0.0.0_{GATEWAY_HTTP_PORT}"]
    pps = [f for f in lst["listener_filters"] if f["name"] == "envoy.filters.listener.proxy_protocol"]
    assert len(pps) == 1, lst["listener_filters"]
    assert [r["tlv_type"] for r in pps[0]["typed_config"]["rules"]] == [234]
