"""docs/errors.md "Configuration errors": Envoy refuses to start with a bad configuration, one error
line names the key path and the value; an update carrying one is rejected while the previous
configuration keeps serving; host bits in a CIDR are only a warning."""
import json

import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

# (id, configuration, strings the one error line must contain)
BAD = [
    ("bad-json", '{"access": {"allow": [}', []),
    ("not-an-object", '["10.0.0.0/8"]', []),
    ("unknown-top-key", {"acces": {}}, ["acces"]),
    ("unknown-nested-key", {"access": {"alow": ["10.0.0.0/8"]}}, ["access.alow"]),
    ("wrong-type-string-for-int", {"client_ip": {"trusted_hops": "2"}}, ["client_ip.trusted_hops", '"2"']),
    ("wrong-type-string-for-list", {"access": {"allow": "10.0.0.0/8"}}, ["access.allow", "10.0.0.0/8"]),
    ("bad-cidr-documented-example", {"access": {"allow": ["203.0.113.0/24", "2001:db8::/32", "10.0.0.300/8"]}},
     ['access.allow[2]: "10.0.0.300/8" is not an IP address or CIDR']),
    ("bad-prefix-length", {"client_ip": {"trusted_proxies": ["10.0.0.0/33"]}},
     ["client_ip.trusted_proxies[0]", "10.0.0.0/33"]),
    ("bad-address-in-rule", {"access": {"rules": [{"name": "a", "deny": ["nope"]}]}},
     ["access.rules[0].deny[0]", "nope"]),
    ("unknown-mode", {"access": {"mode": "block"}}, ["access.mode", "block"]),
    ("unknown-match", {"access": {"match": "peer"}}, ["access.match", "peer"]),
    ("unknown-on-invalid", {"client_ip": {"on_invalid": "drop"}}, ["client_ip.on_invalid", "drop"]),
    ("unknown-xff-mode", {"forward": {"x_forwarded_for": "prepend"}}, ["forward.x_forwarded_for", "prepend"]),
    ("proxies-and-hops", {"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "trusted_hops": 1}},
     ["trusted_hops", "trusted_proxies"]),
    ("hops-zero", {"client_ip": {"trusted_hops": 0}}, ["client_ip.trusted_hops", "0"]),
    ("duplicate-rule-name", {"access": {"rules": [{"name": "a"}, {"name": "a"}]}}, ["access.rules[1].name", '"a"']),
    ("bad-rule-name-chars", {"access": {"rules": [{"name": "Admin!"}]}}, ["access.rules[0].name", "Admin!"]),
    ("rule-name-too-long", {"access": {"rules": [{"name": "a" * 65}]}}, ["access.rules[0].name", "a" * 65]),
    ("rule-name-empty", {"access": {"rules": [{"name": ""}]}}, ["access.rules[0].name"]),
    ("deny-status-399", {"access": {"deny_status": 399}}, ["access.deny_status", "399"]),
    ("deny-status-600", {"access": {"deny_status": 600}}, ["access.deny_status", "600"]),
    ("bad-header-name", {"forward": {"headers": ["x real ip"]}}, ["forward.headers[0]", "x real ip"]),
    ("bad-port-header-name", {"forward": {"port_header": "x-port:"}}, ["forward.port_header", "x-port:"]),
    ("bad-client-header-name", {"client_ip": {"header": ""}}, ["client_ip.header"]),
    # rate_limit (docs/rate-limits.md)
    ("rate-limit-ipv4-prefix-7", {"rate_limit": {"ipv4_prefix": 7}},
     ["rate_limit.ipv4_prefix: 7 is outside 8–32"]),
    ("rate-limit-ipv4-prefix-33", {"rate_limit": {"ipv4_prefix": 33}}, ["rate_limit.ipv4_prefix", "33"]),
    ("rate-limit-ipv6-prefix-15", {"rate_limit": {"ipv6_prefix": 15}},
     ["rate_limit.ipv6_prefix: 15 is outside 16–128"]),
    ("rate-limit-ipv6-prefix-129", {"rate_limit": {"ipv6_prefix": 129}}, ["rate_limit.ipv6_prefix", "129"]),
    ("rate-limit-bad-exempt-entry", {"rate_limit": {"exempt": ["198.51.100.0/24", "10.0.0.300"]}},
     ['rate_limit.exempt[1]: "10.0.0.300" is not an IP address or CIDR']),
    ("rate-limit-exempt-unknown-source", {"rate_limit": {"exempt": ["source:partners"]}},
     ["rate_limit.exempt[0]", "source:partners"]),
    ("rate-limit-bad-header-name", {"rate_limit": {"header": "x client key"}},
     ["rate_limit.header", "x client key"]),
    ("rate-limit-header-also-forwarded", {"rate_limit": {"header": "x-real-ip"}},
     ["rate_limit.header", "x-real-ip", "forward section"]),
    ("rate-limit-by-link-not-bool", {"rate_limit": {"by_link": 1}}, ["rate_limit.by_link", "1"]),
    ("rate-limit-unknown-key", {"rate_limit": {"limit": 10}}, ["rate_limit.limit", "unknown key"]),
    ("rate-limit-in-network-mode", {"filter_type": "network", "rate_limit": {}},
     ["rate_limit", "filter_type \"network\""]),
]


@pytest.mark.parametrize("configuration,needles", [(c, n) for _, c, n in BAD], ids=[i for i, _, _ in BAD])
def test_config_error_envoy_refuses_to_start_and_logs_key_path_and_value(envoy_factory, wasm,
                                                                          configuration, needles):
    refused = envoy_factory.refused(E.EnvoyOptions(configuration=configuration))
    assert refused.exit_status is not None, "Envoy started with a bad configuration"
    assert refused.exit_status != 0
    errors = refused.filter_lines("error")
    assert len(errors) == 1, f"expected exactly one error line from the filter, got {errors}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"


GOOD = {"access": {"allow": ["203.0.113.0/24"]}}


def test_config_update_with_an_error_is_rejected_and_previous_keeps_serving(envoy_factory, echo, wasm):
    opts = E.EnvoyOptions(configuration=GOOD)
    env = envoy_factory(opts, dynamic=True)
    assert exchange(env, echo, proxy=pp.v1("198.51.100.1")).status == 403

    bad = json.dumps({"access": {"allow": ["198.51.100.0/24", "10.0.0.300/8"]}})
    assert env.update_listener(E.copy_options(opts, configuration=bad)) == "rejected"
    env.wait_log('access.allow[1]: "10.0.0.300/8" is not an IP address or CIDR')
    assert exchange(env, echo, proxy=pp.v1("198.51.100.1")).status == 403   # still the old lists
    assert exchange(env, echo, proxy=pp.v1("203.0.113.5")).status == 200

    good = {"access": {"allow": ["198.51.100.0/24"]}}
    assert env.update_listener(E.copy_options(opts, configuration=good)) == "accepted"
    assert exchange(env, echo, proxy=pp.v1("198.51.100.1")).status == 200


def test_config_cidr_with_host_bits_is_accepted_with_a_warning(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration={"access": {"allow": ["10.1.2.3/8"]}}))
    assert exchange(env, echo, proxy=pp.v1("10.200.0.1")).status == 200
    assert exchange(env, echo, proxy=pp.v1("11.0.0.1")).status == 403
    line = env.wait_log("10.1.2.3/8")
    assert env.tag("warning") in line, line


def test_config_every_key_of_the_spec_example_is_accepted(envoy_factory, echo, wasm):
    """The example of docs/configuration.md, read from the page, starts."""
    import json
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", page, re.S).group(1))
    assert example["client_ip"]["on_downstream_from_xff"] == "refuse" and example["forward"]["strip"]
    env = envoy_factory(E.EnvoyOptions(configuration=example))
    assert exchange(env, echo, proxy=pp.v1("203.0.113.5")).status == 200
    assert exchange(env, echo, proxy=pp.v1("203.0.113.66")).status == 403
