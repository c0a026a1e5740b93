"""`make release` (oci/release.sh): the .wasm, the OCI image archive, DIGEST and SHA256SUMS of the version
in Cargo.toml, reproducible: two builds from the same commit give the same files and the same digest.

The image is rebuilt twice from the built .wasm; the .wasm itself is rebuilt once more by cargo in
another target directory (and wasm-opt with the Makefile's flags) to show the compile is deterministic
too. The archive is pushed to a real registry (Debian's docker-registry on loopback, as in
test_oci.py), which must serve the manifest under DIGEST: the digest a WasmPlugin pins.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from test_oci import OCI_MANIFEST, registry, skopeo, tools  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent


def cargo_version() -> str:
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        if line.replace(" ", "").startswith('version="'):
            return line.split('"')[1]
    raise LookupError("no version in Cargo.toml")


def release(wasm: str, out: Path) -> str:
    run = subprocess.run([str(REPO / "oci" / "release.sh"), wasm, str(out), cargo_version()],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_version_is_semver_0x_and_the_changelog_has_it():
    version = cargo_version()
    assert re.fullmatch(r"0\.\d+\.\d+", version), version
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[?{re.escape(version)}\]?", changelog, re.M), f"CHANGELOG.md has no {version}"
    assert "Apache License" in (REPO / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (REPO / "Cargo.toml").read_text()


def test_two_release_builds_of_one_commit_are_identical_and_checksummed(tools, wasm, tmp_path):  # noqa: F811
    version = cargo_version()
    out = release(wasm, tmp_path / "a")
    release(wasm, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(["DIGEST", "SHA256SUMS", f"client_ip_filter-{version}.wasm",
                            f"client-ip-filter-{version}.oci.tar"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / f"client_ip_filter-{version}.wasm").read_bytes() == Path(wasm).read_bytes()
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path / "a", capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 3, check.stdout + check.stderr

    # DIGEST is the manifest digest of the image in the archive, and what the output tells to pin
    digest = (tmp_path / "a" / "DIGEST").read_text().strip()
    with tarfile.open(tmp_path / "a" / f"client-ip-filter-{version}.oci.tar") as tar:
        index = json.load(tar.extractfile("./index.json"))
        (desc,) = [m for m in index["manifests"]
                   if m["annotations"]["org.opencontainers.image.ref.name"] == version]
        manifest = tar.extractfile("./blobs/sha256/" + desc["digest"].split(":")[1]).read()
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tar.getmembers())
    assert desc["digest"] == digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert f"url: oci://REGISTRY/client-ip-filter@{digest}" in out
    assert f"sha256: {digest.split(':')[1]}" in out


def test_the_release_archive_pushes_to_a_registry_under_its_digest(tools, registry, wasm, tmp_path):  # noqa: F811
    version = cargo_version()
    release(wasm, tmp_path / "r")
    digest = (tmp_path / "r" / "DIGEST").read_text().strip()
    archive = tmp_path / "r" / f"client-ip-filter-{version}.oci.tar"
    pushed = skopeo("copy", "--dest-tls-verify=false", f"oci-archive:{archive}:{version}",
                    f"docker://{registry}/client-ip-filter:{version}")
    assert pushed.returncode == 0, pushed.stderr
    req = urllib.request.Request(f"http://{registry}/v2/client-ip-filter/manifests/{digest}",
                                 headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest


def test_cargo_build_of_the_module_is_deterministic(wasm, tmp_path):
    """The same source, built by cargo in another target directory and optimised with the Makefile's
    wasm-opt flags, gives the module `make build` gave, byte for byte."""
    flags = subprocess.run(["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-", "print-flags"],
                           input="print-flags:\n\t@echo $(WASM_OPT_FLAGS)\n", cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    assert "-Oz" in flags, flags
    target = tmp_path / "target"
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    build = subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1",
                            "-p", "client-ip-filter"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    raw = target / "wasm32-wasip1" / "release" / "deps" / "client_ip_filter.wasm"
    opt = tmp_path / "again.wasm"
    subprocess.run(["wasm-opt", *flags, str(raw), "-o", str(opt)], check=True, timeout=300)
    assert hashlib.sha256(opt.read_bytes()).hexdigest() == hashlib.sha256(Path(wasm).read_bytes()).hexdigest(), (
        f"a second build differs from {wasm} (stale? `make build` first, as `make test` does)")


def test_release_output_names_a_digest_pin_the_guide_shows():
    """The guide pins the WasmPlugin by digest, in the form oci/release.sh prints."""
    guide = (REPO / "README.md").read_text()
    assert re.search(r"url: oci://\S+/client-ip-filter@sha256:", guide), "README does not pin by digest"
