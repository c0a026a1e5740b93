"""``istioctl validate`` and ``istioctl analyze --use-kube=false`` (built from the pinned istio.io/istio
module, .work/istio/<minor>/istioctl) over every shipped manifest: no error, and every warning that
remains is explained in the README of the manifest's directory (its message code, e.g. IST0102, is
named there with the reason).

Run with istioctl of the newest pinned release (make test) or of each ($CLIENT_IP_ISTIOCTL_VERSIONS,
make matrix). validate runs on each file alone; analyze runs on each manifest set a user applies together (the
files of one route with the sample app and the gateway), because it checks references between files
(a VirtualService's Gateway, a DestinationRule's host).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from harness import istio as I
from harness import procs

EX = I.REPO / "istio-examples"
EF = I.REPO / "envoyfilter"
MANIFESTS = sorted(EX.glob("*.yaml")) + sorted(EF.glob("*.yaml"))
BASE = [EX / "gateway-service-aws-nlb.yaml", EX / "httpbin.yaml", EX / "httpbin-gateway.yaml",
        EX / "ingress-gateway.yaml"]
# Each set: what a user applies together. Files with the same metadata.name are alternatives and
# are never in one set.
SETS = {
    "wasmplugin-gateway": BASE + [EX / "wasmplugin-ingress-gateway.yaml", EX / "mesh-config-access-log.yaml",
                                  EX / "access-log.yaml", EX / "sleep.yaml"],
    "wasmplugin-sidecar": BASE + [EX / "wasmplugin-sidecar.yaml", EX / "sleep.yaml"],
    "wasmplugin-cloudfront": BASE + [EX / "wasmplugin-cloudfront-gateway.yaml"],
    "wasmplugin-geo": BASE + [EX / "wasmplugin-geo-gateway.yaml"],
    "wasmplugin-private-link": BASE + [EX / "wasmplugin-private-link.yaml"],
    "wasmplugin-network": BASE + [EX / "wasmplugin-network.yaml"],
    "envoyfilter-gateway": BASE + [EF / "ingress-gateway.yaml"],
    "envoyfilter-remote": BASE + [EF / "ingress-gateway-remote.yaml"],
    "envoyfilter-cloudfront": BASE + [EF / "ingress-gateway-cloudfront.yaml"],
    "envoyfilter-geo": BASE + [EF / "ingress-gateway-geo.yaml"],
    "envoyfilter-private-link": BASE + [EF / "ingress-gateway-private-link.yaml"],
    "envoyfilter-private-link-metadata": BASE + [EF / "ingress-gateway-private-link-metadata.yaml"],
    "envoyfilter-passthrough": BASE + [EF / "gateway-tls-passthrough.yaml"],
    "envoyfilter-sidecar": BASE + [EF / "sidecar-inbound.yaml", EF / "sidecar-inbound-use-remote-address.yaml",
                                   EF / "sidecar-inbound-tcp.yaml"],
}
# istioctl of the newest release in make test; every release's in make matrix ($CLIENT_IP_ISTIOCTL_VERSIONS)
VERSIONS = os.environ.get("CLIENT_IP_ISTIOCTL_VERSIONS", I.istio_versions()[0]).split()
CODE = re.compile(r"^(Error|Warning|Info) \[(IST\d{4})\]", re.M)


def istioctl(version: str, *args: str) -> subprocess.CompletedProcess:
    binary = I.binary(version, "istioctl")
    procs.note_program(str(binary))
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def readme_of(path: Path) -> str:
    return (path.parent / "README.md").read_text()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_istioctl_validate_accepts_the_manifest(version, path):
    done = istioctl(version, "validate", "-f", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Error" not in done.stdout + done.stderr


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", SETS)
def test_istioctl_analyze_finds_no_error_and_each_warning_is_explained(version, name):
    files = SETS[name]
    args = ["analyze", "--use-kube=false", "--all-namespaces", "--color=false", "--failure-threshold", "Error"]
    for f in files:
        args += [str(f)]
    done = istioctl(version, *args)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    found = CODE.findall(out)
    assert not [c for level, c in found if level == "Error"], out
    unexplained = []
    for level, code in found:
        if level != "Warning":
            continue
        # the warning's subject is one of the set's files; its README must name the code
        if not any(code in readme_of(f) for f in files if f.parent in (EX, EF)):
            unexplained.append(code)
    assert not unexplained, f"warnings without an explanation in a README: {unexplained}\n{out}"
