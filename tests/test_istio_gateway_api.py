"""Gateway API through Istio's own translation (tests/harness/istio.py): an Istio ``Gateway``
(gatewayClassName ``istio``) with an ``HTTPRoute`` to httpbin, and the gateway WasmPlugin of
istio-examples/wasmplugin-ingress-gateway.yaml attached with ``targetRefs`` instead of a selector (its
set_filter_state EnvoyFilter likewise), served to a real Envoy, with traffic.

The Gateway's Deployment and Service are the ones Istio's gateway deployment controller would make
(``<name>-istio``, pods labelled ``gateway.networking.k8s.io/gateway-name``); that controller is not
part of the translation, so the test supplies them.
"""
from __future__ import annotations

import copy

import pytest
import yaml

from harness import istio as I
from harness import proxyproto as pp
from harness.client import new_test_id
from harness.istio_sets import APP_PORT, EX, VERSIONS, gateway_annotation
from harness.upstream import header_values

APP_IP = "127.0.0.64"      # this module's httpbin Pod
PORT = 8080                # the Gateway listener's port (and its Service's target port)
TARGET = [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}]


def attached_by_target_refs() -> str:
    """wasmplugin-ingress-gateway.yaml with targetRefs to the Gateway instead of a workload selector,
    in the Gateway's namespace."""
    out = []
    for doc in I.documents((EX / "wasmplugin-ingress-gateway.yaml").read_text()):
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = "default"
        doc["spec"].pop("selector", None)
        doc["spec"].pop("workloadSelector", None)
        doc["spec"]["targetRefs"] = TARGET
        out.append(yaml.safe_dump(doc))
    return "\n---\n".join(out)


GATEWAY_API = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: istio}}
spec: {{controllerName: istio.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: istio
  listeners: [{{name: http, port: {PORT}, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: httpbin, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: httpbin, port: 8000}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: gw-istio, namespace: default}}
spec:
  selector: {{gateway.networking.k8s.io/gateway-name: gw}}
  ports: [{{name: http, port: {PORT}, targetPort: {PORT}}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: gw-istio, namespace: default}}
spec:
  selector: {{matchLabels: {{gateway.networking.k8s.io/gateway-name: gw}}}}
  template:
    metadata: {{labels: {{gateway.networking.k8s.io/gateway-name: gw}}}}
    spec: {{containers: [{{name: istio-proxy, image: auto}}]}}
"""


@pytest.fixture(scope="module")
def app():
    echo = I.PodEcho(APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=VERSIONS, ids=lambda v: f"istio{v}")
def gateway(request, wasm, app, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"gwapi-{request.param}")
    cp = I.IstioControlPlane(request.param, [EX / "httpbin.yaml"], wasm, workdir,
                             extra=[GATEWAY_API, I.for_test(attached_by_target_refs(), wasm)],
                             pod_ips={"gw-istio": "127.0.0.1", "httpbin": APP_IP}).start()
    envoy = I.IstioEnvoy(cp, node="gateway", workdir=workdir, namespace="default",
                         labels="gateway.networking.k8s.io/gateway-name=gw",
                         proxy_config=gateway_annotation(), pod_name="gw-istio-0")
    try:
        envoy.start()
        envoy.wait_listener(PORT)
        envoy.wait_wasm_extension_config()
    except Exception:
        cp.stop()
        raise
    yield envoy
    envoy.stop()
    cp.stop()


def request(src, headers=()):
    tid = new_test_id("gwapi")
    resp = pp.request(PORT, proxy=pp.v2(src, "10.0.0.1", 40000, 80), host="httpbin.example.com",
                      path="/get", headers=[("x-test-id", tid), *headers])
    return tid, resp


def test_gateway_api_route_admits_an_allowed_client_with_its_address_forwarded(gateway, app):
    tid, resp = request("203.0.113.7", headers=[("x-real-ip", "198.51.100.7")])
    assert resp.status == 200, resp
    (rec,) = app.find("x-test-id", tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.7"]


def test_gateway_api_route_refuses_a_client_outside_the_allow_list(gateway, app):
    tid, resp = request("192.0.2.55", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert resp.status == 403
    assert app.find("x-test-id", tid) == []


def test_target_refs_attach_the_plugin_to_the_gateway_api_gateway(gateway):
    (config,) = gateway.wasm_extension_configs()
    assert config["root_id"] == "client_ip_filter"
