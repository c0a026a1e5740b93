"""TLS passthrough through Istio's translation (tests/harness/istio.py): the filter as a NETWORK filter on
the gateway's passthrough server, from envoyfilter/gateway-tls-passthrough.yaml and from
istio-examples/wasmplugin-network.yaml, with the app terminating TLS itself and reading the upstream
PROXY header Istio's DestinationRule proxyProtocol makes the gateway send.
"""
from __future__ import annotations

import pytest

from harness import istio as I
from harness import proxyproto as pp
from harness.client import new_test_id
from harness.istio_sets import (APP_IP, APP_PORT, COMMON, EF, EX, GATEWAY_HTTP_PORT, POD_IPS, ROUTES,  # noqa: F401
                                VERSIONS, Gateway, arrived, gateway_annotation)
from harness import network as N




# -- TLS passthrough: the network filter ------------------------------------------------------------


GATEWAY_TLS_PORT = 8443        # the gateway Service's targetPort for port 443
DB = "db.example.com"


def passthrough_config(app_port: int) -> str:
    """What the user has besides our files: the app (Service app.example, port 8443, a Pod at
    127.0.0.1 whose container listens on app_port), a Gateway server on 443 with tls.mode PASSTHROUGH
    and a VirtualService routing db.example.com to it by SNI."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: example}}
spec:
  selector: {{app: app}}
  ports: [{{name: tls, port: 8443, targetPort: {app_port}, protocol: TCP}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: example}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers: [{{name: app, image: app, ports: [{{containerPort: {app_port}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: passthrough, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: tls, protocol: TLS}}
    tls: {{mode: PASSTHROUGH}}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: istio-system}}
spec:
  hosts: ["{DB}"]
  gateways: [passthrough]
  tls:
  - match: [{{port: 443, sniHosts: ["{DB}"]}}]
    route: [{{destination: {{host: app.example.svc.cluster.local, port: {{number: 8443}}}}}}]
"""


PASSTHROUGH_ROUTES = {
    "envoyfilter": ([EF / "gateway-tls-passthrough.yaml"], None),
    "wasmplugin": ([EX / "wasmplugin-network.yaml", EF / "gateway-tls-passthrough.yaml"], "annotation"),
}


class Passthrough:
    def __init__(self, version, route, wasm, workdir):
        self.certs = N.Certificates(workdir / "certs", [DB])
        # the app terminates TLS itself and reads the upstream PROXY header the gateway must send
        self.app = N.Upstream("db", tls=self.certs.pair(DB), expect_proxy=True).start()
        files, pc = PASSTHROUGH_ROUTES[route]
        extra = [passthrough_config(self.app.port)]
        if route == "wasmplugin":
            # the WasmPlugin route takes only the CLUSTER part of the EnvoyFilter file (its README):
            # the listener and network filters come from the WasmPlugin and the annotation
            files = [files[0]]
            extra.append(cluster_part_of(EF / "gateway-tls-passthrough.yaml"))
        self.cp = I.IstioControlPlane(version, COMMON + files, wasm, workdir, extra=extra,
                                      pod_ips={**POD_IPS, "app": "127.0.0.1"}).start()
        try:
            self.envoy = I.IstioEnvoy(self.cp, node="gateway", workdir=workdir,
                                      proxy_config=gateway_annotation() if pc else None).start()
            self.envoy.wait_listener(GATEWAY_TLS_PORT)
            if route == "wasmplugin":
                self.envoy.wait_wasm_extension_config()
        except Exception:
            self.cp.stop()
            self.app.stop()
            raise

    def stop(self):
        self.envoy.stop()
        self.cp.stop()
        self.app.stop()

    def connect(self, src, sni=DB, sport=40000):
        return N.tls_exchange(GATEWAY_TLS_PORT, sni, self.certs.client_context(),
                              proxy=pp.v2(src, "10.0.0.1", sport, 443))


def cluster_part_of(path) -> str:
    """The documents of ``path`` that are not EnvoyFilters, and its EnvoyFilter reduced to the
    patches that apply to clusters (what a WasmPlugin user applies of it)."""
    import yaml as _yaml
    out = []
    for doc in I.documents(path.read_text()):
        if doc["kind"] == "EnvoyFilter":
            doc["spec"]["configPatches"] = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
            if not doc["spec"]["configPatches"]:
                continue
            doc["metadata"]["name"] += "-cluster"
        out.append(_yaml.safe_dump(doc))
    return "\n---\n".join(out) if out else "{}"


@pytest.fixture(scope="module", params=[(v, r) for v in VERSIONS for r in PASSTHROUGH_ROUTES],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def passthrough(request, wasm, tmp_path_factory):
    version, route = request.param
    pt = Passthrough(version, route, wasm, tmp_path_factory.mktemp(f"pt-{version}-{route}"))
    yield pt
    pt.stop()


def test_passthrough_allowed_client_reaches_the_app_that_terminates_tls(passthrough):
    before = passthrough.app.accepted
    out = passthrough.connect("203.0.113.10")
    assert out.served, out
    assert out.reply.startswith("db ")
    assert passthrough.app.accepted == before + 1


def test_passthrough_app_receives_the_client_address_in_the_upstream_proxy_header(passthrough):
    out = passthrough.connect("203.0.113.10", sport=41234)
    assert out.served, out
    assert "proxy=203.0.113.10:41234" in out.reply


def test_passthrough_refused_tls_connection_never_reaches_the_app(passthrough):
    before = passthrough.app.accepted
    out = passthrough.connect("192.0.2.55")
    assert not out.served
    out = passthrough.connect("203.0.113.66")
    assert not out.served
    assert passthrough.app.accepted == before


def test_passthrough_rule_on_the_sni_admits_only_its_client(passthrough):
    # the manifests' rule "db": db.example.com admits only 203.0.113.10
    before = passthrough.app.accepted
    assert not passthrough.connect("203.0.113.11").served
    assert passthrough.app.accepted == before
