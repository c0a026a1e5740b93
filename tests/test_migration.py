"""docs/migration.md, moving a live gateway to the PROXY protocol: the bridge manifest accepts
connections with and without a PROXY header (and counts those without) until it is switched off; the
proxy.istio.io/config patch keeps the annotation's other keys; a wide trust list lets a pod forge its
client address, a narrow one does not.

The patch is applied with `jsonpatch` (an RFC 6902 implementation that is not this project's), the
bridge's listener filter runs in a real Envoy exactly as istio-examples/proxy-protocol-bridge.yaml
has it.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonpatch
import pytest
import yaml

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import exchange

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "proxy_config_patch.py"
BRIDGE = REPO / "istio-examples" / "proxy-protocol-bridge.yaml"
ANNOTATION = "proxy.istio.io/config"
STATS_KEYS = {"proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom.client_ip", "proxy_proto"]}}


def deployment(annotations):
    template = {"metadata": {"labels": {"istio": "ingressgateway"}}, "spec": {"containers": []}}
    if annotations is not None:
        template["metadata"]["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
            "spec": {"template": template}}


def tool_patch(dep: dict, keys: dict = STATS_KEYS) -> list:
    run = subprocess.run([sys.executable, str(TOOL), "--merge", json.dumps(keys)], input=json.dumps(dep),
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def proxy_config(dep: dict) -> dict:
    return yaml.safe_load(dep["spec"]["template"]["metadata"]["annotations"][ANNOTATION])


EXISTING = "gatewayTopology:\n  numTrustedProxies: 1\nproxyStatsMatcher:\n  inclusionPrefixes:\n  - cluster.outbound\n"


def test_patch_keeps_the_annotations_other_keys_and_adds_the_new_ones():
    dep = deployment({ANNOTATION: EXISTING, "sidecar.istio.io/inject": "true"})
    patched = jsonpatch.apply_patch(dep, tool_patch(dep))
    assert proxy_config(patched) == {
        "gatewayTopology": {"numTrustedProxies": 1},
        "proxyStatsMatcher": {"inclusionPrefixes": ["cluster.outbound", "wasmcustom.client_ip", "proxy_proto"]}}
    assert patched["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"


def test_a_merge_patch_of_the_annotation_drops_its_other_keys():
    """Why the tool exists: RFC 7386 (kubectl --type merge) replaces the string as a whole."""
    def merge_patch(target, patch):
        if not isinstance(patch, dict):
            return patch
        out = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge_patch(out.get(k), v)
        return out
    dep = deployment({ANNOTATION: EXISTING})
    naive = {"spec": {"template": {"metadata": {"annotations": {
        ANNOTATION: "gatewayTopology:\n  proxyProtocol: {}\n"}}}}}
    assert "numTrustedProxies" not in proxy_config(merge_patch(dep, naive))["gatewayTopology"]
    kept = jsonpatch.apply_patch(dep, tool_patch(dep, {"gatewayTopology": {"proxyProtocol": {}}}))
    assert proxy_config(kept)["gatewayTopology"] == {"numTrustedProxies": 1, "proxyProtocol": {}}


def test_patch_adds_the_annotation_when_there_is_none_or_no_annotations_at_all():
    for annotations in (None, {"other": "x"}):
        dep = deployment(annotations)
        patched = jsonpatch.apply_patch(dep, tool_patch(dep))
        assert proxy_config(patched) == STATS_KEYS
        if annotations:
            assert patched["spec"]["template"]["metadata"]["annotations"]["other"] == "x"


def test_patch_twice_changes_nothing_more():
    dep = deployment({ANNOTATION: EXISTING})
    once = jsonpatch.apply_patch(dep, tool_patch(dep))
    twice = jsonpatch.apply_patch(once, tool_patch(once))
    assert proxy_config(twice) == proxy_config(once)


def test_patch_refuses_to_apply_when_the_annotation_changed_since_it_was_read():
    dep = deployment({ANNOTATION: EXISTING})
    patch = tool_patch(dep)
    changed = copy.deepcopy(dep)
    changed["spec"]["template"]["metadata"]["annotations"][ANNOTATION] = EXISTING + "concurrency: 2\n"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(changed, patch)


def test_the_guides_patch_command_is_the_one_tested():
    guide = (REPO / "docs" / "migration.md").read_text()
    assert "python3 tools/proxy_config_patch.py" in guide
    assert "kubectl -n istio-system patch deploy istio-ingressgateway --type json --patch-file patch.json" in guide
    assert json.dumps(STATS_KEYS) in guide, "the guide's --merge keys differ from the tested ones"


# -- the bridge, in Envoy ------------------------------------------------------------------------

def bridge_fragments(allow_without: bool = True) -> manifests.Fragments:
    bridge = manifests.load(BRIDGE)
    assert bridge.context == "GATEWAY"
    (pp_filter,) = bridge.listener_filters
    assert pp_filter["typed_config"]["allow_requests_without_proxy_protocol"] is True
    pp_filter = copy.deepcopy(pp_filter)
    pp_filter["typed_config"]["allow_requests_without_proxy_protocol"] = allow_without  # step 4's edit
    frags = manifests.gateway()
    frags.listener_filters = [pp_filter]
    return frags


CONFIG = {"access": {"allow": ["203.0.113.0/24", "127.0.0.0/8"]}}


def test_the_bridge_admits_connections_with_and_without_a_proxy_header_and_counts_those_without(
        envoy_factory, echo):
    env = envoy_factory(E.EnvoyOptions(fragments=bridge_fragments(), configuration=CONFIG))
    before = env.stats(raw=True)
    with_header = exchange(env, echo, proxy=pp.v2("203.0.113.7", "10.0.0.1", 40000, 443))
    assert with_header.status == 200 and with_header.upstream_value("x-real-ip") == "203.0.113.7"
    without = exchange(env, echo, source="127.0.0.5")
    assert without.status == 200 and without.upstream_value("x-real-ip") == "127.0.0.5"
    after = env.stats(raw=True)
    assert after["proxy_proto.not_found_allowed"] - before.get("proxy_proto.not_found_allowed", 0) == 1
    assert after["proxy_proto.versions.v2.found"] - before.get("proxy_proto.versions.v2.found", 0) == 1


def test_with_the_bridge_switched_off_a_connection_without_a_proxy_header_is_closed(envoy_factory, echo):
    env = envoy_factory(E.EnvoyOptions(fragments=bridge_fragments(allow_without=False), configuration=CONFIG))
    assert exchange(env, echo, proxy=pp.v1("203.0.113.8")).status == 200
    received = pp.raw_exchange(env.port, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", source="127.0.0.5")
    assert not received.startswith(b"HTTP/"), received[:200]
    assert env.stats(raw=True).get("proxy_proto.not_found_disallowed", 0) >= 1


def test_the_bridge_manifest_and_the_gateway_manifest_add_the_same_listener_filter_but_the_bridge():
    bridge = manifests.load(BRIDGE).proxy_protocol
    gateway = manifests.gateway().proxy_protocol
    bridge_cfg = dict(bridge["typed_config"])
    assert bridge_cfg.pop("allow_requests_without_proxy_protocol") is True
    assert bridge_cfg == gateway["typed_config"] and bridge["name"] == gateway["name"]


# -- trust only the proxies in front --------------------------------------------------------------

def test_a_wide_trust_list_lets_a_pod_forge_its_client_and_a_narrow_one_does_not(envoy_factory, echo):
    """A pod at 10.1.2.3 (inside 10.0.0.0/8, as EKS pod addresses are) connects to the gateway directly
    and writes an allowed address into X-Forwarded-For."""
    forged = [("X-Forwarded-For", "203.0.113.7")]
    pod = pp.v1("10.1.2.3", "10.0.0.1", 40000, 443)
    wide = envoy_factory(E.EnvoyOptions(configuration={
        "client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "access": {"allow": ["203.0.113.0/24"]}}))
    ex = exchange(wide, echo, proxy=pod, headers=forged)
    assert ex.status == 200 and ex.upstream_value("x-real-ip") == "203.0.113.7"  # the forgery worked
    narrow = envoy_factory(E.EnvoyOptions(configuration={
        "client_ip": {"trusted_proxies": ["10.0.96.0/24"]}, "access": {"allow": ["203.0.113.0/24"]}}))
    assert exchange(narrow, echo, proxy=pod, headers=forged).status == 403
    # the real proxy tier is still believed
    via_proxy = exchange(narrow, echo, proxy=pp.v1("10.0.96.5", "10.0.0.1", 40000, 443), headers=forged)
    assert via_proxy.status == 200 and via_proxy.upstream_value("x-real-ip") == "203.0.113.7"
