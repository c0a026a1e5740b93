"""The Istio deliverables, run in a real Envoy 1.40 with the built filter: the configuration an operator
copies is the one tested.

* WasmPlugin (sidecar; the gateway WasmPlugin goes through Istio's own translation in
  tests/test_istio_xds.py): the filter Istio builds from it -- name ``<namespace>.<name>``, root id
  ``pluginName``, ``pluginConfig`` serialised to JSON in a StringValue, failure policy from
  ``failStrategy`` -- with the companion set_filter_state EnvoyFilter of the same file and, on the
  gateway, the proxy_protocol listener filter (what ``gatewayTopology.proxyProtocol`` adds).
* The access-log labels of istio-examples/mesh-config-access-log.yaml as an Envoy json_format log, and
  the stats inclusion prefix of the gateway's ``proxy.istio.io/config`` as the bootstrap stats matcher.
* envoyfilter/sidecar-inbound-use-remote-address.yaml merged into the sidecar HCM.
* envoyfilter/ingress-gateway-remote.yaml: the module served by a loopback HTTP server through the
  manifest's own cluster; the right sha256 loads, a wrong one is refused.

Envoys are the harness's (tests/harness/envoy.py), subclassed only to add what the harness bootstrap
does not have (an extra access log, a cluster, an HCM merge, a stats matcher).
"""
from __future__ import annotations

import copy
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pytest
import yaml

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import exchange, new_test_id

REPO = manifests.REPO
EXAMPLES = REPO / "istio-examples"
WASM_TYPE = manifests.WASM_TYPE


def docs(path: Path) -> list:
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def doc_of_kind(path: Path, kind: str) -> dict:
    (found,) = [d for d in docs(path) if d["kind"] == kind]
    return copy.deepcopy(found)


# -- what Istio makes of a WasmPlugin ------------------------------------------------------------

FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}


def plugin_config_json(plugin: dict) -> str:
    """``pluginConfig`` as istiod hands it to the filter: the Struct serialised to JSON text."""
    return json.dumps(plugin["spec"]["pluginConfig"], separators=(",", ":"))


def istio_wasm_filter(plugin: dict) -> dict:
    """The Wasm HTTP filter istiod generates for a WasmPlugin (pilot/pkg/model/extensions.go), with the
    module as the local file istio-agent writes after pulling the OCI image (filename filled in by the
    harness)."""
    spec = plugin["spec"]
    ns, name = plugin["metadata"]["namespace"], plugin["metadata"]["name"]
    config = {
        "name": f"{ns}.{name}",
        "root_id": spec["pluginName"],
        "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": "/var/lib/istio/data/client-ip-filter.wasm"}}},
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": plugin_config_json(plugin)},
    }
    if "failStrategy" in spec:
        config["failure_policy"] = FAILURE_POLICY[spec["failStrategy"]]
    return {"name": f"extensions.istio.io/wasmplugin/{ns}.{name}",
            "typed_config": {"@type": WASM_TYPE, "config": config}}


def wasmplugin_fragments(path: Path, context: str) -> manifests.Fragments:
    """The Envoy pieces an Istio proxy gets from one istio-examples/wasmplugin-*.yaml file."""
    companion = manifests.load(path)  # the file's EnvoyFilter: the set_filter_state network filter
    assert companion.context == context
    frags = manifests.Fragments(source=path, context=context)
    if context == "GATEWAY":
        # gatewayTopology.proxyProtocol: Istio adds the plain proxy_protocol listener filter
        frags.listener_filters = [manifests.gateway().proxy_protocol]
    frags.network_filters = companion.network_filters
    frags.http_filters = [istio_wasm_filter(doc_of_kind(path, "WasmPlugin"))]
    return frags


# -- the harness Envoy, plus what the Istio deliverables add to a proxy ----------------------------

class IstioEnvoy(E.Envoy):
    def __init__(self, opts, extra_clusters=(), hcm_merge: Optional[dict] = None,
                 extra_access_log: Optional[dict] = None, stats_prefixes: Optional[list] = None, **kw):
        super().__init__(opts, **kw)
        self.extra_clusters = list(extra_clusters)
        self.hcm_merge = hcm_merge or {}
        self.extra_access_log = extra_access_log
        self.extra_access_log_path = self.workdir / f"{self.name}.mesh-access.jsonl"
        self.stats_prefixes = stats_prefixes

    def write_config(self) -> Path:
        boot = E.bootstrap(self.opts, self.port, self.admin_port, self.upstream_port, str(self.access_log_path))
        boot["static_resources"]["clusters"] += copy.deepcopy(self.extra_clusters)
        (lst,) = boot["static_resources"]["listeners"]
        hcm = lst["filter_chains"][0]["filters"][-1]["typed_config"]
        assert hcm["@type"] == E.HCM_TYPE
        hcm.update(copy.deepcopy(self.hcm_merge))
        if self.extra_access_log is not None:
            hcm["access_log"].append({"name": "envoy.access_loggers.file", "typed_config": {
                "@type": E.FILE_LOG_TYPE, "path": str(self.extra_access_log_path),
                "log_format": {"json_format": self.extra_access_log}}})
        if self.stats_prefixes is not None:
            boot["stats_config"] = {"stats_matcher": {"inclusion_list": {
                "patterns": [{"prefix": p} for p in self.stats_prefixes]}}}
        self.config_path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return self.config_path

    def extra_log_lines(self) -> list:
        if not self.extra_access_log_path.exists():
            return []
        return [json.loads(x) for x in self.extra_access_log_path.read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def start_envoy(echo, wasm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("istio_in_envoy")
    started: list = []

    def start(opts, timeout: float = 60.0, **kw) -> IstioEnvoy:
        env = IstioEnvoy(opts, upstream_port=echo.port, workdir=str(workdir), name=f"istio{len(started)}", **kw)
        started.append(env)
        return env.start(timeout=timeout)
    try:
        yield start
    finally:
        for env in started:
            env.stop()


def wait_extra_log(env: IstioEnvoy, needle: str, timeout: float = 5.0) -> dict:
    from harness import procs

    def find():
        hits = [e for e in env.extra_log_lines() if needle in (e.get("path") or "")]
        return hits[0] if hits else None
    return procs.wait_until(find, timeout, what=f"mesh access-log line for {needle}")


# -- the gateway WasmPlugin ------------------------------------------------------------------------

GATEWAY_PLUGIN = EXAMPLES / "wasmplugin-ingress-gateway.yaml"
SIDECAR_PLUGIN = EXAMPLES / "wasmplugin-sidecar.yaml"


def mesh_access_log_labels() -> dict:
    iop = doc_of_kind(EXAMPLES / "mesh-config-access-log.yaml", "IstioOperator")
    (prov,) = [p for p in iop["spec"]["meshConfig"]["extensionProviders"] if p["name"] == "client-ip-log"]
    return prov["envoyFileAccessLog"]["logFormat"]["labels"]


def gateway_stats_prefixes() -> list:
    dep = doc_of_kind(EXAMPLES / "ingress-gateway.yaml", "Deployment")
    pc = yaml.safe_load(dep["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])
    # what the bootstrap's stats matcher gets: the pod's inclusion prefixes (plus Istio's own, left out
    # here so the test shows the pod's prefix alone is enough)
    return pc["proxyStatsMatcher"]["inclusionPrefixes"]


@pytest.fixture(scope="module")
def gateway_plugin_envoy(start_envoy):
    return start_envoy(E.EnvoyOptions(fragments=wasmplugin_fragments(GATEWAY_PLUGIN, "GATEWAY")),
                       extra_access_log=mesh_access_log_labels(), stats_prefixes=gateway_stats_prefixes())


def test_gateway_pod_stats_prefix_keeps_the_filter_counters(gateway_plugin_envoy, echo):
    from harness import procs
    exchange(gateway_plugin_envoy, echo, proxy=pp.v2("203.0.113.7", "10.0.0.1", 40000, 443))
    # the filter flushes its counts every 250 ms: wait for this request's
    raw = procs.wait_until(lambda: (r := gateway_plugin_envoy.stats(raw=True)).get("wasmcustom.client_ip.allowed", 0) >= 1
                           and r, 5.0, what="wasmcustom.client_ip.allowed to count the request")
    kept = {k for k in raw if "client_ip." in k}
    assert "wasmcustom.client_ip.allowed" in kept and "wasmcustom.client_ip.denied" in kept, sorted(raw)[:20]
    assert raw["wasmcustom.client_ip.allowed"] >= 1
    prom = gateway_plugin_envoy.admin("/stats/prometheus")
    assert any(line.startswith("client_ip_allowed") for line in prom.splitlines())


def test_a_bare_client_ip_stats_prefix_would_drop_the_counters(start_envoy, echo):
    """Why the manifests say "wasmcustom.client_ip": Envoy matches inclusion prefixes against the full
    stat name, which carries the proxy-wasm namespace."""
    env = start_envoy(E.EnvoyOptions(fragments=wasmplugin_fragments(GATEWAY_PLUGIN, "GATEWAY")),
                      stats_prefixes=["client_ip", "server"])
    ex = exchange(env, echo, proxy=pp.v2("203.0.113.7", "10.0.0.1", 40000, 443))
    assert ex.status == 200
    raw = env.stats(raw=True)
    assert "server.live" in raw
    assert not [k for k in raw if "client_ip" in k]


NATIVE_STATS_PREFIX = "dynamicmodulescustom.client_ip"


def test_the_native_build_on_istio_needs_its_own_stats_prefix(start_envoy, echo, native_so):
    """docs/native.md "Istio": the native build's counters are named dynamicmodulescustom.client_ip.*,
    which the gateway example's wasmcustom.client_ip does not keep; the documented annotation, which
    adds dynamicmodulescustom.client_ip, does."""
    documented = ('"inclusionPrefixes": ["wasmcustom.client_ip", "dynamicmodulescustom.client_ip"]')
    assert documented in (REPO / "docs" / "native.md").read_text()
    kept = start_envoy(E.EnvoyOptions(build="native"),
                       stats_prefixes=gateway_stats_prefixes() + [NATIVE_STATS_PREFIX, "server"])
    dropped = start_envoy(E.EnvoyOptions(build="native"), stats_prefixes=gateway_stats_prefixes() + ["server"])
    for env in (kept, dropped):
        assert exchange(env, echo, proxy=pp.v2("203.0.113.7", "10.0.0.1", 40000, 443)).status == 200
    from harness import procs
    raw = procs.wait_until(lambda: (r := kept.stats(raw=True)).get(f"{NATIVE_STATS_PREFIX}.allowed", 0) >= 1 and r,
                           5.0, what=f"{NATIVE_STATS_PREFIX}.allowed to count the request")
    assert f"{NATIVE_STATS_PREFIX}.denied" in raw
    gone = dropped.stats(raw=True)
    assert "server.live" in gone
    assert not [k for k in gone if "client_ip" in k], sorted(k for k in gone if "client_ip" in k)


# -- the remote-URL variant ------------------------------------------------------------------------

REMOTE = REPO / "envoyfilter" / "ingress-gateway-remote.yaml"


class WasmStore:
    """A loopback HTTP server handing out one file, counting the GETs."""

    def __init__(self, body: bytes):
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                store.paths.append(self.path)
                self.send_response(200)
                self.send_header("content-type", "application/wasm")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.paths: list = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "WasmStore":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def remote_patches() -> dict:
    ef = doc_of_kind(REMOTE, "EnvoyFilter")
    by = {}
    for p in ef["spec"]["configPatches"]:
        by.setdefault(p["applyTo"], []).append(copy.deepcopy(p["patch"]["value"]))
    return by


class RemoteFragments(manifests.Fragments):
    """The remote variant's fragments: the wasm filter keeps its `remote` code source; only the URL's
    host:port (-> the loopback store) and the sha256 placeholder are replaced."""
    uri: str = ""
    sha256: str = ""

    def wasm_http_filter(self, wasm_path=None, configuration=None) -> dict:
        f = self.wasm_filter
        remote = f["typed_config"]["config"]["vm_config"]["code"]["remote"]
        remote["http_uri"]["uri"] = self.uri
        remote["sha256"] = self.sha256
        return f


def remote_setup(store: WasmStore, sha256: str):
    by = remote_patches()
    (http_filter,) = by["HTTP_FILTER"]
    remote = http_filter["typed_config"]["config"]["vm_config"]["code"]["remote"]
    path = "/" + remote["http_uri"]["uri"].split("://", 1)[1].split("/", 1)[1]
    frags = RemoteFragments(source=REMOTE, context="GATEWAY", listener_filters=by["LISTENER_FILTER"],
                            network_filters=by["NETWORK_FILTER"], http_filters=by["HTTP_FILTER"])
    frags.uri = f"http://127.0.0.1:{store.port}{path}"
    frags.sha256 = sha256
    (cluster,) = by["CLUSTER"]
    assert remote["http_uri"]["cluster"] == cluster["name"]
    # the manifest's cluster, pointed at the loopback store (STATIC: no DNS name to resolve here)
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    sock = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    sock.update(address="127.0.0.1", port_value=store.port)
    return frags, cluster, path, remote


def test_remote_variant_fetches_the_module_through_its_cluster_and_filters(start_envoy, echo, wasm):
    body = Path(wasm).read_bytes()
    with WasmStore(body) as store:
        frags, cluster, path, _ = remote_setup(store, hashlib.sha256(body).hexdigest())
        env = start_envoy(E.EnvoyOptions(fragments=frags), extra_clusters=[cluster])
        assert store.paths == [path]
        ok = exchange(env, echo, proxy=pp.v1("203.0.113.7", "10.0.0.1", 40000, 443))
        assert ok.status == 200 and ok.upstream_value("x-real-ip") == "203.0.113.7"
        refused = exchange(env, echo, proxy=pp.v1("192.0.2.7", "10.0.0.1", 40000, 443))
        assert refused.status == 403 and not refused.reached_upstream


def test_remote_variant_refuses_a_module_with_another_sha256(start_envoy, echo, wasm):
    body = Path(wasm).read_bytes()
    with WasmStore(body) as store:
        wrong = hashlib.sha256(body + b"\0").hexdigest()
        frags, cluster, path, remote = remote_setup(store, wrong)
        env = start_envoy(E.EnvoyOptions(fragments=frags), extra_clusters=[cluster], timeout=90)
        env.wait_log("Retry limit exceeded", timeout=60)
        # every download succeeded (200, the whole module) and every one was refused: the sha256 check
        assert store.paths == [path] * (1 + remote["retry_policy"]["num_retries"])
        env.wait_log("Plugin configured to fail closed failed to load", timeout=10)
        for client in ("203.0.113.7", "192.0.2.7"):
            ex = exchange(env, echo, proxy=pp.v1(client, "10.0.0.1", 40000, 443))
            assert ex.status == 503 and not ex.reached_upstream  # fail_open: false
            assert ex.log()["details"] == "wasm_fail_stream"


def test_local_variant_module_fits_in_a_configmap(wasm):
    """envoyfilter/README.md mounts the module from a ConfigMap: Kubernetes caps one at 1 MiB."""
    size = Path(wasm).stat().st_size
    assert size < 1024 * 1024 - 4096, f"{size} bytes: too big for a ConfigMap, use the OCI image"


# -- north-south through both plugins: client -> gateway -> httpbin's sidecar -> app ---------------

def test_gateway_then_sidecar_plugin_chain(start_envoy, echo):
    """What istio-examples/README.md tells about a request that passes the gateway plugin and then the
    sidecar plugin: the sidecar sets x-real-ip to its own caller (the gateway pod) unless the gateway is
    in its trusted_proxies; the gateway's x-client-ip is removed by the sidecar (its default
    forward.strip: any pod calling the app directly could write it)."""
    sidecar_frags = wasmplugin_fragments(SIDECAR_PLUGIN, "SIDECAR_INBOUND")
    sidecar = start_envoy(E.EnvoyOptions(fragments=sidecar_frags))
    plugin = doc_of_kind(SIDECAR_PLUGIN, "WasmPlugin")
    trusting = dict(plugin["spec"]["pluginConfig"], client_ip={"trusted_proxies": ["127.0.0.1"]})
    sidecar_trusting = start_envoy(E.EnvoyOptions(fragments=sidecar_frags, configuration=trusting))
    gateway_frags = wasmplugin_fragments(GATEWAY_PLUGIN, "GATEWAY")

    for app, expect_real_ip in ((sidecar, "127.0.0.1"), (sidecar_trusting, "203.0.113.7")):
        gateway = IstioEnvoy(E.EnvoyOptions(fragments=gateway_frags), upstream_port=app.port,
                             workdir=str(app.workdir), name=f"{app.name}-gw")
        gateway.start(timeout=60)
        try:
            ex = exchange(gateway, echo, proxy=pp.v2("203.0.113.7", "10.0.0.1", 40000, 443))
            assert ex.status == 200, ex.response.text
            assert ex.upstream_value("x-client-ip") is None   # the gateway's, stripped by the sidecar
            assert ex.upstream_value("x-real-ip") == expect_real_ip
            assert ex.xff_entries() == ["203.0.113.7", "127.0.0.1"]   # gateway appended client, sidecar its caller
        finally:
            gateway.stop()
