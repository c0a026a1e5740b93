"""The native build's network filter (``envoy.filters.network.dynamic_modules``, Envoy 1.40): the same
connection-level mode as the wasm build's (docs/network-mode.md), the same configuration, filter state,
counters and close behaviour, in a real Envoy behind a PROXY v2 client. Draft of branch native-net, to
be folded into the tests parametrised over both builds (tests/test_network_mode.py)."""
from __future__ import annotations

import pytest

from harness import envoy as E
from harness import manifests
from harness import network as N
from harness import procs
from harness import proxyproto as pp

CONFIG = {
    "filter_type": "network",
    "access": {"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.66"],
               "rules": [{"name": "beta", "hosts": ["beta.example.com"], "allow": ["203.0.113.10"]}]},
}


@pytest.fixture(scope="module")
def native_module(native_so) -> str:
    return native_so


@pytest.fixture(scope="module")
def plain():
    up = N.Upstream("plain").start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gateway(envoy_bin, native_module, plain, tmp_path_factory):
    frags = manifests.load(N.GATEWAY_PASSTHROUGH)
    spec = N.NetworkListener(frags, CONFIG, build="native", native_path=native_module)
    env = N.NetworkEnvoy([spec], {"plain": (plain.port, None)},
                         workdir=str(tmp_path_factory.mktemp("native_network")), name="native-net")
    env.start(timeout=60)
    yield env
    env.stop()


def key(src: str, port: int) -> str:
    return f"[{src}]:{port}" if ":" in src else f"{src}:{port}"


@pytest.mark.parametrize("src", ["203.0.113.7", "2001:db8::7"])
def test_native_allowed_connection_reaches_the_upstream(gateway, plain, src):
    before = plain.accepted
    port = N.unique_port()
    out = N.tcp_exchange(gateway.port, proxy=pp.v2(src, sport=port))
    assert out.served, out
    assert plain.accepted == before + 1
    entry = gateway.log_entry(key(src, port))
    assert entry["client_ip"] == src
    assert entry["decision"] in (None, "-", "")


@pytest.mark.parametrize("src", ["198.51.100.9", "203.0.113.66"])
def test_native_refused_connection_is_closed_before_the_upstream_sees_it(gateway, plain, src):
    before = plain.accepted
    port = N.unique_port()
    out = N.tcp_exchange(gateway.port, proxy=pp.v2(src, sport=port))
    assert not out.served, out
    entry = gateway.log_entry(key(src, port))
    assert entry["client_ip"] == src
    assert entry["decision"] == "deny"
    assert entry["upstream_host"] in (None, "-", "")
    assert plain.accepted == before


def counter(env, name: str) -> int:
    """A counter by its contract name, under the dynamic module's metrics namespace."""
    stats = env.stats(raw=True)
    return int(stats.get(name, stats.get("dynamicmodulescustom." + name, 0)))


def test_native_counters_count_each_connection_once(gateway):
    allowed, denied = counter(gateway, "client_ip.allowed"), counter(gateway, "client_ip.denied")
    N.tcp_exchange(gateway.port, proxy=pp.v2("203.0.113.8", sport=N.unique_port()))
    N.tcp_exchange(gateway.port, proxy=pp.v2("198.51.100.8", sport=N.unique_port()))
    procs.wait_until(lambda: counter(gateway, "client_ip.denied") >= denied + 1, 3.0,
                     what="client_ip.denied to grow")
    assert counter(gateway, "client_ip.allowed") == allowed + 1
    assert counter(gateway, "client_ip.denied") == denied + 1


def native_envoy(native_module, workdir, name, config, plain_port=9):
    frags = manifests.load(N.GATEWAY_PASSTHROUGH)
    spec = N.NetworkListener(frags, config, build="native", native_path=native_module)
    return N.NetworkEnvoy([spec], {"plain": (plain_port, None)}, workdir=str(workdir), name=name)


@pytest.mark.parametrize("name,config,needle", [
    ("bad_cidr", {"filter_type": "network", "access": {"allow": ["300.0.0.1"]}}, "access.allow"),
    ("http_only_key", {"filter_type": "network", "forward": {"headers": ["x-real-ip"]}},
     'with filter_type "network"'),
    ("sources", {"filter_type": "network",
                 "sources": {"s": {"cluster": "plain", "authority": "l", "path": "/l.txt"}},
                 "access": {"allow": ["source:s"]}}, "the native network filter cannot fetch lists"),
])
def test_native_configuration_error_refuses_the_listener_with_its_key_path(envoy_bin, native_module,
                                                                           tmp_path, name, config, needle):
    env = native_envoy(native_module, tmp_path, f"bad-{name}", config)
    with pytest.raises(E.EnvoyDied):
        env.start(timeout=60)
    errors = [ln for ln in env.log_text().splitlines() if "invalid configuration:" in ln]
    assert len(errors) == 1 and needle in errors[0] and "][error][dynamic_modules]" in errors[0], errors


def test_native_http_configuration_loaded_as_a_network_filter_closes_every_connection(
        envoy_bin, native_module, plain, tmp_path):
    env = native_envoy(native_module, tmp_path, "mismatch", {"access": {"allow": ["203.0.113.0/24"]}},
                       plain.port)
    env.start(timeout=60)
    try:
        before = plain.accepted
        for _ in range(3):
            assert not N.tcp_exchange(env.port, proxy=pp.v2("203.0.113.7", sport=N.unique_port())).served
        assert plain.accepted == before
        needle = 'filter_type: "http" does not match how Envoy loaded this module'
        env.wait_log(needle)
        lines = [ln for ln in env.log_text().splitlines() if needle in ln]
        assert len(lines) == 1 and "][error][dynamic_modules]" in lines[0], lines
    finally:
        env.stop()
