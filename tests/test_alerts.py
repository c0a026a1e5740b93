"""observability/: the alerting rules, the PrometheusRule made from them, the stats tags and the
Grafana dashboard.

* `promtool check rules` and `promtool test rules` (observability/alerts.test.yaml): each alert fires on
  its condition and stays quiet next to it, on synthetic series.
* A real Prometheus scrapes two real Envoys with the filter (`/stats/prometheus` on loopback) and
  evaluates the shipped rules, with only `for:` shortened and the stale-source age threshold lowered
  (both derived from the shipped file here, nothing else changed). The test makes each alert's
  condition happen for real -- a list source loaded and not refreshed since, one that never loads,
  refusals, a request whose downstream address comes from X-Forwarded-For (the second Envoy has no
  set_filter_state), invalid X-Forwarded-For entries, a malformed private-link TLV, 503s for an
  unavailable source -- and waits until Prometheus reports each one firing.
* Every query of every dashboard panel returns data from that Prometheus.
* The stats tags (observability/stats-tags.yaml, passed with --config-yaml as istio-agent passes a
  bootstrap override) make rule and source labels; two plugins on one proxy add into one counter.

The live tests run on both builds (`both_builds`): Prometheus scrapes through the shipped relabel
rule (observability/prometheus-relabel.yaml), which renames the native build's
envoy_dynamicmodulescustom_client_ip_* to the wasm build's client_ip_*, so the same shipped alerts and
dashboard fire and answer for either build. With Envoy's runtime guard instead
(observability/native-runtime.yaml) a native Envoy exports the wasm build's names itself.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness import envoy as E
from harness import listserver, manifests, procs
from harness import proxyproto as pp
from harness.client import exchange

REPO = Path(__file__).resolve().parent.parent
OBS = REPO / "observability"
RULES = OBS / "alerts.rules.yaml"
TAGS = OBS / "stats-tags.yaml"
RELABEL = OBS / "prometheus-relabel.yaml"
NATIVE_RUNTIME = OBS / "native-runtime.yaml"
PRIVATE_LINK = REPO / "envoyfilter" / "ingress-gateway-private-link.yaml"
VPCE = "vpce-0a1b2c3d4e5f60718"
# What Envoy puts in front of each build's metric names in /stats/prometheus (docs/native.md).
EXPORTED_PREFIX = {"wasm": "", "native": "envoy_dynamicmodulescustom_"}

pytestmark = pytest.mark.both_builds


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if not binary:
        pytest.fail("promtool is not installed: run `make prometheus`", pytrace=False)
    procs.note_program(binary)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def alerts() -> list:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


# -- the rules on their own ------------------------------------------------------------------------

def test_the_rules_pass_promtool_check_and_their_unit_tests():
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0 and f"SUCCESS: {len(alerts())} rules found" in check.stdout, check.stdout + check.stderr
    unit = promtool("test", "rules", str(OBS / "alerts.test.yaml"))
    assert unit.returncode == 0, unit.stdout + unit.stderr
    tested = set(re.findall(r"alertname: (\w+)", (OBS / "alerts.test.yaml").read_text()))
    assert tested == {a["alert"] for a in alerts()}, "an alert without a promtool unit test"


def test_the_prometheusrule_and_the_istio_configmap_are_generated_from_the_sources(tmp_path):
    run = subprocess.run(["python3", str(OBS / "generate.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rule = yaml.safe_load((OBS / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule" and rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    groups = tmp_path / "groups.yaml"
    groups.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert promtool("check", "rules", str(groups)).returncode == 0
    cm = yaml.safe_load((REPO / "istio-examples" / "stats-tags-bootstrap.yaml").read_text())
    assert json.loads(cm["data"]["custom_bootstrap.json"]) == yaml.safe_load(TAGS.read_text())


# -- a real Prometheus scraping real Envoys --------------------------------------------------------

class TaggedEnvoy(E.Envoy):
    """The harness Envoy plus the stats tags, given as istio-agent gives a bootstrap override."""

    fragments: tuple = (TAGS,)  # bootstrap fragments merged in with --config-yaml, in order

    def argv(self) -> list:
        merged: dict = {}
        for path in self.fragments:
            merged.update(yaml.safe_load(path.read_text()))
        return super().argv() + ["--config-yaml", json.dumps(merged)]


class Prometheus:
    def __init__(self, workdir: Path, targets: list[str], rule_file: Path):
        binary = shutil.which("prometheus")
        if not binary:
            pytest.fail("prometheus is not installed: run `make prometheus`", pytrace=False)
        self.binary = binary
        self.workdir = workdir
        self.port = procs.free_port()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rule_file)],
            "scrape_configs": [{"job_name": "envoy", "metrics_path": "/stats/prometheus",
                                "static_configs": [{"targets": targets}],
                                **yaml.safe_load(RELABEL.read_text())}],
        }))
        self.proc = None

    def start(self) -> "Prometheus":
        self.proc = procs.start([self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={self.workdir / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{self.port}"],
                                log_path=str(self.workdir / "prometheus.log"))
        procs.wait_until(lambda: self.get("/-/ready") is not None, 30, what="Prometheus /-/ready")
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return r.read()

    def query(self, expr: str) -> list:
        body = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def firing(self) -> dict:
        body = json.loads(self.get("/api/v1/alerts"))
        return {a["labels"]["alertname"]: a for a in body["data"]["alerts"] if a["state"] == "firing"}


def derived_rules(path: Path) -> None:
    """The shipped rules for a test that lasts seconds: every `for:` 1s, the stale threshold 3 s."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"
            if rule["alert"] == "ClientIpListSourceStale":
                expr, n = re.subn(r"\) > \d+$", ") > 3", rule["expr"])
                assert n == 1, rule["expr"]
                rule["expr"] = expr
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


CONFIG = {
    "client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
    "sources": {
        "feed": {"cluster": "list_server", "authority": "lists.example", "path": "/feed.txt",
                 "refresh_s": 3600},
        "down": {"cluster": "no_such_cluster", "authority": "lists.example", "path": "/down.txt",
                 "on_unavailable": "refuse"},
    },
    "access": {"allow": ["203.0.113.0/24", "aws-vpce:" + VPCE], "deny": ["source:feed"],
               "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]},
                         {"name": "reports", "path_prefixes": ["/reports"], "deny": ["source:down"]},
                         {"name": "trial", "path_prefixes": ["/trial"], "allow": ["203.0.113.10"],
                          "mode": "dry_run"}]},
}


@pytest.fixture(scope="module")
def live(echo, build, request, tmp_path_factory):
    """Two Envoys of ``build`` scraped by a Prometheus with the shipped rules and relabel rule."""
    request.getfixturevalue("wasm" if build == "wasm" else "native_so")  # fails when not built
    work = tmp_path_factory.mktemp(f"alerts-{build}")
    lists = work / "lists"
    lists.mkdir()
    listserver.write_file(lists / "feed.txt", b"192.0.2.0/24\n198.51.100.0/24\n")
    nginx = listserver.Nginx(str(lists), workdir=str(work / "nginx")).start()
    started = []
    try:
        gw = TaggedEnvoy(E.EnvoyOptions(fragments=manifests.load(PRIVATE_LINK), configuration=CONFIG,
                                        clusters=[listserver.envoy_cluster("list_server", nginx.port)],
                                        build=build),
                         upstream_port=echo.port, workdir=str(work), name="gateway")
        started.append(gw.start())
        # a proxy whose manifest lost set_filter_state, where the HCM derives the remote address from XFF
        bare = TaggedEnvoy(E.EnvoyOptions(set_filter_state=False, use_remote_address=False,
                                          configuration={"access": {"allow": ["203.0.113.0/24"]}},
                                          build=build),
                           upstream_port=echo.port, workdir=str(work), name="bare")
        started.append(bare.start())
        rules = work / "rules.yaml"
        derived_rules(rules)
        prom = Prometheus(work, [f"127.0.0.1:{gw.admin_port}", f"127.0.0.1:{bare.admin_port}"], rules).start()
        started.append(prom)
        # the counters' zeros scraped first, so that what the test does shows as an increase (for
        # the native build: only under the wasm build's name, which the relabel rule gives it)
        procs.wait_until(lambda: len(prom.query("client_ip_allowed")) == 2, 30,
                         what="Prometheus' first scrape of both Envoys, as client_ip_allowed")
        yield gw, bare, prom
    finally:
        for s in reversed(started):
            s.stop()
        nginx.stop()


def drive_every_condition(gw, bare, echo) -> None:
    procs.wait_until(lambda: gw.stats().get("client_ip.source.feed.fetch_ok", 0) >= 1, 15,
                     what="the feed source's first load")
    for _ in range(10):
        assert exchange(gw, echo, proxy=pp.v1("203.0.113.7")).status == 200
    for _ in range(30):  # refusals: well over a quarter of the traffic
        assert exchange(gw, echo, proxy=pp.v1("198.51.100.9")).status == 403
    assert exchange(gw, echo, proxy=pp.v1("203.0.113.7"), path="/admin").status == 403
    assert exchange(gw, echo, proxy=pp.v1("203.0.113.7"), path="/trial").status == 200
    for _ in range(3):  # invalid entries from a trusted proxy: the client is unknown
        ex = exchange(gw, echo, proxy=pp.v1("10.1.2.3"), headers=[("X-Forwarded-For", "unknown")])
        assert ex.status == 403
    bad_tlv = pp.v2("203.0.113.8", "10.0.0.1", 40000, 443, tlvs=[pp.tlv_aws_vpce("vpce-NOT-HEX")])
    assert exchange(gw, echo, proxy=bad_tlv).status == 200  # allowed by address, no identity
    assert exchange(gw, echo, proxy=pp.v1("203.0.113.7"), path="/reports").status == 503
    ex = exchange(bare, echo, proxy=pp.v1("198.51.100.50"), headers=[("X-Forwarded-For", "203.0.113.50")])
    assert ex.status == 403  # on_downstream_from_xff: "refuse", the default: it cannot know who connected
    procs.wait_until(lambda: gw.settled_stats().get("client_ip.unavailable", 0) >= 1
                     and gw.settled_stats().get("client_ip.link_invalid", 0) >= 1
                     and bare.settled_stats().get("client_ip.downstream_from_xff", 0) >= 1, 10,
                     what="the counters flushed to Envoy")


def test_every_alert_fires_in_a_live_prometheus_scraping_envoys_with_the_filter(live, echo):
    gw, bare, prom = live
    drive_every_condition(gw, bare, echo)
    expected = {a["alert"] for a in alerts()}

    def all_firing():
        firing = prom.firing()
        return firing if expected <= set(firing) else None
    try:
        firing = procs.wait_until(all_firing, 60, interval=0.5, what="every alert firing")
    except TimeoutError:
        seen = {e: prom.query(e) for e in ("up", "client_ip_denied", "client_ip_allowed",
                                           "client_ip_downstream_from_xff", "client_ip_link_invalid")}
        pytest.fail(f"firing: {sorted(prom.firing())}, expected {sorted(expected)}; series: {seen}",
                    pytrace=False)
    assert firing["ClientIpListSourceStale"]["labels"]["source"] == "feed"
    assert firing["ClientIpListSourceNeverLoaded"]["labels"]["source"] == "down"
    assert firing["ClientIpDownstreamFromXff"]["labels"]["instance"] == f"127.0.0.1:{bare.admin_port}"
    for name in expected - {"ClientIpDownstreamFromXff"}:
        assert firing[name]["labels"]["instance"] == f"127.0.0.1:{gw.admin_port}", (name, firing[name])


def test_every_dashboard_panel_query_returns_data_from_the_live_prometheus(live, echo):
    gw, bare, prom = live
    drive_every_condition(gw, bare, echo)
    dashboard = json.loads((OBS / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= len(dashboard["panels"])

    def all_answer():
        empty = [e for e in exprs if not prom.query(e)]
        return True if not empty else None
    try:
        procs.wait_until(all_answer, 30, interval=0.5, what="every panel query answering")
    except TimeoutError:
        empty = [e for e in exprs if not prom.query(e)]
        pytest.fail(f"panel queries without data: {empty}", pytrace=False)
    by_rule = {r["metric"]["rule"]: float(r["value"][1])
               for r in prom.query("sum by (rule) (client_ip_rule_denied)")}
    assert set(by_rule) == {"admin", "reports", "trial"} and by_rule["admin"] >= 1, by_rule


def test_stats_tags_turn_rule_and_source_names_into_labels(live, build):
    """Both builds' names: Envoy exports the native build's with its namespace in front."""
    gw, _, _ = live
    text = gw.admin("/stats/prometheus")
    prefix = EXPORTED_PREFIX[build]
    assert re.search(rf'^{prefix}client_ip_rule_denied\{{rule="admin"\}} \d+$', text, re.M), text
    assert re.search(rf'^{prefix}client_ip_source_age_s\{{source="feed"\}} \d+$', text, re.M), text
    assert "client_ip_rule_admin_denied" not in text and "client_ip_source_feed_" not in text


def names_the_rules_and_dashboard_use() -> set[str]:
    exprs = [r["expr"] for r in alerts()] + [
        t["expr"] for p in json.loads((OBS / "dashboard.json").read_text())["panels"] for t in p["targets"]]
    return {m for e in exprs for m in re.findall(r"\bclient_ip_[a-z_]+\b", e)}


def test_prometheus_holds_every_series_the_alerts_and_dashboard_name_under_that_name(live, echo, build):
    """The relabel rule: after it, each build's scrape holds the names observability/ queries (for
    the native build, renamed from envoy_dynamicmodulescustom_*), and no native name is left."""
    gw, bare, prom = live
    drive_every_condition(gw, bare, echo)
    wanted = names_the_rules_and_dashboard_use()
    assert {"client_ip_allowed", "client_ip_denied", "client_ip_source_age_s", "client_ip_rule_denied"} <= wanted

    def scraped() -> set[str]:
        return {r["metric"]["__name__"] for r in prom.query('{__name__=~"client_ip_.+"}')}
    try:
        procs.wait_until(lambda: wanted <= scraped(), 30, interval=0.5, what="every queried series scraped")
    except TimeoutError:
        pytest.fail(f"{build}: series the rules or dashboard name are not in Prometheus: "
                    f"{sorted(wanted - scraped())}", pytrace=False)
    left = prom.query('{__name__=~"envoy_dynamicmodulescustom_.+"}')
    assert left == [], f"native names left after the relabel rule: {sorted({r['metric']['__name__'] for r in left})}"
    if build == "native":  # what the rule renamed: Envoy itself still exports the prefixed names
        assert re.search(r"^envoy_dynamicmodulescustom_client_ip_allowed\{", gw.admin("/stats/prometheus"), re.M)


def prometheus_series(text: str) -> set[str]:
    """The filter's series of a /stats/prometheus text (client_ip_*, either build's exported name):
    name and labels, without the value."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines()
            if re.match(r"(envoy_dynamicmodulescustom_)?client_ip_", line)}


def test_with_envoys_runtime_guard_a_native_envoy_exports_the_wasm_builds_series_names(
        echo, wasm, native_so, tmp_path):
    """observability/native-runtime.yaml: the same configuration and requests on a wasm Envoy and a
    native Envoy with the runtime guard give the same client_ip_* series (names and labels) in
    /stats/prometheus; without the guard the native names differ (the relabel rule's case)."""
    config = {"access": {"allow": ["203.0.113.0/24"],
                         "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]}]}}
    texts = {}
    for name, build, fragments in (("wasm", "wasm", (TAGS,)), ("native-guard", "native", (TAGS, NATIVE_RUNTIME)),
                                   ("native", "native", (TAGS,))):
        env = TaggedEnvoy(E.EnvoyOptions(configuration=config, build=build), upstream_port=echo.port,
                          workdir=str(tmp_path), name=name)
        env.fragments = fragments
        env.start()
        try:
            assert exchange(env, echo, proxy=pp.v1("203.0.113.7")).status == 200
            assert exchange(env, echo, proxy=pp.v1("203.0.113.7"), path="/admin").status == 403
            procs.wait_until(lambda: env.settled_stats().get("client_ip.rule.admin.denied", 0) == 1, 10,
                             what=f"{name}: the counters flushed")
            texts[name] = env.admin("/stats/prometheus")
        finally:
            env.stop()
    wasm_series = prometheus_series(texts["wasm"])
    assert 'client_ip_rule_denied{rule="admin"}' in wasm_series and "client_ip_allowed{}" in wasm_series, wasm_series
    assert prometheus_series(texts["native-guard"]) == wasm_series
    assert prometheus_series(texts["native"]) == {"envoy_dynamicmodulescustom_" + s for s in wasm_series}


class TwoPluginEnvoy(TaggedEnvoy):
    """Two client-ip-filter plugins in one HTTP filter chain (two WasmPlugins on one gateway)."""

    second: dict = {}

    def write_config(self):
        path = super().write_config()
        boot = yaml.safe_load(path.read_text())
        (lst,) = boot["static_resources"]["listeners"]
        http = lst["filter_chains"][0]["filters"][-1]["typed_config"]["http_filters"]
        other = json.loads(json.dumps(http[0]))
        other["name"] = "second-plugin"
        other["typed_config"]["config"]["name"] = "second-plugin"
        other["typed_config"]["config"]["configuration"]["value"] = json.dumps(self.second)
        http.insert(1, other)
        path.write_text(yaml.safe_dump(boot, sort_keys=False))
        return path


def test_two_plugins_on_one_proxy_add_into_the_same_counters(echo, wasm, tmp_path):
    """What docs/observability.md says of two plugins: one request counts twice in client_ip_allowed;
    only rule names tell their rules apart."""
    env = TwoPluginEnvoy(E.EnvoyOptions(configuration={"access": {"rules": [{"name": "first", "path_prefixes": ["/"]}]}}),
                         upstream_port=echo.port, workdir=str(tmp_path), name="two")
    env.second = {"access": {"rules": [{"name": "second", "path_prefixes": ["/"]}]}}
    env.start()
    try:
        before = env.settled_stats()
        assert exchange(env, echo, proxy=pp.v1("203.0.113.7")).status == 200
        assert E.counter_delta(env, before, {"client_ip.allowed": 2, "client_ip.rule.first.allowed": 1,
                                             "client_ip.rule.second.allowed": 1}) == {
            "client_ip.allowed": 2, "client_ip.rule.first.allowed": 1, "client_ip.rule.second.allowed": 1}
        text = env.admin("/stats/prometheus")
        assert len(re.findall(r"^client_ip_allowed\{", text, re.M)) == 1  # one series for both
    finally:
        env.stop()
