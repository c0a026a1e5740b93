"""docs/sources.md "Lists from a list server": sources fetched through an Envoy cluster from a real
nginx (real-format files: FireHOL .netset, Spamhaus drop.txt, AWS ip-ranges.json, GCP cloud.json,
Azure Service Tags) and from a fault-injecting server; formats and select, conditional refresh (304),
each way a body is refused (the last good list keeps deciding), on_unavailable both ways,
max_stale_s, counters and gauges, configuration errors, and one request per refresh at
--concurrency 3 counted at the server.

Refreshes are at least 10 s apart (refresh_s ≥ 10): each module starts its Envoy once and the
tests that wait for a refresh share that wait."""
import time

import pytest

from harness import envoy as E
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.client import exchange

# The integration tests of the contract run on both builds (tests/conftest.py both_builds).
pytestmark = pytest.mark.both_builds

REFRESH_S = 10
# A refresh comes at most refresh_s after the last one (never later: the jitter brings it forward).
REFRESH_WAIT = REFRESH_S + 4


def _missing_nginx() -> str:
    return "" if L.nginx_binary() else "nginx is not installed: run `make nginx`"


@pytest.fixture(scope="module")
def nginx_bin():
    msg = _missing_nginx()
    if msg:
        pytest.fail(msg, pytrace=False)
    return L.nginx_binary()


# -- the real-format files -----------------------------------------------------------------------

FIREHOL = ["192.0.2.0/28", "198.18.0.0/15", "not-a-network", "10.0.0.300", "203.0.113.77"]
DROP = ["192.0.2.128/25", "198.51.100.0/26"]
AWS_V4 = [("13.32.0.0/15", "CLOUDFRONT", "GLOBAL"), ("52.84.0.0/15", "CLOUDFRONT", "GLOBAL"),
          ("3.5.140.0/22", "AMAZON", "ap-northeast-2"), ("3.5.140.0/22", "S3", "ap-northeast-2")]
AWS_V6 = [("2600:9000::/28", "CLOUDFRONT", "GLOBAL"), ("2a05:d07a:a000::/40", "S3", "eu-south-1")]
GCP = [("34.1.208.0/20", "Google Cloud", "africa-south1"), ("34.35.0.0/16", "Google Cloud", "us-east1"),
       ("2600:1900:4000::/44", "Google Cloud", "us-east1"), ("8.8.4.0/24", "Google", "global")]
AZURE = [("AzureFrontDoor.Backend", "", "AzureFrontDoor", ["13.73.248.16/29", "2603:1000:4::/123"]),
         ("Storage.WestEurope", "westeurope", "AzureStorage", ["20.38.108.0/23"])]


def source(path: str, cluster: str = "lists", **extra) -> dict:
    return dict({"cluster": cluster, "authority": "lists.test", "path": path,
                 "refresh_s": REFRESH_S, "timeout_ms": 2000}, **extra)


def check(env, echo, src, path="/", status=200, headers=(), body=None):
    ex = exchange(env, echo, proxy=pp.v2(src), path=path, headers=headers)
    assert ex.status == status, (src, path, ex.response)
    if body is not None:
        assert ex.response.body == body
    return ex


def thread_of(line: str) -> str:
    """The thread id of an Envoy log line: ``[2026-11-29 15:07:33.585][21677][info]...``."""
    return line.split("]")[1].lstrip("[")


def main_thread(env) -> str:
    """The thread id of Envoy's main thread (the one that fetches; it serves no requests)."""
    (line,) = [l for l in env.log_text().splitlines() if "starting main dispatch loop" in l]
    return thread_of(line)


def adopters(env, name: str, version=None) -> set:
    """The worker threads whose VM logged that it adopted ``name``'s list (at ``version``, or any)."""
    main = main_thread(env)
    mark = f"source {name}: adopted version " + ("" if version is None else f"{version} ")
    threads = {thread_of(l) for l in env.log_text().splitlines() if mark in l}
    # proxy-wasm: each worker's VM adopts it (the main thread's VM fetches); native: the process
    # adopts it once, on whichever thread completed the fetch.
    return threads - {main} if env.build == "wasm" else threads


def wait_every_worker_adopted(env, name: str, version=None, timeout: float = 5.0):
    """Waits until each of the ``concurrency`` workers' VMs logged its adoption of ``name``'s list
    (at ``version``): until then a connection may land on a worker still deciding with the old one."""
    # proxy-wasm: one VM, one copy of the list, per worker; the native build holds one per process.
    workers = env.opts.concurrency if env.build == "wasm" else 1
    procs.wait_until(lambda: len(adopters(env, name, version)) >= workers, timeout, interval=0.1,
                     what=f"all {workers} workers adopting {name}"
                          + ("" if version is None else f" version {version}"))


def list_version(ex, name: str) -> str:
    """The version of ``name``'s list that decided the exchange (filter state ``wasm.client_ip_lists``
    in the access log: ``name=version`` per source)."""
    versions = dict(part.split("=", 1) for part in ex.log()["client_ip_lists"].split(","))
    return versions[name]


def wait_status(env, echo, src, path, status, timeout, headers=()):
    """Polls until a request from ``src`` gets ``status`` (a source loading or changing)."""
    def ok():
        return exchange(env, echo, proxy=pp.v2(src), path=path, headers=headers).status == status
    procs.wait_until(ok, timeout, interval=0.1, what=f"{src} {path} -> {status}")


# -- formats, select, refresh, 304, counters, one fetch per refresh at --concurrency 3 ----------

FORMATS = {
    "sources": {
        "firehol": source("/firehol_level1.netset"),
        "drop": source("/drop.txt"),
        "cloudfront": source("/ip-ranges.json", format="aws", select={"service": ["CLOUDFRONT"]}),
        "gcp": source("/cloud.json", format="gcp",
                      select={"service": ["Google Cloud"], "scope": ["us-east1"]}),
        "azure": source("/ServiceTags_Public.json", format="azure",
                        select={"system_service": ["AzureFrontDoor"]}),
    },
    "client_ip": {"trusted_proxies": ["source:cloudfront"]},
    "access": {
        "deny": ["192.0.2.200"],
        "rules": [
            {"name": "firehol", "path_prefixes": ["/firehol"], "deny": ["source:firehol"]},
            {"name": "drop", "path_prefixes": ["/drop"], "deny": ["source:drop"]},
            {"name": "gcp", "path_prefixes": ["/gcp"], "allow": ["source:gcp"]},
            {"name": "azure", "path_prefixes": ["/azure"], "allow": ["source:azure"]},
        ],
    },
}


@pytest.fixture(scope="module")
def web(nginx_bin, tmp_path_factory, build):
    # One list server per build: its request counts and the files the refresh tests rewrite are
    # this build's Envoy's alone (the wasm build's fetches must not count in the native run).
    root = tmp_path_factory.mktemp("lists")
    stamp = time.time() - 100
    L.write_file(root / "firehol_level1.netset", L.netset(FIREHOL), stamp)
    L.write_file(root / "drop.txt", L.drop_txt(DROP), stamp)
    L.write_file(root / "ip-ranges.json", L.aws_ip_ranges(AWS_V4, AWS_V6), stamp)
    L.write_file(root / "cloud.json", L.gcp_cloud_json(GCP), stamp)
    L.write_file(root / "ServiceTags_Public.json", L.azure_service_tags(AZURE), stamp)
    server = L.Nginx(str(root), workdir=str(tmp_path_factory.mktemp("nginx")))
    server.root_dir = root
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def formats(envoy_factory, wasm, web, echo):
    """Envoy at --concurrency 3 with five sources on nginx, loaded."""
    env = envoy_factory(E.EnvoyOptions(configuration=FORMATS, concurrency=3,
                                       clusters=[L.envoy_cluster("lists", web.port)]))
    env.started_at = time.monotonic()
    wait_status(env, echo, "192.0.2.5", "/firehol", 403, 10)
    for name in FORMATS["sources"]:
        procs.wait_until(lambda: env.counter(f"client_ip.source.{name}.fetch_ok") == 1, 10,
                         what=f"{name} loaded")
    # Every VM (three workers) adopts within a tick; the connections land on any of them.
    for name in FORMATS["sources"]:
        wait_every_worker_adopted(env, name)
    return env


def test_text_format_reads_a_firehol_netset(formats, echo):
    check(formats, echo, "192.0.2.5", "/firehol", 403)
    check(formats, echo, "198.19.255.255", "/firehol", 403)
    check(formats, echo, "203.0.113.77", "/firehol", 403)
    check(formats, echo, "192.0.2.16", "/firehol", 200)


def test_text_format_invalid_lines_are_skipped_and_counted(formats):
    assert formats.counter("client_ip.source.firehol.skipped_lines") == 2
    assert formats.counter("client_ip.source.firehol.entries") == 3


def test_text_format_reads_a_spamhaus_drop_txt_with_its_comments(formats, echo):
    check(formats, echo, "192.0.2.129", "/drop", 403)
    check(formats, echo, "198.51.100.63", "/drop", 403)
    check(formats, echo, "198.51.100.64", "/drop", 200)
    assert formats.counter("client_ip.source.drop.skipped_lines") == 0


def test_aws_select_service_cloudfront_ranges_become_trusted_proxies(formats, echo):
    xff = [("x-forwarded-for", "192.0.2.200")]
    # From CloudFront (v4 and v6): X-Forwarded-For is believed, and its client is denied.
    ex = check(formats, echo, "13.33.4.4", "/", 403, headers=xff)
    assert ex.log()["client_ip"] == "192.0.2.200"
    check(formats, echo, "2600:9000::9", "/", 403, headers=xff)
    # From an AWS range of another service: not trusted, the header is ignored.
    ex = check(formats, echo, "3.5.140.9", "/", 200, headers=xff)
    assert ex.log()["client_ip"] == "3.5.140.9"
    assert formats.counter("client_ip.source.cloudfront.entries") == 3


def test_gcp_select_service_and_scope(formats, echo):
    check(formats, echo, "34.35.1.1", "/gcp", 200)
    check(formats, echo, "34.1.208.1", "/gcp", 403)  # another scope
    check(formats, echo, "8.8.4.4", "/gcp", 403)     # another service


def test_azure_select_system_service(formats, echo):
    check(formats, echo, "13.73.248.17", "/azure", 200)
    check(formats, echo, "2603:1000:4::1f", "/azure", 200)
    check(formats, echo, "20.38.108.1", "/azure", 403)


def test_gauges_entries_and_age(formats):
    stats = formats.stats()
    assert stats["client_ip.source.drop.entries"] == 2
    assert stats["client_ip.source.gcp.entries"] == 2
    assert stats["client_ip.source.azure.entries"] == 2
    assert 0 <= stats["client_ip.source.drop.age_s"] <= 5


def test_first_load_is_logged_once_at_info(formats):
    lines = [l for l in formats.log_text().splitlines() if "source drop: loaded with 2 entries" in l]
    assert len(lines) == 1 and formats.tag("info") in lines[0], lines


def test_one_request_per_source_at_startup_with_three_workers(formats, web):
    for path in ["/firehol_level1.netset", "/drop.txt", "/ip-ranges.json", "/cloud.json",
                 "/ServiceTags_Public.json"]:
        assert web.count(path) == 1, (path, web.requests())


def test_refresh_sends_conditional_requests_304_keeps_the_list_and_a_change_is_adopted(
        formats, web, echo):
    # Change one file before the refresh; leave the others as they are.
    L.write_file(web.root_dir / "drop.txt", L.drop_txt(["198.51.100.128/26"]))
    deadline = formats.started_at + REFRESH_WAIT + 2
    procs.wait_until(lambda: web.count("/drop.txt") == 2 and web.count("/cloud.json") == 2,
                     max(1.0, deadline - time.monotonic()), interval=0.2, what="the first refresh")
    # Unchanged files: 304 from nginx, counted, the list kept.
    assert web.count("/cloud.json", 304) == 1
    procs.wait_until(lambda: formats.counter("client_ip.source.gcp.not_modified") == 1, 3,
                     what="not_modified counted")
    check(formats, echo, "34.35.1.1", "/gcp", 200)
    check(formats, echo, "8.8.4.4", "/gcp", 403)
    # The changed file: 200, the new list decides, the old one is gone.
    assert web.count("/drop.txt", 200) == 2
    wait_status(formats, echo, "198.51.100.130", "/drop", 403, 3)
    ex = check(formats, echo, "198.51.100.130", "/drop", 403)
    wait_every_worker_adopted(formats, "drop", list_version(ex, "drop"))
    for _ in range(6):
        check(formats, echo, "198.51.100.130", "/drop", 403)
        check(formats, echo, "198.51.100.63", "/drop", 200)
    assert formats.counter("client_ip.source.drop.fetch_ok") == 2


def test_one_request_per_source_per_refresh_with_three_workers(formats, web):
    # Runs after the refresh above: a second refresh is not due yet. Every source's first refresh
    # has been answered and counted (200 or 304) before the requests are counted at the server.
    def refreshed():
        stats = formats.settled_stats("client_ip.source.")
        return all(stats.get(f"client_ip.source.{name}.fetch_ok", 0)
                   + stats.get(f"client_ip.source.{name}.not_modified", 0) == 2
                   for name in FORMATS["sources"])
    procs.wait_until(refreshed, REFRESH_WAIT, interval=0.2, what="every source's first refresh counted")
    for path in ["/firehol_level1.netset", "/drop.txt", "/ip-ranges.json", "/cloud.json",
                 "/ServiceTags_Public.json"]:
        assert web.count(path) == 2, (path, web.requests())


@pytest.mark.only_builds("wasm")
def test_the_fetching_vm_is_the_main_threads_which_serves_no_requests(formats):
    text = formats.log_text().splitlines()
    lines = [l for l in text if "this VM now fetches" in l]
    assert len(lines) == 1 and "it serves no requests" in lines[0], lines
    (main,) = [l for l in text if "starting main dispatch loop" in l]
    workers = {thread_of(l) for l in text if "decision=" in l}
    assert len(workers) >= 2, "the requests should have been spread over the workers"
    assert thread_of(lines[0]) == thread_of(main) and thread_of(main) not in workers


# -- each way a body is refused keeps the last good list ------------------------------------------

FAULTS = {  # name: (path, address listed while good, fault, source settings)
    "status500": ("/status500", "192.0.2.1", ("status", (500, b"oops\n")), {}),
    "slow": ("/slow", "192.0.2.2", ("slow", (b"192.0.2.2\n" * 2000, 3.0)), {"timeout_ms": 500}),
    "reset": ("/reset", "192.0.2.3", ("reset", b"192.0.2.3\n" * 20000), {}),
    "big": ("/big", "192.0.2.4", ("ok", b"192.0.2.4\n" * 200), {"max_bytes": 1000}),
    "garbage": ("/garbage.json", "192.0.2.5", ("ok", b'{"prefixes": [{"ip_prefix": '), {"format": "aws"}),
    "novalid": ("/novalid.txt", "192.0.2.6", ("ok", b"# nothing here\nnot-an-address\n"), {}),
}


def good_body(name, address):
    if FAULTS[name][3].get("format") == "aws":
        return L.aws_ip_ranges([(address + "/32", "AMAZON", "GLOBAL")], [])
    return (address + "\n").encode()


@pytest.fixture(scope="module")
def faults():
    server = L.FaultServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def faulty(envoy_factory, wasm, faults, echo):
    """One source per fault, each good at first (one address each, all in the deny list), then
    switched to its fault."""
    for name, (path, address, _, _) in FAULTS.items():
        faults.set(path, "ok", good_body(name, address))
    config = {
        "sources": {name: source(path, cluster="faults", **extra)
                    for name, (path, _, _, extra) in FAULTS.items()},
        "access": {"deny": [f"source:{name}" for name in FAULTS]},
    }
    env = envoy_factory(E.EnvoyOptions(configuration=config,
                                       clusters=[L.envoy_cluster("faults", faults.port)]))
    for name, (_, address, _, _) in FAULTS.items():
        wait_status(env, echo, address, "/", 403, 10)
    for name, (path, _, fault, _) in FAULTS.items():
        faults.set(path, *fault)
    before = {name: faults.count(path) for name, (path, _, _, _) in FAULTS.items()}
    # Wait for every source's refresh to meet its fault (the slow one: timeout + its response).
    procs.wait_until(lambda: all(faults.count(p) > before[n] for n, (p, _, _, _) in FAULTS.items()),
                     REFRESH_WAIT, interval=0.2, what="every source's refresh")
    # ... and be counted (its warning is logged in the same step).
    procs.wait_until(lambda: all(env.counter(f"client_ip.source.{n}.{c}") >= 1
                                 for n, c in FAULT_COUNTER.items()),
                     5, interval=0.1, what="every fault counted")
    return env


# What each fault counts: the fetch failed, or its body was refused.
FAULT_COUNTER = {"status500": "fetch_failed", "slow": "fetch_failed", "reset": "fetch_failed",
                 "big": "rejected", "garbage": "rejected", "novalid": "rejected"}


@pytest.mark.parametrize("name,counter", list(FAULT_COUNTER.items()))
def test_a_refused_body_keeps_the_last_good_list(faulty, echo, name, counter):
    _, address, _, _ = FAULTS[name]
    procs.wait_until(lambda: faulty.counter(f"client_ip.source.{name}.{counter}") >= 1, 5,
                     what=f"{name}.{counter}")
    other = "rejected" if counter == "fetch_failed" else "fetch_failed"
    assert faulty.counter(f"client_ip.source.{name}.{other}") == 0
    assert faulty.counter(f"client_ip.source.{name}.fetch_ok") == 1
    assert faulty.counter(f"client_ip.source.{name}.entries") == 1
    check(faulty, echo, address, "/", 403)


def test_a_rejected_body_is_one_warning_with_its_reason(faulty):
    text = faulty.log_text()
    for name, reason in [("big", "over max_bytes (1000)"), ("garbage", "not valid JSON"),
                         ("novalid", "no valid entry")]:
        lines = [l for l in text.splitlines() if f"source {name}: body rejected" in l]
        assert lines and all(faulty.tag("warning") in l for l in lines), (name, lines)
        assert reason in lines[0] and "keeping the last good list" in lines[0], lines[0]


def test_a_failing_source_logs_one_warning_when_it_starts_failing(faulty):
    lines = [l for l in faulty.log_text().splitlines() if "source status500: fetch failed" in l]
    warnings = [l for l in lines if faulty.tag("warning") in l]
    assert len(warnings) == 1 and "status 500" in warnings[0], lines
    # Its retries are logged at debug only.
    assert all(faulty.tag("debug") in l and "fetch failed again" in l for l in lines if l not in warnings)


def test_skipped_lines_of_a_rejected_text_body_are_counted(faulty):
    assert faulty.counter("client_ip.source.novalid.skipped_lines") >= 1


def test_a_failure_is_retried_sooner_than_refresh_s_backing_off(faulty, faults):
    # Requests: the first load, the refresh that met the 500, then retries 2 s, 4 s, ... later.
    procs.wait_until(lambda: len(faults.times("/status500")) >= 4, 12, interval=0.2,
                     what="two retries")
    t = faults.times("/status500")
    first, second = t[2] - t[1], t[3] - t[2]
    assert 1.5 <= first <= 3.5 < REFRESH_S, t   # 2 s after the failure (checked on a 1 s tick)
    assert 3.5 <= second <= 5.5, t              # then 4 s


# -- unavailable sources: on_unavailable, max_stale_s ---------------------------------------------

@pytest.fixture(scope="module")
def unavailable(envoy_factory, wasm, faults, echo):
    faults.set("/stale.txt", "ok", b"192.0.2.9\n")
    config = {
        "sources": {
            "missing_empty": source("/missing.txt", cluster="faults"),
            "missing_refuse": source("/missing.txt", cluster="faults", on_unavailable="refuse"),
            "stale": source("/stale.txt", cluster="faults", on_unavailable="refuse", max_stale_s=2),
        },
        "access": {"rules": [
            {"name": "allow_empty", "path_prefixes": ["/allow"], "allow": ["source:missing_empty"]},
            {"name": "deny_empty", "path_prefixes": ["/deny"], "deny": ["source:missing_empty"]},
            {"name": "refuse", "path_prefixes": ["/refuse"], "deny": ["source:missing_refuse"]},
            {"name": "dry", "path_prefixes": ["/dry"], "deny": ["source:missing_refuse"],
             "mode": "dry_run"},
            {"name": "stale", "path_prefixes": ["/stale"], "deny": ["source:stale"]},
        ]},
    }
    env = envoy_factory(E.EnvoyOptions(configuration=config,
                                       clusters=[L.envoy_cluster("faults", faults.port)]))
    procs.wait_until(lambda: env.counter("client_ip.source.missing_empty.fetch_failed") >= 1, 5,
                     what="the first fetch failed")
    env.started_at = time.monotonic()
    return env


def test_on_unavailable_empty_an_allow_list_naming_it_stays_in_force(unavailable, echo):
    check(unavailable, echo, "198.51.100.1", "/allow", 403, body=b"access denied\n")


def test_on_unavailable_empty_a_deny_list_naming_it_holds_no_address(unavailable, echo):
    check(unavailable, echo, "198.51.100.1", "/deny", 200)


def request_delta(env, before, want, timeout=3.0):
    """The request counters (``client_ip.`` but not ``client_ip.source.``: a failing source's
    retries land whenever its backoff says) that changed since ``before``, polled until they
    equal ``want`` or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        now = env.stats()
        d = {k: v - before.get(k, 0) for k, v in now.items()
             if k.startswith("client_ip.") and not k.startswith("client_ip.source.")
             and isinstance(v, int) and v != before.get(k, 0)}
        if d == want or time.monotonic() >= deadline:
            return d
        time.sleep(0.05)


def test_on_unavailable_refuse_answers_503_and_counts_it(unavailable, echo):
    before = unavailable.settled_stats()
    ex = check(unavailable, echo, "198.51.100.1", "/refuse", 503, body=b"source unavailable\n")
    assert not ex.reached_upstream
    assert ex.log()["details"] == "client_ip_filter_source_unavailable"
    delta = request_delta(unavailable, before, {"client_ip.unavailable": 1, "client_ip.denied": 1,
                                                "client_ip.rule.refuse.denied": 1})
    assert delta == {"client_ip.unavailable": 1, "client_ip.denied": 1,
                     "client_ip.rule.refuse.denied": 1}


def test_on_unavailable_refuse_in_dry_run_lets_the_request_through_and_counts_it(unavailable, echo):
    before = unavailable.settled_stats()
    check(unavailable, echo, "198.51.100.1", "/dry", 200)
    want = {"client_ip.unavailable": 1, "client_ip.dry_run_denied": 1,
            "client_ip.rule.dry.dry_run_denied": 1}
    assert request_delta(unavailable, before, want) == want


def test_a_request_not_reading_the_list_is_not_refused(unavailable, echo):
    check(unavailable, echo, "198.51.100.1", "/other", 200)


HELD = b"192.0.2.9\n"


def test_an_unloaded_source_is_unavailable_from_the_first_request(envoy_factory, wasm, faults, echo):
    """Before a source's first good body (its first fetch still in flight: the list server holds
    the response), an allow list naming only it refuses everyone (403), a deny list naming only it
    denies nobody, and `on_unavailable: "refuse"` answers 503: from the very first request."""
    faults.set("/held.txt", "slow", (HELD, 60.0))
    held = {"cluster": "faults", "authority": "lists.test", "path": "/held.txt",
            "refresh_s": REFRESH_S, "timeout_ms": 30000}
    config = {
        "sources": {"held_empty": held, "held_refuse": dict(held, on_unavailable="refuse")},
        "access": {
            "allow": ["source:held_empty"],
            "rules": [
                {"name": "allow_empty", "path_prefixes": ["/allow"], "allow": ["source:held_empty"]},
                {"name": "deny_empty", "path_prefixes": ["/deny"], "deny": ["source:held_empty"]},
                {"name": "refuse", "path_prefixes": ["/refuse"], "allow": ["source:held_refuse"]},
            ],
        },
    }
    env = envoy_factory(E.EnvoyOptions(configuration=config,
                                       clusters=[L.envoy_cluster("faults", faults.port)]))
    # Envoy is ready: the first requests, while the first fetch waits for its body.
    check(env, echo, "192.0.2.9", "/", 403, body=b"access denied\n")
    check(env, echo, "192.0.2.9", "/allow", 403, body=b"access denied\n")
    check(env, echo, "192.0.2.9", "/deny", 200)
    check(env, echo, "192.0.2.9", "/refuse", 503, body=b"source unavailable\n")
    for name in ("held_empty", "held_refuse"):
        assert env.counter(f"client_ip.source.{name}.fetch_ok") == 0, "the list arrived first"
        assert env.counter(f"client_ip.source.{name}.fetch_failed") == 0, "a fetch failed first"


def test_max_stale_s_makes_a_source_unavailable_until_a_good_body_arrives(unavailable, echo, faults):
    # Loaded at start, then 2 s without a good body (the next refresh is ~10 s away): unavailable.
    assert unavailable.counter("client_ip.source.stale.fetch_ok") == 1
    wait_status(unavailable, echo, "198.51.100.1", "/stale", 503, 8)
    wait_status(unavailable, echo, "192.0.2.9", "/stale", 503, 1)
    # One warning per Envoy: from the VM that fetches (the others notice it at debug, each VM on its
    # own tick: the fetcher's line may come after a worker's).
    def stale_warnings():
        return [l for l in unavailable.log_text().splitlines()
                if "source stale: unavailable: no good body for more than max_stale_s (2 s)" in l
                and unavailable.tag("warning") in l]
    warnings = procs.wait_until(stale_warnings, 5, what="the stale warning")
    (fetcher,) = [l for l in unavailable.log_text().splitlines() if "this VM now fetches" in l]
    assert warnings and all(thread_of(l) == thread_of(fetcher) for l in warnings), warnings
    # The refresh brings a good body: available again, the list decides.
    # (A good body keeps it available for max_stale_s, 2 s, of every refresh_s: wait a whole refresh.)
    wait_status(unavailable, echo, "192.0.2.9", "/stale", 403, REFRESH_WAIT)
    check(unavailable, echo, "198.51.100.1", "/stale", 200)


# -- configuration errors ---------------------------------------------------------------------------

BAD = [
    ("undefined-name", {"sources": {"a": source("/a")}, "access": {"deny": ["source:b"]}},
     ['access.deny[0]: "source:b" names no source']),
    ("unknown-format", {"sources": {"a": source("/a", format="csv")}, "access": {"deny": ["source:a"]}},
     ["sources.a.format", "csv"]),
    ("select-key-the-format-lacks", {"sources": {"a": source("/a", format="aws", select={"scope": ["x"]})},
                                     "access": {"deny": ["source:a"]}}, ["sources.a.select.scope"]),
    ("refresh-below-10", {"sources": {"a": source("/a", refresh_s=5)}, "access": {"deny": ["source:a"]}},
     ["sources.a.refresh_s", "5"]),
    ("empty-cluster", {"sources": {"a": source("/a", cluster="")}, "access": {"deny": ["source:a"]}},
     ["sources.a.cluster: is empty"]),
    ("path-without-slash", {"sources": {"a": source("a.txt")}, "access": {"deny": ["source:a"]}},
     ["sources.a.path", "a.txt"]),
    ("bad-source-name", {"sources": {"A!": source("/a")}}, ["sources.A!", "source name"]),
]


@pytest.mark.parametrize("configuration,needles", [(c, n) for _, c, n in BAD], ids=[i for i, _, _ in BAD])
def test_config_error_in_sources_is_refused_with_its_key_path(envoy_factory, wasm, configuration, needles):
    refused = envoy_factory.refused(E.EnvoyOptions(configuration=configuration))
    assert refused.exit_status not in (None, 0), "Envoy started with a bad configuration"
    errors = refused.filter_lines("error")
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def test_an_unknown_cluster_is_logged_with_its_key_path_and_retried(envoy_factory, wasm, echo):
    config = {"sources": {"later": source("/a.txt", cluster="outbound|443||lists.example.com")},
              "access": {"deny": ["source:later"]}}
    env = envoy_factory(E.EnvoyOptions(configuration=config))
    line = env.wait_log("sources.later.cluster", timeout=5)
    assert "outbound|443||lists.example.com" in line and "is not a cluster Envoy knows" in line
    procs.wait_until(lambda: env.counter("client_ip.source.later.fetch_failed") >= 2, 6,
                     what="a retry")
    check(env, echo, "192.0.2.1", "/", 200)  # the configuration was accepted and serves


# -- the shipped manifests, their configuration in Envoy against the local list server ----------------

def test_cloudfront_wasmplugin_configuration_runs_in_envoy(envoy_factory, wasm, web, echo):
    """istio-examples/wasmplugin-cloudfront-gateway.yaml: the filter Istio builds from the WasmPlugin,
    the source's cluster (the ServiceEntry's outbound|443||ip-ranges.amazonaws.com) on nginx."""
    from harness import manifests
    from test_istio_in_envoy import doc_of_kind, istio_wasm_filter

    path = manifests.REPO / "istio-examples" / "wasmplugin-cloudfront-gateway.yaml"
    plugin = doc_of_kind(path, "WasmPlugin")
    source_cfg = plugin["spec"]["pluginConfig"]["sources"]["cloudfront"]
    frags = manifests.gateway()
    frags.http_filters = [istio_wasm_filter(plugin)]
    env = envoy_factory(E.EnvoyOptions(fragments=frags,
                                       clusters=[L.envoy_cluster(source_cfg["cluster"], web.port)]))
    xff = [("x-forwarded-for", "192.0.2.50")]
    wait_status(env, echo, "13.33.1.1", "/", 403, 10, xff)  # CloudFront edge: its client is denied
    ex = check(env, echo, "52.85.0.1", "/", 403, headers=xff)
    assert ex.log()["client_ip"] == "192.0.2.50"
    ex = check(env, echo, "3.5.140.9", "/", 200, headers=xff)  # not CloudFront: header ignored
    assert ex.upstream_values("x-real-ip") == ["3.5.140.9"]


def test_cloudfront_envoyfilter_patches_run_in_envoy_with_their_cluster(envoy_factory, wasm, web, echo):
    """envoyfilter/ingress-gateway-cloudfront.yaml: its patch values unchanged, except the CLUSTER
    patch's endpoint (the local nginx instead of ip-ranges.amazonaws.com:443, without TLS)."""
    import copy

    from harness import manifests

    frags = manifests.load(manifests.ENVOYFILTER_DIR / "ingress-gateway-cloudfront.yaml")
    (cluster,) = [copy.deepcopy(v) for kind, op, v in frags.others if kind == "CLUSTER"]
    assert cluster["name"] == frags.configuration()["sources"]["cloudfront"]["cluster"]
    cluster.pop("transport_socket")
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = {
        "socket_address": {"address": "127.0.0.1", "port_value": web.port}}
    env = envoy_factory(E.EnvoyOptions(fragments=frags, clusters=[cluster]))
    xff = [("x-forwarded-for", "192.0.2.50")]
    wait_status(env, echo, "13.33.1.1", "/", 403, 10, xff)
    check(env, echo, "2600:9000::1", "/", 403, headers=xff)
    check(env, echo, "3.5.140.9", "/", 200, headers=xff)


# -- a list server is not trusted blindly ---------------------------------------------------------

@pytest.fixture(scope="module")
def distrusted(envoy_factory, wasm, faults, echo):
    """A deny feed and a trusted-proxies feed (min_prefix ipv4 16), both good at first."""
    faults.set("/deny-feed.txt", "ok", b"192.0.2.66\n")
    faults.set("/cdn.txt", "ok", b"192.0.2.0/24\n")
    config = {
        "sources": {
            "denyfeed": source("/deny-feed.txt", cluster="faults"),
            "cdn": source("/cdn.txt", cluster="faults", min_prefix={"ipv4": 16}),
        },
        "client_ip": {"trusted_proxies": ["source:cdn"]},
        "access": {"deny": ["source:denyfeed", "203.0.113.7"]},
    }
    env = envoy_factory(E.EnvoyOptions(configuration=config,
                                       clusters=[L.envoy_cluster("faults", faults.port)]))
    wait_status(env, echo, "192.0.2.66", "/", 403, 10)
    wait_status(env, echo, "192.0.2.10", "/", 403, 10, headers=[("x-forwarded-for", "203.0.113.7")])
    return env


def test_a_body_holding_0_0_0_0_slash_0_is_rejected_and_the_last_good_list_stays(distrusted, echo, faults):
    faults.set("/deny-feed.txt", "ok", b"192.0.2.66\n0.0.0.0/0\n")
    procs.wait_until(lambda: distrusted.counter("client_ip.source.denyfeed.rejected") >= 1,
                     REFRESH_WAIT, interval=0.2, what="the /0 body rejected")
    distrusted.wait_log("source denyfeed: body rejected: it lists 0.0.0.0/0, every address")
    check(distrusted, echo, "192.0.2.66", "/", 403)
    check(distrusted, echo, "198.51.100.1", "/", 200)


def test_a_trusted_proxies_source_rejects_an_entry_broader_than_its_min_prefix(distrusted, echo, faults):
    xff = [("x-forwarded-for", "203.0.113.7")]
    faults.set("/cdn.txt", "ok", b"192.0.2.0/24\n198.50.0.0/15\n")
    procs.wait_until(lambda: distrusted.counter("client_ip.source.cdn.rejected") >= 1,
                     REFRESH_WAIT, interval=0.2, what="the broad body rejected")
    distrusted.wait_log("198.50.0.0/15 is broader than min_prefix.ipv4 (/16)")
    # The last good list stays: a proxy it lists is believed, an address of the broad entry is not.
    ex = check(distrusted, echo, "192.0.2.10", "/", 403, headers=xff)
    assert ex.log()["client_ip"] == "203.0.113.7"
    ex = check(distrusted, echo, "198.51.100.5", "/", 200, headers=xff)
    assert ex.log()["client_ip"] == "198.51.100.5"
    # The same entry in a deny feed is accepted (min_prefix applies to trusted proxies only).
    faults.set("/deny-feed.txt", "ok", b"198.50.0.0/15\n")
    wait_status(distrusted, echo, "198.51.100.5", "/", 403, REFRESH_WAIT)
