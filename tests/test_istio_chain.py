"""The filter's place in Istio's HTTP filter chain, with Istio's own translation (tests/harness/istio.py):
an AuthorizationPolicy (remoteIpBlocks, and a condition on x-real-ip) and a CUSTOM ext_authz provider
(a loopback HTTP service) on the same gateway as the filter, on both routes (EnvoyFilter, WasmPlugin).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import istio as I
from harness import proxyproto as pp
from harness.client import new_test_id
from harness.istio_sets import (APP_IP, APP_PORT, COMMON, EF, EX, GATEWAY_HTTP_PORT, POD_IPS, ROUTES,  # noqa: F401
                                VERSIONS, Gateway, arrived, gateway_annotation)
from harness.upstream import header_values


CHAIN_APP_IP = "127.0.0.63"   # this module's httpbin Pod (another address than test_istio_xds.py's)


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(CHAIN_APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


# -- the filter's place in Istio's HTTP filter chain -------------------------------------------------

class ExtAuthz:
    """A CUSTOM ext_authz provider (HTTP service) on loopback: allows every request and records the
    x-real-ip and x-forwarded-for it was shown."""

    def __init__(self, ip: str):
        seen = self.seen = []

        class H(BaseHTTPRequestHandler):
            def _check(self):
                seen.append({"x-test-id": self.headers.get("x-test-id"),
                             "x-real-ip": self.headers.get("x-real-ip"),
                             "x-forwarded-for": self.headers.get("x-forwarded-for")})
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _check

            def log_message(self, *a):
                pass
        self.server = ThreadingHTTPServer((ip, 0), H)
        self.ip, self.port = ip, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def check_of(self, tid):
        return [s for s in self.seen if s["x-test-id"] == tid]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


AUTHZ_IP = "127.0.0.62"


def chain_config(port: int) -> tuple:
    """An AuthorizationPolicy (remoteIpBlocks, and a condition on x-real-ip) and a CUSTOM ext_authz
    provider on the gateway; the provider's service is a ServiceEntry at the loopback server."""
    mesh = json.dumps({"extensionProviders": [{
        "name": "test-ext-authz",
        "envoyExtAuthzHttp": {"service": "ext-authz.local", "port": port,
                              "includeRequestHeadersInCheck": ["x-real-ip", "x-forwarded-for", "x-test-id"]}}]})
    extra = f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  hosts: [ext-authz.local]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints: [{{address: {AUTHZ_IP}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: CUSTOM
  provider: {{name: test-ext-authz}}
  rules: [{{}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: only-one-client, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{remoteIpBlocks: ["203.0.113.0/24"]}}}}]
    when: [{{key: "request.headers[x-real-ip]", values: ["203.0.113.7"]}}]
"""
    return mesh, extra


@pytest.fixture(scope="module", params=[(v, r) for v in VERSIONS for r in ROUTES],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def guarded_gateway(request, wasm, app, tmp_path_factory):
    version, route = request.param
    authz = ExtAuthz(AUTHZ_IP)
    mesh, extra = chain_config(authz.port)
    try:
        gw = Gateway(version, route, wasm, tmp_path_factory.mktemp(f"guarded-{version}-{route}"),
                     extra=[extra], mesh=mesh, pod_ips={**POD_IPS, "httpbin": CHAIN_APP_IP})
    except Exception:
        authz.stop()
        raise
    gw.authz = authz
    gw.route = route
    yield gw
    gw.stop()
    authz.stop()


def test_authorization_policy_sees_the_filters_x_real_ip(guarded_gateway, app):
    tid, resp = guarded_gateway.request("203.0.113.7")
    assert resp.status == 200, resp
    assert arrived(app, tid)


def test_client_forging_x_real_ip_gets_nothing_past_authorization_policy(guarded_gateway, app):
    # 203.0.113.8 is allowed by the filter but not by the policy's x-real-ip condition; it forges the
    # one address the policy admits
    tid, resp = guarded_gateway.request("203.0.113.8", headers=[("x-real-ip", "203.0.113.7")])
    assert resp.status == 403
    assert arrived(app, tid) == []


def test_client_forging_x_forwarded_for_gets_nothing_past_authorization_policy(guarded_gateway, app):
    tid, resp = guarded_gateway.request("203.0.113.8", headers=[("X-Forwarded-For", "203.0.113.7")])
    assert resp.status == 403
    assert arrived(app, tid) == []


def ext_authz_first(gw) -> bool:
    """Istio puts a CUSTOM provider's ext_authz before every WasmPlugin phase (AUTHN included); only
    the EnvoyFilter route (INSERT_FIRST) runs before it."""
    return gw.route == "wasmplugin"


def test_ext_authz_is_shown_the_filters_x_real_ip_on_the_envoyfilter_route_only(guarded_gateway, app):
    """EnvoyFilter route (INSERT_FIRST): the CUSTOM provider is asked only about clients the filter
    admitted, and is shown the filter's x-real-ip, never a forged one.
    WasmPlugin route: Istio runs a CUSTOM provider's ext_authz before every WasmPlugin phase (AUTHN
    included), so the provider is shown the client's own header -- what docs/istio.md tells users of a
    CUSTOM provider (use the EnvoyFilter route). The policy after the plugin still refuses the forger."""
    if ext_authz_first(guarded_gateway):
        tid, resp = guarded_gateway.request("203.0.113.8", headers=[("x-real-ip", "203.0.113.7")])
        (check,) = guarded_gateway.authz.check_of(tid)
        assert check["x-real-ip"] == "203.0.113.7"  # forged: ext_authz ran before the plugin
        assert resp.status == 403
        return
    tid, resp = guarded_gateway.request("192.0.2.55", headers=[("x-real-ip", "203.0.113.7")])
    assert resp.status == 403
    assert guarded_gateway.authz.check_of(tid) == []
    tid, resp = guarded_gateway.request("203.0.113.8", headers=[("x-real-ip", "203.0.113.7"),
                                                              ("X-Forwarded-For", "203.0.113.7")])
    (check,) = guarded_gateway.authz.check_of(tid)
    assert check["x-real-ip"] == "203.0.113.8"
