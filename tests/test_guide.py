"""The README's quickstart, walked as written where it can run without a cluster.

The shell blocks marked `<!-- guide-step: NAME -->` run unchanged in a scratch copy of the
repository's files, in this order: `push` (skopeo to a real registry, Debian's docker-registry on
loopback, with the release `make release` makes), `pin-and-dry-run` (the sed edits of the gateway
WasmPlugin), `enforce`. Only `REGISTRY=` is pointed at the loopback registry (and skopeo told it
speaks plain HTTP), and `kubectl` is a stand-in that records what it was asked to apply: the cluster steps (`kubectl apply`, `istioctl
proxy-config`) are what only a cluster can show. After each step the WasmPlugin file is loaded into a
real Envoy as Istio builds it (tests/test_istio_in_envoy.py) and must behave as the guide says:
pinned to the digest the registry serves, counting instead of refusing in dry run, refusing once
enforced. Step 4 (verify) runs through Istio's own translation (tests/istio/): the dry-run plugin and
the gateway of step 2 go to Istio's control plane, which feeds a real Envoy, and the guide's
`istioctl proxy-config ecds` and `listener | grep` read that Envoy's config dump.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import envoy as E
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange, new_test_id
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
def walk(tools, registry, wasm, native_so, tmp_path_factory):  # noqa: F811
    """A scratch tree: Cargo.toml, istio-examples/, the release in target/release-artifacts; a
    registries.conf that lets skopeo speak plain HTTP to the loopback registry; a recording kubectl."""
    root = tmp_path_factory.mktemp("guide")
    shutil.copy(REPO / "Cargo.toml", root / "Cargo.toml")
    shutil.copytree(REPO / "istio-examples", root / "istio-examples")
    release(wasm, root / "target" / "release-artifacts", native_so)
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


# -- step 4, verify: what istioctl shows, through Istio's own translation ---------------------------

def test_the_verify_step_shows_what_the_guide_says_in_istios_translation(tools, registry, wasm, app_pod,  # noqa: F811
                                                                        native_so, tmp_path):
    """The pinned, dry-run WasmPlugin of step 3, with the gateway of step 2, translated by Istio's
    control plane (tests/istio/) for a real Envoy; `istioctl proxy-config ecds` and `listener` read
    that Envoy's config dump (`--file`, as the guide's commands read a pod's)."""
    from harness import istio as I
    from harness.istio_sets import COMMON, GATEWAY_HTTP_PORT, POD_IPS, gateway_annotation

    root = tmp_path / "walk"
    root.mkdir()
    shutil.copy(REPO / "Cargo.toml", root / "Cargo.toml")
    shutil.copytree(REPO / "istio-examples", root / "istio-examples")
    release(wasm, root / "target" / "release-artifacts", native_so)
    script = guide_steps()["pin-and-dry-run"].replace("kubectl apply", ": kubectl apply")
    prelude = f"REGISTRY={registry}\nDIGEST=$(cat target/release-artifacts/DIGEST)\n"
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    version = I.istio_versions()[0]
    cp = I.IstioControlPlane(version, COMMON + [root / PLUGIN], wasm, tmp_path, pod_ips=POD_IPS).start()
    try:
        gw = I.IstioEnvoy(cp, node="gateway", workdir=tmp_path, proxy_config=gateway_annotation()).start()
        try:
            gw.wait_listener(GATEWAY_HTTP_PORT)
            dump = tmp_path / "config_dump.json"
            dump.write_text(json.dumps(gw.config_dump()))
            istioctl = str(I.binary(version, "istioctl"))
            procs.note_program(istioctl)
            ecds = subprocess.run([istioctl, "proxy-config", "ecds", "--file", str(dump)],
                                  capture_output=True, text=True, timeout=60)
            assert ecds.returncode == 0, ecds.stderr
            (line,) = [l for l in ecds.stdout.splitlines() if l.split() and "istio-system.client-ip-filter" in l.split()[0]]
            assert line.split()[-1] == "envoy.extensions.filters.http.wasm.v3.Wasm", ecds.stdout
            listener = subprocess.run([istioctl, "proxy-config", "listener", "--file", str(dump), "-o", "json"],
                                      capture_output=True, text=True, timeout=60)
            assert listener.returncode == 0, listener.stderr
            pattern = re.search(r"grep -oE '(.*?)'", guide_text()).group(1)
            names = [m.group(1) for m in re.finditer(pattern, listener.stdout)]
            gateway_listener = json.loads(listener.stdout)
            assert names, "the guide's grep finds nothing in the listener dump"
            # per listener: proxy_protocol once, set_filter_state, the plugin, then the router
            checked = 0
            for lst in gateway_listener:
                order = [m.group(1) for m in re.finditer(pattern, json.dumps(lst, indent=2))]
                if not any("client-ip-filter" in n for n in order):
                    continue
                checked += 1
                assert order.count("envoy.filters.listener.proxy_protocol") == 1, order
                plugin = next(i for i, n in enumerate(order) if "istio-system.client-ip-filter" in n)
                assert order.index("envoy.filters.network.set_filter_state") < plugin < order.index(
                    "envoy.filters.http.router"), order
            assert checked >= 1, f"no listener with the plugin in what the guide's grep shows: {names}"
            # dry run: a client outside the allow list goes through and is counted
            tid = new_test_id("guide")
            resp = pp.request(GATEWAY_HTTP_PORT, proxy=pp.v2("192.0.2.55", "10.0.0.1", 40000, 80),
                              host="httpbin.example.com", path="/get", headers=[("x-test-id", tid)])
            assert resp.status == 200
            assert procs.wait_until(lambda: gw.stats().get("wasmcustom.client_ip.dry_run_denied", 0) >= 1
                                    or gw.stats().get("client_ip.dry_run_denied", 0) >= 1, 5,
                                    what="dry_run_denied counted")
        finally:
            gw.stop()
    finally:
        cp.stop()


def guide_text() -> str:
    return (REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def app_pod():
    from harness import istio as I
    from harness.istio_sets import APP_IP, APP_PORT
    echo = I.PodEcho(APP_IP, APP_PORT).start()
    yield echo
    echo.stop()
