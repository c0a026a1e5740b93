//! The chain of addresses a request came through: the forwarding header's entries in wire order,
//! then the downstream address. The resolver reads it from the right, one entry at a time, so a
//! walk costs what it examines: a 60 KB header costs no more than its last few entries.

use crate::addr::{parse_entry, trim_ows, ClientAddr, InvalidAddr};

/// The request's header lines in wire order, as Envoy hands them over (names lower case).
pub type HeaderLines = [(String, String)];

/// How a forwarding header lists addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// `x-forwarded-for`: a comma-separated list over any number of lines, oldest first.
    List,
    /// Any other header (`x-real-ip`, `cf-connecting-ip`, …): exactly one address.
    Single,
}

impl HeaderKind {
    /// The kind of a (lower-case) header name.
    pub fn of(name: &str) -> Self {
        if name == "x-forwarded-for" {
            HeaderKind::List
        } else {
            HeaderKind::Single
        }
    }
}

/// Whether the last entry of the list header `name` is `addr` (same IP; ports and the mapped
/// form do not matter): the address Envoy, or a proxy before it, already appended.
pub fn ends_with(headers: &HeaderLines, name: &str, addr: ClientAddr) -> bool {
    ListEntries::new(headers, name)
        .next()
        .and_then(|last| parse_entry(last).ok())
        .is_some_and(|last| last.ip() == addr.ip())
}

/// One element of the chain left of the downstream address, as read from the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link<'a> {
    /// An entry's text, trimmed and non-empty; it may still be invalid.
    Entry(&'a str),
    /// A single-address header with several values or lines: invalid as a whole.
    Malformed,
}

/// The chain left of the downstream address, read right to left.
pub struct Chain<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    List {
        /// The last entry, already parsed to compare it with the downstream address: the walk
        /// reads it first and need not parse it again.
        last: Option<(&'a str, Result<ClientAddr, InvalidAddr>)>,
        entries: ListEntries<'a>,
    },
    Single(Option<Link<'a>>),
}

impl<'a> Chain<'a> {
    /// The chain of `name` (lower case) in `headers`. For `x-forwarded-for`, a last entry equal to
    /// the downstream address is that address itself (Envoy appended it) and is not repeated.
    pub fn new(
        headers: &'a HeaderLines,
        name: &'a str,
        kind: HeaderKind,
        downstream: ClientAddr,
    ) -> Self {
        let inner = match kind {
            HeaderKind::List => {
                let mut entries = ListEntries::new(headers, name);
                let last = entries
                    .next()
                    .map(|text| (text, parse_entry(text)))
                    .filter(|(_, parsed)| !parsed.is_ok_and(|a| a.ip() == downstream.ip()));
                Inner::List { last, entries }
            }
            HeaderKind::Single => Inner::Single(single_value(headers, name)),
        };
        Chain { inner }
    }

    /// The next element, parsed (a malformed single-address header is not an address).
    pub fn next_addr(&mut self) -> Option<Result<ClientAddr, InvalidAddr>> {
        match &mut self.inner {
            Inner::List { last, entries } => match last.take() {
                Some((_, parsed)) => Some(parsed),
                None => entries.next().map(parse_entry),
            },
            Inner::Single(value) => value.take().map(|link| match link {
                Link::Entry(text) => parse_entry(text),
                Link::Malformed => Err(InvalidAddr::NotAnAddress),
            }),
        }
    }
}

impl<'a> Iterator for Chain<'a> {
    type Item = Link<'a>;

    #[inline]
    fn next(&mut self) -> Option<Link<'a>> {
        match &mut self.inner {
            Inner::List { last, entries } => match last.take() {
                Some((text, _)) => Some(Link::Entry(text)),
                None => entries.next().map(Link::Entry),
            },
            Inner::Single(value) => value.take(),
        }
    }
}

/// The non-empty entries of every line of a list header, last line first, each line right to left.
struct ListEntries<'a> {
    headers: &'a HeaderLines,
    name: &'a str,
    /// Lines not yet visited: `headers[..remaining]`.
    remaining: usize,
    /// The part of the current line left of the entries already returned.
    line: Option<&'a str>,
}

impl<'a> ListEntries<'a> {
    fn new(headers: &'a HeaderLines, name: &'a str) -> Self {
        ListEntries {
            headers,
            name,
            remaining: headers.len(),
            line: None,
        }
    }
}

impl<'a> Iterator for ListEntries<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            while let Some(rest) = self.line {
                // A plain backwards scan: header values are short, and `rsplit_once` pays
                // memrchr's set-up for each entry. `,` is ASCII, so both slices are on char
                // boundaries.
                let part = match rest.bytes().rposition(|b| b == b',') {
                    Some(i) => {
                        self.line = Some(&rest[..i]);
                        &rest[i + 1..]
                    }
                    None => {
                        self.line = None;
                        rest
                    }
                };
                let entry = trim_ows(part);
                if !entry.is_empty() {
                    return Some(entry);
                }
            }
            loop {
                if self.remaining == 0 {
                    return None;
                }
                self.remaining -= 1;
                let (key, value) = &self.headers[self.remaining];
                if same_name(key, self.name) {
                    self.line = Some(value);
                    break;
                }
            }
        }
    }
}

/// Header names compare case-insensitively; Envoy hands them over in lower case, as `name` is, so
/// a plain comparison settles nearly every line.
#[inline]
fn same_name(key: &str, name: &str) -> bool {
    key.len() == name.len() && (key == name || key.eq_ignore_ascii_case(name))
}

/// The value of a single-address header: none, one entry, or malformed (several values or lines).
fn single_value<'a>(headers: &'a HeaderLines, name: &str) -> Option<Link<'a>> {
    let mut lines = headers.iter().filter(|(key, _)| same_name(key, name));
    let (_, value) = lines.next()?;
    if lines.next().is_some() {
        return Some(Link::Malformed);
    }
    let mut values = value.split(',').map(trim_ows).filter(|v| !v.is_empty());
    let first = values.next()?;
    if values.next().is_some() {
        return Some(Link::Malformed);
    }
    Some(Link::Entry(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::headers;

    fn ds(s: &str) -> ClientAddr {
        crate::addr::parse_socket_addr(s).unwrap()
    }
    fn links<'a>(h: &'a [(String, String)], name: &'a str, d: &str) -> Vec<Link<'a>> {
        Chain::new(h, name, HeaderKind::of(name), ds(d)).collect()
    }

    #[test]
    fn chain_xff_lines_in_wire_order_read_from_the_right() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-other", "9.9.9.9"),
            ("X-Forwarded-For", "3.3.3.3"),
        ]);
        assert_eq!(
            links(&h, "x-forwarded-for", "10.0.0.1:5"),
            vec![
                Link::Entry("3.3.3.3"),
                Link::Entry("2.2.2.2"),
                Link::Entry("1.1.1.1")
            ]
        );
    }

    #[test]
    fn chain_skips_empty_elements_and_trims_spaces_and_tabs() {
        let h = headers(&[("x-forwarded-for", " ,1.1.1.1 ,,\t2.2.2.2\t, ")]);
        assert_eq!(
            links(&h, "x-forwarded-for", "10.0.0.1:5"),
            vec![Link::Entry("2.2.2.2"), Link::Entry("1.1.1.1")]
        );
    }

    #[test]
    fn chain_does_not_repeat_a_last_entry_equal_to_the_downstream() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 10.0.0.1")]);
        assert_eq!(
            links(&h, "x-forwarded-for", "10.0.0.1:5"),
            vec![Link::Entry("1.1.1.1")]
        );
        // Mapped form and port still equal the downstream address.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, [::ffff:10.0.0.1]:7")]);
        assert_eq!(
            links(&h, "x-forwarded-for", "10.0.0.1:5"),
            vec![Link::Entry("1.1.1.1")]
        );
        // Only the last entry is compared.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 1.1.1.1")]);
        assert_eq!(links(&h, "x-forwarded-for", "10.0.0.1:5").len(), 2);
    }

    #[test]
    fn chain_single_header_is_one_value() {
        let h = headers(&[("x-real-ip", " 1.1.1.1 ")]);
        assert_eq!(
            links(&h, "x-real-ip", "10.0.0.1:5"),
            vec![Link::Entry("1.1.1.1")]
        );
        // Not deduplicated against the downstream address: only X-Forwarded-For gets appended to.
        let h = headers(&[("x-real-ip", "10.0.0.1")]);
        assert_eq!(links(&h, "x-real-ip", "10.0.0.1:5").len(), 1);
    }

    #[test]
    fn chain_single_header_with_several_values_or_lines_is_malformed() {
        let h = headers(&[("x-real-ip", "1.1.1.1, 2.2.2.2")]);
        assert_eq!(links(&h, "x-real-ip", "10.0.0.1:5"), vec![Link::Malformed]);
        let h = headers(&[("x-real-ip", "1.1.1.1"), ("X-Real-IP", "2.2.2.2")]);
        assert_eq!(links(&h, "x-real-ip", "10.0.0.1:5"), vec![Link::Malformed]);
        let h = headers(&[("x-real-ip", " , ")]);
        assert!(links(&h, "x-real-ip", "10.0.0.1:5").is_empty());
    }

    #[test]
    fn chain_absent_header_is_empty() {
        let h = headers(&[(":path", "/")]);
        assert!(links(&h, "x-forwarded-for", "10.0.0.1:5").is_empty());
        assert!(links(&h, "x-real-ip", "10.0.0.1:5").is_empty());
    }
}
