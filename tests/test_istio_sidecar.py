"""The sidecar manifest sets as a user applies them, translated by Istio's control plane into a real
sidecar Envoy (``istio-xds bootstrap --node sidecar``), with the sample app's Service (httpbin.yaml),
on each pinned Istio release with the Envoy it ships:

* ``envoyfilter``: envoyfilter/sidecar-inbound.yaml;
* ``use-remote-address``: the same with envoyfilter/sidecar-inbound-use-remote-address.yaml;
* ``wasmplugin``: istio-examples/wasmplugin-sidecar.yaml (its WasmPlugin and set_filter_state patch).

No iptables here, so the test adds one Sidecar resource (``captureMode: NONE``, Istio's setting for
pods without traffic capture): Istio then puts the inbound listener on the Pod's address and port
itself, with the same inbound filter chain and the same EnvoyFilter/WasmPlugin patches, and the app
behind it at ``defaultEndpoint`` (tests/istio/README.md lists it). A caller connects from its own
loopback address; the sidecar manifests forward it in x-real-ip and append it to X-Forwarded-For.
"""
from __future__ import annotations

import socket

import pytest

from harness import istio as I
from harness import procs
from harness.client import new_test_id
from harness.istio_sets import EF, EX, VERSIONS
from harness.upstream import header_values

POD_IP = "127.0.0.71"          # the httpbin Pod's address, where the sidecar listens (Service targetPort)
POD_PORT = 8080
CALLER = "127.0.0.72"          # another pod calling httpbin (its own address as the socket's source)
ROUTES = {
    "envoyfilter": [EF / "sidecar-inbound.yaml"],
    "use-remote-address": [EF / "sidecar-inbound.yaml", EF / "sidecar-inbound-use-remote-address.yaml"],
    "wasmplugin": [EX / "wasmplugin-sidecar.yaml"],
}


def no_capture_sidecar(app_port: int) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: httpbin-no-capture
  namespace: default
spec:
  workloadSelector:
    labels:
      app: httpbin
  ingress:
  - port:
      number: {POD_PORT}
      protocol: HTTP
      name: http
    bind: {POD_IP}
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:{app_port}
  egress:
  - hosts: ["istio-system/nothing.example.com"]
"""


@pytest.fixture(scope="module")
def app():
    echo = I.PodEcho("127.0.0.1", procs.free_port()).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=[(v, r) for v in VERSIONS for r in ROUTES],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def sidecar(request, wasm, app, tmp_path_factory):
    version, route = request.param
    tmp = tmp_path_factory.mktemp(f"sc-{version}-{route}")
    cp = I.IstioControlPlane(version, [EX / "httpbin.yaml", *ROUTES[route]], wasm, tmp,
                             extra=[no_capture_sidecar(app.port)], pod_ips={"httpbin": POD_IP}).start()
    try:
        env = I.IstioEnvoy(cp, node="sidecar", ip=POD_IP, name="sidecar").start()
        try:
            procs.wait_until(lambda: procs.port_open(POD_IP, POD_PORT), 30,
                             what=f"sidecar listening on {POD_IP}:{POD_PORT}")
            if route == "wasmplugin":
                env.wait_wasm_extension_config()
            env.route = route
            yield env
        finally:
            env.stop()
    finally:
        cp.stop()


def call(headers=(), source=CALLER):
    """One HTTP/1.1 request from ``source`` to the sidecar; returns (test id, status)."""
    tid = new_test_id("sidecar")
    lines = [f"GET /get HTTP/1.1", "Host: httpbin.default.svc.cluster.local", f"x-test-id: {tid}",
             *(f"{k}: {v}" for k, v in headers), "Connection: close", "", ""]
    with socket.create_connection((POD_IP, POD_PORT), timeout=10, source_address=(source, 0)) as s:
        s.sendall("\r\n".join(lines).encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
    return tid, status


def test_sidecar_gives_the_app_its_caller_in_x_real_ip(sidecar, app):
    tid, status = call()
    assert status == 200
    (rec,) = app.find("x-test-id", tid)
    assert header_values(rec, "x-real-ip") == [CALLER]
    assert header_values(rec, "x-forwarded-for")[-1].split(",")[-1].strip() == CALLER


def test_sidecar_replaces_a_forged_x_real_ip_from_the_caller(sidecar, app):
    tid, status = call(headers=[("x-real-ip", "203.0.113.7")])
    assert status == 200
    (rec,) = app.find("x-test-id", tid)
    assert header_values(rec, "x-real-ip") == [CALLER]


def test_forged_x_forwarded_for_does_not_become_the_callers_address(sidecar, app):
    """No trusted proxies in the sidecar manifests: the XFF a caller sends is not believed, whatever
    use_remote_address says; with it on, Envoy appends the caller too, and the set_filter_state patch
    keeps the filter on the connection's address (it refuses one that came from XFF)."""
    tid, status = call(headers=[("X-Forwarded-For", "203.0.113.7")])
    assert status == 200
    (rec,) = app.find("x-test-id", tid)
    assert header_values(rec, "x-real-ip") == [CALLER]
    xff = [e.strip() for v in header_values(rec, "x-forwarded-for") for e in v.split(",")]
    assert xff == ["203.0.113.7", CALLER]   # appended once, by the filter or by Envoy


def test_each_sidecar_set_installs_set_filter_state_before_the_connection_manager(sidecar):
    dump = sidecar.config_dump()
    chains = [fc for c in dump["configs"] for l in c.get("dynamic_listeners", [])
              if l["name"] == f"{POD_IP}_{POD_PORT}"
              for fc in l["active_state"]["listener"]["filter_chains"]]
    assert chains
    for fc in chains:
        names = [f["name"] for f in fc["filters"]]
        assert names.index("envoy.filters.network.set_filter_state") < \
            names.index("envoy.filters.network.http_connection_manager")
