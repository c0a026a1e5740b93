//! A policy whose lists name sources, bound to the sources' current contents.
//!
//! The configuration compiles into a template policy (each list holding its configured entries
//! only) and a [`SourcePlan`] (which lists name which sources). Whenever a source's contents or
//! availability change, [`bind`] makes a new policy from the template: each list naming sources
//! becomes the union of its own entries and theirs. Requests then use a plain policy, with the
//! same lookups as a list written inline; a stream holds the policy current when it started,
//! so each request is decided wholly with the old lists or wholly with the new ones.

use std::sync::Arc;

use crate::access::Lists;
use crate::ipset::IpSet;
use crate::policy::{GeoLookup, Policy};
use crate::source::geo::{GeoTable, Pick};
use crate::source::machine::Use;
use crate::source::table::Content;
use crate::source::{OnUnavailable, Source};

/// What a source holds as [`bind`] reads it: networks, or (an `mmdb` source) a database.
pub trait Held {
    /// The networks (None for a database).
    fn networks(&self) -> Option<&IpSet>;
    /// The database (None for networks).
    fn database(&self) -> Option<&Arc<GeoTable>> {
        None
    }
}

impl Held for IpSet {
    fn networks(&self) -> Option<&IpSet> {
        Some(self)
    }
}

impl Held for Content {
    fn networks(&self) -> Option<&IpSet> {
        self.set()
    }
    fn database(&self) -> Option<&Arc<GeoTable>> {
        self.geo()
    }
}

/// The `geo` section: the sources (indices into [`SourcePlan::sources`]) giving the country and
/// the AS number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeoPlan {
    /// `geo.country`.
    pub country: Option<usize>,
    /// `geo.asn`.
    pub asn: Option<usize>,
}

/// A list of the policy that may name sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `client_ip.trusted_proxies`.
    TrustedProxies,
    /// `access.allow`.
    Allow,
    /// `access.deny`.
    Deny,
    /// `access.rules[i].allow`.
    RuleAllow(usize),
    /// `access.rules[i].deny`.
    RuleDeny(usize),
    /// `rate_limit.exempt`.
    RateLimitExempt,
}

impl Slot {
    /// The slot of a list's key path, as the configuration walk writes it.
    pub fn of_path(path: &str) -> Option<Slot> {
        match path {
            "client_ip.trusted_proxies" => return Some(Slot::TrustedProxies),
            "access.allow" => return Some(Slot::Allow),
            "access.deny" => return Some(Slot::Deny),
            "rate_limit.exempt" => return Some(Slot::RateLimitExempt),
            _ => {}
        }
        let rest = path.strip_prefix("access.rules[")?;
        let (index, list) = rest.split_once("].")?;
        let index = index.parse().ok()?;
        match list {
            "allow" => Some(Slot::RuleAllow(index)),
            "deny" => Some(Slot::RuleDeny(index)),
            _ => None,
        }
    }
}

/// The sources a list names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The list.
    pub slot: Slot,
    /// Indices into [`SourcePlan::sources`], without duplicates.
    pub sources: Vec<usize>,
    /// The `country:`/`asn:` entries: a database source and what the list takes from it.
    pub picks: Vec<(usize, Pick)>,
}

/// The sources of a configuration and the lists that name them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcePlan {
    /// The configured sources, in name order.
    pub sources: Vec<Source>,
    /// The lists that name at least one source.
    pub bindings: Vec<Binding>,
    /// The `geo` section.
    pub geo: GeoPlan,
}

impl SourcePlan {
    /// True when no list names a source (nothing to fetch).
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Whether some list (or the `geo` section) names source `index`.
    pub fn is_used(&self, index: usize) -> bool {
        self.bindings
            .iter()
            .any(|b| b.sources.contains(&index) || b.picks.iter().any(|p| p.0 == index))
            || self.geo.country == Some(index)
            || self.geo.asn == Some(index)
    }

    /// Each source as the source machine takes it ([`crate::source::machine::Machine::new`]):
    /// whether a list names it and whether `client_ip.trusted_proxies` does.
    pub fn uses(&self) -> Vec<Use> {
        (0..self.sources.len())
            .map(|i| Use {
                source: self.sources[i].clone(),
                used: self.is_used(i),
                trusted: self.is_trusted(i),
            })
            .collect()
    }

    /// Whether `client_ip.trusted_proxies` names source `index` (its `min_prefix` then applies).
    pub fn is_trusted(&self, index: usize) -> bool {
        self.bindings
            .iter()
            .any(|b| b.slot == Slot::TrustedProxies && b.sources.contains(&index))
    }
}

/// The template policy with each list naming sources bound to them. `current[i]` is source i's
/// list, or None while it is unavailable.
pub fn bind<H: Held>(template: &Policy, plan: &SourcePlan, current: &[Option<&H>]) -> Policy {
    let mut policy = template.clone();
    let database = |i: Option<usize>| {
        i.and_then(|i| current.get(i).copied().flatten())
            .and_then(Held::database)
            .cloned()
    };
    policy.geo = GeoLookup {
        configured: plan.geo.country.is_some() || plan.geo.asn.is_some(),
        country: database(plan.geo.country),
        asn: database(plan.geo.asn),
    };
    // The template may itself be a bound policy (see `unbound`): each list naming sources is
    // marked again below from the sources' current availability alone.
    for binding in &plan.bindings {
        match binding.slot {
            Slot::Allow | Slot::Deny => {
                policy.access.lists = policy.access.lists.clone().marked_available();
            }
            Slot::RuleAllow(r) | Slot::RuleDeny(r) => {
                if let Some(rule) = policy.access.rules.get_mut(r) {
                    rule.lists = rule.lists.clone().marked_available();
                }
            }
            Slot::TrustedProxies | Slot::RateLimitExempt => {}
        }
    }
    for binding in &plan.bindings {
        let mut unavailable = false;
        let mut union = IpSet::empty();
        for &i in &binding.sources {
            match current.get(i).copied().flatten().and_then(Held::networks) {
                Some(set) => union = union.union(set),
                None => {
                    unavailable |= plan.sources[i].on_unavailable == OnUnavailable::Refuse;
                }
            }
        }
        for (i, pick) in &binding.picks {
            match current.get(*i).copied().flatten().and_then(Held::database) {
                Some(table) => union = union.union(&table.select(pick)),
                None => {
                    unavailable |= plan.sources[*i].on_unavailable == OnUnavailable::Refuse;
                }
            }
        }
        let with = |own: &IpSet| own.union(&union);
        match binding.slot {
            Slot::TrustedProxies => {
                if let Some(own) = policy.resolver.trusted_proxies() {
                    let set = with(own);
                    policy.resolver.set_trusted_proxies(set);
                }
                policy.trust_unavailable = unavailable;
            }
            Slot::Allow | Slot::Deny => {
                policy.access.lists = bound(&policy.access.lists, binding.slot, &with, unavailable);
            }
            Slot::RuleAllow(r) | Slot::RuleDeny(r) => {
                if let Some(rule) = policy.access.rules.get_mut(r) {
                    rule.lists = bound(&rule.lists, binding.slot, &with, unavailable);
                }
            }
            // An unavailable source exempts nobody: its clients stay keyed (limited), whatever
            // its `on_unavailable`; the exempt list never refuses a request.
            Slot::RateLimitExempt => {
                if let Some(rate_limit) = policy.rate_limit.as_mut() {
                    rate_limit.exempt = with(&rate_limit.exempt);
                }
            }
        }
    }
    policy
}

/// The template bound with every source unavailable: what a policy naming sources decides
/// before any source has had a good body (docs/sources.md). An allow list naming a source is in
/// force (refusing everyone) and a list naming an `on_unavailable: "refuse"` source refuses, from
/// the first request; `parse_sourced` compiles every template this way, so no caller can decide
/// with an allow list of sources read as "no allow list".
pub fn unbound(template: &Policy, plan: &SourcePlan) -> Policy {
    let nothing: Vec<Option<&IpSet>> = vec![None; plan.sources.len()];
    bind(template, plan, &nothing)
}

fn bound(lists: &Lists, slot: Slot, with: &dyn Fn(&IpSet) -> IpSet, unavailable: bool) -> Lists {
    let unavailable = unavailable || lists.unavailable();
    let allow_in_force = lists.allow_in_force();
    let rebound = match slot {
        Slot::Allow | Slot::RuleAllow(_) => Lists::bound(
            with(lists.allow_set()),
            lists.deny_set().clone(),
            true,
            unavailable,
        ),
        _ => Lists::bound(
            lists.allow_set().clone(),
            with(lists.deny_set()),
            allow_in_force,
            unavailable,
        ),
    };
    // Identity entries (docs/private-link.md) sit beside the addresses, untouched by sources.
    rebound.with_links(lists.links().clone())
}
