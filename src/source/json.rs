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
//! [`Ctx::failure`] (serde only carries text); type errors are serde's, with their line and column.

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
    let result = Doc {
        ctx: &mut ctx,
        format,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
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

/// An object key: its index in the names the visitor knows, or None.
struct Key<'k>(&'k [&'k str]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
}

/// The document: an object whose lists the format names.
struct Doc<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    format: Format,
}

impl<'de> DeserializeSeed<'de> for Doc<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Doc<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the document to be a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let keys: &[&str] = match self.format {
            Format::Aws => &["prefixes", "ipv6_prefixes"],
            Format::Gcp => &["prefixes"],
            Format::Azure | Format::Text => &["values"],
        };
        let mut values = false;
        while let Some(k) = map.next_key_seed(Key(keys))? {
            let (key, fields): (&'static str, &'static [&'static str]) = match (self.format, k) {
                (Format::Aws, Some(0)) => ("prefixes", &["ip_prefix"]),
                (Format::Aws, Some(_)) => ("ipv6_prefixes", &["ipv6_prefix"]),
                (Format::Gcp, Some(_)) => ("prefixes", &["ipv4Prefix", "ipv6Prefix"]),
                (Format::Azure, Some(_)) => {
                    values = true;
                    map.next_value_seed(Tags { ctx: self.ctx })?;
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let mut names: Vec<&str> = fields.to_vec();
            names.extend(self.ctx.select.0.iter().map(|(k, _)| k.as_str()));
            map.next_value_seed(Entries {
                ctx: self.ctx,
                key,
                fields,
                names: &names,
            })?;
        }
        if self.format == Format::Azure && !values {
            return Err(self.ctx.malformed("values is missing or not a list".into()));
        }
        Ok(())
    }
}

/// An aws/gcp list: objects each holding one of `fields` (a CIDR) and the select keys.
struct Entries<'a, 'c, 'n> {
    ctx: &'a mut Ctx<'c>,
    key: &'static str,
    fields: &'static [&'static str],
    /// `fields`, then the select keys.
    names: &'n [&'n str],
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} to be a list", self.key)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(()) = seq.next_element_seed(Entry {
            ctx: self.ctx,
            key: self.key,
            index,
            fields: self.fields,
            names: self.names,
        })? {
            index += 1;
        }
        Ok(())
    }
}

struct Entry<'a, 'c, 'n> {
    ctx: &'a mut Ctx<'c>,
    key: &'static str,
    index: usize,
    fields: &'static [&'static str],
    names: &'n [&'n str],
}

impl<'de> DeserializeSeed<'de> for Entry<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Entry<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}[{}] to be an object", self.key, self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let n = self.fields.len();
        // The CIDR of the first of `fields` present (its index), and the select keys matched.
        let mut cidr: Option<(usize, Result<IpNet, String>)> = None;
        let mut matched = 0u32;
        while let Some(k) = map.next_key_seed(Key(self.names))? {
            match k {
                Some(f) if f < n => {
                    let value = map.next_value_seed(Cidr)?;
                    if cidr.as_ref().is_none_or(|(g, _)| f <= *g) {
                        cidr = Some((f, value));
                    }
                }
                Some(s) => {
                    let j = s - n;
                    if map.next_value_seed(Matches(&self.ctx.select.0[j].1))? {
                        matched |= 1 << j;
                    } else {
                        matched &= !(1 << j);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let at = format!("{}[{}]", self.key, self.index);
        let Some((f, cidr)) = cidr else {
            return Err(self
                .ctx
                .malformed(format!("{at} has no {}", self.fields.join(" or "))));
        };
        if matched != self.ctx.all_selected() {
            return Ok(());
        }
        match cidr {
            Ok(net) => self.ctx.push(net),
            Err(value) => Err(self.ctx.malformed(format!(
                "{at}.{}: {value} is not an IP address or CIDR",
                self.fields[f]
            ))),
        }
    }
}

/// A value that should be a CIDR string: the network, or the value shown for a message.
struct Cidr;

impl<'de> DeserializeSeed<'de> for Cidr {
    type Value = Result<IpNet, String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Cidr {
    type Value = Result<IpNet, String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CIDR")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(parse_net(v).map(|(net, _)| net).ok_or_else(|| shown(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Err(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Err(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Err(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Err(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("null".into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Err("a list".into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Err("an object".into()))
    }
}

/// A value a select key reads: whether it is a string among the accepted values.
struct Matches<'v>(&'v [String]);

impl<'de> DeserializeSeed<'de> for Matches<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Matches<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.0.iter().any(|a| a == v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| false)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_map(map).map(|_| false)
    }
}

/// Azure's `values`: service tags.
struct Tags<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
}

impl<'de> DeserializeSeed<'de> for Tags<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Tags<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("values to be a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(()) = seq.next_element_seed(Tag {
            ctx: self.ctx,
            index,
        })? {
            index += 1;
        }
        Ok(())
    }
}

/// One service tag: `name`, and `properties` with `region`, `systemService`, `addressPrefixes`.
struct Tag<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for Tag<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// A tag's `properties`, read: the select keys matched and its prefixes (None: missing or not a
/// list; an error: the first invalid one, shown).
struct Properties {
    matched: u32,
    prefixes: Option<Result<Vec<IpNet>, String>>,
}

impl<'de> Visitor<'de> for Tag<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "values[{}] to be an object", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let i = self.index;
        let mut matched = 0u32;
        let mut properties: Option<Properties> = None;
        while let Some(k) = map.next_key_seed(Key(&["name", "properties"]))? {
            match k {
                Some(0) => match self.ctx.select_index("name") {
                    Some(j) => {
                        if map.next_value_seed(Matches(&self.ctx.select.0[j].1))? {
                            matched |= 1 << j;
                        } else {
                            matched &= !(1 << j);
                        }
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
                Some(_) => {
                    properties = map.next_value_seed(PropertiesSeed {
                        ctx: self.ctx,
                        index: i,
                    })?;
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
            return Ok(());
        }
        match properties.prefixes {
            Some(Ok(nets)) => nets.into_iter().try_for_each(|net| self.ctx.push(net)),
            Some(Err(why)) => Err(self.ctx.malformed(why)),
            None => Err(self.ctx.malformed(format!(
                "values[{i}].properties.addressPrefixes is missing or not a list"
            ))),
        }
    }
}

struct PropertiesSeed<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for PropertiesSeed<'_, '_> {
    type Value = Option<Properties>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PropertiesSeed<'_, '_> {
    type Value = Option<Properties>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "values[{}].properties", self.index)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut matched = 0u32;
        let mut prefixes = None;
        let keys = ["region", "systemService", "addressPrefixes"];
        while let Some(k) = map.next_key_seed(Key(&keys))? {
            let select_key = match k {
                Some(0) => "region",
                Some(1) => "system_service",
                Some(_) => {
                    prefixes = map.next_value_seed(Prefixes { index: self.index })?;
                    continue;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            match self.ctx.select_index(select_key) {
                Some(j) => {
                    if map.next_value_seed(Matches(&self.ctx.select.0[j].1))? {
                        matched |= 1 << j;
                    } else {
                        matched &= !(1 << j);
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(Properties { matched, prefixes }))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| None)
    }
}

/// `addressPrefixes`: the networks, or the first invalid entry; None when not a list.
struct Prefixes {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for Prefixes {
    type Value = Option<Result<Vec<IpNet>, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Prefixes {
    type Value = Option<Result<Vec<IpNet>, String>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "values[{}].properties.addressPrefixes", self.index)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut nets = Vec::new();
        let mut error = None;
        let mut j = 0;
        while let Some(cidr) = seq.next_element_seed(Cidr)? {
            match cidr {
                Ok(net) => nets.push(net),
                Err(value) if error.is_none() => {
                    error = Some(format!(
                        "values[{}].properties.addressPrefixes[{j}]: {value} is not an IP address or CIDR",
                        self.index
                    ));
                }
                Err(_) => {}
            }
            j += 1;
        }
        Ok(Some(match error {
            Some(e) => Err(e),
            None => Ok(nets),
        }))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        IgnoredAny.visit_map(map).map(|_| None)
    }
}
