"""MaxMind DB files for the geo tests (docs/geo.md): small ones written here with PyPI's mmdb-writer
in MaxMind's own layout (exact contents, exact expectations), the real ones `make geo-data` installs
(tests/README.md, "Geo databases"), and MaxMind's reference reader (PyPI maxminddb) to ask what a
real database says of an address.

    db_bytes([("203.0.113.0/25", country("DE")), ...])  # the file's bytes
    real_db("country.mmdb")          # .work/geo/country.mmdb, or a failure naming `make geo-data`
    reference("country.mmdb").get("8.8.8.8")
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import maxminddb
import netaddr
from mmdb_writer import MMDBWriter, MmdbU32

from . import manifests

GEO_DIR = Path(os.environ.get("CLIENT_IP_GEO_DIR") or manifests.REPO / ".work" / "geo")
REAL_FILES = ("country.mmdb", "asn.mmdb", "city.mmdb")


def country(code: str) -> dict:
    """A record in MaxMind's GeoLite2 Country layout."""
    return {"country": {"iso_code": code, "names": {"en": code}}, "continent": {"code": "EU"}}


def asn(number: int, org: str = "Example Networks") -> dict:
    """A record in MaxMind's GeoLite2 ASN layout (the number a uint32, as MaxMind writes it)."""
    return {"autonomous_system_number": MmdbU32(number), "autonomous_system_organization": org}


def db_bytes(entries: list, database_type: str = "GeoLite2-Country") -> bytes:
    """An IPv6 MaxMind DB (IPv4 at ::/96, where MaxMind's readers look it up) holding ``entries``:
    (CIDR, record) pairs. Serve it with listserver.write_file."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type,
                        languages=["en"], description="client-ip-filter test database")
    for cidr, record in entries:
        writer.insert_network(netaddr.IPSet([cidr]), record)
    with tempfile.TemporaryDirectory(prefix="client-ip-mmdb-") as d:
        out = Path(d) / "db.mmdb"
        writer.to_db_file(str(out))
        return out.read_bytes()


def real_db(name: str) -> Path:
    """One of `make geo-data`'s databases; a clear failure when it is not installed."""
    path = GEO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make geo-data`")
    return path


def reference(path: Path) -> maxminddb.Reader:
    """MaxMind's reference reader over ``path``."""
    return maxminddb.open_database(str(path))


def field(record, dotted: str):
    """The value at a dotted path of a record (None when absent)."""
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record
