"""The Envoy fragments of the shipped Istio EnvoyFilter manifests, the tests' single source of truth.

``envoyfilter/ingress-gateway.yaml`` and ``envoyfilter/sidecar-inbound.yaml`` carry, in
``spec.configPatches[*].patch.value``, the exact Envoy configuration the filter is deployed with:
the ``proxy_protocol`` listener filter (LISTENER_FILTER), the ``set_filter_state`` network filter
(NETWORK_FILTER) and the wasm HTTP filter (HTTP_FILTER). The tests load those values unchanged and
replace only

  * the wasm ``vm_config.code.local.filename`` (with ``$CLIENT_IP_WASM``), and
  * when a test needs another filter configuration, ``config.configuration.value`` (the JSON string).

The native build (the Envoy dynamic module, docs/native.md) is the same filter in another HTTP filter
block: ``native/envoy.yaml``'s ``envoy.filters.http.dynamic_modules`` filter, whose ``filter_config`` is
the same JSON string. ``native_http_filter`` takes that block unchanged and replaces only
``dynamic_module_config.module.local.filename`` (with ``$CLIENT_IP_NATIVE_SO``) and ``filter_config.value``
(with the configuration the wasm block would carry), so a test runs on either build by naming it.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

REPO = Path(__file__).resolve().parents[2]
ENVOYFILTER_DIR = REPO / "envoyfilter"
GATEWAY = ENVOYFILTER_DIR / "ingress-gateway.yaml"
SIDECAR = ENVOYFILTER_DIR / "sidecar-inbound.yaml"

PROXY_PROTOCOL = "envoy.filters.listener.proxy_protocol"
SET_FILTER_STATE = "envoy.filters.network.set_filter_state"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
DYNAMIC_MODULE_TYPE = ("type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3."
                       "DynamicModuleFilter")
NATIVE_DIR = REPO / "native"
NATIVE_ENVOY = NATIVE_DIR / "envoy.yaml"
# The two builds of the filter: the proxy-wasm .wasm and the Envoy dynamic module .so.
BUILDS = ("wasm", "native")
# What a run without $CLIENT_IP_BUILDS covers (make test sets both).
DEFAULT_BUILDS = ("wasm",)

Configuration = Union[None, str, dict]


@dataclass
class Fragments:
    """The patch values of one EnvoyFilter manifest, grouped by ``applyTo``."""
    source: Path
    context: str = ""  # the patches' match.context: GATEWAY, SIDECAR_INBOUND, ...
    listener_filters: list = field(default_factory=list)
    network_filters: list = field(default_factory=list)
    http_filters: list = field(default_factory=list)
    # every other patch (MERGE operations, CLUSTER, ...): (applyTo, operation, value), in file order
    others: list = field(default_factory=list)

    # -- lookups ---------------------------------------------------------------------------------
    def listener_filter(self, name: str) -> Optional[dict]:
        return _by_name(self.listener_filters, name)

    def network_filter(self, name: str) -> Optional[dict]:
        return _by_name(self.network_filters, name)

    @property
    def proxy_protocol(self) -> Optional[dict]:
        """The ``proxy_protocol`` listener filter, or None when the manifest has none (sidecar)."""
        return self.listener_filter(PROXY_PROTOCOL)

    @property
    def set_filter_state(self) -> Optional[dict]:
        return self.network_filter(SET_FILTER_STATE)

    @property
    def wasm_filter(self) -> dict:
        """The wasm HTTP filter exactly as the manifest has it (a deep copy)."""
        for f in self.http_filters:
            if f.get("typed_config", {}).get("@type") == WASM_TYPE:
                return copy.deepcopy(f)
        raise LookupError(f"{self.source}: no HTTP_FILTER patch of type {WASM_TYPE}")

    @property
    def downstream_filter_state_key(self) -> str:
        """The filter-state key the manifest's set_filter_state writes."""
        sfs = self.set_filter_state
        if not sfs:
            raise LookupError(f"{self.source}: no set_filter_state network filter")
        return sfs["typed_config"]["on_new_connection"][0]["object_key"]

    def configuration_text(self) -> str:
        """The wasm filter's ``configuration.value`` JSON text as shipped."""
        return self.wasm_filter["typed_config"]["config"]["configuration"]["value"]

    def configuration(self) -> Any:
        """The shipped wasm filter configuration, parsed."""
        return json.loads(self.configuration_text())

    def wasm_http_filter(self, wasm_path: Optional[str] = None, configuration: Configuration = None) -> dict:
        """The wasm HTTP filter with ``code.local.filename`` set to ``wasm_path`` (default
        ``$CLIENT_IP_WASM``) and, unless ``configuration`` is None, ``configuration.value`` replaced:
        a dict/list is serialised to JSON, a str is used verbatim (so tests can send bad JSON)."""
        f = self.wasm_filter
        cfg = f["typed_config"]["config"]
        cfg["vm_config"]["code"]["local"]["filename"] = wasm_path or wasm_path_from_env()
        if configuration is not None:
            value = configuration if isinstance(configuration, str) else json.dumps(configuration)
            cfg["configuration"]["value"] = value
        return f


def native_filter() -> dict:
    """The dynamic-module HTTP filter exactly as ``native/envoy.yaml`` has it (a deep copy)."""
    with open(NATIVE_ENVOY) as fh:
        boot = yaml.safe_load(fh)
    for lst in boot["static_resources"]["listeners"]:
        for chain in lst["filter_chains"]:
            for nf in chain["filters"]:
                for f in nf.get("typed_config", {}).get("http_filters", []):
                    if f.get("typed_config", {}).get("@type") == DYNAMIC_MODULE_TYPE:
                        return copy.deepcopy(f)
    raise LookupError(f"{NATIVE_ENVOY}: no HTTP filter of type {DYNAMIC_MODULE_TYPE}")


def native_configuration_text() -> str:
    """``native/envoy.yaml``'s filter configuration (the JSON string), as shipped."""
    return native_filter()["typed_config"]["filter_config"]["value"]


def native_http_filter(wasm_block: dict, native_path: Optional[str] = None) -> dict:
    """The native build's HTTP filter standing in for ``wasm_block`` (a wasm HTTP filter as a test
    would load it): ``native/envoy.yaml``'s block, named as ``wasm_block``, with the module file
    ``native_path`` (default ``$CLIENT_IP_NATIVE_SO``) and ``wasm_block``'s configuration string."""
    f = native_filter()
    f["name"] = wasm_block["name"]
    tc = f["typed_config"]
    tc["dynamic_module_config"]["module"]["local"]["filename"] = native_path or native_path_from_env()
    tc["filter_config"]["value"] = wasm_block["typed_config"]["config"]["configuration"]["value"]
    return f


def load(path: Union[str, Path]) -> Fragments:
    """Load an EnvoyFilter manifest (one or more YAML documents; other kinds are ignored) and group
    the values of its inserting patches by applyTo; MERGE patches and other applyTo go to ``others``."""
    path = Path(path)
    frags = Fragments(source=path)
    buckets = {"LISTENER_FILTER": frags.listener_filters, "NETWORK_FILTER": frags.network_filters,
               "HTTP_FILTER": frags.http_filters}
    with open(path) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    for doc in docs:
        if doc.get("kind") != "EnvoyFilter":
            continue
        for patch in doc["spec"].get("configPatches", []):
            operation = patch["patch"].get("operation", "")
            value = copy.deepcopy(patch["patch"].get("value"))
            bucket = buckets.get(patch["applyTo"])
            if bucket is None or operation == "MERGE":  # not a filter the harness inserts
                frags.others.append((patch["applyTo"], operation, value))
            else:
                bucket.append(value)
            ctx = patch.get("match", {}).get("context", "")
            if ctx and frags.context and ctx != frags.context:
                raise ValueError(f"{path}: patches for several contexts ({frags.context}, {ctx})")
            frags.context = frags.context or ctx
    return frags


def gateway() -> Fragments:
    return load(GATEWAY)


def sidecar() -> Fragments:
    return load(SIDECAR)


def wasm_path_from_env() -> str:
    path = os.environ.get("CLIENT_IP_WASM")
    if path:
        return path
    return str(REPO / "target" / "wasm32-wasip1" / "release" / "client_ip_filter.wasm")


def native_path_from_env() -> str:
    """The native build (``make native``): ``$CLIENT_IP_NATIVE_SO`` (the Makefile exports it; the
    older name ``$CLIENT_IP_NATIVE`` is read too) or its default path."""
    path = os.environ.get("CLIENT_IP_NATIVE_SO") or os.environ.get("CLIENT_IP_NATIVE")
    if path:
        return path
    return str(REPO / "target" / "native" / "libclient_ip_filter_module.so")


def builds_from_env() -> tuple:
    """The builds the integration tests run on: ``$CLIENT_IP_BUILDS`` (comma-separated, e.g.
    ``wasm,native``; default DEFAULT_BUILDS). An unknown name is an error, not a silent skip."""
    text = os.environ.get("CLIENT_IP_BUILDS", ",".join(DEFAULT_BUILDS))
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BUILDS]
    if unknown or not names:
        raise ValueError(f"CLIENT_IP_BUILDS={text!r}: each name must be one of {', '.join(BUILDS)}")
    return names


def _by_name(filters: list, name: str) -> Optional[dict]:
    for f in filters:
        if f.get("name") == name:
            return copy.deepcopy(f)
    return None
