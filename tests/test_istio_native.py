"""The native build's Istio manifest through Istio's own translation (tests/harness/istio.py):
native/istio/ingress-gateway.yaml (the PROXY protocol listener patch, the set_filter_state patch and the
HTTP filter loading the dynamic module, all in that one file), with the gateway Service, httpbin and its
Gateway/VirtualService, served by istio-xds to a real gateway Envoy: the Envoy the Istio release ships
(Istio 1.31: Envoy 1.39.1, which loads the module with its ABI deprecation warning; docs/native.md).

Test-only change (as WASM_POD_PATH is for the .wasm manifests): the module's pod path
(``NATIVE_POD_PATH``, where docs/native.md mounts the .so) becomes the built .so ($CLIENT_IP_NATIVE_SO,
``make native``). Configuration values are the manifest's own (allow 203.0.113.0/24, 198.51.100.7 and
2001:db8::/32, deny 203.0.113.66, trusted proxies 10.0.0.0/8 and fd00::/8; headers x-real-ip,
x-client-ip, x-client-port).
"""
from __future__ import annotations

import pytest

from harness import istio as I
from harness import manifests
from harness import proxyproto as pp
from harness.istio_sets import APP_IP, APP_PORT, VERSIONS, Gateway, arrived
from harness.upstream import header_values

NATIVE_ISTIO = I.REPO / "native" / "istio" / "ingress-gateway.yaml"
NATIVE_POD_PATH = "/var/local/lib/envoy-modules/libclient_ip_filter_module.so"
DENIED_BODY = b"access denied\n"       # the filter's default refusal body
# Istio releases whose proxy has dynamic modules (1.31 on; 1.30's Envoy 1.38 refuses the module).
NATIVE_VERSIONS = [v for v in VERSIONS if tuple(int(p) for p in v.split(".")) >= (1, 31)]


def native_files(workdir, native_so: str) -> list:
    """native/istio/ingress-gateway.yaml with its module at the built .so (the only change)."""
    text = NATIVE_ISTIO.read_text()
    assert text.count(NATIVE_POD_PATH) == 1, f"{NATIVE_ISTIO}: expected the module at {NATIVE_POD_PATH}"
    out = workdir / NATIVE_ISTIO.name
    out.write_text(text.replace(NATIVE_POD_PATH, native_so))
    return [out]


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=NATIVE_VERSIONS, ids=lambda v: f"istio{v}-native")
def gateway(request, native_so, app, tmp_path_factory):
    version = request.param
    work = tmp_path_factory.mktemp(f"native-{version}")
    gw = Gateway(version, "native", native_so, work, routes={"native": (native_files(work, native_so), None)})
    gw.native_so = native_so
    yield gw
    gw.stop()


def gateway_http_filters(gateway) -> list:
    """The HTTP filters of the gateway's listener on 8080, as Envoy has them (config dump)."""
    out = []
    for c in gateway.envoy.config_dump()["configs"]:
        for listener in c.get("dynamic_listeners", []):
            active = listener.get("active_state", {}).get("listener", {})
            if active.get("address", {}).get("socket_address", {}).get("port_value") != 8080:
                continue
            for chain in active.get("filter_chains", []):
                for f in chain.get("filters", []):
                    if f["name"] == "envoy.filters.network.http_connection_manager":
                        out.append(f["typed_config"]["http_filters"])
    return out


def test_the_gateway_loads_the_module_first_in_its_http_filters(gateway):
    chains = gateway_http_filters(gateway)
    assert chains, "no HTTP connection manager on the gateway's 8080 listener"
    for filters in chains:
        first = filters[0]
        assert first["name"] == "client-ip-filter", [f["name"] for f in filters]
        assert first["typed_config"]["@type"] == manifests.DYNAMIC_MODULE_TYPE
        module = first["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"]
        assert module == gateway.native_so
    # the module's own line once Envoy has loaded it and it has compiled the manifest's configuration
    # (Envoy 1.39 logs "Dynamic module ABI version v0.2.0 is deprecated" just before it)
    said = 'configured: 1 rule(s), forwarding ["x-real-ip", "x-client-ip"]'
    configured = [line for line in gateway.envoy.log_text().splitlines()
                  if "dynamic_modules" in line and said in line]
    assert len(configured) >= 1, gateway.envoy.log_tail()


def test_proxy_v2_client_reaches_the_app_with_its_address_in_the_forwarded_headers(gateway, app):
    tid, resp = gateway.request("203.0.113.7")
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.7"]
    assert header_values(rec, "x-client-ip") == ["203.0.113.7"]
    assert header_values(rec, "x-client-port") == ["40000"]


def test_forged_forwarded_headers_of_an_allowed_client_are_replaced(gateway, app):
    tid, resp = gateway.request("203.0.113.8", headers=[("x-real-ip", "198.51.100.7"),
                                                       ("X-Client-IP", "198.51.100.7"),
                                                       ("x-client-port", "1")])
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["203.0.113.8"]
    assert header_values(rec, "x-client-ip") == ["203.0.113.8"]
    assert header_values(rec, "x-client-port") == ["40000"]


@pytest.mark.parametrize("client", ["192.0.2.55", "203.0.113.66"], ids=["outside-allow", "denied"])
def test_refused_client_gets_the_filters_403_before_the_app(gateway, app, client):
    tid, resp = gateway.request(client, headers=[("X-Forwarded-For", "203.0.113.7"),
                                                 ("x-real-ip", "203.0.113.7")])
    assert resp.status == 403, resp
    assert resp.body == DENIED_BODY
    assert arrived(app, tid) == []


def test_ipv6_proxy_v2_client_is_resolved(gateway, app):
    tid, resp = gateway.request("2001:db8::5", proxy=pp.v2("2001:db8::5", "fd00::1", 40002, 80))
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-real-ip") == ["2001:db8::5"]
