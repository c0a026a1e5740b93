#!/usr/bin/env python3
"""Writes an ASN MaxMind DB from ip-location-db's ASN CSV files (make geo-data).

The npm package @ip-location-db/asn ships the data as CSV only (`first,last,asn,organization` per
line, IPv4 and IPv6 files); its MaxMind DB twin is not on the registry. This writes one IPv6 database
(IPv4 at ::/96, as MaxMind's readers look it up) whose records hold `autonomous_system_number`
(uint32) and `autonomous_system_organization`, the field names of MaxMind's GeoLite2 ASN layout,
with PyPI's mmdb-writer. The data's licence (CC BY 4.0: RouteViews, DB-IP, NRO) travels with it:
see tests/README.md.

    asn_mmdb.py OUT.mmdb asn-ipv4.csv asn-ipv6.csv
"""

import csv
import sys

import netaddr
from mmdb_writer import MMDBWriter, MmdbU32


def rows(path):
    """(first, last, asn, organization) of each line of one CSV file."""
    with open(path, newline="", encoding="utf-8") as f:
        for line in csv.reader(f):
            if len(line) < 3 or not line[2].isdigit():
                continue
            yield line[0], line[1], int(line[2]), line[3] if len(line) > 3 else ""


def main(out, *csv_paths):
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="ip-location-db-ASN",
        languages=["en"],
        description="ASN (ip-location-db CSV, CC BY 4.0: RouteViews, DB-IP, NRO), by tools/asn_mmdb.py",
    )
    # One record per (asn, organization): the writer shares its encoding among the ranges.
    records = {}
    count = 0
    for path in csv_paths:
        for first, last, asn, org in rows(path):
            if not 1 <= asn <= 0xFFFFFFFF:
                continue
            key = (asn, org)
            record = records.get(key)
            if record is None:
                record = {
                    "autonomous_system_number": MmdbU32(asn),
                    "autonomous_system_organization": org,
                }
                records[key] = record
            writer.insert_network(netaddr.IPSet(netaddr.IPRange(first, last)), record)
            count += 1
    writer.to_db_file(out)
    print(f"asn_mmdb: {count} ranges, {len(records)} networks -> {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
