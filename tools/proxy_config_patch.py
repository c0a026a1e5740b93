#!/usr/bin/env python3
"""A JSON patch (RFC 6902) for a Deployment's `proxy.istio.io/config` pod annotation that adds keys and
keeps the ones already there.

The annotation is one string (YAML text), so a merge patch (`kubectl patch --type merge`) or a
strategic-merge patch replaces it whole: setting `gatewayTopology.proxyProtocol` that way silently
drops an existing `gatewayTopology.numTrustedProxies`. This reads the Deployment as it is, merges the
new keys into the annotation's value (maps key by key, lists by adding missing items, other values
replaced), and prints a patch that first `test`s the annotation still holds what was read (so a
concurrent change makes `kubectl patch` fail instead of being overwritten), then sets the merged value.

    kubectl -n istio-system get deploy istio-ingressgateway -o json \\
      | python3 tools/proxy_config_patch.py \\
          --merge '{"proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom.client_ip"]}}' > patch.json
    kubectl -n istio-system patch deploy istio-ingressgateway --type json --patch-file patch.json

Needs PyYAML (Debian: python3-yaml) to read an annotation written as YAML.
"""
from __future__ import annotations

import argparse
import json
import sys

ANNOTATION = "proxy.istio.io/config"
ANNOTATIONS_PATH = "/spec/template/metadata/annotations"
VALUE_PATH = ANNOTATIONS_PATH + "/" + ANNOTATION.replace("~", "~0").replace("/", "~1")


def load_yaml(text: str):
    try:
        import yaml
    except ImportError:
        sys.exit("proxy_config_patch.py: needs PyYAML to read the annotation (apt-get install python3-yaml)")
    return yaml.safe_load(text)


def dump_yaml(value) -> str:
    import yaml
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False)


def merge(old, new):
    """``new`` merged into ``old``: maps key by key, lists gain the items they lack, else ``new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            out[key] = merge(old[key], value) if key in old else value
        return out
    if isinstance(old, list) and isinstance(new, list):
        return old + [item for item in new if item not in old]
    return new


def patch_for(deployment: dict, keys: dict) -> list:
    """The JSON patch that sets the merged annotation on ``deployment``'s pod template."""
    metadata = deployment.get("spec", {}).get("template", {}).get("metadata", {})
    annotations = metadata.get("annotations")
    ops: list = []
    if annotations is None:
        ops.append({"op": "add", "path": ANNOTATIONS_PATH, "value": {}})
        current = None
    else:
        current = annotations.get(ANNOTATION)
    if current is None:
        ops.append({"op": "add", "path": VALUE_PATH, "value": dump_yaml(keys)})
        return ops
    old = load_yaml(current) or {}
    if not isinstance(old, dict):
        sys.exit(f"proxy_config_patch.py: {ANNOTATION} is not a map: {current!r}")
    ops.append({"op": "test", "path": VALUE_PATH, "value": current})
    ops.append({"op": "replace", "path": VALUE_PATH, "value": dump_yaml(merge(old, keys))})
    return ops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merge", required=True, help="the keys to add, as JSON (or YAML)")
    args = parser.parse_args(argv)
    keys = load_yaml(args.merge)
    if not isinstance(keys, dict):
        sys.exit("proxy_config_patch.py: --merge must be a map")
    deployment = json.load(sys.stdin)
    json.dump(patch_for(deployment, keys), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
