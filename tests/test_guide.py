"""The README's quickstart, walked as written where it can run without a cluster.

The shell blocks marked `<!-- guide-step: NAME -->` run unchanged in a scratch copy of the
repository's files, in this order: `push` (skopeo to a real registry, Debian's docker-registry on
loopback, with the release `make release` makes), `pin-and-dry-run` (the sed edits of the gateway
WasmPlugin), `enforce`. Only `REGISTRY=` is pointed at the loopback registry (and skopeo told it
speaks plain HTTP), and `kubectl` is a stand-in that records what it was asked to apply: the cluster steps (`kubectl apply`, `istioctl
proxy-config`) are what only a cluster can show. After each step the WasmPlugin file is loaded into a
real Envoy as Istio builds it (tests/test_istio_in_envoy.py) and must behave as the guide says:
pinned to the digest the registry serves, counting instead of refusing in dry run, refusing once
enforced.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange
from test_istio_in_envoy import IstioEnvoy, doc_of_kind, wasmplugin_fragments
from test_oci import registry, skopeo, tools  # noqa: F401 (fixtures)
from test_release import cargo_version, release

REPO = Path(__file__).resolve().parent.parent
PLUGIN = Path("istio-examples") / "wasmplugin-ingress-gateway.yaml"


def guide_steps() -> dict:
    text = (REPO / "README.md").read_text()
    steps = dict(re.findall(r"<!-- guide-step: ([a-z-]+) -->\n```sh\n(.*?)```", text, re.S))
    assert list(steps) == ["push", "pin-and-dry-run", "enforce"], list(steps)
    return steps


@pytest.fixture(scope="module")
def walk(tools, registry, wasm, tmp_path_factory):  # noqa: F811
    """A scratch tree: Cargo.toml, istio-examples/, the release in target/release-artifacts; a
    registries.conf that lets skopeo speak plain HTTP to the loopback registry; a recording kubectl."""
    root = tmp_path_factory.mktemp("guide")
    shutil.copy(REPO / "Cargo.toml", root / "Cargo.toml")
    shutil.copytree(REPO / "istio-examples", root / "istio-examples")
    release(wasm, root / "target" / "release-artifacts")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    # The loopback registry speaks plain HTTP (a real one has TLS), and the machine may have no
    # containers policy file: the only two flags added to the guide's skopeo command.
    real = shutil.which("skopeo")
    (bin_dir / "skopeo").write_text(
        f'#!/bin/sh\n[ "$1" = copy ] && shift && exec {real} --insecure-policy copy --dest-tls-verify=false "$@"\n'
        f'exec {real} "$@"\n')
    (bin_dir / "skopeo").chmod(0o755)
    (bin_dir / "kubectl").write_text('#!/bin/sh\necho "$@" >> "$KUBECTL_LOG"\n')
    (bin_dir / "kubectl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "KUBECTL_LOG": str(root / "kubectl.log")}
    return root, env, registry


def run_step(walk, name: str, prelude: str = "") -> None:
    root, env, registry = walk
    script = guide_steps()[name].replace("REGISTRY=registry.example.com", f"REGISTRY={registry}")
    assert registry in script or "REGISTRY=" not in guide_steps()[name]
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], cwd=root, env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, f"guide step {name} failed:\n{run.stdout}\n{run.stderr}"


def plugin_envoy(start_envoy, root: Path):
    return start_envoy(E.EnvoyOptions(fragments=wasmplugin_fragments(root / PLUGIN, "GATEWAY")))


@pytest.fixture(scope="module")
def start_envoy(echo, wasm, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("guide_envoy")
    started: list = []

    def start(opts) -> IstioEnvoy:
        env = IstioEnvoy(opts, upstream_port=echo.port, workdir=str(workdir), name=f"guide{len(started)}")
        started.append(env)
        return env.start(timeout=60)
    yield start
    for env in started:
        env.stop()


def test_the_quickstart_pushes_pins_by_digest_dry_runs_then_enforces(walk, start_envoy, echo):
    root, env, registry = walk
    version = cargo_version()
    digest = (root / "target" / "release-artifacts" / "DIGEST").read_text().strip()

    run_step(walk, "push")
    # the registry serves the image under the release's digest: what the pinned URL pulls
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{registry}/client-ip-filter@{digest}")
    assert inspect.returncode == 0, inspect.stderr
    assert yaml.safe_load(inspect.stdout)["Digest"] == digest

    # step 3 needs the shell variables of step 1, as in one terminal session
    prelude = f"REGISTRY={registry}\nDIGEST=$(cat target/release-artifacts/DIGEST)\n"
    run_step(walk, "pin-and-dry-run", prelude)
    plugin = doc_of_kind(root / PLUGIN, "WasmPlugin")
    assert plugin["spec"]["url"] == f"oci://{registry}/client-ip-filter@{digest}"
    assert plugin["spec"]["sha256"] == digest.split(":", 1)[1]
    assert plugin["spec"]["failStrategy"] == "FAIL_CLOSE"
    assert plugin["spec"]["pluginConfig"]["access"]["mode"] == "dry_run"
    assert f"apply -f {PLUGIN}" in (root / "kubectl.log").read_text()
    assert version  # the release the digest came from

    dry = plugin_envoy(start_envoy, root)
    before = dry.settled_stats()
    refused = exchange(dry, echo, proxy=pp.v1("192.0.2.9"))
    allowed = exchange(dry, echo, proxy=pp.v1("203.0.113.7"))
    assert refused.status == 200 and refused.upstream_value("x-real-ip") == "192.0.2.9"
    assert refused.log()["decision"] == "dry_run_deny"
    assert allowed.status == 200
    assert E.counter_delta(dry, before, {"client_ip.dry_run_denied": 1, "client_ip.allowed": 1}) == {
        "client_ip.dry_run_denied": 1, "client_ip.allowed": 1}

    run_step(walk, "enforce")
    plugin = doc_of_kind(root / PLUGIN, "WasmPlugin")
    assert "mode" not in plugin["spec"]["pluginConfig"]["access"]
    assert plugin["spec"]["url"] == f"oci://{registry}/client-ip-filter@{digest}"
    enforced = plugin_envoy(start_envoy, root)
    ex = exchange(enforced, echo, proxy=pp.v1("192.0.2.9"))
    assert ex.status == 403 and ex.response.text == "access denied\n"
    assert ex.log()["details"] == "client_ip_filter_denied"
