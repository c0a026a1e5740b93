"""The tools the integration suite needs. Missing ones FAIL here (and error every test that needs
them) with the command that installs them; nothing is ever skipped."""
import subprocess

import conftest


def test_envoy_binary_is_installed_and_is_1_40():
    assert not conftest._missing_envoy(), conftest._missing_envoy()
    binary = conftest.envoy_mod.envoy_binary()
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "/1.40." in out.stdout, f"expected Envoy 1.40.x (make envoy), got: {out.stdout.strip()}"


def test_filter_wasm_is_built():
    assert not conftest._missing_wasm(), conftest._missing_wasm()
    with open(conftest.manifests.wasm_path_from_env(), "rb") as fh:
        assert fh.read(4) == b"\0asm", "not a WebAssembly module: run `make build`"


def test_haproxy_is_installed():
    assert not conftest._missing_haproxy(), conftest._missing_haproxy()
    out = subprocess.run([conftest.haproxy_mod.haproxy_binary(), "-v"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "HAProxy version" in out.stdout, out.stdout + out.stderr


def test_openssl_is_installed():
    """The network-mode tests make their TLS certificates with it and use `openssl s_client`."""
    import shutil
    path = shutil.which("openssl")
    assert path, "openssl is not installed: run `make openssl`"
    out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("OpenSSL"), out.stdout + out.stderr


def test_nginx_is_installed():
    """The real list server of tests/test_sources.py (docs/sources.md)."""
    from harness import listserver

    binary = listserver.nginx_binary()
    assert binary, "nginx is not installed: run `make nginx`"
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "nginx version" in out.stderr, out.stdout + out.stderr
