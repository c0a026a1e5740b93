"""The manifest sets of the Istio tests (test_istio_*.py): the files a user applies for each route,
the gateway a control plane feeds, and the app behind it. See tests/harness/istio.py."""
from __future__ import annotations

from . import istio as I
from . import proxyproto as pp
from .client import new_test_id

EX = I.REPO / "istio-examples"
EF = I.REPO / "envoyfilter"
GATEWAY_HTTP_PORT = 8080       # the gateway Service's targetPort for port 80 (gateway-service-aws-nlb.yaml)
APP_IP = "127.0.0.61"          # the httpbin Pod's IP (an echo server there, on the Service's targetPort 8080)
APP_PORT = 8080
POD_IPS = {"istio-ingressgateway": "127.0.0.1", "httpbin": APP_IP}
COMMON = [EX / "gateway-service-aws-nlb.yaml", EX / "httpbin.yaml", EX / "httpbin-gateway.yaml",
          EX / "ingress-gateway.yaml"]


def gateway_annotation() -> str:
    """The proxy.istio.io/config annotation of istio-examples/ingress-gateway.yaml's pod template."""
    for doc in I.documents((EX / "ingress-gateway.yaml").read_text()):
        if doc["kind"] == "Deployment":
            return doc["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"]
    raise LookupError("no Deployment in istio-examples/ingress-gateway.yaml")


# route name -> (the route's own files, the gateway's proxy config)
ROUTES = {
    "envoyfilter": ([EF / "ingress-gateway.yaml"], None),
    "wasmplugin": ([EX / "wasmplugin-ingress-gateway.yaml"], "annotation"),
}
VERSIONS = I.istio_versions()


class Gateway:
    """A control plane and the gateway Envoy it feeds, for one route and Istio version."""

    def __init__(self, version, route, wasm, workdir, extra=(), mesh=None, pod_ips=None, routes=None):
        """``routes``: route name -> (files, proxy config) to look ``route`` up in (default ROUTES)."""
        files, pc = (routes or ROUTES)[route]
        self.cp = I.IstioControlPlane(version, COMMON + files, wasm, workdir, extra=extra,
                                      pod_ips=pod_ips or POD_IPS, mesh=mesh).start()
        try:
            self.envoy = I.IstioEnvoy(self.cp, node="gateway", workdir=workdir,
                                      proxy_config=gateway_annotation() if pc else None).start()
            self.envoy.wait_listener(GATEWAY_HTTP_PORT)
            if any(f.name.startswith("wasmplugin") for f in files):
                self.envoy.wait_wasm_extension_config()
        except Exception:
            self.cp.stop()
            raise

    def stop(self):
        self.envoy.stop()
        self.cp.stop()

    def request(self, src, headers=(), host="httpbin.example.com", path="/get", proxy=None):
        tid = new_test_id("istio")
        hdrs = [("x-test-id", tid), *headers]
        head = pp.v2(src, "10.0.0.1", 40000, 80) if proxy is None else proxy
        resp = pp.request(GATEWAY_HTTP_PORT, proxy=head, host=host, path=path, headers=hdrs)
        return tid, resp


def arrived(app, tid):
    return app.find("x-test-id", tid)


