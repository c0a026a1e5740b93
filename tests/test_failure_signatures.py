"""The README's failure signatures, in a real Envoy: what clients see when a route cannot load the module.

* WasmPlugin route: when istio-agent cannot pull the image (or its digest does not match), it hands
  Envoy an RBAC filter in the plugin's place (Istio's pkg/wasm/convert.go): with FAIL_CLOSE an RBAC
  with an empty rule set (deny all, `rules_stat_prefix: wasm-default-deny`), with FAIL_OPEN one
  without rules (allow all, `wasm-default-allow`). Built here as Istio builds them, under the
  plugin's filter name.
* EnvoyFilter route with the module from a file: a missing file makes Envoy reject the listener; the
  previous one keeps serving.
* (The EnvoyFilter route with the module from a URL and a wrong sha256 answers 503 `wasm_fail_stream`:
  tests/test_istio_in_envoy.py, test_remote_variant_refuses_a_module_with_another_sha256.)
"""
from __future__ import annotations

import copy

import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange

RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
PLUGIN_FILTER = "extensions.istio.io/wasmplugin/istio-system.client-ip-filter"


def istio_fallback(fail_open: bool) -> dict:
    """pkg/wasm/convert.go: allowHTTPTypedConfig / denyHTTPTypedConfig."""
    if fail_open:
        config = {"@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow"}
    else:
        config = {"@type": RBAC_TYPE, "rules": {}, "rules_stat_prefix": "wasm-default-deny"}
    return {"name": PLUGIN_FILTER, "typed_config": config}


class FallbackEnvoy(E.Envoy):
    """The gateway Envoy with Istio's RBAC fallback where the plugin would be."""

    def __init__(self, fallback: dict, **kw):
        super().__init__(E.EnvoyOptions(wasm=False), **kw)
        self.fallback = fallback

    def write_config(self):
        path = super().write_config()
        boot = E.yaml.safe_load(path.read_text())
        (lst,) = boot["static_resources"]["listeners"]
        hcm = lst["filter_chains"][0]["filters"][-1]["typed_config"]
        hcm["http_filters"].insert(0, copy.deepcopy(self.fallback))
        path.write_text(E.yaml.safe_dump(boot, sort_keys=False))
        return path


@pytest.fixture
def fallback_envoy(echo, tmp_path):
    started = []

    def start(fail_open: bool) -> FallbackEnvoy:
        env = FallbackEnvoy(istio_fallback(fail_open), upstream_port=echo.port, workdir=str(tmp_path),
                            name=f"fallback{len(started)}")
        started.append(env)
        return env.start()
    yield start
    for env in started:
        env.stop()


def test_wasmplugin_pull_failure_with_fail_close_refuses_every_request_with_rbac_access_denied(
        fallback_envoy, echo):
    env = fallback_envoy(fail_open=False)
    for client in ("203.0.113.7", "192.0.2.9"):
        ex = exchange(env, echo, proxy=pp.v1(client))
        assert ex.status == 403 and not ex.reached_upstream
        assert ex.response.text == "RBAC: access denied"
        assert ex.log()["details"].startswith("rbac_access_denied")
    # what the readiness probe reads: Envoy itself is LIVE (the pod stays Ready)
    assert env.admin("/ready").strip() == "LIVE"
    stats = env.stats(raw=True)
    # Envoy counts them under the fallback's stat prefix
    assert stats["http.ingress_http.rbac.wasm-default-deny.denied"] == 2


def test_wasmplugin_pull_failure_with_fail_open_lets_every_request_through_unchecked(fallback_envoy, echo):
    env = fallback_envoy(fail_open=True)
    ex = exchange(env, echo, proxy=pp.v1("192.0.2.9"), headers=[("X-Real-IP", "203.0.113.1")])
    assert ex.status == 200 and ex.reached_upstream
    # nothing sanitised the client's header: the app gets what the client wrote
    assert ex.upstream_values("x-real-ip") == ["203.0.113.1"]


def test_envoyfilter_with_a_missing_module_file_is_rejected_and_the_previous_listener_keeps_serving(
        envoy_factory, echo, tmp_path):
    opts = E.EnvoyOptions(wasm=False)
    env = envoy_factory(opts, dynamic=True)
    missing = tmp_path / "not-mounted" / "client_ip_filter.wasm"
    assert env.update_listener(E.copy_options(opts, wasm=True, wasm_path=str(missing))) == "rejected"
    ex = exchange(env, echo, proxy=pp.v1("192.0.2.9"))
    assert ex.status == 200 and ex.upstream_value("x-real-ip") is None  # the old listener, no filter
