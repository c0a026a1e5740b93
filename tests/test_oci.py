"""The OCI image `make oci` builds is the one Istio's WasmPlugin can pull, and survives a real registry.

Istio's image fetcher (pkg/wasm/imagefetcher.go) accepts the *compat* variant: the image's last layer
has media type application/vnd.oci.image.layer.v1.tar+gzip and is a gzipped tar holding a file named
plugin.wasm. For an oci:// URL, WasmPlugin.spec.sha256 is compared with the hex of the image
*manifest* digest (pkg/wasm/cache.go), which is what oci/build.sh prints.

The round trip uses Debian's docker-registry on a free loopback port, with its own configuration and
storage under a temporary directory, stopped by its process id; skopeo pushes and pulls.
Needs `make oci` (builds target/oci/ and installs umoci, skopeo, docker-registry when missing).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from harness import manifests, procs

REPO = manifests.REPO
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TOOLS = ("umoci", "skopeo", "docker-registry")


def _cargo_version() -> str:
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        if line.replace(" ", "").startswith('version="'):
            return line.split('"')[1]
    raise LookupError("no version in Cargo.toml")


@pytest.fixture(scope="module")
def tools():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `make oci-tools`", pytrace=False)


@pytest.fixture(scope="module")
def image(tools, wasm):
    """(layout dir, tag, wasm bytes) of the image `make oci` built."""
    layout = Path(os.environ.get("CLIENT_IP_OCI_LAYOUT", REPO / "target" / "oci" / "client-ip-filter"))
    tag = os.environ.get("CLIENT_IP_OCI_TAG") or _cargo_version()
    if not (layout / "index.json").is_file():
        pytest.fail(f"no OCI image at {layout}: run `make oci`", pytrace=False)
    wasm_bytes = Path(wasm).read_bytes()
    manifest = json.loads(blob(layout, manifest_descriptor(layout, tag)["digest"]))
    if extract_like_istio(manifest, lambda d: blob(layout, d)) != wasm_bytes:
        pytest.fail(f"the image at {layout} holds another build than {wasm}: run `make oci`", pytrace=False)
    return layout, tag, wasm_bytes


def blob(layout: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":", 1)
    assert algo == "sha256"
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexd, f"blob {digest} does not match its digest"
    return data


def manifest_descriptor(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    found = [m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    assert len(found) == 1, index
    return found[0]


def extract_like_istio(manifest: dict, read_blob) -> bytes:
    """Istio's compat-variant extraction: the LAST layer, OCI gzip media type, the first tar entry whose
    base name is plugin.wasm."""
    layer = manifest["layers"][-1]
    assert layer["mediaType"] == OCI_LAYER_GZIP
    data = read_blob(layer["digest"])
    assert len(data) == layer["size"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        for member in tar:
            if os.path.basename(member.name) == "plugin.wasm":
                return tar.extractfile(member).read()
    raise AssertionError("plugin.wasm not found in the layer")


def build(layout: Path, tag: str, wasm: str) -> dict:
    """Run oci/build.sh; return its "manifest digest" and "WasmPlugin.spec.sha256" lines, and stdout."""
    out = subprocess.run([str(REPO / "oci" / "build.sh"), wasm, str(layout), tag], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    lines = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith(("manifest", "WasmPlugin")))
    return dict(lines, stdout=out)


# -- the layout `make oci` wrote -----------------------------------------------------------------

def test_image_is_istios_compat_variant_with_oci_media_types(image):
    layout, tag, wasm_bytes = image
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    desc = manifest_descriptor(layout, tag)
    assert desc["mediaType"] == OCI_MANIFEST
    raw = blob(layout, desc["digest"])
    assert len(raw) == desc["size"]
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER_GZIP]  # exactly one layer
    # the layer: a complete gzipped tar holding one regular file, plugin.wasm, equal to the build
    layer = blob(layout, manifest["layers"][0]["digest"])
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()  # reads to the end-of-archive marker: a truncated tar fails here
        assert [(m.name, m.isfile(), m.mode) for m in members] == [("plugin.wasm", True, 0o644)]
        assert tar.extractfile(members[0]).read() == wasm_bytes
    assert extract_like_istio(manifest, lambda d: blob(layout, d)) == wasm_bytes
    assert wasm_bytes[:4] == b"\0asm"


def test_build_is_reproducible_and_prints_the_manifest_digest_for_wasmplugin(image, tmp_path, wasm):
    layout, tag, wasm_bytes = image
    expected = manifest_descriptor(layout, tag)["digest"]
    first = build(tmp_path / "a", tag, wasm)
    second = build(tmp_path / "b", tag, wasm)
    assert first["manifest digest"] == second["manifest digest"] == expected
    assert first["WasmPlugin.spec.sha256"] == expected.split(":", 1)[1]
    # the manifest digest, not the module's sha256 (that one is for http(s):// URLs and EnvoyFilter remote)
    assert first["WasmPlugin.spec.sha256"] != hashlib.sha256(wasm_bytes).hexdigest()
    assert f"sha256 {hashlib.sha256(wasm_bytes).hexdigest()})" in first["stdout"]


def test_build_refuses_a_file_that_is_not_webassembly(tools, tmp_path):
    bogus = tmp_path / "x.wasm"
    bogus.write_bytes(b"#!/bin/sh\n")
    res = subprocess.run([str(REPO / "oci" / "build.sh"), str(bogus), str(tmp_path / "l"), "t"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "not a WebAssembly module" in res.stderr
    assert not (tmp_path / "l").exists()


# -- through a real registry ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(tools, tmp_path_factory):
    """Debian's docker-registry on 127.0.0.1:<free port>, configuration and storage in a temp dir."""
    work = tmp_path_factory.mktemp("registry")
    port = procs.free_port()
    (work / "storage").mkdir()
    config = work / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: client-ip-filter-test\n")
    proc = procs.start([shutil.which("docker-registry"), "serve", str(config)], log_path=str(work / "registry.log"))

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}: {(work / 'registry.log').read_text()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
            return r.status == 200
    try:
        procs.wait_until(up, 20, what="docker-registry /v2/")
        yield f"127.0.0.1:{port}"
    finally:
        procs.stop(proc)  # by its process id (process group of its own session)
        assert proc.poll() is not None


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120)


def test_push_pull_round_trip_keeps_plugin_wasm_and_the_digest(image, registry, tmp_path):
    layout, tag, wasm_bytes = image
    digest = manifest_descriptor(layout, tag)["digest"]
    ref = f"{registry}/client-ip-filter:{tag}"

    pushed = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{ref}")
    assert pushed.returncode == 0, pushed.stderr

    # what Istio's fetcher sees: the registry serves the manifest unchanged, so its digest is the one
    # `make oci` printed (WasmPlugin.spec.sha256)
    req = urllib.request.Request(f"http://{registry}/v2/client-ip-filter/manifests/{tag}",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Type"] == OCI_MANIFEST
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest

    def registry_blob(d: str) -> bytes:
        with urllib.request.urlopen(f"http://{registry}/v2/client-ip-filter/blobs/{d}", timeout=10) as r:
            return r.read()
    assert extract_like_istio(json.loads(body), registry_blob) == wasm_bytes

    # and back with skopeo, by digest, into a fresh layout
    pulled = tmp_path / "pulled"
    got = skopeo("copy", "--src-tls-verify=false", f"docker://{registry}/client-ip-filter@{digest}",
                 f"oci:{pulled}:{tag}")
    assert got.returncode == 0, got.stderr
    desc = manifest_descriptor(pulled, tag)
    assert desc["digest"] == digest
    manifest = json.loads(blob(pulled, desc["digest"]))
    assert extract_like_istio(manifest, lambda d: blob(pulled, d)) == wasm_bytes

    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{ref}")
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["Digest"] == digest


def test_registry_refuses_a_digest_that_is_not_the_image(image, registry):
    layout, tag, _ = image
    assert skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                  f"docker://{registry}/client-ip-filter:{tag}").returncode == 0
    res = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry}/client-ip-filter@sha256:{'0' * 64}")
    assert res.returncode != 0


def test_istio_examples_sample_output_shows_the_size_a_build_gives(image, tmp_path, wasm):
    """istio-examples/README.md shows `make oci`'s output; its plugin.wasm size must be that of a
    build of today's filter (within 10%: small changes need no doc edit, a stale figure fails)."""
    import re
    out = build(tmp_path / "doc", image[1], wasm)["stdout"]
    built = int(re.search(r"plugin\.wasm: (\d+) bytes", out).group(1))
    sample = (REPO / "istio-examples" / "README.md").read_text()
    shown = [int(n) for n in re.findall(r"plugin\.wasm: (\d+) bytes", sample)]
    assert shown, "no `plugin.wasm: N bytes` sample in istio-examples/README.md"
    stale = [n for n in shown if abs(n - built) > 0.10 * built]
    assert not stale, f"istio-examples/README.md shows plugin.wasm sizes {stale}; a build gives {built}"
