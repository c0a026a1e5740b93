"""The geo manifests through Istio's own translation (tests/harness/istio.py): the shipped manifests
served by istio-xds to a real gateway Envoy, whose filter fetches a country and an ASN database
(MaxMind DB files in MaxMind's own layout, written here with mmdb-writer) from a local nginx; a client
the database places in a denied country or network is refused, an allowed one reaches the app with
its country and AS number in headers, and the sample mesh access log
(istio-examples/mesh-config-access-log.yaml with access-log.yaml) shows both (docs/geo.md).

The manifest sets (each beside the gateway Service, httpbin and its Gateway/VirtualService):

* ``wasmplugin``: istio-examples/wasmplugin-geo-gateway.yaml (ServiceEntry, WasmPlugin) with the
  set_filter_state EnvoyFilter of wasmplugin-ingress-gateway.yaml (its header says so), on the
  annotated gateway of istio-examples/ingress-gateway.yaml;
* ``envoyfilter``: envoyfilter/ingress-gateway-geo.yaml (with its CLUSTER patch).

Test-only change (tests/istio/README.md): the database server's address (loopback nginx instead of
geo.internal:80: a ServiceEntry ``endpoints`` entry; the CLUSTER patch's socket address). The
sources, fields, lists and headers are the manifests' own. The client address is the PROXY v2 source
the load balancer would send (documentation ranges, which the test database places in countries).
"""
from __future__ import annotations

import json

import pytest
import yaml

from harness import istio as I
from harness import listserver as L
from harness import procs
from harness import proxyproto as pp
from harness.istio_sets import APP_PORT, EF, EX, POD_IPS, VERSIONS, Gateway, arrived
from harness.upstream import header_values

GEO_APP_IP = "127.0.0.83"    # this module's httpbin Pod (another address than the other Istio tests')
GEO_HOST = "geo.internal"
WASMPLUGIN = EX / "wasmplugin-geo-gateway.yaml"
ENVOYFILTER = EF / "ingress-gateway-geo.yaml"

# What the test databases hold: network -> (country, AS number). The manifests deny country:KP and
# asn:64496.
NETWORKS = {
    "203.0.113.0/24": ("KP", 64511),
    "2001:db8:1::/48": ("KP", 64511),
    "192.0.2.0/24": ("FR", 64496),
    "198.51.100.0/24": ("DE", 64500),
    "2001:db8:2::/48": ("DE", 64500),
}
DENIED_COUNTRY, DENIED_COUNTRY_V6 = "203.0.113.9", "2001:db8:1::9"
DENIED_NETWORK = "192.0.2.50"          # FR, but AS 64496
ALLOWED, ALLOWED_V6 = "198.51.100.20", "2001:db8:2::20"
UNKNOWN = "198.18.0.1"                 # in neither database


def plugin_config(path=WASMPLUGIN) -> dict:
    (plugin,) = [d for d in I.documents(path.read_text()) if d["kind"] == "WasmPlugin"]
    return plugin["spec"]["pluginConfig"]


def database_paths() -> dict:
    """Source name -> (request path, country_field or None, asn_field or None), from the WasmPlugin."""
    return {name: (s["path"], s.get("country_field"), s.get("asn_field"))
            for name, s in plugin_config()["sources"].items() if s["format"] == "mmdb"}


def record(country_field, asn_field, country, asn) -> dict:
    """One database record holding the named fields (dotted paths) and nothing the filter reads else."""
    rec: dict = {}
    for field, value in ((country_field, country), (asn_field, asn)):
        if not field:
            continue
        *parents, leaf = field.split(".")
        node = rec
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if asn_field:
        rec["autonomous_system_organization"] = f"Example network {asn}"
    return rec


def write_database(path, country_field, asn_field) -> None:
    """A MaxMind DB (IPv6 tree, IPv4 in ::/96 as MaxMind's files have it) holding NETWORKS."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    kind = "GeoLite2-Country" if country_field else "GeoLite2-ASN"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=kind, languages=["en"],
                        description="client-ip-filter test database")
    for net, (country, asn) in NETWORKS.items():
        writer.insert_network(IPSet([net]), record(country_field, asn_field, country, asn))
    writer.to_db_file(str(path))


def wasmplugin_files(workdir, port: int) -> list:
    """wasmplugin-geo-gateway.yaml with the database server at loopback, and the set_filter_state
    EnvoyFilter of wasmplugin-ingress-gateway.yaml."""
    docs = I.documents(WASMPLUGIN.read_text())
    for d in docs:
        if d["kind"] == "ServiceEntry":
            assert d["spec"]["hosts"] == [GEO_HOST]
            d["spec"]["endpoints"] = [{"address": "127.0.0.1",
                                       "ports": {d["spec"]["ports"][0]["name"]: port}}]
    (sfs,) = [d for d in I.documents((EX / "wasmplugin-ingress-gateway.yaml").read_text())
              if d["kind"] == "EnvoyFilter"]
    out = workdir / WASMPLUGIN.name
    out.write_text(yaml.safe_dump_all(docs + [sfs]))
    return [out]


def envoyfilter_files(workdir, port: int) -> list:
    """ingress-gateway-geo.yaml with its CLUSTER patch at loopback."""
    (doc,) = I.documents(ENVOYFILTER.read_text())
    (cluster,) = [p for p in doc["spec"]["configPatches"] if p["applyTo"] == "CLUSTER"]
    sock = cluster["patch"]["value"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0][
        "endpoint"]["address"]["socket_address"]
    assert (sock["address"], sock["port_value"]) == (GEO_HOST, 80)
    sock["address"], sock["port_value"] = "127.0.0.1", port
    out = workdir / ENVOYFILTER.name
    out.write_text(yaml.safe_dump(doc))
    return [out]


def from_client(gateway, client, headers=(), path="/get"):
    """A request whose PROXY v2 header names ``client`` as the source (as the load balancer sends)."""
    dst = "fd00::1" if ":" in client else "10.0.0.1"
    return gateway.request(client, headers=headers, path=path, proxy=pp.v2(client, dst, 40000, 80))


# The access log of the sample (its provider in the mesh config, turned on by Telemetry): Envoy writes
# its JSON lines to /dev/stdout, which the harness keeps in the gateway's log file.
ACCESS_LOG = [EX / "mesh-config-access-log.yaml", EX / "access-log.yaml"]


def access_log_line(gateway, path):
    """The gateway's access-log entry for the request to ``path``, once Envoy has flushed it."""
    def found():
        for line in gateway.envoy.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{path}"' in line:
                entry = json.loads(line)
                if entry.get("path") == path:
                    return entry
        return None
    return procs.wait_until(found, 10, interval=0.1, what=f"the access-log line of {path}")


SETS = {"wasmplugin": (wasmplugin_files, "annotation"), "envoyfilter": (envoyfilter_files, None)}


@pytest.fixture(scope="module")
def app():
    """The httpbin Pod: an echo server at its Pod IP and the Service's target port."""
    echo = I.PodEcho(GEO_APP_IP, APP_PORT).start()
    yield echo
    echo.stop()


@pytest.fixture(scope="module", params=[(v, s) for v in VERSIONS for s in SETS],
                ids=lambda p: f"istio{p[0]}-{p[1]}")
def gateway(request, wasm, app, tmp_path_factory):
    """A gateway whose database server has no file at first (the status a request gets then is kept
    as ``before_database``), then serves both databases."""
    version, name = request.param
    work = tmp_path_factory.mktemp(f"geo-{version}-{name}")
    root = work / "root"
    root.mkdir()
    server = L.Nginx(str(root), workdir=str(work / "nginx")).start()
    make_files, pc = SETS[name]
    routes = {name: (make_files(work, server.port) + ACCESS_LOG, pc)}
    gw = None
    try:
        gw = Gateway(version, name, wasm, work, pod_ips={**POD_IPS, "httpbin": GEO_APP_IP}, routes=routes)
        paths = database_paths()
        procs.wait_until(lambda: all(server.count(p, 404) for p, _, _ in paths.values()), 30,
                         what="the gateway asking nginx for both databases")
        gw.before_database = from_client(gw, ALLOWED)
        for req_path, country_field, asn_field in paths.values():
            write_database(root / req_path.lstrip("/"), country_field, asn_field)
        # both databases in: an allowed client passes (503 while either source is unavailable)
        procs.wait_until(lambda: from_client(gw, ALLOWED)[1].status == 200, 30, interval=0.2,
                         what="both databases in force")
        gw.fetched = {p: server.count(p, 200) for p, _, _ in paths.values()}
    except Exception:
        if gw:
            gw.stop()
        server.stop()
        raise
    yield gw
    gw.stop()
    server.stop()


def test_both_databases_are_fetched_through_the_manifests_cluster(gateway):
    assert all(n >= 1 for n in gateway.fetched.values()), gateway.fetched


def test_before_the_first_database_a_request_is_refused_with_503(gateway, app):
    tid, resp = gateway.before_database
    assert resp.status == 503, resp
    assert arrived(app, tid) == []


@pytest.mark.parametrize("client", [DENIED_COUNTRY, DENIED_COUNTRY_V6])
def test_client_the_database_places_in_a_denied_country_is_refused(gateway, app, client):
    tid, resp = from_client(gateway, client)
    assert resp.status == 403, resp
    assert arrived(app, tid) == []


def test_client_from_a_denied_network_is_refused(gateway, app):
    tid, resp = from_client(gateway, DENIED_NETWORK)
    assert resp.status == 403, resp
    assert arrived(app, tid) == []


@pytest.mark.parametrize("client,country,asn", [(ALLOWED, "DE", "64500"), (ALLOWED_V6, "DE", "64500")])
def test_allowed_client_reaches_the_app_with_its_country_and_network(gateway, app, client, country, asn):
    tid, resp = from_client(gateway, client)
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-client-country") == [country]
    assert header_values(rec, "x-client-asn") == [asn]
    assert header_values(rec, "x-real-ip") == [client]


def test_forged_country_and_network_headers_are_replaced(gateway, app):
    tid, resp = from_client(gateway, ALLOWED, headers=[("X-Client-Country", "US"), ("x-client-asn", "15169")])
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-client-country") == ["DE"]
    assert header_values(rec, "x-client-asn") == ["64500"]


def test_address_the_database_does_not_hold_passes_with_no_country_header_even_a_forged_one(gateway, app):
    tid, resp = from_client(gateway, UNKNOWN, headers=[("x-client-country", "DE"), ("x-client-asn", "64500")])
    assert resp.status == 200, resp
    (rec,) = arrived(app, tid)
    assert header_values(rec, "x-client-country") == []
    assert header_values(rec, "x-client-asn") == []


@pytest.mark.parametrize("client,status,country,asn", [(ALLOWED, 200, "DE", "64500"),
                                                       (DENIED_COUNTRY, 403, "KP", "64511"),
                                                       (UNKNOWN, 200, None, None)])
def test_access_log_of_the_sample_mesh_config_shows_the_country_and_network(gateway, client, status,
                                                                             country, asn):
    path = f"/get?geo-log={client}"
    _, resp = from_client(gateway, client, path=path)
    assert resp.status == status, resp
    entry = access_log_line(gateway, path)
    assert entry["client_ip"] == client
    assert (entry["client_country"], entry["client_asn"]) == (country, asn), entry
