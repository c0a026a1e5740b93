"""The EnvoyFilter manifests are the tests' single source of truth: the harness takes their patch
values unchanged, and the premises the filter relies on hold in a real Envoy 1.40 (no wasm needed)."""
import json

import pytest

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import exchange


def test_gateway_manifest_has_proxy_protocol_set_filter_state_and_wasm(gateway_fragments):
    g = gateway_fragments
    assert g.context == "GATEWAY"
    assert [f["name"] for f in g.listener_filters] == [manifests.PROXY_PROTOCOL]
    assert [f["name"] for f in g.network_filters] == [manifests.SET_FILTER_STATE]
    assert [f["typed_config"]["@type"] for f in g.http_filters] == [manifests.WASM_TYPE]
    assert g.downstream_filter_state_key == "client_ip.downstream_address"


def test_sidecar_manifest_has_set_filter_state_and_wasm_without_proxy_protocol(sidecar_fragments):
    s = sidecar_fragments
    assert s.context == "SIDECAR_INBOUND"
    assert s.proxy_protocol is None
    assert s.downstream_filter_state_key == "client_ip.downstream_address"
    assert len(s.http_filters) == 1


@pytest.mark.parametrize("frags", [manifests.gateway(), manifests.sidecar()], ids=["gateway", "sidecar"])
def test_harness_replaces_only_wasm_filename_and_configuration(frags):
    shipped = frags.wasm_filter
    used = frags.wasm_http_filter("/x/filter.wasm", {"access": {}})
    cfg = used["typed_config"]["config"]
    assert cfg["vm_config"]["code"]["local"]["filename"] == "/x/filter.wasm"
    assert json.loads(cfg["configuration"]["value"]) == {"access": {}}
    cfg["vm_config"]["code"]["local"]["filename"] = shipped["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
    cfg["configuration"]["value"] = shipped["typed_config"]["config"]["configuration"]["value"]
    assert used == shipped
    # and the shipped configuration is JSON with the filter's root id and V8 runtime
    assert isinstance(frags.configuration(), dict)
    assert shipped["typed_config"]["config"]["root_id"] == "client_ip_filter"
    assert shipped["typed_config"]["config"]["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"


@pytest.fixture(scope="module")
def no_wasm_xff_envoy(envoy_factory):
    """Gateway fragments without the wasm filter, HCM deriving the remote address from XFF."""
    return envoy_factory(E.EnvoyOptions(wasm=False, use_remote_address=False))


def test_set_filter_state_records_proxy_source_untouched_by_xff(no_wasm_xff_envoy, echo):
    ex = exchange(no_wasm_xff_envoy, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                  headers=[("X-Forwarded-For", "198.51.100.1")], source="127.0.0.2")
    assert ex.status == 200
    log = ex.log()
    assert log["downstream_fs"] == "203.0.113.7:40000"     # what the filter reads first
    assert log["downstream_remote"] == "198.51.100.1:0"    # what source.address reports (XFF, port 0)
    assert log["downstream_direct"].startswith("127.0.0.2:")


def test_set_filter_state_records_mapped_proxy_v2_source_as_envoy_prints_it(no_wasm_xff_envoy, echo):
    ex = exchange(no_wasm_xff_envoy, echo, proxy=pp.v2("::ffff:203.0.113.8", sport=40001))
    # Envoy does not unmap: the filter has to (docs/resolution.md, address text).
    assert ex.log()["downstream_fs"] == "[::ffff:203.0.113.8]:40001"


def test_gateway_listener_refuses_a_connection_without_proxy_header(no_wasm_xff_envoy, echo):
    tid = "no-proxy-header"
    raw = pp.build_request(headers=[("x-test-id", tid)])
    got = pp.raw_exchange(no_wasm_xff_envoy.port, raw)
    assert not got.startswith(b"HTTP/"), got
    assert echo.find("x-test-id", tid) == []


def test_load_balancer_only_manifest_drops_underscored_header_names_in_envoy(echo, envoy_bin, tmp_path):
    """envoyfilter/ingress-gateway-load-balancer-only.yaml's HCM MERGE (headers_with_underscores_action),
    on top of the filter: Envoy alone (no wasm) drops X_Real_IP, and keeps X-Real-IP as sent."""
    from reliability.envoy_ext import TunedEnvoy

    lb_only = manifests.load(manifests.ENVOYFILTER_DIR / "ingress-gateway-load-balancer-only.yaml")
    (merge,) = [v for apply_to, op, v in lb_only.others if apply_to == "NETWORK_FILTER" and op == "MERGE"]
    hcm = {k: v for k, v in merge["typed_config"].items() if k != "@type"}
    env = TunedEnvoy(E.EnvoyOptions(wasm=False), upstream_port=echo.port, workdir=str(tmp_path),
                     name="underscores", hcm=hcm).start()
    try:
        ex = exchange(env, echo, proxy=pp.v1("203.0.113.7", sport=40000),
                      headers=[("X_Real_IP", "6.6.6.6"), ("X-Real-IP", "6.6.6.7")])
        assert ex.status == 200
        assert ex.upstream_values("x_real_ip") == []
        assert ex.upstream_values("x-real-ip") == ["6.6.6.7"]
    finally:
        env.stop()


def test_raw_exchange_fails_on_a_peer_that_neither_answers_nor_closes():
    """The refusal check above reads until Envoy closes: a hung Envoy must fail it, not pass as
    "nothing received"."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(TimeoutError):
            pp.raw_exchange(silent.getsockname()[1], b"GET / HTTP/1.1\r\n\r\n", timeout=0.5)
