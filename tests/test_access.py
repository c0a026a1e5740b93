"""docs/access.md "Access control": allow/deny, IPv4 vs IPv6, unknown clients, match client or
downstream, rules (hosts, *.suffix, path_prefixes, first match wins), dry_run vs enforce,
deny_status / deny_body, a refused request never reaches the upstream."""
import pytest

from harness import envoy as E
from harness import proxyproto as pp
from harness.client import exchange, exchange_h2

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

DEFAULT_BODY = b"access denied\n"

LISTS = {
    "access": {
        "allow": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"],
        "deny": ["203.0.113.66", "2001:db8::66"],
        "rules": [
            {"name": "v6only", "path_prefixes": ["/v6only"], "allow": ["::/0"]},
            {"name": "v4only", "path_prefixes": ["/v4only"], "allow": ["0.0.0.0/0"]},
            {"name": "admin", "hosts": ["admin.example.com", "*.internal.example.com"],
             "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]},
            {"name": "public", "path_prefixes": ["/public", "/assets/"]},
            {"name": "open_host", "hosts": ["open.example.com"], "deny": ["203.0.113.0/24"]},
            {"name": "dry", "path_prefixes": ["/dry"], "allow": ["198.51.100.0/24"], "mode": "dry_run"},
            {"name": "first", "path_prefixes": ["/order"], "allow": ["203.0.113.1"]},
            {"name": "second", "path_prefixes": ["/order/x"], "allow": ["203.0.113.2"]},
        ],
    },
}


@pytest.fixture(scope="module")
def lists(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=LISTS))


def check(env, echo, src, path="/", host="example.com", status=200, rule=None, decision=None,
          headers=(), counters=None):
    """One request from PROXY source ``src``; assert the outcome, the access log and the counters."""
    before = env.settled_stats()
    ex = exchange(env, echo, proxy=pp.v2(src), path=path, host=host, headers=headers)
    assert ex.status == status, (src, path, host, ex.response)
    if status == 200:
        assert ex.reached_upstream
    else:
        assert ex.response.body == DEFAULT_BODY
        assert ex.response.header("content-type") == "text/plain"
        assert not ex.reached_upstream, "a refused request reached the upstream"
    log = ex.log()
    decision = decision or ("allow" if status == 200 else "deny")
    # wasm.client_ip_decision is written for refusals only: absent means allowed.
    assert (log["decision"], log["rule"]) == (None if decision == "allow" else decision, rule)
    # %RESPONSE_CODE_DETAILS%: the filter names its own refusals.
    assert log["details"] == ("via_upstream" if status == 200 else "client_ip_filter_denied"), log
    if counters is None:
        suffix = {"allow": "allowed", "deny": "denied", "dry_run_deny": "dry_run_denied"}[decision]
        counters = {f"client_ip.{suffix}": 1}
        if rule:
            counters[f"client_ip.rule.{rule}.{suffix}"] = 1
    assert E.counter_delta(env, before, counters) == counters
    return ex


# -- top level ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("src,status", [
    ("203.0.113.5", 200), ("203.0.113.66", 403), ("198.51.100.7", 200), ("198.51.100.8", 403),
    ("192.0.2.1", 403), ("2001:db8::5", 200), ("2001:db8::66", 403), ("2001:dead::1", 403),
    ("::ffff:203.0.113.5", 200), ("::ffff:203.0.113.66", 403), ("::ffff:192.0.2.1", 403),
], ids=lambda v: str(v))
def test_access_allow_and_deny_lists(lists, echo, src, status):
    check(lists, echo, src, status=status)


def test_access_refused_request_body_never_reaches_upstream(lists, echo):
    before = echo.count
    ex = exchange(lists, echo, proxy=pp.v1("192.0.2.1"), method="POST", path="/upload", body=b"x" * 5000)
    assert ex.status == 403 and ex.response.body == DEFAULT_BODY
    assert echo.count == before


def test_access_each_request_of_a_keepalive_connection_is_decided_on_its_own(lists, echo, build):
    with pp.Connection(lists.port, proxy=pp.v2("203.0.113.5")) as conn:
        statuses = []
        for i, (host, path) in enumerate([("admin.example.com", "/admin"), ("example.com", "/"),
                                          ("admin.example.com", "/admin/again"), ("example.com", "/x")]):
            resp = conn.request(pp.build_request(path=path, host=host, close=(i == 3),
                                                 headers=[("x-test-id", f"ka-access-{build}-{i}")]))
            statuses.append(resp.status)
    assert statuses == [403, 200, 403, 200]
    assert [len(echo.find("x-test-id", f"ka-access-{build}-{i}")) for i in range(4)] == [0, 1, 0, 1]


def test_access_refused_over_http2(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration={"access": {"allow": ["127.0.0.2"]}},
                                       allow_requests_without_proxy_protocol=True))
    ok = exchange_h2(env, echo, source="127.0.0.2")
    assert ok.status == 200 and ok.reached_upstream
    no = exchange_h2(env, echo, source="127.0.0.3")
    assert no.status == 403 and no.response.body == DEFAULT_BODY
    assert no.response.header("content-type") == "text/plain"
    assert not no.reached_upstream


# -- IPv4 and IPv6 are separate --------------------------------------------------------------------

@pytest.mark.parametrize("src,path,status,rule", [
    ("2001:db8::5", "/v6only", 200, "v6only"),
    ("203.0.113.5", "/v6only", 403, "v6only"),
    ("::ffff:203.0.113.5", "/v6only", 403, "v6only"),
    ("203.0.113.5", "/v4only", 200, "v4only"),
    ("2001:db8::5", "/v4only", 403, "v4only"),
], ids=["v6-in-::/0", "v4-not-in-::/0", "mapped-not-in-::/0", "v4-in-0/0", "v6-not-in-0/0"])
def test_access_ipv4_and_ipv6_are_separate(lists, echo, src, path, status, rule):
    check(lists, echo, src, path=path, status=status, rule=rule)


# -- rules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("src,host,path,status,rule", [
    ("203.0.113.10", "admin.example.com", "/admin/users", 200, "admin"),
    ("203.0.113.5", "admin.example.com", "/admin/users", 403, "admin"),
    ("203.0.113.5", "ADMIN.Example.COM:8443", "/admin", 403, "admin"),
    ("203.0.113.5", "admin.example.com", "/administrator", 403, "admin"),
    ("203.0.113.5", "admin.example.com", "/admin?x=1", 403, "admin"),
    ("203.0.113.5", "api.internal.example.com", "/admin", 403, "admin"),
    ("203.0.113.10", "a.b.internal.example.com:80", "/admin", 200, "admin"),
    ("203.0.113.5", "internal.example.com", "/admin", 200, None),       # bare suffix: no match
    ("203.0.113.5", "xinternal.example.com", "/admin", 200, None),      # not a subdomain
    ("203.0.113.5", "other.example.com", "/admin", 200, None),          # host does not match
    ("203.0.113.5", "admin.example.com", "/Admin", 200, None),          # paths are case-sensitive
], ids=["exact-allowed", "exact-denied", "case-and-port", "plain-prefix", "query", "wildcard",
        "wildcard-deep", "bare-suffix", "not-subdomain", "other-host", "path-case"])
def test_access_rule_hosts_and_path_prefixes(lists, echo, src, host, path, status, rule):
    check(lists, echo, src, path=path, host=host, status=status, rule=rule)


def test_access_rule_path_prefix_ignores_the_query_string(lists, echo):
    # /search?next=/public: the path is /search, so rule "public" does not apply: top level refuses
    check(lists, echo, "192.0.2.1", path="/search?next=/public", status=403, rule=None)
    check(lists, echo, "192.0.2.1", path="/public?next=/admin", host="admin.example.com",
          status=200, rule="public")


def test_access_rule_replaces_the_top_level_lists(lists, echo):
    # 192.0.2.1 is outside the top-level allow list, but rule "public" has no lists: everyone passes.
    check(lists, echo, "192.0.2.1", path="/assets/app.js", status=200, rule="public")
    # 203.0.113.66 is in the top-level deny list; rule "public" does not deny it
    check(lists, echo, "203.0.113.66", path="/public", status=200, rule="public")


def test_access_rule_with_hosts_only(lists, echo):
    check(lists, echo, "192.0.2.1", host="open.example.com", path="/anything", status=200, rule="open_host")
    check(lists, echo, "203.0.113.5", host="Open.Example.Com", path="/", status=403, rule="open_host")


def test_access_first_matching_rule_decides(lists, echo):
    check(lists, echo, "203.0.113.2", path="/order/x", status=403, rule="first")
    check(lists, echo, "203.0.113.1", path="/order/x", status=200, rule="first")


def test_access_rule_host_over_http2_authority(envoy_factory, echo, wasm):
    env = envoy_factory(E.EnvoyOptions(configuration=LISTS, allow_requests_without_proxy_protocol=True))
    # 127.0.0.2 is outside every list: rule "public" lets it through, rule "admin" (via :authority) not
    ex = exchange_h2(env, echo, path="/public/x", source="127.0.0.2")
    assert ex.status == 200
    ex = exchange_h2(env, echo, path="/admin", host="admin.example.com", source="127.0.0.2")
    assert ex.status == 403 and not ex.reached_upstream
    assert ex.log()["rule"] == "admin"


# -- dry_run -----------------------------------------------------------------------------------------

def test_access_rule_dry_run_lets_refused_request_through_and_counts_it(lists, echo):
    ex = check(lists, echo, "203.0.113.5", path="/dry", status=200, rule="dry", decision="dry_run_deny")
    assert ex.upstream["path"] == "/dry"
    check(lists, echo, "198.51.100.1", path="/dry", status=200, rule="dry")


DRY = {"forward": {"headers": ["x-real-ip"]},
       "access": {"mode": "dry_run", "allow": ["203.0.113.0/24"],
                  "rules": [{"name": "strict", "path_prefixes": ["/strict"], "allow": ["203.0.113.10"],
                             "mode": "enforce"},
                            {"name": "nomode", "path_prefixes": ["/nomode"], "allow": ["203.0.113.10"]}]}}


@pytest.fixture(scope="module")
def dry(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=DRY))


def test_access_dry_run_request_goes_on_unchanged(dry, echo):
    ex = check(dry, echo, "198.51.100.1", status=200, decision="dry_run_deny")
    assert ex.upstream_values("x-real-ip") == ["198.51.100.1"]
    check(dry, echo, "203.0.113.5", status=200, decision="allow")


def test_access_rule_mode_enforce_overrides_top_level_dry_run(dry, echo):
    check(dry, echo, "203.0.113.5", path="/strict", status=403, rule="strict")


def test_access_rule_mode_defaults_to_the_top_level_mode(dry, echo):
    # The contract (docs/access.md) leaves a rule without "mode" open; the filter inherits the top-level mode (so a
    # whole configuration can be trialled with one switch). README documents the choice.
    check(dry, echo, "203.0.113.5", path="/nomode", status=200, rule="nomode", decision="dry_run_deny")


# -- unknown clients, deny_status / deny_body ------------------------------------------------------

UNKNOWN = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
           "access": {"deny": ["203.0.113.66"], "deny_status": 451, "deny_body": "go away\n",
                      "rules": [{"name": "allowlisted", "path_prefixes": ["/allowlisted"],
                                 "allow": ["203.0.113.0/24"]}]}}


@pytest.fixture(scope="module")
def unknown(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=UNKNOWN))


def xff(v):
    return [("X-Forwarded-For", v)]


def test_access_unknown_client_passes_without_allow_list(unknown, echo):
    before = unknown.settled_stats()
    ex = exchange(unknown, echo, proxy=pp.v1("10.0.0.1"), headers=xff("junk"))
    assert ex.status == 200 and ex.upstream_values("x-real-ip") == []
    assert (ex.log()["client_ip"], ex.log()["decision"]) == (None, None)
    assert E.counter_delta(unknown, before, {"client_ip.allowed": 1, "client_ip.invalid": 1}) == \
        {"client_ip.allowed": 1, "client_ip.invalid": 1}


def test_access_unknown_client_refused_when_allow_list_in_force(unknown, echo):
    before = unknown.settled_stats()
    ex = exchange(unknown, echo, proxy=pp.v1("10.0.0.1"), path="/allowlisted", headers=xff("junk"))
    assert ex.status == 451 and ex.response.body == b"go away\n"
    assert not ex.reached_upstream
    assert (ex.log()["client_ip"], ex.log()["decision"], ex.log()["rule"]) == (None, "deny", "allowlisted")
    exp = {"client_ip.denied": 1, "client_ip.invalid": 1, "client_ip.rule.allowlisted.denied": 1}
    assert E.counter_delta(unknown, before, exp) == exp


def test_access_deny_status_and_deny_body(unknown, echo):
    ex = exchange(unknown, echo, proxy=pp.v1("10.0.0.1"), headers=xff("203.0.113.66"))
    assert ex.status == 451
    assert ex.response.body == b"go away\n"
    assert ex.response.header("content-type") == "text/plain"
    assert not ex.reached_upstream


def test_access_match_client_checks_the_resolved_client(unknown, echo):
    # the downstream 10.0.0.1 is not denied; the client it forwards for is
    ex = exchange(unknown, echo, proxy=pp.v1("10.0.0.1"), headers=xff("203.0.113.66"))
    assert ex.status == 451
    ex = exchange(unknown, echo, proxy=pp.v1("203.0.113.66"), headers=xff("10.0.0.9"))
    assert ex.status == 451  # untrusted downstream: it is the client


# -- match: downstream ---------------------------------------------------------------------------------

DOWNSTREAM = {"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
              "access": {"match": "downstream", "allow": ["10.0.0.0/8"]}}


@pytest.fixture(scope="module")
def match_downstream(envoy_factory, wasm):
    return envoy_factory(E.EnvoyOptions(configuration=DOWNSTREAM))


def test_access_match_downstream_checks_the_downstream_address(match_downstream, echo):
    ex = exchange(match_downstream, echo, proxy=pp.v1("10.0.0.1"), headers=xff("198.51.100.1"))
    assert ex.status == 200
    assert ex.upstream_values("x-real-ip") == ["198.51.100.1"]  # the client is still resolved
    ex = exchange(match_downstream, echo, proxy=pp.v1("203.0.113.7"), headers=xff("10.0.0.9"))
    assert ex.status == 403 and not ex.reached_upstream


def test_access_match_downstream_with_unknown_client(match_downstream, echo):
    ex = exchange(match_downstream, echo, proxy=pp.v1("10.0.0.1"), headers=xff("junk"))
    # the downstream is known and allowed; the client stays unknown (nothing forwarded)
    assert ex.status == 200
    assert ex.upstream_values("x-real-ip") == []
    assert (ex.log()["client_ip"], ex.log()["decision"]) == (None, None)


def test_access_match_downstream_mapped_downstream_is_ipv4(match_downstream, echo):
    ex = exchange(match_downstream, echo, proxy=pp.v2("::ffff:10.0.0.1"), headers=xff("198.51.100.1"))
    assert ex.status == 200 and ex.upstream_values("x-real-ip") == ["198.51.100.1"]


# -- the path the rules see is the one Envoy routes ------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True], ids=["envoy-leaves-the-path", "envoy-normalizes"])
def test_access_rule_path_prefix_cannot_be_walked_around(envoy_factory, echo, wasm, normalize):
    """path_prefixes match the filter's normalised copy of :path (docs/access.md): dot-segments,
    %-encoded characters and doubled slashes cannot walk around a rule. With the HCM's
    normalize_path and merge_slashes off, Envoy hands the path over as sent and the filter alone
    stops it; with them on (as the docs advise), the same holds."""
    env = envoy_factory(E.EnvoyOptions(configuration=LISTS, normalize_path=normalize,
                                       merge_slashes=normalize))
    for path in ["/public/../admin", "/%61dmin", "//admin", "/./admin/x", "/%2Fadmin", "/public\\..\\admin"]:
        ex = exchange(env, echo, proxy=pp.v2("203.0.113.5"), host="admin.example.com", path=path)
        assert ex.status == 403 and ex.log()["rule"] == "admin", (path, ex.status)
        if not normalize:  # the filter decided on its copy; Envoy logged the path as sent
            assert ex.log()["path"] == path, ex.log()["path"]
