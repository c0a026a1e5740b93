"""docs/rate-limits.md through Istio: the rate-limit manifests as a user applies them, translated by
Istio's own control plane (tests/harness/istio.py) into a real gateway Envoy with traffic, for each
pinned Istio release with the Envoy it ships. The manifest sets:

* ``header``: envoyfilter/ingress-gateway-rate-limit.yaml (the key in ``x-client-ip-key``);
* ``filter_state``: envoyfilter/ingress-gateway-rate-limit-filter-state.yaml (CEL on the filter state);
* ``wasmplugin``: istio-examples/wasmplugin-rate-limit.yaml on the injected gateway of
  istio-examples/ingress-gateway.yaml;
* each with the gateway Service, httpbin and its Gateway/VirtualService (as test_istio_xds.py).

The one change made to the manifests, in the open (``with_test_bucket``): the per-key bucket is
BURST requests with no refill during the run (the manifests: 100, then 10 a second), so that going
over the limit takes BURST + 1 requests and nothing refills between two of them. The global variant (envoyfilter/ingress-gateway-global-rate-limit.yaml
with istio-examples/ratelimit-service.yaml) is translated too: its limiter, its descriptor action and
the service's cluster reach Envoy (its service is not reachable by the name in the manifest here; the
global count itself is tests/test_global_rate_limit.py's).
"""
from __future__ import annotations

import pytest

from harness import istio as I
from harness import proxyproto as pp
from harness.istio_sets import APP_PORT, COMMON, EF, EX, GATEWAY_HTTP_PORT, POD_IPS, VERSIONS, arrived, \
    gateway_annotation
from harness.upstream import header_values

SETS = {
    "header": ([EF / "ingress-gateway-rate-limit.yaml"], False),
    "filter_state": ([EF / "ingress-gateway-rate-limit-filter-state.yaml"], False),
    "wasmplugin": ([EX / "wasmplugin-rate-limit.yaml"], True),
}
BURST = 5
SHIPPED_BUCKET = "max_tokens: 100\n              tokens_per_fill: 10\n              fill_interval: 1s\n"
EXEMPT = "198.51.100.7"        # inside the manifests' rate_limit.exempt
# The httpbin Pod of these gateways: another address than test_istio_xds.py's, so that an app of a
# concurrent session on this machine (SO_REUSEPORT on the same port) never takes these requests.
APP_IP = "127.0.0.62"
RL_POD_IPS = {**POD_IPS, "httpbin": APP_IP}


def with_test_bucket(path, workdir):
    """A copy of the manifest ``path`` whose limiter's bucket is BURST requests, no refill."""
    text = path.read_text()
    assert SHIPPED_BUCKET in text, f"{path}: the shipped bucket is not where the test expects it"
    test_bucket = SHIPPED_BUCKET.replace("100", str(BURST)).replace("10\n", f"{BURST}\n") \
        .replace("1s", "3600s")
    copy = workdir / path.name
    copy.write_text(text.replace(SHIPPED_BUCKET, test_bucket))
    return copy


class RateLimitedGateway:
    def __init__(self, version, name, wasm, workdir):
        files, annotated = SETS[name]
        files = [with_test_bucket(f, workdir) for f in files]
        self.cp = I.IstioControlPlane(version, COMMON + files, wasm, workdir, pod_ips=RL_POD_IPS).start()
        try:
            self.envoy = I.IstioEnvoy(self.cp, node="gateway", workdir=workdir,
                                      proxy_config=gateway_annotation() if annotated else None).start()
            self.envoy.wait_listener(GATEWAY_HTTP_PORT)
        except Exception:
            self.cp.stop()
            raise

    def stop(self):
        self.envoy.stop()
        self.cp.stop()

    def status(self, src, headers=()):
        return pp.request(GATEWAY_HTTP_PORT, proxy=pp.v2(src, "10.0.0.1", 40000, 80),
                          host="httpbin.example.com", path="/get", headers=list(headers))


@pytest.fixture(scope="module")
def app():
    echo = I.PodEcho(APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=[(v, s) for v in VERSIONS for s in SETS],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def gateway(request, wasm, app, tmp_path_factory):
    version, name = request.param
    gw = RateLimitedGateway(version, name, wasm, tmp_path_factory.mktemp(f"rl-{version}-{name}"))
    gw.set = name
    yield gw
    gw.stop()


def spend(gateway, src, headers=()) -> None:
    """``src`` spends its bucket: BURST requests pass, the next is limited."""
    got = [gateway.status(src, headers).status for _ in range(BURST + 1)]
    assert got == [200] * BURST + [429], got


def test_a_client_over_its_limit_gets_429_and_another_client_is_not_affected(gateway, app):
    spend(gateway, "203.0.113.80")
    assert [gateway.status("203.0.113.81").status for _ in range(BURST)] == [200] * BURST


def test_forged_headers_give_no_fresh_bucket(gateway, app):
    spend(gateway, "203.0.113.82")
    for headers in ([("X-Forwarded-For", "203.0.113.99")], [("X-Real-IP", "203.0.113.98")],
                    [("x-client-ip-key", "203.0.113.97/32")], [("X_Client_IP_Key", "x")]):
        assert gateway.status("203.0.113.82", headers).status == 429, headers


def test_an_exempt_client_is_not_limited(gateway, app):
    assert [gateway.status(EXEMPT).status for _ in range(2 * BURST)] == [200] * (2 * BURST)


def test_the_app_gets_the_filters_key_in_the_header_variant_only(gateway, app):
    tid = f"rl-istio-{gateway.set}"
    resp = gateway.status("203.0.113.83", [("x-test-id", tid), ("x-client-ip-key", "forged")])
    assert resp.status == 200
    (rec,) = arrived(app, tid)
    want = ["203.0.113.83/32"] if gateway.set == "header" else ["forged"]
    assert header_values(rec, "x-client-ip-key") == want


@pytest.mark.parametrize("version", VERSIONS)
def test_the_global_variant_is_translated_with_its_limiter_and_the_services_cluster(version, wasm,
                                                                                  tmp_path_factory):
    files = COMMON + [EF / "ingress-gateway-global-rate-limit.yaml", EX / "ratelimit-service.yaml"]
    out = I.dump(version, files, wasm, tmp_path_factory.mktemp(f"rl-global-{version}"), pod_ips=RL_POD_IPS)
    text = str(out)
    assert "envoy.filters.http.ratelimit" in text
    assert "client-ip-ratelimit" in text          # the CLUSTER patch and the filter's grpc_service
    assert "x-client-ip-key" in text              # the descriptor action
    assert "ratelimit.istio-system.svc.cluster.local" in text
