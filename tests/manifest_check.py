"""Offline validation of the shipped Kubernetes/Istio/Envoy Gateway manifests (envoyfilter/, istio-examples/,
native/istio/, native/envoy-gateway/).

What a cluster would check before admitting an object, as far as it can be done without one:

* Istio kinds: the ``openAPIV3Schema`` of Istio's own CRDs (``kubernetes/customresourcedefinitions.gen.yaml``
  of the ``istio.io/api`` Go module, pinned with the newest Istio release in tests/istio/go.mod and
  copied into .work/istio/<minor>/ by ``make istio-crds``; ``$CLIENT_IP_ISTIO_CRDS`` names another file) for the object's group/version/kind, with JSON Schema (jsonschema). The schema is
  made *structural* the way the API server treats it with ``kubectl apply --validate=strict`` (the
  default): an object schema that lists ``properties`` and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields`` rejects unknown fields; ``nullable`` allows null;
  ``x-kubernetes-int-or-string`` allows both. ``metadata`` is checked against Kubernetes' ObjectMeta.
* The CRDs' CEL rules (``x-kubernetes-validations``) are not JSON Schema: every rule met at a node the
  object actually has must be one of CEL_RULES below (re-implemented in Python, keyed by the exact rule
  text), or validation fails with "unimplemented CEL rule" -- a new rule in a CRD update cannot pass
  unnoticed.
* Envoy Gateway kinds (``gateway.envoyproxy.io``: EnvoyProxy, EnvoyExtensionPolicy, ClientTrafficPolicy):
  the same, against Envoy Gateway's own CRDs (the generated CRD files of its Helm chart, from the
  ``github.com/envoyproxy/gateway`` Go module pinned in tests/envoy-gateway/go.mod, copied into
  .work/envoy-gateway/ by ``make eg-crds``; ``$CLIENT_IP_EG_CRDS`` names another directory).
* Kubernetes core kinds (Service, Deployment, ServiceAccount, Role, RoleBinding): Kubernetes' own JSON
  schemas, strict variant, shipped in the ``kubernetes-validate`` package, for the oldest and newest
  Kubernetes versions of K8S_VERSIONS.
* ``install.istio.io/v1alpha1`` IstioOperator has no CRD in the file: the access-log provider it
  carries is checked field by field (check_istio_operator).

``validate(doc)`` returns a list of error strings (empty when the object is valid).
"""
from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFEST_DIRS = (REPO / "envoyfilter", REPO / "istio-examples", REPO / "native" / "istio",
                 REPO / "native" / "envoy-gateway")
# The newest pinned Istio release (Makefile ISTIO_NEWEST); make exports the path it copies the file to.
ISTIO_NEWEST = "1.31"
CRD_FILE = Path(os.environ.get("CLIENT_IP_ISTIO_CRDS",
                               REPO / ".work" / "istio" / ISTIO_NEWEST / "customresourcedefinitions.gen.yaml"))

# Envoy Gateway's CRD files (make eg-crds); its group.
EG_CRD_DIR = Path(os.environ.get("CLIENT_IP_EG_CRDS", REPO / ".work" / "envoy-gateway"))
EG_GROUP = "gateway.envoyproxy.io"

# Kubernetes versions the core objects must be valid for: Istio 1.21 (our minimum, for
# set_filter_state's factory_key) supports Kubernetes 1.26+; the newest is the package's latest.
K8S_VERSIONS = ("1.26", "1.37")
CORE_GROUPS = {"v1", "apps/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1"}


# -- files ---------------------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    files: list[Path] = []
    for d in MANIFEST_DIRS:
        files += sorted(p for p in d.rglob("*") if p.suffix in (".yaml", ".yml"))
    return files


def load_documents(path: Path) -> list:
    """All non-empty YAML documents of ``path`` (raises yaml.YAMLError when it does not parse)."""
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def all_objects() -> Iterator[tuple[Path, int, dict]]:
    for path in manifest_files():
        for i, doc in enumerate(load_documents(path)):
            yield path, i, doc


# -- Istio CRD schemas ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def crd_schemas() -> dict:
    """{(group, version, kind): openAPIV3Schema} from Istio's CRD file and Envoy Gateway's CRD files."""
    out = {}
    if not CRD_FILE.is_file():
        raise FileNotFoundError(f"Istio's CRD file {CRD_FILE} is missing: run `make istio-crds` (it copies "
                                "kubernetes/customresourcedefinitions.gen.yaml out of the pinned istio.io/api module)")
    eg_files = sorted(EG_CRD_DIR.glob(f"{EG_GROUP}_*.yaml"))
    if not eg_files:
        raise FileNotFoundError(f"Envoy Gateway's CRD files are missing in {EG_CRD_DIR}: run `make eg-crds` (it "
                                "copies them out of the github.com/envoyproxy/gateway module tests/envoy-gateway/go.mod pins)")
    for path in [CRD_FILE] + eg_files:
        _read_crds(path, out)
    return out


def _read_crds(path: Path, out: dict) -> None:
    with open(path) as fh:
        for crd in yaml.safe_load_all(fh):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for v in spec["versions"]:
                if v.get("served", True):
                    out[(spec["group"], v["name"], spec["names"]["kind"])] = v["schema"]["openAPIV3Schema"]


def structural(schema: Any) -> Any:
    """The CRD schema as the API server applies it, in JSON Schema terms (see the module doc)."""
    if isinstance(schema, list):
        return [structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = {k: structural(v) for k, v in schema.items()}
    if s.get("x-kubernetes-int-or-string"):
        s.pop("type", None)
        s.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if s.get("nullable") and "type" in s:
        s["type"] = [s["type"], "null"]
    if ("properties" in s and "additionalProperties" not in s
            and not s.get("x-kubernetes-preserve-unknown-fields")):
        s["additionalProperties"] = False
    return s


@functools.lru_cache(maxsize=None)
def _validator(group: str, version: str, kind: str) -> jsonschema.protocols.Validator:
    raw = copy.deepcopy(crd_schemas()[(group, version, kind)])
    raw.setdefault("properties", {})
    # apiVersion/kind are checked by the lookup; metadata separately against ObjectMeta.
    raw["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                              "metadata": {"type": "object"}})
    schema = structural(raw)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _path(err: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path) or "."


def validate_istio(doc: dict) -> list[str]:
    """An Istio or Envoy Gateway object against its CRD's schema and CEL rules."""
    group, _, version = doc["apiVersion"].partition("/")
    key = (group, version, doc["kind"])
    if key not in crd_schemas():
        owner = "Envoy Gateway" if group == EG_GROUP else "Istio"
        return [f"no {owner} CRD schema for {doc['apiVersion']} {doc['kind']}"]
    errors = [f"{_path(e)}: {e.message}" for e in _validator(*key).iter_errors(doc)]
    errors += check_cel(crd_schemas()[key], doc)
    return errors


# -- CEL rules (x-kubernetes-validations) --------------------------------------------------------

def _has(obj: dict, key: str) -> bool:
    return isinstance(obj, dict) and key in obj


_DURATION = re.compile(r"^(\d+(\.\d+)?(h|ms|m|s|us|µs|ns))+$")
_UNIT_S = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _duration_s(text: str) -> float:
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s|us|µs|ns)", text))


def _url_scheme_ok(url: str) -> bool:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return (m.group(1).lower() if m else "") in ("", "http", "https", "oci", "file")


def _min_duration(v) -> bool:
    try:
        return _duration_s(v) >= 1e-3
    except ValueError:
        return False


# Exact rule text (whitespace collapsed) -> predicate on the node the rule is attached to.
CEL_RULES: dict[str, Callable[[Any], bool]] = {
    '(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("selector", "targetRef", "targetRefs")) <= 1,
    '(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("workloadSelector", "targetRefs")) <= 1,
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)':
        lambda s: (_has(s, "waypoint") == (s.get("context") == "WAYPOINT")) if _has(s, "context") else not _has(s, "waypoint"),
    '0 < self && self <= 65535': lambda s: 0 < s <= 65535,
    'self.size() == 0': lambda s: len(s) == 0,
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    'self.all(key, key.size() != 0)': lambda s: all(len(k) != 0 for k in s),
    "duration(self) >= duration('1ms')": _min_duration,
    '(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("tlsCertificates", "credentialNames")) <= 1,
    '(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("credentialName", "credentialNames")) <= 1,
    '(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("credentialNames", "tlsCertificates")) <= 1,
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        _url_scheme_ok,
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    '((has(self.operation) ? self.operation : "") == "UPSERT") ? (self.value != "") : true':
        lambda s: s.get("value", "") != "" if s.get("operation", "") == "UPSERT" else True,
    '((has(self.operation) ? self.operation : "") == "REMOVE") ? !has(self.value) : true':
        lambda s: "value" not in s if s.get("operation", "") == "REMOVE" else True,
    # ServiceEntry and DestinationRule (the list server of a source, docs/sources.md).
    '!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && !((has(self.resolution) ? self.resolution : "NONE") in ["STATIC", "NONE"]))':
        lambda s: not (any("/" in k for k in s.get("addresses", []))
                       and s.get("resolution", "NONE") not in ("STATIC", "NONE")),
    '((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true':
        lambda s: len(s.get("endpoints", [])) <= 1 if s.get("resolution", "") == "DNS_ROUND_ROBIN" else True,
    '((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true':
        lambda s: "endpoints" not in s if s.get("resolution", "NONE") == "NONE" else True,
    '(has(self.address) ? self.address : "").startsWith("unix://") ? !has(self.ports) : true':
        lambda s: "ports" not in s if s.get("address", "").startswith("unix://") else True,
    '(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1':
        lambda s: sum(_has(s, k) for k in ("workloadSelector", "endpoints")) <= 1,
    'has(self.address) || has(self.network)': lambda s: _has(s, "address") or _has(s, "network"),
    'self != "*"': lambda s: s != "*",
    'self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))':
        lambda s: all(len(k) < 63 and re.fullmatch(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?", k) for k in s),
    'self.all(l1, self.exists_one(l2, l1.number == l2.number))':
        lambda s: all(sum(1 for b in s if b.get("number") == a.get("number")) == 1 for a in s),
    'self.startsWith("unix://") ? !self.endsWith("/") : true':
        lambda s: not s.endswith("/") if s.startswith("unix://") else True,
    'self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true':
        lambda s: s[7:8] in ("/", "@") if s.startswith("unix://") else True,
}

# Envoy Gateway's rules (EnvoyProxy, EnvoyExtensionPolicy, ClientTrafficPolicy), met by native/envoy-gateway/.
_EG_POLICY_KINDS = ["Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"]
_GW_GROUP = "gateway.networking.k8s.io"
_EG_IMAGE = re.compile(r"^[a-zA-Z0-9._-]+(:[0-9]+)?(/[a-zA-Z0-9._/-]+)?(:[a-zA-Z0-9._-]+)?(@sha256:[a-z0-9]+)?$")
CEL_RULES.update({
    '(has(self.targetRef) && !has(self.targetRefs)) || (!has(self.targetRef) && has(self.targetRefs)) || (has(self.targetSelectors) && self.targetSelectors.size() > 0)':
        lambda s: (_has(s, "targetRef") != _has(s, "targetRefs")) or len(s.get("targetSelectors") or []) > 0,
    "has(self.targetRef) ? self.targetRef.group == 'gateway.networking.k8s.io' : true":
        lambda s: s["targetRef"].get("group") == _GW_GROUP if _has(s, "targetRef") else True,
    "has(self.targetRef) ? self.targetRef.kind == 'Gateway' : true":
        lambda s: s["targetRef"].get("kind") == "Gateway" if _has(s, "targetRef") else True,
    "has(self.targetRef) ? self.targetRef.kind in ['Gateway', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'] : true":
        lambda s: s["targetRef"].get("kind") in _EG_POLICY_KINDS if _has(s, "targetRef") else True,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.group == 'gateway.networking.k8s.io') : true":
        lambda s: all(r.get("group") == _GW_GROUP for r in s["targetRefs"]) if _has(s, "targetRefs") else True,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind == 'Gateway') : true":
        lambda s: all(r.get("kind") == "Gateway" for r in s["targetRefs"]) if _has(s, "targetRefs") else True,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true":
        lambda s: all(r.get("kind") in _EG_POLICY_KINDS for r in s["targetRefs"]) if _has(s, "targetRefs") else True,
    "self.type == 'Remote' ? has(self.remote) : !has(self.remote)":
        lambda s: _has(s, "remote") == (s.get("type", "Local") == "Remote"),
    "self.type != 'Local' || has(self.local)":
        lambda s: s.get("type", "Local") != "Local" or _has(s, "local"),
    "self.type == 'Remote' ? !has(self.local) : true":
        lambda s: not _has(s, "local") if s.get("type", "Local") == "Remote" else True,
    "self.type == 'HTTP' ? has(self.http) : !has(self.http)":
        lambda s: _has(s, "http") == (s.get("type") == "HTTP"),
    "self.type == 'Image' ? has(self.image) : !has(self.image)":
        lambda s: _has(s, "image") == (s.get("type") == "Image"),
    '(has(self.before) || has(self.after))': lambda s: _has(s, "before") or _has(s, "after"),
    '(has(self.before) && !has(self.after)) || (!has(self.before) && has(self.after))':
        lambda s: _has(s, "before") != _has(s, "after"),
    '((has(self.envoyDeployment) && !has(self.envoyDaemonSet)) || (!has(self.envoyDeployment) && has(self.envoyDaemonSet))) || (!has(self.envoyDeployment) && !has(self.envoyDaemonSet))':
        lambda s: not (_has(s, "envoyDeployment") and _has(s, "envoyDaemonSet")),
    '((has(self.envoyHpa) && !has(self.envoyDaemonSet)) || (!has(self.envoyHpa) && has(self.envoyDaemonSet))) || (!has(self.envoyHpa) && !has(self.envoyDaemonSet))':
        lambda s: not (_has(s, "envoyHpa") and _has(s, "envoyDaemonSet")),
    '!has(self.image) || !has(self.imageRepository)': lambda s: not (_has(s, "image") and _has(s, "imageRepository")),
    "self.matches('^[a-zA-Z0-9._-]+(:[0-9]+)?(/[a-zA-Z0-9._/-]+)?(:[a-zA-Z0-9._-]+)?(@sha256:[a-z0-9]+)?$')":
        lambda s: bool(_EG_IMAGE.match(s)),
})


def _norm_rule(rule: str) -> str:
    return " ".join(rule.split())


def check_cel(schema: dict, instance: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule attached to a node ``instance`` has."""
    errors: list[str] = []
    if not isinstance(schema, dict):
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        text = _norm_rule(rule["rule"])
        check = CEL_RULES.get(text)
        if check is None:
            errors.append(f"{path or '.'}: unimplemented CEL rule {text!r}")
            continue
        try:
            ok = check(instance)
        except Exception as exc:  # noqa: BLE001 - a rule that cannot evaluate is a failure
            ok, rule = False, dict(rule, message=f"{rule.get('message')} ({exc})")
        if not ok:
            errors.append(f"{path or '.'}: {rule.get('message') or text}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        addl = schema.get("additionalProperties")
        for k, v in instance.items():
            if k in props:
                errors += check_cel(props[k], v, f"{path}.{k}")
            elif isinstance(addl, dict):
                errors += check_cel(addl, v, f"{path}.{k}")
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(instance):
            errors += check_cel(schema["items"], v, f"{path}[{i}]")
    return errors


def cel_rules_in(kind_keys) -> set[str]:
    """Every rule text in the schemas of ``kind_keys`` (to prove CEL_RULES covers them)."""
    found: set[str] = set()

    def walk(s):
        if isinstance(s, dict):
            for r in s.get("x-kubernetes-validations", []):
                found.add(_norm_rule(r["rule"]))
            for v in s.values():
                walk(v)
        elif isinstance(s, list):
            for v in s:
                walk(v)
    for key in kind_keys:
        walk(crd_schemas()[key])
    return found


# -- Kubernetes core kinds -----------------------------------------------------------------------

def validate_core(doc: dict) -> list[str]:
    import kubernetes_validate  # the Kubernetes JSON schemas ship inside this package

    errors = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"k8s {version} {_path(e)}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"k8s {version}: {e.message}")
    errors += check_core_semantics(doc)
    return errors


def check_core_semantics(doc: dict) -> list[str]:
    """Enumerations the Kubernetes JSON schemas do not carry but the API server enforces."""
    errors = []
    if doc["kind"] == "Service":
        spec = doc.get("spec", {})
        if spec.get("type", "ClusterIP") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            errors.append(f".spec.type: unsupported value {spec.get('type')!r}")
        if "externalTrafficPolicy" in spec and spec["externalTrafficPolicy"] not in ("Local", "Cluster"):
            errors.append(f".spec.externalTrafficPolicy: unsupported value {spec['externalTrafficPolicy']!r}")
        for i, p in enumerate(spec.get("ports", [])):
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                errors.append(f".spec.ports[{i}].protocol: unsupported value {p.get('protocol')!r}")
    return errors


@functools.lru_cache(maxsize=1)
def _object_meta_validator() -> jsonschema.protocols.Validator:
    """Kubernetes' ObjectMeta (strict), from kubernetes-validate's definitions, for Istio objects."""
    import importlib_resources
    from referencing import Registry, Resource

    root = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema"
    defs = json.loads((root / f"v{K8S_VERSIONS[-1]}.0-local-strict" / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": defs["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_metadata(doc: dict) -> list[str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return [".metadata: missing"]
    errors = [f".metadata{_path(e)}: {e.message}" for e in _object_meta_validator().iter_errors(meta)]
    name = meta.get("name", "")
    if not name or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        errors.append(f".metadata.name: {name!r} is not a DNS-1123 subdomain")
    ns = meta.get("namespace")
    if ns is not None and (len(ns) > 63 or not _DNS1123_LABEL.match(ns)):
        errors.append(f".metadata.namespace: {ns!r} is not a DNS-1123 label")
    for field in ("labels", "annotations"):
        for k, v in (meta.get(field) or {}).items():
            if not isinstance(v, str):
                errors.append(f".metadata.{field}.{k}: value must be a string, got {type(v).__name__}")
    return errors


# -- IstioOperator (no CRD in the file) ----------------------------------------------------------

def check_istio_operator(doc: dict) -> list[str]:
    """The part of an IstioOperator this project ships: meshConfig.extensionProviders with
    envoyFileAccessLog providers (field names of istio.mesh.v1alpha1.MeshConfig)."""
    errors = []
    spec = doc.get("spec") or {}
    if set(spec) - {"meshConfig"}:
        errors.append(f".spec: only meshConfig is expected, got {sorted(set(spec))}")
    mesh = spec.get("meshConfig") or {}
    if set(mesh) - {"extensionProviders", "defaultConfig"}:
        errors.append(f".spec.meshConfig: unexpected keys {sorted(set(mesh) - {'extensionProviders', 'defaultConfig'})}")
    for i, prov in enumerate(mesh.get("extensionProviders") or []):
        where = f".spec.meshConfig.extensionProviders[{i}]"
        if not isinstance(prov.get("name"), str) or not prov["name"]:
            errors.append(f"{where}.name: required")
        kinds = set(prov) - {"name"}
        if kinds != {"envoyFileAccessLog"}:
            errors.append(f"{where}: expected exactly envoyFileAccessLog, got {sorted(kinds)}")
            continue
        log = prov["envoyFileAccessLog"]
        if set(log) - {"path", "logFormat"}:
            errors.append(f"{where}.envoyFileAccessLog: unknown keys {sorted(set(log) - {'path', 'logFormat'})}")
        if not isinstance(log.get("path"), str):
            errors.append(f"{where}.envoyFileAccessLog.path: required string")
        fmt = log.get("logFormat") or {}
        if len(set(fmt) & {"text", "labels"}) != 1 or set(fmt) - {"text", "labels", "omitEmptyValues"}:
            errors.append(f"{where}.envoyFileAccessLog.logFormat: exactly one of text or labels")
        labels = fmt.get("labels")
        if labels is not None and (not isinstance(labels, dict)
                                   or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            errors.append(f"{where}.envoyFileAccessLog.logFormat.labels: a map of strings")
    return errors


# -- entry point ---------------------------------------------------------------------------------

def validate(doc: Any) -> list[str]:
    """Errors of one manifest object (empty list: valid)."""
    if not isinstance(doc, dict):
        return [f"a manifest document must be a mapping, got {type(doc).__name__}"]
    for field in ("apiVersion", "kind", "metadata"):
        if field not in doc:
            return [f".{field}: required"]
    api, kind = doc["apiVersion"], doc["kind"]
    errors = validate_metadata(doc)
    if api in CORE_GROUPS:
        errors += validate_core(doc)
    elif api == "install.istio.io/v1alpha1" and kind == "IstioOperator":
        errors += check_istio_operator(doc)
    elif api.split("/")[0].endswith("istio.io") or api.split("/")[0] == EG_GROUP:
        errors += validate_istio(doc)
    else:
        errors.append(f"no schema known for {api} {kind}")
    return errors
