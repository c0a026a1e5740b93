"""docs/rate-limits.md: per-client rate limits. The filter names each request's bucket (the
client masked to a prefix, the private-link identity with ``by_link``, ``unknown``, none for an
exempt client); Envoy's local rate limit filter, right after it, counts. Both shipped variants, as
the manifests configure them (tests/harness/manifests.py):

* ``header``: envoyfilter/ingress-gateway-rate-limit.yaml -- the key in ``x-client-ip-key``
  (removed from the request first), read with a ``request_headers`` action;
* ``filter_state``: envoyfilter/ingress-gateway-rate-limit-filter-state.yaml -- the key in the filter
  state ``wasm.client_ip_key``, read with ``envoy.rate_limit_descriptors.expr`` (CEL).

Each test's bucket is made small (3 requests, no refill within the test) so that going over the
limit takes four requests; each test uses its own client addresses, so buckets never carry over.
"""
from __future__ import annotations

import copy

import pytest

from harness import envoy as E
from harness import manifests
from harness import proxyproto as pp
from harness.envoy import counter_delta

REPO = manifests.REPO
HEADER_MANIFEST = REPO / "envoyfilter" / "ingress-gateway-rate-limit.yaml"
FS_MANIFEST = REPO / "envoyfilter" / "ingress-gateway-rate-limit-filter-state.yaml"
PRIVATE_LINK = REPO / "envoyfilter" / "ingress-gateway-private-link.yaml"
LIMITER = "envoy.filters.http.local_ratelimit"
KEY_HEADER = "x-client-ip-key"
BURST = 3
EXEMPT = "198.51.100.7"      # inside the manifests' rate_limit.exempt (198.51.100.0/24)
VPCE_A = "vpce-0a1b2c3d4e5f60718"
VPCE_B = "vpce-0123456789abcdef0"
VARIANTS = {"header": HEADER_MANIFEST, "filter_state": FS_MANIFEST}


def limiter(frags: manifests.Fragments, max_tokens: int = BURST, fill_interval: str = "3600s") -> dict:
    """The manifest's local rate limit filter with a smaller per-key bucket."""
    f = next(copy.deepcopy(f) for f in frags.http_filters if f["name"] == LIMITER)
    bucket = f["typed_config"]["descriptors"][0]["token_bucket"]
    bucket.update(max_tokens=max_tokens, tokens_per_fill=max_tokens, fill_interval=fill_interval)
    return f


def options(manifest, configuration=None, private_link: bool = False, **bucket) -> E.EnvoyOptions:
    frags = manifests.load(manifest)
    if private_link:  # the proxy_protocol filter that keeps the private-link TLVs (filter state)
        frags.listener_filters = manifests.load(PRIVATE_LINK).listener_filters
    return E.EnvoyOptions(fragments=frags, configuration=configuration,
                          http_filter_overrides={LIMITER: limiter(frags, **bucket)})


@pytest.fixture(scope="module")
def variants(envoy_factory, wasm):
    started: dict = {}

    def get(name: str) -> E.Envoy:
        if name not in started:
            started[name] = envoy_factory(options(VARIANTS[name]))
        return started[name]
    return get


@pytest.fixture(params=sorted(VARIANTS))
def env(request, variants) -> E.Envoy:
    return variants(request.param)


def send(env: E.Envoy, src: str, headers=(), tlvs=()) -> pp.Response:
    return pp.request(env.port, proxy=pp.v2(src, tlvs=tlvs), headers=list(headers))


def statuses(env: E.Envoy, src: str, n: int, headers=(), tlvs=()) -> list:
    return [send(env, src, headers, tlvs).status for _ in range(n)]


def exhaust(env: E.Envoy, src: str, **kw) -> None:
    """Spends ``src``'s bucket: BURST requests pass, the next one is limited."""
    assert statuses(env, src, BURST, **kw) == [200] * BURST
    limited = send(env, src, **kw)
    assert limited.status == 429, (limited.status, limited.body)


def test_a_client_over_its_limit_gets_429_and_another_client_is_not_affected(env):
    exhaust(env, "203.0.113.10")
    limited = send(env, "203.0.113.10")
    assert limited.status == 429
    assert limited.header("x-ratelimit-remaining") == "0"
    assert b"local_rate_limited" in limited.body
    # Another client has its own bucket.
    assert statuses(env, "203.0.113.11", BURST) == [200] * BURST


def test_the_key_is_the_client_masked_to_its_prefix_in_the_filter_state(env):
    for src, key in [("203.0.113.12", "203.0.113.12/32"), ("2001:db8:9:9::5", "2001:db8:9:9::/64")]:
        tid = f"rl-key-{src}"
        assert send(env, src, headers=[("x-test-id", tid)]).status == 200
        assert env.access_log_entry(tid)["client_ip_key"] == key


FORGERIES = [
    ("x-forwarded-for", [("X-Forwarded-For", "203.0.113.99")]),
    ("x-forwarded-for-chain", [("X-Forwarded-For", "203.0.113.98, 203.0.113.97")]),
    ("x-real-ip", [("X-Real-IP", "203.0.113.96")]),
    ("key-header", [(KEY_HEADER, "203.0.113.95/32")]),
    ("key-header-upper-case", [("X-Client-IP-Key", "203.0.113.94/32")]),
    ("key-header-unknown", [(KEY_HEADER, "unknown")]),
    ("key-header-twice", [(KEY_HEADER, "203.0.113.93/32"), (KEY_HEADER, "203.0.113.92/32")]),
    ("everything", [("X-Forwarded-For", "203.0.113.91"), ("X-Real-IP", "203.0.113.91"),
                    (KEY_HEADER, "203.0.113.91/32")]),
]


def test_forging_xff_x_real_ip_or_the_key_header_gives_no_fresh_bucket(env):
    attacker = "203.0.113.20"
    exhaust(env, attacker)
    for name, headers in FORGERIES:
        resp = send(env, attacker, headers=headers)
        assert resp.status == 429, f"{name}: a forged header gave a fresh bucket ({resp.status})"


def test_the_app_sees_the_filters_key_never_the_clients(variants):
    env = variants("header")
    resp = send(env, "203.0.113.21", headers=[(KEY_HEADER, "10.0.0.1/32"), ("X-Client-IP-Key", "x")])
    assert resp.status == 200
    assert resp.upstream_header_values(KEY_HEADER) == ["203.0.113.21/32"]
    # The filter-state variant writes no header: a forged one is still whatever the client sent,
    # and the limiter never reads it.
    fs = variants("filter_state")
    exhaust(fs, "203.0.113.22", headers=[(KEY_HEADER, "anything")])


def test_two_addresses_in_one_ipv6_64_share_a_bucket(env):
    exhaust(env, "2001:db8:1:2::1")
    assert send(env, "2001:db8:1:2:ffff:ffff:ffff:fffe").status == 429
    assert send(env, "2001:db8:1:2:8000::1").status == 429
    # The next /64 is another client.
    assert statuses(env, "2001:db8:1:3::1", BURST) == [200] * BURST


def test_an_exempt_client_is_never_limited(env):
    before = env.stats()
    got = statuses(env, EXEMPT, 3 * BURST, headers=[(KEY_HEADER, "203.0.113.10/32")])
    assert got == [200] * (3 * BURST)
    # (Each counter alone: a previous test's counts may still be flushing into the other.)
    want = {"client_ip.rate_limit.exempt": 3 * BURST}
    assert counter_delta(env, before, want, prefix="client_ip.rate_limit.exempt") == want


def test_an_exempt_client_gets_no_key_header_even_a_forged_one(variants):
    env = variants("header")
    resp = send(env, EXEMPT, headers=[(KEY_HEADER, "203.0.113.10/32")])
    assert resp.status == 200
    assert resp.upstream_header_values(KEY_HEADER) == []


def test_keyed_requests_are_counted(env):
    before = env.stats()
    assert statuses(env, "203.0.113.30", 2) == [200, 200]
    want = {"client_ip.rate_limit.keyed": 2}
    assert counter_delta(env, before, want, prefix="client_ip.rate_limit.keyed") == want


def test_unknown_clients_share_one_bucket(env):
    """The manifests trust 10.0.0.0/8 as proxies; one that forwards garbage makes its client
    unknown (``on_invalid: "unknown"``)."""
    tid = "rl-unknown"
    garbage = [("X-Forwarded-For", "not-an-address")]
    first = send(env, "10.1.0.1", headers=garbage + [("x-test-id", tid)])
    assert first.status == 200
    assert env.access_log_entry(tid)["client_ip_key"] == "unknown"
    assert statuses(env, "10.1.0.2", BURST - 1, headers=[("X-Forwarded-For", "garbage")]) == \
        [200] * (BURST - 1)
    # Another unknown client, through another proxy: the same bucket, spent.
    assert send(env, "10.1.0.3", headers=[("X-Forwarded-For", "unknown")]).status == 429
    # A known client behind the same proxies is not affected.
    assert send(env, "10.1.0.3", headers=[("X-Forwarded-For", "203.0.113.40")]).status == 200


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_by_link_keys_clients_of_one_vpc_endpoint_together(envoy_factory, wasm, variant):
    frags = manifests.load(VARIANTS[variant])
    configuration = frags.configuration()
    configuration["rate_limit"]["by_link"] = True
    env = envoy_factory(options(VARIANTS[variant], configuration=configuration, private_link=True))
    link_a = [pp.tlv_aws_vpce(VPCE_A)]
    tid = f"rl-link-{variant}"
    first = send(env, "10.2.0.1", tlvs=link_a, headers=[("x-test-id", tid)])
    assert first.status == 200
    assert env.access_log_entry(tid)["client_ip_key"] == f"aws-vpce:{VPCE_A}"
    # Other addresses behind the same endpoint spend the same bucket.
    assert statuses(env, "10.2.0.2", BURST - 1, tlvs=link_a) == [200] * (BURST - 1)
    assert send(env, "10.2.0.3", tlvs=link_a).status == 429
    # Another endpoint, and a connection without one, are other buckets.
    assert statuses(env, "10.2.0.1", BURST, tlvs=[pp.tlv_aws_vpce(VPCE_B)]) == [200] * BURST
    assert statuses(env, "10.2.0.1", BURST) == [200] * BURST


# -- the WasmPlugin variant (istio-examples/wasmplugin-rate-limit.yaml) ------------------------------
PLUGIN_EXAMPLE = REPO / "istio-examples" / "wasmplugin-rate-limit.yaml"


def plugin_docs() -> list:
    import yaml
    with open(PLUGIN_EXAMPLE) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def test_the_wasmplugin_variant_is_the_filter_state_manifest():
    plugin = next(d for d in plugin_docs() if d["kind"] == "WasmPlugin")
    assert plugin["spec"]["pluginConfig"] == manifests.load(FS_MANIFEST).configuration()
    shipped = next(f for f in manifests.load(FS_MANIFEST).http_filters if f["name"] == LIMITER)
    assert next(f for f in manifests.load(PLUGIN_EXAMPLE).http_filters if f["name"] == LIMITER) == shipped


def test_the_wasmplugin_variant_limits_per_client_in_envoy(envoy_factory, wasm):
    """The pluginConfig as Istio hands it over (JSON) and the example's limiter, in Envoy."""
    plugin = next(d for d in plugin_docs() if d["kind"] == "WasmPlugin")
    frags = manifests.load(FS_MANIFEST)
    frags.http_filters = [frags.wasm_filter] + manifests.load(PLUGIN_EXAMPLE).http_filters
    env = envoy_factory(E.EnvoyOptions(fragments=frags, configuration=plugin["spec"]["pluginConfig"],
                                       http_filter_overrides={LIMITER: limiter(frags)}))
    exhaust(env, "203.0.113.70")
    assert statuses(env, "203.0.113.71", BURST) == [200] * BURST
    assert statuses(env, EXEMPT, 2 * BURST) == [200] * (2 * BURST)


def test_the_bench_limiters_are_the_manifests_apart_from_the_bucket():
    """bench/envoy_bench.py (standard library only, no YAML) writes the manifests' limiters out."""
    import sys
    sys.path.insert(0, str(REPO / "bench"))
    import envoy_bench
    for manifest, from_header in ((HEADER_MANIFEST, True), (FS_MANIFEST, False)):
        shipped = next(copy.deepcopy(f) for f in manifests.load(manifest).http_filters if f["name"] == LIMITER)
        bench = envoy_bench.local_rate_limit_filter(from_header)
        for f in (shipped, bench):
            del f["typed_config"]["descriptors"][0]["token_bucket"]
        assert bench == shipped, manifest.name
