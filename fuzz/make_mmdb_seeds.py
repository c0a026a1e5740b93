#!/usr/bin/env python3
"""Writes the hand-made seeds of the `mmdb` fuzz target (fuzz/corpus/mmdb/seed-*): small MaxMind DB
files written byte by byte here (record sizes 24, 28 and 32; IPv4 and IPv6 trees with the IPv4
subtree aliased; both record layouts; pointers to shared records and keys), and the broken files
the target must refuse without a panic: truncated, a cycle in the search tree, bad pointers, a wrong
record size, huge counts, records nested in one another. Each seed's first byte is the target's
selector (fields and max_entries, see fuzz/fuzz_targets/mmdb.rs). Idempotent; run from anywhere."""
import hashlib
import ipaddress
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = b"\xab\xcd\xefMaxMind.com"


class Ptr(int):
    """A pointer to a data-section offset (32-bit form)."""


class U(int):
    """An unsigned integer of an explicit type: U(value) uint32; .ty 5/9/10 for uint16/64/128."""
    ty = 6


def uint(ty, value):
    u = U(value)
    u.ty = ty
    return u


def ctrl(ty, size):
    first_ty = 0 if ty > 7 else ty
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65821:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65821).to_bytes(3, "big")
    out = bytes([first_ty << 5 | head])
    if ty > 7:
        out += bytes([ty - 7])
    return out + extra


def enc(v):
    if isinstance(v, Ptr):
        return bytes([1 << 5 | 3 << 3]) + int(v).to_bytes(4, "big")
    if isinstance(v, dict):
        return ctrl(7, len(v)) + b"".join(enc(k) + enc(x) for k, x in v.items())
    if isinstance(v, list):
        return ctrl(11, len(v)) + b"".join(enc(x) for x in v)
    if isinstance(v, str):
        return ctrl(2, len(v.encode())) + v.encode()
    if isinstance(v, bool):
        return ctrl(14, int(v))
    if isinstance(v, int):
        ty = getattr(v, "ty", 6)
        raw = int(v).to_bytes(16, "big").lstrip(b"\0")
        return ctrl(ty, len(raw)) + raw
    raise TypeError(v)


def database(nets, records, ip_version=4, record_size=24, aliases=(), meta_extra=None,
             raw_data=None):
    """nets: (cidr, record index); aliases: IPv6 cidrs whose record points at the ::/96 node.
    raw_data: (bytes, offsets) instead of encoding `records`."""
    if raw_data is None:
        data, offsets = b"", []
        for r in records:
            offsets.append(len(data))
            data += enc(r)
    else:
        data, offsets = raw_data
    width = 32 if ip_version == 4 else 128
    nodes = [[None, None]]  # child: ("n", i) | ("d", record) | None

    def insert(value, length, target):
        node = 0
        for d in range(length):
            bit = value >> (width - 1 - d) & 1
            if d + 1 == length:
                nodes[node][bit] = target
                return
            child = nodes[node][bit]
            if child is None or child[0] != "n":
                nodes.append([None, None])
                child = ("n", len(nodes) - 1)
                nodes[node][bit] = child
            node = child[1]

    for cidr, rec in nets:
        net = ipaddress.ip_network(cidr)
        value, length = int(net.network_address), net.prefixlen
        if ip_version == 6 and net.version == 4:
            length += 96
        insert(value, length, ("d", rec))
    if aliases:
        node = 0
        for _ in range(96):
            node = nodes[node][0][1]
        for cidr in aliases:
            net = ipaddress.ip_network(cidr)
            insert(int(net.network_address), net.prefixlen, ("n", node))
    count = len(nodes)

    def val(c):
        if c is None:
            return count
        return c[1] if c[0] == "n" else count + 16 + offsets[c[1]]

    tree = b""
    for left, right in nodes:
        lv, rv = val(left), val(right)
        if record_size == 24:
            tree += lv.to_bytes(3, "big") + rv.to_bytes(3, "big")
        elif record_size == 28:
            tree += (lv & 0xFFFFFF).to_bytes(3, "big") + bytes([(lv >> 24) << 4 | rv >> 24]) \
                + (rv & 0xFFFFFF).to_bytes(3, "big")
        else:
            tree += lv.to_bytes(4, "big") + rv.to_bytes(4, "big")
    meta = {"node_count": count, "record_size": record_size, "ip_version": ip_version,
            "database_type": "seed", "binary_format_major_version": uint(5, 2),
            "binary_format_minor_version": uint(5, 0), "build_epoch": uint(9, 1700000000)}
    meta.update(meta_extra or {})
    return tree + b"\0" * 16 + data + MARKER + enc(meta)


# Selector bytes (fuzz/fuzz_targets/mmdb.rs): bits 0-1 country path (0 none, 1 country_code,
# 2 country.iso_code), bit 2 the AS number too (always when no country), bits 3-4 max_entries.
CC, ISO, ASN_ONLY, CC_ASN, ISO_ASN = 0x19, 0x1A, 0x18, 0x1D, 0x1E


def seeds():
    out = []
    # ip-location-db's layout, IPv4, each record size.
    for size in (24, 28, 32):
        db = database([("1.0.0.0/24", 0), ("1.0.1.0/24", 1), ("10.0.0.0/8", 2), ("255.0.0.0/8", 0)],
                      [{"country_code": "AU"}, {"country_code": "cn"}, {"country_code": "US"}],
                      4, size)
        out.append(bytes([CC]) + db)
    # MaxMind's layout, IPv6 with the IPv4 subtree aliased where MaxMind's writer aliases it.
    names = {"en": "Germany", "de": "Deutschland"}
    v6 = database([("1.2.3.0/24", 0), ("2.0.0.0/8", 1), ("2001:db8::/32", 1), ("2a00::/12", 0)],
                  [{"country": {"iso_code": "KP", "geoname_id": 1873107},
                    "continent": {"code": "AS", "names": {"en": "Asia"}}},
                   {"continent": {"code": "EU"}, "country": {"geoname_id": 2921044,
                                                              "iso_code": "DE", "names": names},
                    "registered_country": {"iso_code": "DE"}}],
                  6, 28, aliases=["::ffff:0:0/96", "2002::/16"])
    out.append(bytes([ISO]) + v6)
    # An ASN database: records shared through pointers, keys through pointers, uint16/32/64.
    data = b""
    key = len(data)
    data += enc("autonomous_system_number")
    org = len(data)
    data += enc("autonomous_system_organization")
    offsets = []
    for asn, name, ty in ((15169, "GOOGLE", 6), (64496, "DOC", 5), (4200000000, "PRIVATE", 9)):
        offsets.append(len(data))
        data += ctrl(7, 2) + enc(Ptr(key)) + enc(uint(ty, asn)) + enc(Ptr(org)) + enc(name)
    offsets.append(len(data))
    data += enc(Ptr(offsets[0]))  # a record that is a pointer to another
    asn = database([("8.8.8.0/24", 0), ("8.8.4.0/24", 3), ("192.0.2.0/24", 1), ("100.64.0.0/10", 2)],
                   [], 4, 32, raw_data=(data, offsets))
    out.append(bytes([ASN_ONLY]) + asn)
    # Both fields in one IPv6 database of 24-bit records.
    both = database([("1.0.0.0/8", 0), ("2001:db8::/33", 1), ("2001:db8:8000::/33", 2)],
                    [{"country_code": "FR", "autonomous_system_number": 3215},
                     {"country_code": "NL", "autonomous_system_number": uint(10, 1)},
                     {"autonomous_system_number": 0, "country_code": "X1"}], 6, 24)
    out.append(bytes([CC_ASN]) + both)
    out.append(bytes([ISO_ASN]) + both)
    out.append(bytes([0x01]) + out[0][1:])  # max_entries 1: refused as too many ranges
    # Truncated files.
    for cut in (1, 7, 40, len(v6) // 2, len(v6) - 20, len(v6) - 1):
        out.append(bytes([ISO]) + v6[:cut])
    # A cycle in the search tree: node 1's left record points back at node 0.
    cyc = bytearray(out[2][1:])  # 32-bit records
    cyc[8:12] = (0).to_bytes(4, "big")
    out.append(bytes([CC]) + bytes(cyc))
    # Bad pointers: a record past the data section; a value pointing past it; a pointer loop.
    bad = bytearray(out[2][1:])
    bad[12:16] = (0x7FFFFFFF).to_bytes(4, "big")
    out.append(bytes([CC]) + bytes(bad))
    out.append(bytes([CC]) + database([("1.0.0.0/8", 0)], [{"country_code": Ptr(5000)}], 4, 24))
    out.append(bytes([CC]) + database([("1.0.0.0/8", 0)], [Ptr(0)], 4, 24))
    # Wrong record sizes: metadata saying 28 or 20 over 24-bit records.
    for rs in (28, 20, 0):
        out.append(bytes([CC]) + wrong_size(rs))
    # Huge counts: node_count near 2^32, a map of 2^24 pairs, a string of 16 MiB.
    out.append(bytes([CC]) + database([("1.0.0.0/8", 0)], [{"country_code": "AU"}], 4, 24,
                                      meta_extra={"node_count": 0xFFFFFFFF}))
    huge_map = ctrl(7, 0xFFFFFF) + enc("country_code") + enc("AU")
    huge_str = ctrl(7, 1) + enc("country_code") + ctrl(2, 0xFFFFFF) + b"AU"
    for raw in (huge_map, huge_str):
        out.append(bytes([CC]) + database([("1.0.0.0/8", 0)], [], 4, 24, raw_data=(raw, [0])))
    # Records nested in one another: {"country": {"country": ... {"iso_code": "KP"}}} with a
    # network at each level.
    depth = 40
    level = ctrl(7, 1) + enc("country")
    nest = level * depth + enc({"iso_code": "KP"})
    out.append(bytes([ISO]) + database([(f"1.{k}.0.0/16", k) for k in range(depth)], [], 4, 24,
                                       raw_data=(nest, [len(level) * k for k in range(depth)])))
    return out


def wrong_size(rs):
    db = database([("1.0.0.0/8", 0), ("2.0.0.0/8", 1)],
                  [{"country_code": "AU"}, {"country_code": "JP"}], 4, 24)
    at = db.rindex(b"record_size") + len(b"record_size")
    return db[:at] + enc(rs) + db[at + len(enc(24)):]


def main():
    d = HERE / "corpus" / "mmdb"
    d.mkdir(parents=True, exist_ok=True)
    for data in seeds():
        (d / f"seed-{hashlib.sha1(data).hexdigest()}").write_bytes(data)


if __name__ == "__main__":
    main()
