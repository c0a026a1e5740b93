//! Reading the configuration document in one pass, compiling the IP lists on the way.
//!
//! `serde_json::from_slice::<Value>` would hold a list of a million entries as a million `Value`s
//! (a 32-byte node plus a heap string each: ~200 MiB for 1,000,000 entries, most of a second) only
//! for the walk to turn them into address ranges. Here the document is read by the same
//! `serde_json` parser into the same `Value` tree, except that the lists the walk compiles into IP
//! sets (`client_ip.trusted_proxies`, `access.allow`, `access.deny` and the `allow` / `deny` of
//! each `access.rules[i]`) are parsed entry by entry straight into an [`IpSetBuilder`] (8 bytes per
//! IPv4, 32 per IPv6 network). Such a list leaves an empty array in the tree and a [`ReadList`]
//! under its key path, which the walk takes when it reaches that key, in its own order.
//!
//! Nothing changes in what the walk reports: a list only records its first bad entry (with the
//! message the walk would have written) and its host-bits warnings; the walk raises them at the
//! moment it would have found them itself, so errors in keys it checks earlier still win. JSON
//! syntax errors are serde_json's own, found by the same parser at the same place. A value of
//! another type where a list is expected is kept as it is, for the walk's "is not a list".

use std::fmt;

use serde_core::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde_core::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Map, Number, Value};

use super::{err, show, ConfigError, ConfigWarning};
use crate::ipset::{parse_net, IpSet, IpSetBuilder};

/// An IP list compiled while the document was read.
pub(super) struct ReadList {
    /// The list's key path, as the walk writes it (`access.rules[0].allow`).
    path: String,
    set: IpSet,
    /// Host-bits warnings of the entries before the first bad one, in order.
    warnings: Vec<ConfigWarning>,
    /// The first bad entry.
    error: Option<ConfigError>,
}

/// The lists read, by key path; a later list under the same path replaces the earlier one, as a
/// repeated JSON key does in the tree.
#[derive(Default)]
pub(super) struct ReadLists(Vec<ReadList>);

impl ReadLists {
    /// The list read under `path`: its set, or its first bad entry. Its warnings go to `warnings`.
    pub(super) fn take(
        &mut self,
        path: &str,
        warnings: &mut Vec<ConfigWarning>,
    ) -> Option<Result<IpSet, ConfigError>> {
        let at = self.0.iter().position(|l| l.path == path)?;
        let list = self.0.swap_remove(at);
        warnings.extend(list.warnings);
        Some(match list.error {
            Some(e) => Err(e),
            None => Ok(list.set),
        })
    }

    fn put(&mut self, list: ReadList) {
        self.0.retain(|l| l.path != list.path);
        self.0.push(list);
    }
}

/// Parses the document as `serde_json::from_slice::<Value>` does, reading the IP lists into
/// `lists` (see the module documentation).
pub(super) fn read(bytes: &[u8], lists: &mut ReadLists) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Node {
        at: At::Root,
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

/// What a member of an object at `At` is read as.
enum Member {
    Node(At),
    List(String),
    Plain,
}

impl At {
    fn member(self, key: &str) -> Member {
        match (self, key) {
            (At::Root, "client_ip") => Member::Node(At::ClientIp),
            (At::Root, "access") => Member::Node(At::Access),
            (At::ClientIp, "trusted_proxies") => Member::List("client_ip.trusted_proxies".into()),
            (At::Access, "allow" | "deny") => Member::List(format!("access.{key}")),
            (At::Access, "rules") => Member::Node(At::Rules),
            (At::Rule(i), "allow" | "deny") => Member::List(format!("access.rules[{i}].{key}")),
            _ => Member::Plain,
        }
    }
}

/// The `Value`s of scalars, exactly as serde_json's own `Value` visitor makes them.
macro_rules! scalar_values {
    () => {
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
            Ok(Value::Number(i.into()))
        }
        fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
            Ok(Value::Number(u.into()))
        }
        fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
            Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// An object or array on the way to an IP list; read like serde_json's `Value`, with its
/// members routed by [`At::member`].
struct Node<'l> {
    at: At,
    lists: &'l mut ReadLists,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    scalar_values!();

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let item = match self.at {
                At::Rules => seq.next_element_seed(Node {
                    at: At::Rule(items.len()),
                    lists: &mut *self.lists,
                })?,
                _ => seq.next_element::<Value>()?,
            };
            match item {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match self.at.member(&key) {
                Member::Node(at) => map.next_value_seed(Node {
                    at,
                    lists: &mut *self.lists,
                })?,
                Member::List(path) => map.next_value_seed(List {
                    path,
                    lists: &mut *self.lists,
                })?,
                Member::Plain => map.next_value::<Value>()?,
            };
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// A member that the walk compiles into an IP set. An array is read entry by entry into a
/// [`ReadList`] and leaves an empty array in the tree; anything else is kept as its `Value`.
struct List<'l> {
    path: String,
    lists: &'l mut ReadLists,
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    scalar_values!();

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut entries = Entries {
            path: &self.path,
            index: 0,
            builder: IpSetBuilder::default(),
            warnings: Vec::new(),
            error: None,
        };
        while seq.next_element_seed(&mut entries)?.is_some() {
            entries.index += 1;
        }
        let Entries {
            builder,
            warnings,
            error,
            ..
        } = entries;
        let set = match error {
            None => builder.build(),
            Some(_) => IpSet::empty(),
        };
        self.lists.put(ReadList {
            path: self.path,
            set,
            warnings,
            error,
        });
        Ok(Value::Array(Vec::new()))
    }
}

/// The state of one list being read: each entry is parsed as it comes; after the first bad one
/// the rest are only skipped over.
struct Entries<'p> {
    path: &'p str,
    index: usize,
    builder: IpSetBuilder,
    warnings: Vec<ConfigWarning>,
    error: Option<ConfigError>,
}

impl Entries<'_> {
    /// The walk's error for a bad entry.
    fn bad(&mut self, value: &Value) {
        self.error = Some(err(
            &format!("{}[{}]", self.path, self.index),
            format!("{} is not an IP address or CIDR", show(value)),
        ));
    }
}

impl<'de> DeserializeSeed<'de> for &mut Entries<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        if self.error.is_some() {
            deserializer.deserialize_ignored_any(IgnoredAny)?;
            return Ok(());
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Entries<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address or CIDR")
    }

    fn visit_str<E>(self, text: &str) -> Result<(), E> {
        match parse_net(text) {
            Some((net, had_host_bits)) => {
                if had_host_bits {
                    self.warnings.push(ConfigWarning(format!(
                        "{}[{}]: \"{text}\" has host bits set; using {net}",
                        self.path, self.index
                    )));
                }
                self.builder.push(net);
            }
            None => self.bad(&Value::String(text.to_owned())),
        }
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.bad(&Value::Bool(b));
        Ok(())
    }
    fn visit_i64<E>(self, i: i64) -> Result<(), E> {
        self.bad(&Value::Number(i.into()));
        Ok(())
    }
    fn visit_u64<E>(self, u: u64) -> Result<(), E> {
        self.bad(&Value::Number(u.into()));
        Ok(())
    }
    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.bad(&Number::from_f64(f).map_or(Value::Null, Value::Number));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.bad(&Value::Null);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.bad(&Value::Null);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(SeqAccessDeserializer::new(seq))?;
        self.bad(&value);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Value::deserialize(MapAccessDeserializer::new(map))?;
        self.bad(&value);
        Ok(())
    }
}
