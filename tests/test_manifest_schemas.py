"""Every manifest an operator copies (envoyfilter/, istio-examples/) is valid for Kubernetes and Istio,
and the manifests agree with each other. Offline, no cluster: see manifest_check.py for how.

The Envoy side (the patch values and each WasmPlugin's pluginConfig in a real Envoy) is in
test_istio_in_envoy.py.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

import manifest_check as mc

REPO = mc.REPO
FILES = mc.manifest_files()
OBJECTS = list(mc.all_objects())


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def objects(kind: str, where: str = "") -> list[tuple[Path, dict]]:
    return [(p, d) for p, _, d in OBJECTS if d.get("kind") == kind and rel(p).startswith(where)]


def one(relpath: str, kind: str) -> dict:
    found = [d for p, _, d in OBJECTS if rel(p) == relpath and d.get("kind") == kind]
    assert len(found) == 1, f"{relpath}: expected one {kind}, found {len(found)}"
    return copy.deepcopy(found[0])


def envoyfilter_configuration(relpath: str) -> dict:
    """The wasm filter configuration JSON of an EnvoyFilter manifest, parsed."""
    ef = one(relpath, "EnvoyFilter")
    values = [p["patch"]["value"] for p in ef["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert len(values) == 1
    cfg = values[0]["typed_config"]["config"]["configuration"]
    assert cfg["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    return json.loads(cfg["value"])


# -- every file parses, every object is valid -----------------------------------------------------

def test_there_are_manifests_in_both_folders():
    names = {rel(p) for p in FILES}
    assert any(n.startswith("envoyfilter/") for n in names)
    assert any(n.startswith("istio-examples/") for n in names)
    assert len(OBJECTS) >= 20, names


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_file_parses_into_kubernetes_objects(path):
    docs = mc.load_documents(path)
    assert docs, f"{rel(path)} holds no object"
    for doc in docs:
        assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= set(doc), doc


@pytest.mark.parametrize("path,index,doc", OBJECTS,
                         ids=[f"{rel(p)}#{i}:{d.get('kind')}" for p, i, d in OBJECTS])
def test_object_is_valid_for_its_schema(path, index, doc):
    errors = mc.validate(doc)
    assert errors == [], f"{rel(path)} document {index} ({doc.get('kind')}):\n  " + "\n  ".join(errors)


def test_every_istio_object_has_a_schema_in_the_crds_and_every_cel_rule_is_implemented():
    used = set()
    for _, _, d in OBJECTS:
        group, _, version = d["apiVersion"].partition("/")
        if group.endswith("istio.io") and group != "install.istio.io":
            used.add((group, version, d["kind"]))
    assert used, "no Istio object found"
    missing = used - set(mc.crd_schemas())
    assert not missing, f"no CRD schema for {missing}"
    rules = mc.cel_rules_in(used)
    unimplemented = sorted(r for r in rules if r not in mc.CEL_RULES)
    assert unimplemented == [], unimplemented


# -- the validator can fail ------------------------------------------------------------------------

def _broken_cases():
    wp = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")
    ef = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")
    vs = one("istio-examples/httpbin-gateway.yaml", "VirtualService")
    svc = one("istio-examples/gateway-service-aws-nlb.yaml", "Service")
    dep = one("istio-examples/httpbin.yaml", "Deployment")
    iop = one("istio-examples/mesh-config-access-log.yaml", "IstioOperator")

    def mutate(doc, fn):
        d = copy.deepcopy(doc)
        fn(d)
        return d

    return [
        ("WasmPlugin unknown field", mutate(wp, lambda d: d["spec"].update(phse="AUTHN")), "phse"),
        ("WasmPlugin bad phase", mutate(wp, lambda d: d["spec"].update(phase="AUTHZN")), "AUTHZN"),
        ("WasmPlugin bad failStrategy", mutate(wp, lambda d: d["spec"].update(failStrategy="CLOSE")), "CLOSE"),
        ("WasmPlugin sha256 not hex", mutate(wp, lambda d: d["spec"].update(sha256="sha256:abc")), "sha256"),
        ("WasmPlugin no url", mutate(wp, lambda d: d["spec"].pop("url")), "url"),
        ("WasmPlugin CEL selector+targetRefs",
         mutate(wp, lambda d: d["spec"].update(targetRefs=[{"kind": "Gateway", "name": "gw"}])),
         "only one of targetRefs or selector"),
        ("WasmPlugin CEL url scheme", mutate(wp, lambda d: d["spec"].update(url="ftp://h/x.wasm")), "url must have schema"),
        ("WasmPlugin CEL wildcard label", mutate(wp, lambda d: d["spec"]["selector"]["matchLabels"].update(istio="*")),
         "wildcard"),
        ("WasmPlugin bad match mode", mutate(wp, lambda d: d["spec"].update(match=[{"mode": "INBOUND"}])), "INBOUND"),
        ("EnvoyFilter bad applyTo",
         mutate(ef, lambda d: d["spec"]["configPatches"][0].update(applyTo="LISTENER_FILTERS")), "LISTENER_FILTERS"),
        ("EnvoyFilter bad operation",
         mutate(ef, lambda d: d["spec"]["configPatches"][0]["patch"].update(operation="INSERT_FIRSTT")), "INSERT_FIRSTT"),
        ("EnvoyFilter bad context",
         mutate(ef, lambda d: d["spec"]["configPatches"][1]["match"].update(context="INGRESS")), "INGRESS"),
        ("EnvoyFilter misspelt match key",
         mutate(ef, lambda d: d["spec"]["configPatches"][1]["match"].update(listner={})), "listner"),
        ("VirtualService CEL timeout", mutate(vs, lambda d: d["spec"]["http"][0].update(timeout="0.5ms")), "1ms"),
        ("VirtualService port as string",
         mutate(vs, lambda d: d["spec"]["http"][0]["route"][0]["destination"]["port"].update(number="8000")), "8000"),
        ("metadata bad name", mutate(wp, lambda d: d["metadata"].update(name="Client_IP")), "DNS-1123"),
        ("metadata non-string annotation", mutate(dep, lambda d: d["metadata"].update(annotations={"a": 1})), "string"),
        ("Service unknown field", mutate(svc, lambda d: d["spec"].update(externalTrafficPolicyy="Local")),
         "externalTrafficPolicyy"),
        ("Service bad externalTrafficPolicy", mutate(svc, lambda d: d["spec"].update(externalTrafficPolicy="Locall")),
         "Locall"),
        ("Service port as string", mutate(svc, lambda d: d["spec"]["ports"][0].update(port="80")), "80"),
        ("Deployment container without image type",
         mutate(dep, lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=8080)), "8080"),
        ("IstioOperator label not a string",
         mutate(iop, lambda d: d["spec"]["meshConfig"]["extensionProviders"][0]["envoyFileAccessLog"]
                ["logFormat"]["labels"].update(client_ip=1)), "labels"),
        ("unknown kind", {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, "no schema"),
        ("not a mapping", ["apiVersion", "v1"], "mapping"),
    ]


@pytest.mark.parametrize("name,doc,needle", _broken_cases(), ids=[c[0] for c in _broken_cases()])
def test_a_broken_manifest_is_rejected(name, doc, needle):
    errors = mc.validate(doc)
    assert errors, f"{name}: the validator accepted a broken manifest"
    assert any(needle in e for e in errors), errors


def test_yaml_that_does_not_parse_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   labels: {a: b}\n")
    with pytest.raises(yaml.YAMLError):
        mc.load_documents(bad)


# -- one source of truth: the filter configuration -------------------------------------------------

def test_gateway_wasmplugin_config_equals_the_envoyfilter_configuration():
    wp = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")
    local = envoyfilter_configuration("envoyfilter/ingress-gateway.yaml")
    remote = envoyfilter_configuration("envoyfilter/ingress-gateway-remote.yaml")
    assert wp["spec"]["pluginConfig"] == local
    assert remote == local


def test_sidecar_wasmplugin_config_equals_the_envoyfilter_configuration():
    wp = one("istio-examples/wasmplugin-sidecar.yaml", "WasmPlugin")
    assert wp["spec"]["pluginConfig"] == envoyfilter_configuration("envoyfilter/sidecar-inbound.yaml")


def test_remote_variant_differs_from_the_local_one_only_in_the_code_source_and_its_cluster():
    local = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")
    remote = one("envoyfilter/ingress-gateway-remote.yaml", "EnvoyFilter")
    # same name: applying one replaces the other (two proxy_protocol filters would break connections)
    assert remote["metadata"] == local["metadata"]
    assert remote["spec"]["workloadSelector"] == local["spec"]["workloadSelector"]
    rp, lp = remote["spec"]["configPatches"], local["spec"]["configPatches"]
    assert [p["applyTo"] for p in rp] == [p["applyTo"] for p in lp] + ["CLUSTER"]
    for r, l in zip(rp, lp):
        r, l = copy.deepcopy(r), copy.deepcopy(l)
        if r["applyTo"] == "HTTP_FILTER":
            rcode = r["patch"]["value"]["typed_config"]["config"]["vm_config"].pop("code")
            lcode = l["patch"]["value"]["typed_config"]["config"]["vm_config"].pop("code")
            assert set(rcode) == {"remote"} and set(lcode) == {"local"}
            remote_src = rcode["remote"]
            assert remote_src["http_uri"]["cluster"] == rp[-1]["patch"]["value"]["name"]
            assert remote_src["http_uri"]["uri"].startswith(("http://", "https://"))
            assert remote_src["http_uri"]["timeout"]
            assert len(remote_src["sha256"]) == 64
            assert remote_src["retry_policy"]["num_retries"] >= 1
        assert r == l
    cluster = rp[-1]
    assert cluster["patch"]["operation"] == "ADD" and cluster["match"]["context"] == "GATEWAY"


# -- the filter order the README explains ----------------------------------------------------------

@pytest.mark.parametrize("relpath", ["envoyfilter/ingress-gateway.yaml", "envoyfilter/ingress-gateway-remote.yaml",
                                     "envoyfilter/sidecar-inbound.yaml",
                                     "envoyfilter/ingress-gateway-private-link.yaml",
                                     "envoyfilter/ingress-gateway-private-link-metadata.yaml",
                                     "envoyfilter/ingress-gateway-geo.yaml"])
def test_envoyfilter_patches_are_placed_as_documented(relpath):
    ef = one(relpath, "EnvoyFilter")
    ctx = "SIDECAR_INBOUND" if "sidecar" in relpath else "GATEWAY"
    for p in ef["spec"]["configPatches"]:
        assert p["match"]["context"] == ctx
        op = p["patch"]["operation"]
        if p["applyTo"] == "LISTENER_FILTER":
            assert op == "INSERT_FIRST"  # before tls_inspector / http_inspector
            assert p["patch"]["value"]["name"] == "envoy.filters.listener.proxy_protocol"
        elif p["applyTo"] == "NETWORK_FILTER":
            assert op == "INSERT_BEFORE"
            assert p["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
            assert p["patch"]["value"]["typed_config"]["on_new_connection"][0]["factory_key"] == "envoy.string"
        elif p["applyTo"] == "HTTP_FILTER":
            # first of the HTTP filters, before Istio's RBAC and ext_authz (docs/istio.md)
            assert op == "INSERT_FIRST"
            assert "subFilter" not in p["match"]["listener"]["filterChain"]["filter"]
    if ctx == "SIDECAR_INBOUND":
        assert "LISTENER_FILTER" not in [p["applyTo"] for p in ef["spec"]["configPatches"]]


def test_use_remote_address_patch_only_merges_that_field_and_underscore_dropping_into_the_sidecar_inbound_hcm():
    ef = one("envoyfilter/sidecar-inbound-use-remote-address.yaml", "EnvoyFilter")
    (p,) = ef["spec"]["configPatches"]
    assert p["applyTo"] == "NETWORK_FILTER" and p["patch"]["operation"] == "MERGE"
    assert p["match"]["context"] == "SIDECAR_INBOUND"
    assert p["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    tc = p["patch"]["value"]["typed_config"]
    assert tc["@type"].endswith(".HttpConnectionManager")
    assert {k: v for k, v in tc.items() if k != "@type"} == {
        "use_remote_address": True,
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"}}
    side = one("envoyfilter/sidecar-inbound.yaml", "EnvoyFilter")
    assert ef["spec"]["workloadSelector"] == side["spec"]["workloadSelector"]


# -- what stops in-cluster PROXY headers (docs/forwarding.md, docs/private-link.md) ----------------

LB_ONLY = "envoyfilter/ingress-gateway-load-balancer-only.yaml"
NETWORK_POLICY = "istio-examples/gateway-networkpolicy.yaml"


def test_load_balancer_only_envoyfilter_merges_the_direct_source_match_and_underscore_dropping():
    ef = one(LB_ONLY, "EnvoyFilter")
    gateway = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")
    assert ef["spec"]["workloadSelector"] == gateway["spec"]["workloadSelector"]
    assert ef["metadata"]["name"] != gateway["metadata"]["name"]  # applied beside it, replaces nothing
    patches = _patches(LB_ONLY)
    assert sorted(patches) == ["FILTER_CHAIN", "NETWORK_FILTER"]
    fc = patches["FILTER_CHAIN"]
    assert fc["match"] == {"context": "GATEWAY"} and fc["patch"]["operation"] == "MERGE"
    (only,) = fc["patch"]["value"]
    assert only == "filter_chain_match"
    ranges = fc["patch"]["value"]["filter_chain_match"]["direct_source_prefix_ranges"]
    assert ranges and all(set(r) == {"address_prefix", "prefix_len"} for r in ranges)
    hcm = patches["NETWORK_FILTER"]
    assert hcm["patch"]["operation"] == "MERGE"
    assert hcm["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    tc = hcm["patch"]["value"]["typed_config"]
    assert {k: v for k, v in tc.items() if k != "@type"} == {
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"}}


def test_gateway_network_policy_admits_only_the_load_balancer_to_the_proxy_protocol_ports():
    np = one(NETWORK_POLICY, "NetworkPolicy")["spec"]
    svc = one("istio-examples/gateway-service-aws-nlb.yaml", "Service")["spec"]
    assert np["podSelector"]["matchLabels"] == svc["selector"]
    assert np["policyTypes"] == ["Ingress"]
    target_ports = {p["targetPort"] for p in svc["ports"]}
    restricted = [r for r in np["ingress"] if {p["port"] for p in r["ports"]} & target_ports]
    (rule,) = restricted
    assert {p["port"] for p in rule["ports"]} == target_ports
    sources = rule.get("from")
    assert sources and all(set(s) == {"ipBlock"} for s in sources), "only address ranges, no pod selector"
    # The same ranges as the EnvoyFilter variant's direct source match.
    ranges = _patches(LB_ONLY)["FILTER_CHAIN"]["patch"]["value"]["filter_chain_match"][
        "direct_source_prefix_ranges"]
    assert sorted(s["ipBlock"]["cidr"] for s in sources) == \
        sorted(f"{r['address_prefix']}/{r['prefix_len']}" for r in ranges)
    # Every other rule opens only Istio's own ports.
    for r in np["ingress"]:
        if r is not rule:
            assert {p["port"] for p in r["ports"]} <= {15021, 15090}, r


@pytest.mark.parametrize("relpath", ["envoyfilter/ingress-gateway-private-link.yaml",
                                     "envoyfilter/ingress-gateway-private-link-metadata.yaml",
                                     "istio-examples/wasmplugin-private-link.yaml"])
def test_private_link_examples_list_endpoint_ids_only(relpath):
    """Behind an endpoint the source address is the consumer's choice: no address entries."""
    if relpath == PRIVATE_LINK_PLUGIN:
        cfg = one(relpath, "WasmPlugin")["spec"]["pluginConfig"]
    else:
        cfg = envoyfilter_configuration(relpath)
    lists = [cfg["access"].get("allow", []), cfg["access"].get("deny", [])]
    lists += [r.get(k, []) for r in cfg["access"].get("rules", []) for k in ("allow", "deny")]
    for entries in lists:
        assert all(e.startswith(("aws-vpce:", "azure-link:", "gcp-psc:")) for e in entries), entries


def test_virtualservice_removes_the_strip_list_but_no_header_the_gateway_filter_writes():
    vs = one("istio-examples/httpbin-gateway.yaml", "VirtualService")
    removed = vs["spec"]["http"][0]["headers"]["request"]["remove"]
    default_strip = ["forwarded", "true-client-ip", "cf-connecting-ip", "x-cluster-client-ip",
                     "x-client-ip", "fastly-client-ip"]   # src/forward.rs DEFAULT_STRIP
    forward = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")["spec"]["pluginConfig"]["forward"]
    written = set(forward["headers"]) | {forward.get("port_header"), forward.get("link_header")}
    assert removed == [h for h in default_strip if h not in written]
    src = (REPO / "src" / "forward.rs").read_text()
    assert all(f'"{h}"' in src.split("DEFAULT_STRIP")[1].split("];")[0] for h in default_strip)


# -- the examples fit together ---------------------------------------------------------------------

def test_wasmplugins_are_wired_as_istio_expects():
    gw = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")["spec"]
    sc = one("istio-examples/wasmplugin-sidecar.yaml", "WasmPlugin")["spec"]
    assert gw["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    assert sc["match"] == [{"mode": "SERVER"}]
    for spec in (gw, sc):
        assert spec["phase"] == "AUTHN"
        assert spec["failStrategy"] == "FAIL_CLOSE"
        assert spec["url"].startswith("oci://")
        assert len(spec["sha256"]) == 64  # the manifest digest `make oci` prints, hex without "sha256:"
        # pluginName is the proxy-wasm root id; the EnvoyFilters use the same one
        assert spec["pluginName"] == "client_ip_filter"
    root_id = json.loads(json.dumps(one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")["spec"]
                                    ["configPatches"][2]["patch"]["value"]))["typed_config"]["config"]["root_id"]
    assert root_id == gw["pluginName"]


@pytest.mark.parametrize("relpath,ctx", [("istio-examples/wasmplugin-ingress-gateway.yaml", "GATEWAY"),
                                         ("istio-examples/wasmplugin-sidecar.yaml", "SIDECAR_INBOUND")])
def test_wasmplugin_companion_set_filter_state_is_the_envoyfilter_one(relpath, ctx):
    companion = one(relpath, "EnvoyFilter")
    wp = one(relpath, "WasmPlugin")
    source = "envoyfilter/ingress-gateway.yaml" if ctx == "GATEWAY" else "envoyfilter/sidecar-inbound.yaml"
    shipped = [p for p in one(source, "EnvoyFilter")["spec"]["configPatches"] if p["applyTo"] == "NETWORK_FILTER"]
    assert companion["spec"]["configPatches"] == shipped
    assert companion["metadata"]["namespace"] == wp["metadata"]["namespace"]
    assert companion["spec"]["workloadSelector"]["labels"] == wp["spec"]["selector"]["matchLabels"]


def _proxy_config(deployment: dict) -> dict:
    return yaml.safe_load(deployment["spec"]["template"]["metadata"]["annotations"]["proxy.istio.io/config"])


def test_gateway_pod_annotation_enables_proxy_protocol_and_keeps_the_counters():
    dep = one("istio-examples/ingress-gateway.yaml", "Deployment")
    pc = _proxy_config(dep)
    assert set(pc) == {"gatewayTopology", "proxyStatsMatcher"}
    assert pc["gatewayTopology"] == {"proxyProtocol": {}}
    assert pc["proxyStatsMatcher"] == {"inclusionPrefixes": ["wasmcustom.client_ip"]}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["istio"] == "ingressgateway" and labels["sidecar.istio.io/inject"] == "true"
    assert dep["spec"]["template"]["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway"
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_httpbin_keeps_the_counters_too():
    assert _proxy_config(one("istio-examples/httpbin.yaml", "Deployment")) == {
        "proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom.client_ip"]}}


@pytest.mark.parametrize("relpath,annotation,value", [
    ("istio-examples/gateway-service-aws-nlb.yaml", "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol", "*"),
    ("istio-examples/gateway-service-aws-classic-elb.yaml", "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol", "*"),
    ("istio-examples/gateway-service-alibaba-clb.yaml", "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-proxy-protocol", "on"),
])
def test_gateway_services_send_proxy_protocol_to_the_gateway_pods(relpath, annotation, value):
    svc = one(relpath, "Service")
    assert svc["metadata"]["annotations"][annotation] == value
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    dep = one("istio-examples/ingress-gateway.yaml", "Deployment")
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    container_ports = {p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= container_ports
    if "aws-nlb" in relpath:  # NLB needs the AWS Load Balancer Controller for PROXY protocol
        assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"
    if "classic" in relpath:  # a Classic ELB is what the in-tree provider makes without a type annotation
        assert "service.beta.kubernetes.io/aws-load-balancer-type" not in svc["metadata"]["annotations"]


def test_gateway_and_virtualservice_route_to_the_httpbin_service():
    gw = one("istio-examples/httpbin-gateway.yaml", "Gateway")
    vs = one("istio-examples/httpbin-gateway.yaml", "VirtualService")
    svc = one("istio-examples/httpbin.yaml", "Service")
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    assert vs["spec"]["gateways"] == [gw["metadata"]["name"]]
    dest = vs["spec"]["http"][0]["route"][0]["destination"]
    assert dest["host"] == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert dest["port"]["number"] in {p["port"] for p in svc["spec"]["ports"]}
    # the gateway listens on the Service's targetPort for the Gateway server port
    nlb = one("istio-examples/gateway-service-aws-nlb.yaml", "Service")
    assert gw["spec"]["servers"][0]["port"]["number"] in {p["port"] for p in nlb["spec"]["ports"]}


def test_east_west_sample_objects_are_consistent():
    for name in ("httpbin", "sleep"):
        path = f"istio-examples/{name}.yaml"
        sa, svc, dep = one(path, "ServiceAccount"), one(path, "Service"), one(path, "Deployment")
        pod = dep["spec"]["template"]
        assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    wp = one("istio-examples/wasmplugin-sidecar.yaml", "WasmPlugin")
    httpbin_pod = one("istio-examples/httpbin.yaml", "Deployment")["spec"]["template"]
    assert wp["spec"]["selector"]["matchLabels"].items() <= httpbin_pod["metadata"]["labels"].items()
    container = httpbin_pod["spec"]["containers"][0]
    svc = one("istio-examples/httpbin.yaml", "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["containerPort"]


def test_access_log_telemetry_uses_the_provider_defined_in_mesh_config():
    iop = one("istio-examples/mesh-config-access-log.yaml", "IstioOperator")
    providers = {p["name"]: p for p in iop["spec"]["meshConfig"]["extensionProviders"]}
    labels = providers["client-ip-log"]["envoyFileAccessLog"]["logFormat"]["labels"]
    for operator in ("%FILTER_STATE(wasm.client_ip:PLAIN)%", "%FILTER_STATE(wasm.client_ip_decision:PLAIN)%",
                     "%FILTER_STATE(wasm.client_ip_rule:PLAIN)%", "%FILTER_STATE(wasm.client_link:PLAIN)%"):
        assert operator in labels.values()
    telemetries = objects("Telemetry", "istio-examples/")
    assert len(telemetries) == 2
    for _, t in telemetries:
        names = [pr["name"] for al in t["spec"]["accessLogging"] for pr in al["providers"]]
        assert names and set(names) <= set(providers)
    selected = [t["spec"]["selector"]["matchLabels"] for _, t in telemetries]
    assert {"istio": "ingressgateway"} in selected and {"app": "httpbin"} in selected


# -- private-link identities (docs/private-link.md) -----------------------------------------------------

PRIVATE_LINK = "envoyfilter/ingress-gateway-private-link.yaml"
PRIVATE_LINK_MD = "envoyfilter/ingress-gateway-private-link-metadata.yaml"
PRIVATE_LINK_PLUGIN = "istio-examples/wasmplugin-private-link.yaml"
TLV_KEYS = {234: "aws_vpce_id", 238: "azure_link_id", 224: "gcp_psc_id"}


def _patches(relpath: str, kind: str = "EnvoyFilter") -> dict:
    return {p["applyTo"]: p for p in one(relpath, kind)["spec"]["configPatches"]}


@pytest.mark.parametrize("relpath", [PRIVATE_LINK, PRIVATE_LINK_MD])
def test_private_link_variants_replace_the_gateway_manifest_and_change_only_tlv_pieces(relpath):
    base, variant = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter"), one(relpath, "EnvoyFilter")
    # same name: applying the variant replaces the plain one (two proxy_protocol filters break connections)
    assert variant["metadata"] == base["metadata"]
    bp, vp = _patches("envoyfilter/ingress-gateway.yaml"), _patches(relpath)
    assert list(vp) == list(bp)
    for apply_to in bp:
        b, v = copy.deepcopy(bp[apply_to]), copy.deepcopy(vp[apply_to])
        if apply_to == "LISTENER_FILTER":
            tc = v["patch"]["value"]["typed_config"]
            rules = tc.pop("rules")
            tc.pop("tlv_location", None)
            assert rules and all(TLV_KEYS[r["tlv_type"]] == r["on_tlv_present"]["key"] for r in rules)
        elif apply_to == "NETWORK_FILTER":
            entries = v["patch"]["value"]["typed_config"]["on_new_connection"]
            # the downstream address first, exactly as in the plain manifest; then the TLV copies
            for extra in entries[1:]:
                key = extra["object_key"].removeprefix("client_ip.")
                assert key in TLV_KEYS.values()
                assert extra["format_string"]["text_format_source"]["inline_string"] == \
                    f"%DYNAMIC_METADATA(envoy.filters.listener.proxy_protocol:{key})%"
            del entries[1:]
        elif apply_to == "HTTP_FILTER":
            for p in (b, v):
                p["patch"]["value"]["typed_config"]["config"].pop("configuration")
        assert v == b, apply_to


def test_private_link_filter_state_variant_reads_every_kind_in_base64():
    tc = _patches(PRIVATE_LINK)["LISTENER_FILTER"]["patch"]["value"]["typed_config"]
    assert tc["tlv_location"] == "FILTER_STATE"
    assert sorted(r["on_tlv_present"]["key"] for r in tc["rules"]) == sorted(TLV_KEYS.values())
    assert all(r["on_tlv_present"]["value_string_encoding"] == "BASE64" for r in tc["rules"])
    cfg = envoyfilter_configuration(PRIVATE_LINK)
    listed = cfg["access"]["allow"] + cfg["access"]["deny"]
    kinds = {e.split(":")[0] for e in listed if e.startswith(("aws-vpce:", "azure-link:", "gcp-psc:"))}
    assert kinds == {"aws-vpce", "azure-link", "gcp-psc"}


def test_private_link_metadata_variant_fits_envoy_1_29():
    """No field newer than Envoy 1.29 (tlv_location, value_string_encoding), hence AWS only."""
    tc = _patches(PRIVATE_LINK_MD)["LISTENER_FILTER"]["patch"]["value"]["typed_config"]
    assert "tlv_location" not in tc
    assert tc["rules"] == [{"tlv_type": 234, "on_tlv_present": {"key": "aws_vpce_id"}}]
    cfg = envoyfilter_configuration(PRIVATE_LINK_MD)
    entries = cfg["access"]["allow"] + cfg["access"]["deny"]
    assert not any(e.startswith(("azure-link:", "gcp-psc:")) for e in entries)


def test_private_link_wasmplugin_swaps_istios_listener_filter_and_allows_two_endpoints():
    wp = one(PRIVATE_LINK_PLUGIN, "WasmPlugin")
    plain = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")
    assert wp["metadata"] == plain["metadata"]  # applying one replaces the other
    for key in ("selector", "url", "sha256", "pluginName", "phase", "failStrategy"):
        assert wp["spec"][key] == plain["spec"][key], key
    allow = wp["spec"]["pluginConfig"]["access"]["allow"]
    assert len(allow) == 2 and all(e.startswith("aws-vpce:vpce-") for e in allow)
    patches = _patches(PRIVATE_LINK_PLUGIN)
    # Istio cannot MERGE a listener filter, and istioctl analyze rejects REPLACE on one (IST0152):
    # REMOVE Istio's, then INSERT_FIRST the one with the rules
    remove, insert = [p for p in one(PRIVATE_LINK_PLUGIN, "EnvoyFilter")["spec"]["configPatches"]
                      if p["applyTo"] == "LISTENER_FILTER"]
    assert remove["patch"] == {"operation": "REMOVE"}
    assert remove["match"] == {"context": "GATEWAY",
                               "listener": {"listenerFilter": "envoy.filters.listener.proxy_protocol"}}
    assert insert["patch"]["operation"] == "INSERT_FIRST" and insert["match"] == {"context": "GATEWAY"}
    assert insert["patch"]["value"]["name"] == "envoy.filters.listener.proxy_protocol"
    companion = one("istio-examples/wasmplugin-ingress-gateway.yaml", "EnvoyFilter")
    assert one(PRIVATE_LINK_PLUGIN, "EnvoyFilter")["metadata"] == companion["metadata"]
    assert [patches["NETWORK_FILTER"]] == companion["spec"]["configPatches"]


# -- the network-filter manifests (docs/network-mode.md) ----------------------------------------------------------

NETWORK_WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"


def network_configuration(relpath: str) -> dict:
    ef = one(relpath, "EnvoyFilter")
    values = [p["patch"]["value"] for p in ef["spec"]["configPatches"]
              if p["applyTo"] == "NETWORK_FILTER" and p["patch"]["value"]["typed_config"]["@type"] == NETWORK_WASM_TYPE]
    assert len(values) == 1
    return json.loads(values[0]["typed_config"]["config"]["configuration"]["value"])


@pytest.mark.parametrize("relpath,ctx", [("envoyfilter/gateway-tls-passthrough.yaml", "GATEWAY"),
                                         ("envoyfilter/sidecar-inbound-tcp.yaml", "SIDECAR_INBOUND")])
def test_network_envoyfilters_put_set_filter_state_then_the_filter_before_tcp_proxy(relpath, ctx):
    patches = one(relpath, "EnvoyFilter")["spec"]["configPatches"]
    network = [p for p in patches if p["applyTo"] == "NETWORK_FILTER"]
    assert [p["patch"]["value"]["name"] for p in network] == [
        "envoy.filters.network.set_filter_state", "client-ip-filter-network"]
    for p in patches:
        assert p["match"]["context"] == ctx
    for p in network:
        assert p["patch"]["operation"] == "INSERT_BEFORE"
        assert p["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.tcp_proxy"
    assert network[1]["patch"]["value"]["typed_config"]["@type"] == NETWORK_WASM_TYPE
    assert network_configuration(relpath)["filter_type"] == "network"
    if ctx == "SIDECAR_INBOUND":
        assert "LISTENER_FILTER" not in [p["applyTo"] for p in patches]


def test_gateway_passthrough_passes_the_client_on_with_the_upstream_proxy_protocol():
    """Through a DestinationRule's proxyProtocol, which Istio wraps around every transport socket of the
    cluster; not a CLUSTER MERGE of transport_socket, which auto mTLS's transport_socket_matches
    catch-all makes dead (tests/test_istio_passthrough.py runs it through Istio)."""
    patches = one("envoyfilter/gateway-tls-passthrough.yaml", "EnvoyFilter")["spec"]["configPatches"]
    assert [p for p in patches if p["applyTo"] == "CLUSTER"] == []
    dr = one("envoyfilter/gateway-tls-passthrough.yaml", "DestinationRule")["spec"]
    assert dr["host"] == "app.example.svc.cluster.local"
    assert dr["trafficPolicy"]["proxyProtocol"] == {"version": "V2"}


def test_network_wasmplugin_is_type_network_with_the_passthrough_configuration():
    wp = one("istio-examples/wasmplugin-network.yaml", "WasmPlugin")["spec"]
    assert wp["type"] == "NETWORK" and wp["failStrategy"] == "FAIL_CLOSE"
    assert wp["pluginConfig"] == network_configuration("envoyfilter/gateway-tls-passthrough.yaml")
    patches = one("istio-examples/wasmplugin-network.yaml", "EnvoyFilter")["spec"]["configPatches"]
    assert [p["match"]["listener"]["filterChain"]["filter"]["name"] for p in patches] == [
        "envoy.filters.network.tcp_proxy"]


# -- the CloudFront source (docs/sources.md): ServiceEntry, DestinationRule, WasmPlugin, EnvoyFilter ---------

def test_cloudfront_source_cluster_is_the_one_the_service_entry_creates():
    relpath = "istio-examples/wasmplugin-cloudfront-gateway.yaml"
    se = one(relpath, "ServiceEntry")["spec"]
    dr = one(relpath, "DestinationRule")["spec"]
    source = one(relpath, "WasmPlugin")["spec"]["pluginConfig"]["sources"]["cloudfront"]
    (host,), (port,) = se["hosts"], se["ports"]
    assert source["cluster"] == f"outbound|{port['number']}||{host}"
    assert source["authority"] == host and dr["host"] == host
    # The filter speaks plain HTTP to the cluster; the DestinationRule originates TLS on that port.
    assert port["protocol"] == "HTTP"
    (setting,) = dr["trafficPolicy"]["portLevelSettings"]
    assert setting["port"]["number"] == port["number"]
    assert setting["tls"]["mode"] == "SIMPLE" and setting["tls"]["sni"] == host


def test_cloudfront_envoyfilter_is_the_gateway_one_with_the_wasmplugin_configuration_and_a_cluster():
    local = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")
    cf = one("envoyfilter/ingress-gateway-cloudfront.yaml", "EnvoyFilter")
    assert cf["metadata"] == local["metadata"]
    cp, lp = cf["spec"]["configPatches"], local["spec"]["configPatches"]
    assert [p["applyTo"] for p in cp] == [p["applyTo"] for p in lp] + ["CLUSTER"]
    for c, l in zip(cp, lp):
        c, l = copy.deepcopy(c), copy.deepcopy(l)
        if c["applyTo"] == "HTTP_FILTER":
            for p in (c, l):
                p["patch"]["value"]["typed_config"]["config"]["configuration"].pop("value")
        assert c == l
    config = envoyfilter_configuration("envoyfilter/ingress-gateway-cloudfront.yaml")
    plugin = one("istio-examples/wasmplugin-cloudfront-gateway.yaml", "WasmPlugin")["spec"]["pluginConfig"]
    cluster = cp[-1]["patch"]["value"]
    assert config["sources"]["cloudfront"].pop("cluster") == cluster["name"]
    plugin["sources"]["cloudfront"].pop("cluster")
    assert config == plugin
    assert cluster["transport_socket"]["typed_config"]["sni"] == plugin["sources"]["cloudfront"]["authority"]


# -- the geo databases (docs/geo.md): ServiceEntry, WasmPlugin, EnvoyFilter -----------------------------------

GEO_PLUGIN = "istio-examples/wasmplugin-geo-gateway.yaml"
GEO_ENVOYFILTER = "envoyfilter/ingress-gateway-geo.yaml"


def _mmdb_sources(config: dict) -> dict:
    return {n: s for n, s in config["sources"].items() if s.get("format") == "mmdb"}


def test_geo_sources_cluster_is_the_one_the_service_entry_creates():
    se = one(GEO_PLUGIN, "ServiceEntry")["spec"]
    plugin = one(GEO_PLUGIN, "WasmPlugin")
    (host,), (port,) = se["hosts"], se["ports"]
    assert port["protocol"] == "HTTP"  # the filter speaks plain HTTP to the cluster, no DestinationRule
    sources = _mmdb_sources(plugin["spec"]["pluginConfig"])
    assert len(sources) == 2
    for s in sources.values():
        assert s["cluster"] == f"outbound|{port['number']}||{host}" and s["authority"] == host
    # the same WasmPlugin as the plain gateway one (applying one replaces the other), other configuration
    plain = one("istio-examples/wasmplugin-ingress-gateway.yaml", "WasmPlugin")
    assert plugin["metadata"] == plain["metadata"]
    for key in ("selector", "url", "sha256", "pluginName", "phase", "failStrategy"):
        assert plugin["spec"][key] == plain["spec"][key], key


def test_geo_configuration_denies_a_country_and_a_network_and_forwards_both():
    config = one(GEO_PLUGIN, "WasmPlugin")["spec"]["pluginConfig"]
    sources = _mmdb_sources(config)
    geo = config["geo"]
    assert sources[geo["country"]]["country_field"] == "country.iso_code"   # MaxMind's layout
    assert sources[geo["asn"]]["asn_field"] == "autonomous_system_number"
    deny = config["access"]["deny"]
    assert any(e.startswith("country:") for e in deny) and any(e.startswith("asn:") for e in deny)
    assert {config["forward"]["country_header"], config["forward"]["asn_header"]} == {
        "x-client-country", "x-client-asn"}
    # a deny list that cannot be checked refuses (503) rather than lets a denied country in
    assert {s["on_unavailable"] for s in sources.values()} == {"refuse"}


def test_geo_envoyfilter_is_the_gateway_one_with_the_wasmplugin_configuration_and_a_cluster():
    local = one("envoyfilter/ingress-gateway.yaml", "EnvoyFilter")
    geo = one(GEO_ENVOYFILTER, "EnvoyFilter")
    assert geo["metadata"] == local["metadata"]
    gp, lp = geo["spec"]["configPatches"], local["spec"]["configPatches"]
    assert [p["applyTo"] for p in gp] == [p["applyTo"] for p in lp] + ["CLUSTER"]
    for g, l in zip(gp, lp):
        g, l = copy.deepcopy(g), copy.deepcopy(l)
        if g["applyTo"] == "HTTP_FILTER":
            for p in (g, l):
                p["patch"]["value"]["typed_config"]["config"]["configuration"].pop("value")
        assert g == l
    config = envoyfilter_configuration(GEO_ENVOYFILTER)
    plugin = one(GEO_PLUGIN, "WasmPlugin")["spec"]["pluginConfig"]
    cluster = gp[-1]
    assert cluster["patch"]["operation"] == "ADD" and cluster["match"] == {"context": "GATEWAY"}
    value = cluster["patch"]["value"]
    for name in _mmdb_sources(config):
        assert config["sources"][name].pop("cluster") == value["name"]
        plugin["sources"][name].pop("cluster")
    assert config == plugin
    sock = value["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    se = one(GEO_PLUGIN, "ServiceEntry")["spec"]
    assert [sock["address"]] == se["hosts"] and sock["port_value"] == se["ports"][0]["number"]
    assert {s["authority"] for s in _mmdb_sources(config).values()} == {sock["address"]}
