"""The native build (the Envoy dynamic module, adapters/dynamic-module) in real Envoy 1.40: the
module loads with a matching ABI version, a PROXY v2 client's address reaches the upstream as
x-real-ip and the access log as wasm.client_ip, a denied client is refused as the .wasm refuses it,
and a configuration error rejects the configuration with the .wasm's key-path line. The full suites
run on both builds through EnvoyOptions.build."""
import os

import pytest

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.client import exchange

CONFIG = {"access": {"deny": ["203.0.113.66"]}}


@pytest.fixture(scope="module")
def native(envoy_bin) -> str:
    """The built module; a test that needs it fails (not skips) when it is missing."""
    path = manifests.native_path_from_env()
    if not os.path.isfile(path):
        pytest.fail(f"{path} is missing: run `make native`")
    return path


@pytest.fixture(scope="module")
def env(envoy_factory, native):
    return envoy_factory(E.EnvoyOptions(build="native", configuration=CONFIG))


def test_envoy_loads_the_module_with_a_matching_abi_version(env):
    # Envoy flushes its log file in batches: wait for the line (fails after the timeout).
    assert "Dynamic module ABI version v0.2.0 matched." in env.wait_log("Dynamic module ABI version")


def test_a_proxy_v2_client_reaches_the_upstream_as_x_real_ip(env, echo):
    before = env.settled_stats()
    ex = exchange(env, echo, proxy=pp.v2("203.0.113.7"))
    assert ex.status == 200, ex.response
    assert ex.upstream_value("x-real-ip") == "203.0.113.7"
    log = ex.log()
    assert (log["client_ip"], log["decision"], log["details"]) == ("203.0.113.7", None, "via_upstream")
    assert E.counter_delta(env, before, {"client_ip.allowed": 1}) == {"client_ip.allowed": 1}


def test_a_client_x_real_ip_is_replaced_not_believed(env, echo):
    ex = exchange(env, echo, proxy=pp.v2("203.0.113.7"), headers=[("X-Real-IP", "6.6.6.6")])
    assert ex.upstream_values("x-real-ip") == ["203.0.113.7"]


def test_a_denied_client_is_refused_as_the_wasm_build_refuses_it(env, echo):
    before = env.settled_stats()
    ex = exchange(env, echo, proxy=pp.v2("203.0.113.66"))
    assert ex.status == 403, ex.response
    assert ex.response.body == b"access denied\n"
    assert ex.response.header("content-type") == "text/plain"
    assert not ex.reached_upstream
    log = ex.log()
    assert (log["client_ip"], log["decision"], log["details"]) == (
        "203.0.113.66", "deny", "client_ip_filter_denied")
    assert E.counter_delta(env, before, {"client_ip.denied": 1}) == {"client_ip.denied": 1}


def test_a_configuration_error_is_rejected_with_its_key_path(envoy_factory, native):
    refused = envoy_factory.refused(E.EnvoyOptions(build="native",
                                                   configuration={"access": {"allow": ["10.0.0.300/8"]}}))
    assert refused.exit_status not in (None, 0), "Envoy accepted a broken configuration"
    line = 'invalid configuration: access.allow[0]: "10.0.0.300/8" is not an IP address or CIDR'
    assert line in refused.log, refused.log[-3000:]
