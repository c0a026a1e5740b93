//! Reading the configuration document in one pass, compiling the IP lists on the way.
//!
//! `serde_json::from_slice::<Value>` would hold a list of a million entries as a million `Value`s
//! (a node plus a heap string each: ~90 MiB for 1,000,000 entries) only for the walk to turn them
//! into address ranges. Here the same `serde_json` parser reads the document into the same `Value`
//! tree, except that the lists the walk compiles into IP sets (`client_ip.trusted_proxies`,
//! `access.allow`, `access.deny`, and the `allow` and `deny` of each `access.rules[i]`) go entry by
//! entry straight into an [`IpSetBuilder`] (8 bytes per IPv4 network, 32 per IPv6 one). Such a list
//! leaves an empty array in the tree and a [`ReadList`] under its key path, which the walk takes
//! when it reaches that key, in its own order.
//!
//! Nothing changes in what the walk reports: a list records only its first bad entry (with the
//! message the walk would have written) and the host-bits warnings before it; the walk raises them
//! when it would have found them itself, so errors it finds earlier still come first. JSON syntax
//! errors are serde_json's own, found by the same parser at the same place. A value of another type
//! where a list is expected is kept as it is, for the walk's "is not a list".
//!
//! One visitor type does all of it (plain values, the objects on the way to a list, a list, its
//! entries): each visitor type instantiates serde_json's parser anew, kilobytes of `.wasm` apiece.

use std::fmt;

use serde_core::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::sources::SourceRef;
use super::{err, list_entry, show, ConfigError, ListEntry, Warnings};
use crate::identity::{Identity, IdentitySet};
use crate::ipset::{IpSet, IpSetBuilder};

/// An IP list compiled while the document was read.
struct ReadList {
    /// The list's key path, as the walk writes it (`access.rules[0].allow`).
    path: String,
    set: IpSet,
    /// Its identity entries (docs/private-link.md).
    identities: Vec<Identity>,
    /// Host-bits warnings of the entries before the first bad one, in order.
    warnings: Warnings,
    /// The first bad entry.
    error: Option<ConfigError>,
}

/// The lists read, by key path. A later list under the same path replaces the earlier one, as a
/// repeated JSON key does in the tree.
#[derive(Default)]
pub(super) struct ReadLists {
    lists: Vec<ReadList>,
    /// The list being read.
    current: Option<ReadList>,
    builder: IpSetBuilder,
    index: usize,
    /// The `"source:<name>"` entries of the lists read (docs/sources.md), in document order.
    pub(super) source_refs: Vec<SourceRef>,
}

impl ReadLists {
    /// The list read under `path`: its set, or its first bad entry. Its warnings go to `warnings`.
    pub(super) fn take(
        &mut self,
        path: &str,
        warnings: &mut Warnings,
    ) -> Option<Result<(IpSet, IdentitySet), ConfigError>> {
        let at = self.lists.iter().position(|l| l.path == path)?;
        let list = self.lists.swap_remove(at);
        warnings.append(list.warnings);
        Some(match list.error {
            Some(e) => Err(e),
            None => Ok((list.set, IdentitySet::from_identities(list.identities))),
        })
    }

    fn start(&mut self, path: String) {
        self.source_refs.retain(|r| r.list != path);
        self.current = Some(ReadList {
            path,
            set: IpSet::empty(),
            identities: Vec::new(),
            warnings: Warnings::default(),
            error: None,
        });
        self.index = 0;
    }

    fn finish(&mut self) {
        if let Some(mut list) = self.current.take() {
            let builder = std::mem::take(&mut self.builder);
            if list.error.is_none() {
                list.set = builder.build();
            }
            self.lists.retain(|l| l.path != list.path);
            self.lists.push(list);
        }
    }

    /// An entry of the current list that is a string.
    fn entry(&mut self, text: &str) {
        let Some(list) = self.current.as_mut().filter(|l| l.error.is_none()) else {
            return;
        };
        if let Some(r) = SourceRef::of(&list.path, self.index, text) {
            self.source_refs.push(r);
            return;
        }
        match list_entry(text, &list.path) {
            Ok(ListEntry::Net(net, had_host_bits)) => {
                if had_host_bits {
                    let (path, index) = (&list.path, self.index);
                    list.warnings.host_bits(|| {
                        format!("{path}[{index}]: \"{text}\" has host bits set; using {net}")
                    });
                }
                self.builder.push(net);
            }
            Ok(ListEntry::Identity(id)) => list.identities.push(id),
            Err(message) => {
                list.error = Some(err(&format!("{}[{}]", list.path, self.index), message));
            }
        }
    }

    /// The walk's error for a bad entry of the current list, when it is the first.
    fn bad(&mut self, value: &Value) {
        if let Some(list) = self.current.as_mut().filter(|l| l.error.is_none()) {
            list.error = Some(err(
                &format!("{}[{}]", list.path, self.index),
                format!("{} is not an IP address or CIDR", show(value)),
            ));
        }
    }
}

/// Parses the document as `serde_json::from_slice::<Value>` does, reading the IP lists into
/// `lists` (see the module documentation).
pub(super) fn read(bytes: &[u8], lists: &mut ReadLists) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Read {
        what: What::Node(At::Root),
        lists,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The objects on the way to an IP list.
#[derive(Clone, Copy)]
enum At {
    Root,
    ClientIp,
    Access,
    /// `access.rules`.
    Rules,
    /// `access.rules[i]`.
    Rule(usize),
}

/// What the value being read is.
#[derive(Clone, Copy)]
enum What {
    /// Any value: read as serde_json's own `Value` visitor does.
    Plain,
    /// An object or array on the way to a list.
    Node(At),
    /// A member the walk compiles into an IP set (its path is in `ReadLists::current`).
    List,
    /// An entry of that list.
    Entry,
}

impl At {
    /// What the member `key` of an object here is, and the key path of a list.
    fn member(self, key: &str) -> (What, Option<String>) {
        match (self, key) {
            (At::Root, "client_ip") => (What::Node(At::ClientIp), None),
            (At::Root, "access") => (What::Node(At::Access), None),
            (At::ClientIp, "trusted_proxies") => {
                (What::List, Some("client_ip.trusted_proxies".into()))
            }
            (At::Access, "allow" | "deny") => (What::List, Some(format!("access.{key}"))),
            (At::Access, "rules") => (What::Node(At::Rules), None),
            (At::Rule(i), "allow" | "deny") => {
                (What::List, Some(format!("access.rules[{i}].{key}")))
            }
            _ => (What::Plain, None),
        }
    }
}

/// The one visitor (see the module documentation).
struct Read<'l> {
    what: What,
    lists: &'l mut ReadLists,
}

impl Read<'_> {
    fn child(&mut self, what: What) -> Read<'_> {
        Read {
            what,
            lists: &mut *self.lists,
        }
    }

    /// A scalar's value; an entry of a list is parsed or reported instead (and leaves `null`).
    fn scalar(self, value: Value) -> Value {
        match self.what {
            What::Entry => {
                self.lists.bad(&value);
                Value::Null
            }
            _ => value,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Read<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Read<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(self.scalar(Value::Bool(b)))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(self.scalar(Value::Number(i.into())))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(self.scalar(Value::Number(u.into())))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(self.scalar(Number::from_f64(f).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        if let What::Entry = self.what {
            self.lists.entry(s);
            return Ok(Value::Null);
        }
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        if let What::Entry = self.what {
            self.lists.entry(&s);
            return Ok(Value::Null);
        }
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(self.scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(self.scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        if let What::List = self.what {
            while seq.next_element_seed(self.child(What::Entry))?.is_some() {
                self.lists.index += 1;
            }
            self.lists.finish();
            return Ok(Value::Array(Vec::new()));
        }
        let mut items = Vec::new();
        loop {
            let what = match self.what {
                What::Node(At::Rules) => What::Node(At::Rule(items.len())),
                _ => What::Plain,
            };
            match seq.next_element_seed(self.child(what))? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(self.scalar(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let what = match self.what {
                What::Node(at) => match at.member(&key) {
                    (What::List, Some(path)) => {
                        self.lists.start(path);
                        What::List
                    }
                    (what, _) => what,
                },
                _ => What::Plain,
            };
            let value = map.next_value_seed(self.child(what))?;
            if let What::List = what {
                // Read as a list when it was an array; anything else leaves nothing behind.
                self.lists.current = None;
            }
            members.insert(key, value);
        }
        Ok(self.scalar(Value::Object(members)))
    }
}
