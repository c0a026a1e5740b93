"""docs/geo.md, country and network owner: MaxMind DB files as sources, served by a real nginx to a
real Envoy 1.40; `country:` and `asn:` entries in allow, deny and rules, in HTTP and network mode;
the two headers (forged values removed); filter state `wasm.client_country` / `wasm.client_asn` in
the access log; a database refreshed and a bad one rejected (last good kept); `on_unavailable`
both ways; a city-sized file refused with its reason; the configuration errors.

The small databases are written here with mmdb-writer in MaxMind's layout (`country.iso_code`,
`autonomous_system_number`), so every expectation is exact. The real ones (`make geo-data`:
ip-location-db's country database, an ASN database written from ip-location-db's CSV, the GeoLite2
City of maxminddb-geolite2) are never asked for a typed answer: MaxMind's reference reader (PyPI
maxminddb) says what they hold, and the filter must agree. Client addresses come in PROXY v2
headers (the gateway's proxy_protocol listener filter): only loopback is ever connected to."""
from __future__ import annotations

import ipaddress
import time

import pytest

from harness import envoy as E
from harness import geo as G
from harness import listserver as L
from harness import manifests
from harness import network as N
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

REFRESH_S = 10
REFRESH_WAIT = REFRESH_S + 5

# -- the small databases: exact contents --------------------------------------------------------

DE, KP, US, FR = "203.0.113.7", "203.0.113.200", "198.51.100.5", "198.18.0.9"
NO_COUNTRY = "192.0.2.5"       # held by the database, in a record without a country
UNKNOWN = "100.64.0.1"          # not in the database at all
DE6, KP6 = "2001:db8:1::7", "2001:db8:2::7"

COUNTRIES = [
    ("203.0.113.0/25", G.country("DE")), ("203.0.113.128/25", G.country("KP")),
    ("198.51.100.0/24", G.country("US")), ("198.18.0.0/24", G.country("FR")),
    ("192.0.2.0/24", {"continent": {"code": "EU"}}),
    ("2001:db8:1::/48", G.country("DE")), ("2001:db8:2::/48", G.country("KP")),
]
NETWORKS = [
    ("203.0.113.0/25", G.asn(64496)), ("203.0.113.128/25", G.asn(64497)),
    ("198.51.100.0/24", G.asn(64500)), ("198.18.0.0/24", G.asn(64501)),
    ("2001:db8:1::/48", G.asn(64496)),
]
EXPECTED = {DE: ("DE", "64496"), KP: ("KP", "64497"), US: ("US", "64500"), FR: ("FR", "64501"),
            NO_COUNTRY: (None, None), UNKNOWN: (None, None), DE6: ("DE", "64496"), KP6: ("KP", None)}


def source(path: str, cluster: str = "geo", **extra) -> dict:
    return dict({"cluster": cluster, "authority": "geo.test", "path": path, "format": "mmdb",
                 "refresh_s": REFRESH_S, "timeout_ms": 5000}, **extra)


GEO_SOURCES = {
    "countries": source("/countries.mmdb", country_field="country.iso_code"),
    "networks": source("/networks.mmdb", asn_field="autonomous_system_number"),
}
HEADERS = {"country_header": "x-client-country", "asn_header": "x-client-asn"}

# HTTP mode: country and AS number in the top-level deny list and in two rules' allow lists.
HTTP_CONFIG = {
    "sources": GEO_SOURCES,
    "geo": {"country": "countries", "asn": "networks"},
    "access": {
        "deny": ["country:KP", "asn:64500"],
        "rules": [
            {"name": "germany", "path_prefixes": ["/de"], "allow": ["country:de"]},
            {"name": "network", "path_prefixes": ["/as"], "allow": ["asn:AS64496", "198.51.100.0/24"]},
            {"name": "no-france", "path_prefixes": ["/fr"], "deny": ["country:FR"]},
        ],
    },
    "forward": HEADERS,
}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    if not L.nginx_binary():
        pytest.fail("nginx is not installed: run `make nginx`", pytrace=False)
    root = tmp_path_factory.mktemp("geo")
    stamp = time.time() - 100
    L.write_file(root / "countries.mmdb", G.db_bytes(COUNTRIES), stamp)
    L.write_file(root / "networks.mmdb", G.db_bytes(NETWORKS, "GeoLite2-ASN"), stamp)
    for name in G.REAL_FILES:
        (root / name).symlink_to(G.real_db(name))
    server = L.Nginx(str(root), workdir=str(tmp_path_factory.mktemp("nginx")))
    server.root_dir = root
    with server:
        yield server


def options(configuration, web, **kw) -> E.EnvoyOptions:
    return E.EnvoyOptions(configuration=configuration, clusters=[L.envoy_cluster("geo", web.port)], **kw)


def thread_of(line: str) -> str:
    """The thread id of an Envoy log line: ``[2026-11-29 15:07:33.585][21677][info]...``."""
    return line.split("]")[1].lstrip("[")


def wait_loaded(env, *names, timeout: float = 20.0, workers: int = 1):
    """Waits until every source in ``names`` logged its first load (`source X: loaded ...`) and the
    VM of each of ``workers`` worker threads adopted it (until then a worker decides without it)."""
    for name in names:
        env.wait_log(f"source {name}: loaded", timeout=timeout)

        def adopted():
            lines = env.log_text().splitlines()
            main = {thread_of(l) for l in lines if "starting main dispatch loop" in l}
            return len({thread_of(l) for l in lines if f"source {name}: adopted version" in l} - main) >= workers
        procs.wait_until(adopted, timeout, interval=0.1, what=f"{workers} worker(s) adopting {name}")


def check(env, echo, src, path="/", status=200, headers=()):
    ex = exchange(env, echo, proxy=pp.v2(src), path=path, headers=headers)
    assert ex.status == status, (src, path, ex.status, ex.response.text)
    return ex


@pytest.fixture(scope="module")
def http(envoy_factory, wasm, web):
    env = envoy_factory(options(HTTP_CONFIG, web))
    wait_loaded(env, "countries", "networks")
    return env


# -- lists: allow, deny, rules -------------------------------------------------------------------

@pytest.mark.parametrize("src", [KP, KP6], ids=["v4", "v6"])
def test_a_country_in_the_deny_list_refuses_that_country(http, echo, src):
    ex = check(http, echo, src, status=403)
    assert not ex.reached_upstream
    assert ex.log()["decision"] == "deny"


@pytest.mark.parametrize("src", [DE, DE6, FR, NO_COUNTRY, UNKNOWN],
                         ids=["de", "de-v6", "fr", "no-country", "not-in-database"])
def test_a_country_deny_list_admits_every_other_address(http, echo, src):
    check(http, echo, src, status=200)


def test_an_asn_in_the_deny_list_refuses_that_network(http, echo):
    ex = check(http, echo, US, status=403)
    assert ex.log()["decision"] == "deny"


@pytest.mark.parametrize("src,status", [(DE, 200), (DE6, 200), (FR, 403), (NO_COUNTRY, 403), (UNKNOWN, 403)],
                         ids=["de", "de-v6", "fr", "no-country", "not-in-database"])
def test_a_rule_allowing_a_country_refuses_other_countries_and_addresses_without_one(http, echo, src, status):
    ex = check(http, echo, src, path="/de/page", status=status)
    if status == 403:
        assert ex.log()["rule"] == "germany"


@pytest.mark.parametrize("src,status", [(DE, 200), (DE6, 200), (FR, 403), (UNKNOWN, 403)],
                         ids=["as64496", "as64496-v6", "as64501", "no-asn"])
def test_a_rule_allowing_an_asn_admits_that_network_only(http, echo, src, status):
    ex = check(http, echo, src, path="/as/page", status=status)
    if status == 403:
        assert ex.log()["rule"] == "network"


def test_a_rule_denying_a_country_refuses_it_on_its_paths_only(http, echo):
    assert check(http, echo, FR, path="/fr/x", status=403).log()["rule"] == "no-france"
    check(http, echo, FR, path="/elsewhere", status=200)


# -- headers and filter state ----------------------------------------------------------------------

@pytest.mark.parametrize("src", list(EXPECTED), ids=["de", "kp", "us", "fr", "no-country", "unknown",
                                                     "de-v6", "kp-v6"])
def test_the_access_log_has_the_country_and_asn_filter_state(http, echo, src):
    ex = exchange(http, echo, proxy=pp.v2(src), path="/as/log" if src in (DE, DE6) else "/log")
    entry = ex.log()
    assert (entry["client_country"], entry["client_asn"]) == EXPECTED[src], entry


@pytest.mark.parametrize("src", [DE, DE6], ids=["v4", "v6"])
def test_the_headers_carry_the_database_country_and_asn(http, echo, src):
    ex = check(http, echo, src)
    assert ex.upstream_value("x-client-country") == "DE"
    assert ex.upstream_value("x-client-asn") == "64496"


FORGED = [("x-client-country", "US"), ("X-Client-Country", "FR"), ("x-client-asn", "15169"),
          ("X-CLIENT-ASN", "13335")]


def test_forged_country_and_asn_headers_are_replaced(http, echo):
    ex = check(http, echo, DE, headers=FORGED)
    assert ex.upstream_values("x-client-country") == ["DE"]
    assert ex.upstream_values("x-client-asn") == ["64496"]


@pytest.mark.parametrize("src", [NO_COUNTRY, UNKNOWN], ids=["no-country", "not-in-database"])
def test_forged_headers_are_removed_when_the_database_knows_nothing(http, echo, src):
    ex = check(http, echo, src, headers=FORGED + [("x_client_country", "US")])
    names = [k for k, _ in ex.upstream["headers"]]
    assert not [n for n in names if n.replace("_", "-") in ("x-client-country", "x-client-asn")], names


# -- the real databases (make geo-data), answers from the reference reader ---------------------

# Well-known public addresses (data in a PROXY header, never connected to): name servers of Google,
# Cloudflare, Quad9, RIPE NCC, APNIC, NIC.br and AfriNIC, v4 and v6.
PUBLIC = ["8.8.8.8", "1.1.1.1", "9.9.9.9", "193.0.6.139", "202.12.29.205", "200.160.0.8", "196.216.2.1",
          "2001:4860:4860::8888", "2606:4700:4700::1111", "2001:67c:2e8:22::c100:68b"]


def public_sample(n: int = 40, seed: int = 17) -> list:
    """``n`` addresses spread over the public IPv4 and IPv6 space (fixed seed), beside PUBLIC."""
    import random
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        if len(out) % 2:
            ip = ipaddress.IPv6Address((0x2000 + rng.randrange(0x1000)) << 112 | rng.getrandbits(112))
        else:
            ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if ip.is_global:
            out.append(str(ip))
    return out


class RealAnswers:
    """What the reference reader says of an address in the real databases."""

    def __init__(self):
        self.countries = G.reference(G.real_db("country.mmdb"))
        self.networks = G.reference(G.real_db("asn.mmdb"))

    def country(self, ip):
        return G.field(self.countries.get(ip), "country_code")

    def asn(self, ip):
        n = G.field(self.networks.get(ip), "autonomous_system_number")
        return None if n is None else str(n)


@pytest.fixture(scope="module")
def real():
    """The reference answers, the policy built from them, and an Envoy deciding with it."""
    answers = RealAnswers()
    first = PUBLIC[0]
    denied_country = answers.country(first)
    # A network to deny that is in another country than the denied one.
    other = next(ip for ip in PUBLIC if answers.country(ip) not in (None, denied_country)
                 and answers.asn(ip) is not None)
    denied_asn = answers.asn(other)
    allowed_country = next(answers.country(ip) for ip in PUBLIC
                           if answers.country(ip) not in (None, denied_country)
                           and answers.asn(ip) != denied_asn)
    assert None not in (denied_country, denied_asn, allowed_country), "the reference reader knows these"
    return answers, denied_country, denied_asn, allowed_country


@pytest.fixture(scope="module")
def real_envoy(envoy_factory, wasm, web, real):
    _, denied_country, denied_asn, allowed_country = real
    config = {
        "sources": {
            "ipdb": source("/country.mmdb", country_field="country_code", refresh_s=3600),
            "asns": source("/asn.mmdb", asn_field="autonomous_system_number", refresh_s=3600),
        },
        "geo": {"country": "ipdb", "asn": "asns"},
        "access": {
            "deny": [f"country:{denied_country}", f"asn:{denied_asn}"],
            "rules": [{"name": "only", "path_prefixes": ["/only"], "allow": [f"country:{allowed_country}"]}],
        },
        "forward": HEADERS,
    }
    env = envoy_factory(options(config, web))
    wait_loaded(env, "ipdb", "asns", timeout=60)
    return env


@pytest.mark.parametrize("src", PUBLIC)
def test_real_databases_deny_the_country_and_asn_the_reference_reader_gives(real_envoy, echo, real, src):
    answers, denied_country, denied_asn, _ = real
    country, asn = answers.country(src), answers.asn(src)
    refused = country == denied_country or asn == denied_asn
    ex = check(real_envoy, echo, src, status=403 if refused else 200)
    if not refused:
        assert (ex.upstream_value("x-client-country"), ex.upstream_value("x-client-asn")) == (country, asn)


@pytest.mark.parametrize("src", PUBLIC)
def test_real_database_allow_rule_admits_the_country_the_reference_reader_gives(real_envoy, echo, real, src):
    answers, denied_country, denied_asn, allowed_country = real
    country, asn = answers.country(src), answers.asn(src)
    top_refused = country == denied_country or asn == denied_asn
    # The rule decides /only: its allow list (and, in a rule without deny, nothing else).
    ex = exchange(real_envoy, echo, proxy=pp.v2(src), path="/only")
    assert ex.status == (200 if country == allowed_country else 403), (src, country, asn, top_refused)


def test_real_databases_agree_with_the_reference_reader_in_the_access_log(real_envoy, echo, real):
    answers = real[0]
    sample = public_sample()
    seen = []
    for src in sample:
        entry = exchange(real_envoy, echo, proxy=pp.v2(src), path="/log").log()
        seen.append((src, entry["client_country"], entry["client_asn"]))
    want = [(src, answers.country(src), answers.asn(src)) for src in sample]
    assert seen == want
    assert sum(1 for _, c, _ in want if c) >= len(sample) // 2, "the sample hits mostly known addresses"


# -- refresh: a new database adopted, a bad one rejected, the last good kept --------------------

REFRESH_CONFIG = {
    "sources": {"moving": source("/moving.mmdb", country_field="country.iso_code")},
    "geo": {"country": "moving"},
    "access": {"deny": ["country:KP"]},
    "forward": {"country_header": "x-client-country"},
}


def test_a_refreshed_database_is_adopted_and_a_bad_one_rejected_keeping_the_last_good(
        envoy_factory, wasm, web, echo):
    path = web.root_dir / "moving.mmdb"
    L.write_file(path, G.db_bytes([("203.0.113.0/24", G.country("DE"))]), time.time() - 50)
    env = envoy_factory(options(REFRESH_CONFIG, web))
    wait_loaded(env, "moving")
    assert check(env, echo, DE).upstream_value("x-client-country") == "DE"

    # The file replaced: the next refresh adopts the new answer (a refused country now).
    L.write_file(path, G.db_bytes([("203.0.113.0/24", G.country("KP"))]), time.time() - 40)
    procs.wait_until(lambda: exchange(env, echo, proxy=pp.v2(DE)).status == 403, REFRESH_WAIT,
                     interval=0.2, what="the refreshed database refusing 203.0.113.7 (now KP)")
    assert env.counter("client_ip.source.moving.fetch_ok") == 2

    # A file cut short, then one whose records lack the field: each rejected with its reason,
    # counted, and the last good database keeps deciding.
    good = G.db_bytes([("203.0.113.0/24", G.country("DE"))])
    bad = [(good[: len(good) // 2], "body rejected"),
           (G.db_bytes([("203.0.113.0/24", {"continent": {"code": "EU"}})]),
            "no record of the database has the country_field")]
    for i, (body, reason) in enumerate(bad, 1):
        L.write_file(path, body, time.time() - 30 + i)
        procs.wait_until(lambda: env.counter("client_ip.source.moving.rejected") >= i, REFRESH_WAIT + 8,
                         interval=0.2, what=f"bad database {i} rejected")
        line = env.wait_log(reason)
        assert "source moving: body rejected" in line and "keeping the last good" in line, line
        ex = check(env, echo, DE, status=403)
        assert ex.log()["client_country"] == "KP"
    assert env.counter("client_ip.source.moving.fetch_ok") == 2


# -- unavailable: before the first database arrives --------------------------------------------

def unavailable_config(path: str, on_unavailable: str) -> dict:
    return {
        "sources": {"late": source(path, country_field="country.iso_code", on_unavailable=on_unavailable)},
        "geo": {"country": "late"},
        "access": {"deny": ["country:KP"]},
        "forward": {"country_header": "x-client-country"},
    }


def test_on_unavailable_empty_before_the_first_database_means_no_country(envoy_factory, wasm, web, echo):
    env = envoy_factory(options(unavailable_config("/late-empty.mmdb", "empty"), web))
    procs.wait_until(lambda: env.counter("client_ip.source.late.fetch_failed") >= 1, 10,
                     what="the first fetch failing (404)")
    # No database: KP is not known to be KP, so the deny list of countries refuses no one.
    ex = check(env, echo, KP, status=200, headers=[("x-client-country", "US")])
    assert ex.upstream_values("x-client-country") == []
    assert ex.log()["client_country"] is None
    # The database arrives: the same address is refused.
    L.write_file(web.root_dir / "late-empty.mmdb", G.db_bytes(COUNTRIES))
    procs.wait_until(lambda: exchange(env, echo, proxy=pp.v2(KP)).status == 403, REFRESH_WAIT,
                     interval=0.2, what="the first database refusing KP")


def test_on_unavailable_refuse_answers_503_until_the_first_database_arrives(envoy_factory, wasm, web, echo):
    env = envoy_factory(options(unavailable_config("/late-refuse.mmdb", "refuse"), web))
    procs.wait_until(lambda: env.counter("client_ip.source.late.fetch_failed") >= 1, 10,
                     what="the first fetch failing (404)")
    for src in (DE, KP):
        ex = check(env, echo, src, status=503)
        assert ex.response.body == b"source unavailable\n"
        assert ex.log()["details"] == "client_ip_filter_source_unavailable"
    L.write_file(web.root_dir / "late-refuse.mmdb", G.db_bytes(COUNTRIES))
    procs.wait_until(lambda: exchange(env, echo, proxy=pp.v2(DE)).status == 200, REFRESH_WAIT,
                     interval=0.2, what="the first database admitting DE")
    check(env, echo, KP, status=403)


# -- limits: a city-sized database --------------------------------------------------------------

CITY_REASON = "a city database does not fit, a country or ASN database does"


def test_a_city_database_over_envoys_32_mib_is_refused_with_its_reason(envoy_factory, wasm, web, echo):
    """The GeoLite2 City file of maxminddb-geolite2 (56 MB) is over Envoy's 32 MiB limit on a fetched
    body: Envoy drops the response, the fetch fails, the warning says a city database does not fit."""
    assert G.real_db("city.mmdb").stat().st_size > 32 * 1024 * 1024
    config = {"sources": {"city": source("/city.mmdb", country_field="country.iso_code")},
              "geo": {"country": "city"}, "access": {"allow": ["country:DE"]},
              "forward": {"country_header": "x-client-country"}}
    env = envoy_factory(options(config, web))
    line = env.wait_log("source city: fetch failed", timeout=30)
    assert CITY_REASON in line, line
    assert env.counter("client_ip.source.city.fetch_failed") >= 1
    assert env.counter("client_ip.source.city.fetch_ok") == 0
    # No database: an allow list of countries admits no one.
    assert check(env, echo, DE, status=403).log()["client_country"] is None


def test_a_database_over_max_bytes_is_rejected_with_its_size_and_the_last_good_kept(
        envoy_factory, wasm, web, echo):
    small = G.db_bytes([("203.0.113.0/24", G.country("DE"))])
    # The same country for 600 more networks, each its own record: well over a max_bytes of 16 KiB.
    big = G.db_bytes([("203.0.113.0/24", G.country("KP"))]
                     + [(f"10.{i // 256}.{i % 256}.0/24", G.country(f"A{chr(65 + i % 26)}")) for i in range(600)]
                     + [(f"2001:db8:{i:x}::/48", {"country": {"iso_code": "DE", "n": i}}) for i in range(600)])
    limit = 16 * 1024
    assert len(small) < limit < len(big)
    path = web.root_dir / "limited.mmdb"
    L.write_file(path, small, time.time() - 50)
    config = {"sources": {"limited": source("/limited.mmdb", country_field="country.iso_code",
                                            max_bytes=limit)},
              "geo": {"country": "limited"}, "access": {"deny": ["country:KP"]}}
    env = envoy_factory(options(config, web))
    wait_loaded(env, "limited")
    L.write_file(path, big, time.time() - 40)
    procs.wait_until(lambda: env.counter("client_ip.source.limited.rejected") >= 1, REFRESH_WAIT,
                     interval=0.2, what="the database over max_bytes rejected")
    line = env.wait_log("source limited: body rejected")
    assert f"file of {len(big)} bytes is over max_bytes ({limit}); {CITY_REASON}" in line, line
    assert check(env, echo, DE).log()["client_country"] == "DE"


# -- configuration errors: Envoy refuses, one error line with the key path -----------------------

MMDB = {"cluster": "geo", "authority": "geo.test", "path": "/c.mmdb", "format": "mmdb"}
WITH_GEO = {"sources": {"c": dict(MMDB, country_field="country.iso_code"),
                        "a": dict(MMDB, path="/a.mmdb", asn_field="autonomous_system_number")},
            "geo": {"country": "c", "asn": "a"}}


def with_geo(**sections) -> dict:
    return dict(WITH_GEO, **sections)


# (id, configuration, strings the one error line must contain)
BAD = [
    ("country-entry-without-geo-country", {"access": {"deny": ["country:KP"]}},
     ["access.deny[0]", "needs geo.country"]),
    ("asn-entry-without-geo-asn",
     {"sources": WITH_GEO["sources"], "geo": {"country": "c"}, "access": {"rules": [{"name": "r", "allow": ["asn:64496"]}]}},
     ["access.rules[0].allow[0]", "needs geo.asn"]),
    ("country-code-not-two-letters", with_geo(access={"deny": ["country:K1"]}),
     ['access.deny[0]: "country:K1" is not a country']),
    ("country-code-three-letters", with_geo(access={"allow": ["country:DEU"]}),
     ['access.allow[0]: "country:DEU" is not a country']),
    ("asn-zero", with_geo(access={"deny": ["asn:0"]}), ['access.deny[0]: "asn:0" is not an asn']),
    ("asn-over-32-bits", with_geo(access={"deny": ["asn:4294967296"]}),
     ['access.deny[0]: "asn:4294967296" is not an asn']),
    ("asn-not-a-number", with_geo(access={"deny": ["asn:ASX"]}), ['access.deny[0]: "asn:ASX" is not an asn']),
    ("geo-entry-in-trusted-proxies", with_geo(client_ip={"trusted_proxies": ["country:KP"]}),
     ["client_ip.trusted_proxies[0]", "country: and asn:"]),
    ("geo-name-not-a-source", {"geo": {"asn": "nope"}}, ['geo.asn: "nope" names no source']),
    ("geo-name-not-mmdb", {"sources": {"x": {"cluster": "geo", "authority": "g", "path": "/x"}},
                           "geo": {"country": "x"}},
     ['geo.country: source "x" is not of format "mmdb"']),
    ("geo-country-source-without-country-field",
     {"sources": {"a": WITH_GEO["sources"]["a"]}, "geo": {"country": "a"}},
     ['geo.country: source "a" has no country_field']),
    ("mmdb-source-with-neither-field", {"sources": {"x": MMDB}}, ["sources.x: an mmdb source names"]),
    ("empty-field-path", {"sources": {"x": dict(MMDB, country_field="")}},
     ['sources.x.country_field: "" is not a field path']),
    ("malformed-field-path", {"sources": {"x": dict(MMDB, asn_field="a..b")}},
     ['sources.x.asn_field: "a..b" is not a field path']),
    ("field-on-a-text-source", {"sources": {"x": {"cluster": "g", "authority": "g", "path": "/x",
                                                  "country_field": "c"}}},
     ['sources.x.country_field: is only for sources of format "mmdb"']),
    ("headers-in-network-mode", with_geo(filter_type="network", forward={"country_header": "x-client-country"}),
     ['forward: {"country_header":"x-client-country"} is not available with filter_type "network"']),
]


@pytest.mark.parametrize("configuration,needles", [(c, n) for _, c, n in BAD], ids=[i for i, _, _ in BAD])
def test_geo_config_error_envoy_refuses_to_start_and_logs_key_path(envoy_factory, wasm, configuration, needles):
    refused = envoy_factory.refused(E.EnvoyOptions(configuration=configuration,
                                                   clusters=[L.envoy_cluster("geo", 9)]))
    assert refused.exit_status not in (None, 0), "Envoy started with a bad configuration"
    errors = [l for l in refused.log.splitlines() if "][error][wasm]" in l and "wasm log" in l]
    assert len(errors) == 1, f"expected exactly one error line from the filter, got {errors}"
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"


# -- network mode: the same entries decide connections -----------------------------------------

ALPHA = "alpha.example.com"
NETWORK_CONFIG = {
    "filter_type": "network",
    "sources": GEO_SOURCES,
    "geo": {"country": "countries", "asn": "networks"},
    "access": {
        "deny": ["country:KP", "asn:64500"],
        "rules": [{"name": "alpha", "hosts": [ALPHA], "allow": ["country:DE", "asn:64501"]}],
    },
}


@pytest.fixture(scope="module")
def network(wasm, web, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("geo_network")
    certs = N.Certificates(workdir / "certs", [ALPHA])
    ups = {"alpha": N.Upstream("alpha", tls=certs.pair(ALPHA)).start(), "plain": N.Upstream("plain").start()}
    frags = manifests.load(N.GATEWAY_PASSTHROUGH)
    spec = N.NetworkListener(frags, NETWORK_CONFIG, chains=[N.Chain("alpha", [ALPHA]), N.Chain("plain")])
    env = N.NetworkEnvoy([spec], {"alpha": (ups["alpha"].port, None), "plain": (ups["plain"].port, None),
                                  "geo": (web.port, None)}, workdir=str(workdir), name="geo-network")
    env.start(timeout=60)
    try:
        wait_loaded(env, "countries", "networks")
        yield env, ups, certs
    finally:
        env.stop()
        for u in ups.values():
            u.stop()


def key(src: str, port: int) -> str:
    return f"[{src}]:{port}" if ":" in src else f"{src}:{port}"


def connect(env, upstream, fn):
    opened, accepted = N.upstream_connections(env, upstream.name), upstream.accepted
    out = fn()
    return out, N.settled_count(env, upstream, opened, accepted)


@pytest.mark.parametrize("src,allowed", [(DE, True), (DE6, True), (FR, True), (UNKNOWN, True), (KP, False),
                                         (KP6, False), (US, False)],
                         ids=["de", "de-v6", "fr", "unknown", "kp", "kp-v6", "as64500"])
def test_network_mode_country_and_asn_deny_refuse_the_connection(network, src, allowed):
    env, ups, _ = network
    port = N.unique_port()
    out, accepted = connect(env, ups["plain"], lambda: N.tcp_exchange(env.port, pp.v2(src, sport=port)))
    assert out.served == allowed and accepted == (1 if allowed else 0), out
    entry = env.log_entry(key(src, port))
    assert entry["decision"] == (None if allowed else "deny")
    assert (entry["client_country"], entry["client_asn"]) == EXPECTED[src]


@pytest.mark.parametrize("src,allowed", [(DE, True), (FR, True), (NO_COUNTRY, False), (UNKNOWN, False)],
                         ids=["country-de", "asn-64501", "no-country", "not-in-database"])
def test_network_mode_rule_allows_by_country_or_asn_on_its_sni(network, src, allowed):
    env, ups, certs = network
    port = N.unique_port()
    out, accepted = connect(env, ups["alpha"], lambda: N.tls_exchange(
        env.port, ALPHA, certs.client_context(), pp.v2(src, sport=port)))
    assert out.served == allowed and accepted == (1 if allowed else 0), out
    if allowed:
        assert out.reply == "alpha proxy=- got=ping"
    entry = env.log_entry(key(src, port))
    assert (entry["rule"], entry["decision"]) == ("alpha", None if allowed else "deny")
