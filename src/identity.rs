//! Private-link identities (docs/private-link.md): the consumer endpoint a cloud load balancer names in a PROXY
//! protocol v2 TLV (AWS PrivateLink, Azure Private Link, GCP Private Service Connect), as list
//! entries, as the value the host hands over, and as text for a header and the access log.
//!
//! Pure: the adapter reads the filter state and hands the bytes to [`read_value`].

use std::fmt;

/// The three kinds of identity, in the order the adapter reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// AWS PrivateLink: TLV 0xEA, subtype 0x01, the VPC endpoint id (`vpce-…`).
    AwsVpce,
    /// Azure Private Link: TLV 0xEE, subtype 0x01, a little-endian u32 LinkID.
    AzureLink,
    /// GCP Private Service Connect: TLV 0xE0, a big-endian u64 PSC connection id.
    GcpPsc,
}

impl Kind {
    /// Every kind, in reading order.
    pub const ALL: [Kind; 3] = [Kind::AwsVpce, Kind::AzureLink, Kind::GcpPsc];

    /// The prefix of the identity's text and of a list entry (`aws-vpce:`).
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::AwsVpce => "aws-vpce:",
            Kind::AzureLink => "azure-link:",
            Kind::GcpPsc => "gcp-psc:",
        }
    }

    /// The key the `proxy_protocol` listener filter's rule stores the TLV under (its
    /// `on_tlv_present.key`): `aws_vpce_id`, `azure_link_id`, `gcp_psc_id`.
    pub fn tlv_key(self) -> &'static str {
        match self {
            Kind::AwsVpce => "aws_vpce_id",
            Kind::AzureLink => "azure_link_id",
            Kind::GcpPsc => "gcp_psc_id",
        }
    }

    /// The filter-state name a `set_filter_state` copy of the TLV's dynamic metadata is written
    /// under (docs/private-link.md): `client_ip.aws_vpce_id`, `client_ip.azure_link_id`,
    /// `client_ip.gcp_psc_id`.
    pub fn copy_key(self) -> &'static str {
        match self {
            Kind::AwsVpce => "client_ip.aws_vpce_id",
            Kind::AzureLink => "client_ip.azure_link_id",
            Kind::GcpPsc => "client_ip.gcp_psc_id",
        }
    }

    /// The PROXY v2 TLV type.
    pub fn tlv_type(self) -> u8 {
        match self {
            Kind::AwsVpce => 0xEA,
            Kind::AzureLink => 0xEE,
            Kind::GcpPsc => 0xE0,
        }
    }

    /// What a list entry of this kind looks like, for error messages.
    fn shape(self) -> &'static str {
        match self {
            Kind::AwsVpce => "aws-vpce:vpce- and 8 to 32 lowercase hex digits",
            Kind::AzureLink => "azure-link: and a LinkID from 0 to 4294967295",
            Kind::GcpPsc => "gcp-psc: and a PSC connection id from 0 to 18446744073709551615",
        }
    }

    /// The longest valid TLV value of this kind, in bytes.
    fn max_value_len(self) -> usize {
        match self {
            Kind::AwsVpce => 1 + VPCE_PREFIX.len() + VPCE_DIGITS_MAX,
            Kind::AzureLink => 5,
            Kind::GcpPsc => 8,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

const VPCE_PREFIX: &[u8] = b"vpce-";
const VPCE_DIGITS_MIN: usize = 8;
const VPCE_DIGITS_MAX: usize = 32;
/// The subtype byte AWS and Azure put before the value.
const SUBTYPE_ENDPOINT: u8 = 0x01;

/// A set of kinds (which TLVs a configuration reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// All three kinds.
    pub const ALL: Kinds = Kinds(0b111);

    /// No kind: nothing is read.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: Kind) -> Kinds {
        Kinds(self.0 | kind.bit())
    }

    /// The union.
    pub fn union(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }

    /// The kinds in the set, in reading order.
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// One private-link identity. Plain data (no heap): an AWS id is at most 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// The hex digits after `vpce-` (lower case), `len` of them used; the rest are zero.
    AwsVpce {
        len: u8,
        digits: [u8; VPCE_DIGITS_MAX],
    },
    /// An Azure Private Link LinkID.
    AzureLink(u32),
    /// A GCP Private Service Connect connection id.
    GcpPsc(u64),
}

impl Identity {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Identity::AwsVpce { .. } => Kind::AwsVpce,
            Identity::AzureLink(_) => Kind::AzureLink,
            Identity::GcpPsc(_) => Kind::GcpPsc,
        }
    }

    /// The kind of a list entry, from its prefix alone: None when the entry is no identity entry
    /// at all (an address, a CIDR, a source).
    pub fn entry_kind(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| text.starts_with(k.prefix()))
    }

    /// Parses a list entry in its canonical text (`aws-vpce:vpce-0a1b2c3d`, `azure-link:123456`,
    /// `gcp-psc:49477946121388034`). Decimal ids are plain digits without leading zeros; AWS hex
    /// digits are lower case, as AWS writes them. The error says what the entry should look like.
    pub fn parse_entry(text: &str) -> Result<Identity, EntryError> {
        let kind = Identity::entry_kind(text).ok_or(EntryError::NotAnIdentity)?;
        let rest = &text[kind.prefix().len()..];
        let parsed = match kind {
            Kind::AwsVpce => rest
                .as_bytes()
                .strip_prefix(VPCE_PREFIX)
                .and_then(aws_digits),
            Kind::AzureLink => canonical_decimal(rest)
                .and_then(|n| u32::try_from(n).ok())
                .map(Identity::AzureLink),
            Kind::GcpPsc => canonical_decimal(rest).map(Identity::GcpPsc),
        };
        parsed.ok_or(EntryError::Malformed(kind))
    }

    /// An identity from a TLV's value bytes as sent on the wire (without type and length):
    /// AWS `0x01` + `vpce-…` (ASCII), Azure `0x01` + 4 bytes little-endian, GCP 8 bytes big-endian.
    /// Any other length or shape is None.
    pub fn from_tlv(kind: Kind, value: &[u8]) -> Option<Identity> {
        match kind {
            Kind::AwsVpce => match value {
                [SUBTYPE_ENDPOINT, rest @ ..] => {
                    rest.strip_prefix(VPCE_PREFIX).and_then(aws_digits)
                }
                _ => None,
            },
            Kind::AzureLink => match value {
                [SUBTYPE_ENDPOINT, a, b, c, d] => {
                    Some(Identity::AzureLink(u32::from_le_bytes([*a, *b, *c, *d])))
                }
                _ => None,
            },
            Kind::GcpPsc => <[u8; 8]>::try_from(value)
                .ok()
                .map(|b| Identity::GcpPsc(u64::from_be_bytes(b))),
        }
    }

    /// The canonical text (`aws-vpce:vpce-…`, `azure-link:…`, `gcp-psc:…`): ASCII letters,
    /// digits, `:` and `-` only, safe in a header value.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().prefix())?;
        match self {
            Identity::AwsVpce { len, digits } => {
                f.write_str("vpce-")?;
                // Only lowercase hex digits are ever stored.
                let digits = &digits[..usize::from(*len)];
                f.write_str(std::str::from_utf8(digits).unwrap_or(""))
            }
            Identity::AzureLink(id) => write!(f, "{id}"),
            Identity::GcpPsc(id) => write!(f, "{id}"),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

/// Why a list entry is not an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// It does not start with an identity prefix (it may be an address or another entry).
    NotAnIdentity,
    /// It starts with this kind's prefix but the rest is not a valid id.
    Malformed(Kind),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::NotAnIdentity => f.write_str("is not an identity entry"),
            EntryError::Malformed(kind) => write!(f, "is not an identity ({})", kind.shape()),
        }
    }
}

/// The digits of `vpce-<digits>`: 8 to 32 lowercase hex digits, nothing else.
fn aws_digits(digits: &[u8]) -> Option<Identity> {
    let ok_len = (VPCE_DIGITS_MIN..=VPCE_DIGITS_MAX).contains(&digits.len());
    let ok_chars = digits
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !(ok_len && ok_chars) {
        return None;
    }
    let mut stored = [0u8; VPCE_DIGITS_MAX];
    stored[..digits.len()].copy_from_slice(digits);
    Some(Identity::AwsVpce {
        len: digits.len() as u8,
        digits: stored,
    })
}

/// A decimal u64 in canonical form: digits only, no sign, no leading zero (except `0`).
fn canonical_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// How the TLV reached the filter state the filter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The `proxy_protocol` listener filter's own filter state (`tlv_location: FILTER_STATE`,
    /// Envoy 1.39+), read as `["filter_state", "envoy.network.proxy_protocol.tlv", <key>]`.
    /// With the rule's `value_string_encoding: BASE64` the value is the base64 of the TLV bytes.
    TlvFilterState,
    /// A `set_filter_state` copy of the listener filter's dynamic metadata (Envoy 1.29+),
    /// `%DYNAMIC_METADATA(envoy.filters.listener.proxy_protocol:<key>)%`: base64 when the rule
    /// asks for it (Envoy 1.39+), and `-` when the TLV was missing.
    MetadataCopy,
}

/// What one filter-state value says about one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlvRead {
    /// No such TLV on the connection.
    Absent,
    /// A valid identity.
    Valid(Identity),
    /// A TLV of the wrong length or shape (counted in `client_ip.link_invalid`).
    Invalid,
}

/// The debug line of one value read for `kind` (what the adapters log): its route, its size,
/// at most its first 96 bytes escaped (Envoy caps no TLV's size) and what it read as.
pub fn describe_read<'a>(
    kind: Kind,
    route: Route,
    value: &'a [u8],
    read: &'a TlvRead,
) -> impl fmt::Display + 'a {
    DescribedRead {
        kind,
        route,
        value,
        read,
    }
}

struct DescribedRead<'a> {
    kind: Kind,
    route: Route,
    value: &'a [u8],
    read: &'a TlvRead,
}

impl fmt::Display for DescribedRead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.value[..self.value.len().min(96)];
        write!(
            f,
            "{} ({:?}, {} bytes): \"{}\" is {:?}",
            self.kind.tlv_key(),
            self.route,
            self.value.len(),
            shown.escape_ascii(),
            self.read
        )
    }
}

/// Interprets the filter-state value the host handed over for `kind` under `route`
/// (None: the host has no such value).
///
/// Base64 (standard alphabet, padding optional) is decoded and the bytes checked with
/// [`Identity::from_tlv`]. Without `value_string_encoding: BASE64`, Envoy (1.40, both routes)
/// hands over the TLV bytes with every byte that is not valid UTF-8 turned into `!`: such a raw
/// value is taken only for AWS, whose id is ASCII (a replaced byte leaves a `!` that fails the
/// check). A raw Azure or GCP value is invalid: two different ids could read the same.
/// Empty, and `-` on the metadata copy, are absent.
pub fn read_value(kind: Kind, route: Route, value: Option<&[u8]>) -> TlvRead {
    let value = match value {
        None | Some(b"") => return TlvRead::Absent,
        Some(b"-") if route == Route::MetadataCopy => return TlvRead::Absent,
        Some(v) => v,
    };
    let checked = |bytes: &[u8]| match Identity::from_tlv(kind, bytes) {
        Some(id) => TlvRead::Valid(id),
        None => TlvRead::Invalid,
    };
    // A raw value's shape: the subtype byte first (AWS, Azure) or exactly 8 bytes (GCP). No
    // base64 text starts with 0x01, and base64 of 8 bytes is 12 characters.
    let raw = match kind {
        Kind::AwsVpce | Kind::AzureLink => value.first() == Some(&SUBTYPE_ENDPOINT),
        Kind::GcpPsc => value.len() == 8,
    };
    if raw {
        return if kind == Kind::AwsVpce {
            checked(value)
        } else {
            TlvRead::Invalid
        };
    }
    // Longer than any valid value's base64: invalid, without decoding it.
    if value.len() > kind.max_value_len().div_ceil(3) * 4 {
        return TlvRead::Invalid;
    }
    match decode_base64(value) {
        Some(bytes) => checked(&bytes),
        None => TlvRead::Invalid,
    }
}

/// Standard base64 (`A-Z a-z 0-9 + /`), `=` padding optional; None for anything else.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let body = match text {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => text,
    };
    if text.len() != body.len() && !text.len().is_multiple_of(4) {
        return None;
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let sextet = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &b in chunk {
            acc = (acc << 6) | sextet(b)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => {
                if acc & 0b11 != 0 {
                    return None; // non-canonical trailing bits
                }
                out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]);
            }
            2 => {
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The connection's identity as read for one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// The first valid identity in reading order (AWS, Azure, GCP); None when there is none.
    pub identity: Option<Identity>,
    /// Some TLV read was invalid (counted once per request in `client_ip.link_invalid`).
    pub invalid: bool,
}

impl Link {
    /// Combines the reads of the kinds, in reading order.
    pub fn from_reads(reads: impl IntoIterator<Item = TlvRead>) -> Link {
        let mut link = Link::default();
        for read in reads {
            match read {
                TlvRead::Absent => {}
                TlvRead::Invalid => link.invalid = true,
                TlvRead::Valid(id) => {
                    if link.identity.is_none() {
                        link.identity = Some(id);
                    }
                }
            }
        }
        link
    }
}

/// A compiled set of identities (one list's identity entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentitySet {
    sorted: Vec<Identity>,
}

impl IdentitySet {
    /// A set from identities, in any order, duplicates allowed.
    pub fn from_identities(ids: impl IntoIterator<Item = Identity>) -> IdentitySet {
        let mut sorted: Vec<Identity> = ids.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        IdentitySet { sorted }
    }

    /// No identity.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether the connection's identity (None: it has none) is in the set.
    #[inline]
    pub fn contains(&self, id: Option<&Identity>) -> bool {
        id.is_some_and(|id| self.sorted.binary_search(id).is_ok())
    }

    /// The kinds the set holds.
    pub fn kinds(&self) -> Kinds {
        self.sorted
            .iter()
            .fold(Kinds::default(), |k, id| k.with(id.kind()))
    }
}

/// The identity part of an allow list and a deny list (see [`crate::access::Lists`]).
#[derive(Clone, Debug, Default)]
pub struct LinkLists {
    /// Identities that are allowed.
    pub allow: IdentitySet,
    /// Identities that are refused.
    pub deny: IdentitySet,
}

impl LinkLists {
    /// The kinds either list holds: what must be read to decide with them.
    pub fn kinds(&self) -> Kinds {
        self.allow.kinds().union(self.deny.kinds())
    }
}

/// What the configuration needs from the connection's identity, compiled once.
#[derive(Clone, Debug, Default)]
pub struct LinkPolicy {
    /// `forward.link_header`: removed from every admitted request, then set to the identity's text.
    pub header: Option<String>,
    /// The kinds read per request: those the lists hold, all three with a link header. Empty
    /// (the default configuration): the filter makes no host call for identities.
    pub kinds: Kinds,
}

#[cfg(test)]
mod tests;
