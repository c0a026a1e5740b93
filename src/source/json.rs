//! The JSON formats (`aws`, `gcp`, `azure`), read in one streaming pass.
//!
//! A document tree (`serde_json::Value`) of a 32 MiB body costs up to 16 times the body (a number
//! in an array is 1 byte of body and a 32-byte `Value`), and a list server chooses the body. Here
//! serde_json's parser drives visitors that know the format: an entry is read field by field into
//! a few locals and pushed as one network; everything the format does not name (other keys, values
//! of the wrong shape inside an entry) is skipped by serde_json's non-recursive skipper, which
//! allocates nothing but one byte per open bracket. Strings are borrowed from the body; an escaped
//! one is unescaped into one scratch buffer. So the peak is the networks taken plus, for Azure,
//! the prefixes of one tag (buffered until the tag's `name` and `properties` are both known).
//!
//! The rules are those of `format`: a missing list is no entry, a list or entry of the wrong
//! shape rejects the body, an entry that `select` does not pass is skipped (even when its CIDR is
//! invalid), a selected entry with an invalid CIDR rejects the body. Our own rejections travel in
//! [`Ctx::failure`] (serde only carries text).
//!
//! One visitor type ([`Walk`]) with a [`Role`] plays every part: each visitor type instantiates
//! serde_json's parser anew, kilobytes of `.wasm` apiece (as in `config/lists.rs`).

use std::fmt;

use ipnet::IpNet;
use serde_core::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::format::{Collect, Rejection};
use super::{Format, Select};
use crate::ipset::parse_net;

/// What the visitors share: the `select`, the networks taken, and the first rejection.
struct Ctx<'a> {
    select: &'a Select,
    list: &'a mut Collect,
    failure: Option<Rejection>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&mut self, why: Rejection) -> E {
        self.failure = Some(why);
        E::custom("rejected")
    }

    fn malformed<E: de::Error>(&mut self, why: String) -> E {
        self.fail(Rejection::Malformed(why))
    }

    fn push<E: de::Error>(&mut self, net: IpNet) -> Result<(), E> {
        self.list.push(net).map_err(|r| self.fail(r))
    }

    /// Which select keys a value matches: bit `j` for `select.0[j]`, when `key` is that key.
    fn select_index(&self, key: &str) -> Option<usize> {
        self.select.0.iter().position(|(k, _)| k == key)
    }

    fn all_selected(&self) -> u32 {
        (1u32 << self.select.0.len().min(31)) - 1
    }
}

/// Reads a JSON body of `format` (not `text`) into `list`.
pub(super) fn read(
    format: Format,
    select: &Select,
    body: &[u8],
    list: &mut Collect,
) -> Result<(), Rejection> {
    let mut ctx = Ctx {
        select,
        list,
        failure: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Walk {
        ctx: &mut ctx,
        role: Role::Doc(format),
    }
    .deserialize(&mut de)
    .and_then(|_| de.end());
    match (result, ctx.failure) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(why)) => Err(why),
        (Err(e), None) if e.is_data() => Err(Rejection::Malformed(e.to_string())),
        (Err(e), None) => Err(Rejection::Malformed(format!("not valid JSON ({e})"))),
    }
}

/// A string shown in a message: quoted, at most 64 characters.
fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// The part a value plays in the document.
#[derive(Clone, Copy)]
enum Role<'n> {
    /// An object key: its index in these names.
    Key(&'n [&'n str]),
    /// The document.
    Doc(Format),
    /// An aws/gcp list of entries, each with one of `fields` (a CIDR) and `names` (`fields`,
    /// then the select keys).
    Entries {
        key: &'static str,
        fields: &'static [&'static str],
        names: &'n [&'n str],
    },
    /// One entry of such a list.
    Entry {
        key: &'static str,
        index: usize,
        fields: &'static [&'static str],
        names: &'n [&'n str],
    },
    /// A value that should be a CIDR string.
    Cidr,
    /// A value a select key reads: whether it is a string among these.
    Matches(&'n [String]),
    /// Azure's `values`.
    Tags,
    /// `values[i]`.
    Tag(usize),
    /// `values[i].properties`.
    Properties(usize),
    /// `values[i].properties.addressPrefixes`.
    Prefixes(usize),
}

/// What a value read in its role gives.
enum Out {
    Done,
    Key(Option<usize>),
    /// The network, or the value shown for a message.
    Cidr(Result<IpNet, String>),
    Matches(bool),
    Properties(Option<Properties>),
    /// An error: the first invalid prefix.
    Prefixes(Option<Result<Vec<IpNet>, String>>),
}

/// A tag's `properties`, read: the select keys matched and its prefixes.
struct Properties {
    matched: u32,
    prefixes: Option<Result<Vec<IpNet>, String>>,
}

/// The one visitor: a value in its role.
struct Walk<'a, 'c, 'n> {
    ctx: &'a mut Ctx<'c>,
    role: Role<'n>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, '_> {
    type Value = Out;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Out, D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads a map's next value in `role`.
fn walk<'de, A: MapAccess<'de>>(
    map: &mut A,
    ctx: &mut Ctx<'_>,
    role: Role<'_>,
) -> Result<Out, A::Error> {
    map.next_value_seed(Walk { ctx, role })
}

/// Reads a map's next key: its index among `names` (None: another key); None at the end.
fn key<'de, A: MapAccess<'de>>(
    map: &mut A,
    ctx: &mut Ctx<'_>,
    names: &[&str],
) -> Result<Option<Option<usize>>, A::Error> {
    Ok(map
        .next_key_seed(Walk {
            ctx,
            role: Role::Key(names),
        })?
        .map(|out| match out {
            Out::Key(k) => k,
            _ => None,
        }))
}

/// Reads the value of select key `j`: sets or clears its bit in `matched`.
fn matches<'de, A: MapAccess<'de>>(
    map: &mut A,
    ctx: &mut Ctx<'_>,
    j: usize,
    matched: &mut u32,
) -> Result<(), A::Error> {
    let select = ctx.select;
    if let Out::Matches(true) = walk(map, ctx, Role::Matches(&select.0[j].1))? {
        *matched |= 1 << j;
    } else {
        *matched &= !(1 << j);
    }
    Ok(())
}

impl Walk<'_, '_, '_> {
    /// A scalar (shown as `shown`) in this role. Every shape is visited (`deserialize_any`), so
    /// serde never builds a type error: its message formats floats, 15 KiB of `.wasm`.
    fn scalar<E: de::Error>(self, shown: &str) -> Result<Out, E> {
        match self.role {
            Role::Key(_) => Ok(Out::Key(None)),
            Role::Cidr => Ok(Out::Cidr(Err(shown.to_string()))),
            Role::Matches(_) => Ok(Out::Matches(false)),
            Role::Properties(_) => Ok(Out::Properties(None)),
            Role::Prefixes(_) => Ok(Out::Prefixes(None)),
            _ => Err(self.wrong_type()),
        }
    }

    /// Skips a list or object where `self.role` expects another shape.
    fn skipped<E: de::Error>(self, shown: &str) -> Result<Out, E> {
        self.scalar(shown)
    }

    fn wrong_type<E: de::Error>(self) -> E {
        let why = match self.role {
            Role::Doc(_) => "the document is not a JSON object".to_string(),
            Role::Entries { key, .. } => format!("{key} is not a list"),
            Role::Entry { key, index, .. } => format!("{key}[{index}] is not an object"),
            Role::Tags => "values is missing or not a list".to_string(),
            Role::Tag(i) => format!("values[{i}] is not an object"),
            _ => "unexpected value".to_string(),
        };
        self.ctx.malformed(why)
    }

    fn doc<'de, A: MapAccess<'de>>(self, format: Format, mut map: A) -> Result<Out, A::Error> {
        let keys: &[&str] = match format {
            Format::Aws => &["prefixes", "ipv6_prefixes"],
            Format::Gcp => &["prefixes"],
            Format::Azure | Format::Text | Format::Mmdb => &["values"],
        };
        let mut values = false;
        while let Some(k) = key(&mut map, self.ctx, keys)? {
            let (key, fields): (&'static str, &'static [&'static str]) = match (format, k) {
                (Format::Aws, Some(0)) => ("prefixes", &["ip_prefix"]),
                (Format::Aws, Some(_)) => ("ipv6_prefixes", &["ipv6_prefix"]),
                (Format::Gcp, Some(_)) => ("prefixes", &["ipv4Prefix", "ipv6Prefix"]),
                (Format::Azure, Some(_)) => {
                    values = true;
                    walk(&mut map, self.ctx, Role::Tags)?;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let mut names: Vec<&str> = fields.to_vec();
            names.extend(self.ctx.select.0.iter().map(|(k, _)| k.as_str()));
            walk(
                &mut map,
                self.ctx,
                Role::Entries {
                    key,
                    fields,
                    names: &names,
                },
            )?;
        }
        if format == Format::Azure && !values {
            return Err(self.ctx.malformed("values is missing or not a list".into()));
        }
        Ok(Out::Done)
    }

    fn entry<'de, A: MapAccess<'de>>(
        self,
        key_name: &'static str,
        index: usize,
        fields: &'static [&'static str],
        names: &[&str],
        mut map: A,
    ) -> Result<Out, A::Error> {
        let n = fields.len();
        // The CIDR of the first of `fields` present (its index), and the select keys matched.
        let mut cidr: Option<(usize, Result<IpNet, String>)> = None;
        let mut matched = 0u32;
        while let Some(k) = key(&mut map, self.ctx, names)? {
            match k {
                Some(f) if f < n => {
                    let Out::Cidr(value) = walk(&mut map, self.ctx, Role::Cidr)? else {
                        continue;
                    };
                    if cidr.as_ref().is_none_or(|(g, _)| f <= *g) {
                        cidr = Some((f, value));
                    }
                }
                Some(s) => matches(&mut map, self.ctx, s - n, &mut matched)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let at = format!("{key_name}[{index}]");
        let Some((f, cidr)) = cidr else {
            return Err(self
                .ctx
                .malformed(format!("{at} has no {}", fields.join(" or "))));
        };
        if matched != self.ctx.all_selected() {
            return Ok(Out::Done);
        }
        match cidr {
            Ok(net) => self.ctx.push(net).map(|()| Out::Done),
            Err(value) => Err(self.ctx.malformed(format!(
                "{at}.{}: {value} is not an IP address or CIDR",
                fields[f]
            ))),
        }
    }

    fn tag<'de, A: MapAccess<'de>>(self, i: usize, mut map: A) -> Result<Out, A::Error> {
        let mut matched = 0u32;
        let mut properties: Option<Properties> = None;
        while let Some(k) = key(&mut map, self.ctx, &["name", "properties"])? {
            match k {
                Some(0) => match self.ctx.select_index("name") {
                    Some(j) => matches(&mut map, self.ctx, j, &mut matched)?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
                Some(_) => {
                    if let Out::Properties(p) = walk(&mut map, self.ctx, Role::Properties(i))? {
                        properties = p;
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(properties) = properties else {
            return Err(self
                .ctx
                .malformed(format!("values[{i}].properties is missing")));
        };
        if matched | properties.matched != self.ctx.all_selected() {
            return Ok(Out::Done);
        }
        match properties.prefixes {
            Some(Ok(nets)) => nets
                .into_iter()
                .try_for_each(|net| self.ctx.push(net))
                .map(|()| Out::Done),
            Some(Err(why)) => Err(self.ctx.malformed(why)),
            None => Err(self.ctx.malformed(format!(
                "values[{i}].properties.addressPrefixes is missing or not a list"
            ))),
        }
    }

    fn properties<'de, A: MapAccess<'de>>(self, i: usize, mut map: A) -> Result<Out, A::Error> {
        let mut matched = 0u32;
        let mut prefixes = None;
        while let Some(k) = key(
            &mut map,
            self.ctx,
            &["region", "systemService", "addressPrefixes"],
        )? {
            let select_key = match k {
                Some(0) => "region",
                Some(1) => "system_service",
                Some(_) => {
                    if let Out::Prefixes(p) = walk(&mut map, self.ctx, Role::Prefixes(i))? {
                        prefixes = p;
                    }
                    continue;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            match self.ctx.select_index(select_key) {
                Some(j) => matches(&mut map, self.ctx, j, &mut matched)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Out::Properties(Some(Properties { matched, prefixes })))
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, '_> {
    type Value = Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list server's document")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Out, E> {
        match self.role {
            Role::Key(names) => Ok(Out::Key(names.iter().position(|k| *k == v))),
            Role::Cidr => Ok(Out::Cidr(
                parse_net(v).map(|(net, _)| net).ok_or_else(|| shown(v)),
            )),
            Role::Matches(values) => Ok(Out::Matches(values.iter().any(|a| a == v))),
            _ => self.scalar(&shown(v)),
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Out, E> {
        self.scalar(if v { "true" } else { "false" })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Out, E> {
        self.scalar(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Out, E> {
        self.scalar(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Out, E> {
        self.scalar("a number")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Out, E> {
        self.scalar("null")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Out, A::Error> {
        match self.role {
            Role::Entries { key, fields, names } => {
                let mut index = 0;
                while seq
                    .next_element_seed(Walk {
                        ctx: self.ctx,
                        role: Role::Entry {
                            key,
                            index,
                            fields,
                            names,
                        },
                    })?
                    .is_some()
                {
                    index += 1;
                }
                Ok(Out::Done)
            }
            Role::Tags => {
                let mut index = 0;
                while seq
                    .next_element_seed(Walk {
                        ctx: self.ctx,
                        role: Role::Tag(index),
                    })?
                    .is_some()
                {
                    index += 1;
                }
                Ok(Out::Done)
            }
            Role::Prefixes(i) => {
                let mut nets = Vec::new();
                let mut error = None;
                let mut j = 0;
                while let Some(out) = seq.next_element_seed(Walk {
                    ctx: self.ctx,
                    role: Role::Cidr,
                })? {
                    match out {
                        Out::Cidr(Ok(net)) => nets.push(net),
                        Out::Cidr(Err(value)) if error.is_none() => {
                            error = Some(format!(
                                "values[{i}].properties.addressPrefixes[{j}]: {value} is not an IP address or CIDR"
                            ));
                        }
                        _ => {}
                    }
                    j += 1;
                }
                Ok(Out::Prefixes(Some(error.map_or(Ok(nets), Err))))
            }
            Role::Key(_) | Role::Cidr | Role::Matches(_) | Role::Properties(_) => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                self.skipped("a list")
            }
            _ => Err(self.wrong_type()),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Out, A::Error> {
        match self.role {
            Role::Doc(format) => self.doc(format, map),
            Role::Entry {
                key,
                index,
                fields,
                names,
            } => self.entry(key, index, fields, names, map),
            Role::Tag(i) => self.tag(i, map),
            Role::Properties(i) => self.properties(i, map),
            Role::Key(_) | Role::Cidr | Role::Matches(_) | Role::Prefixes(_) => {
                let mut map = map;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                self.skipped("an object")
            }
            _ => Err(self.wrong_type()),
        }
    }
}
