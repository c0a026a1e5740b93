//! Access control (docs/access.md): allow and deny lists, per-host and per-path rules, enforce or dry run.

use std::net::IpAddr;

use crate::identity::{Identity, LinkLists};
use crate::ipset::IpSet;
use crate::path::{self, PathCase};

/// What a refusal does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Reply locally with the deny status and body; the upstream never sees the request.
    Enforce,
    /// Let the request through unchanged and count it.
    DryRun,
}

/// Which address the lists are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOn {
    /// The resolved client address (the default).
    Client,
    /// The downstream address, whatever the forwarding headers say.
    Downstream,
}

/// The outcome of access control for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Inside the policy.
    Allow,
    /// Refused, and the refusal is enforced.
    Deny,
    /// Refused, but the deciding mode is dry run: the request goes on.
    DryRunDeny,
}

impl Verdict {
    /// The word used in filter state and logs: `allow`, `deny`, `dry_run_deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::DryRunDeny => "dry_run_deny",
        }
    }
}

/// An allow list and a deny list, compiled.
#[derive(Clone, Debug, Default)]
pub struct Lists {
    allow: IpSet,
    deny: IpSet,
    /// Identity entries (docs/private-link.md), beside the address sets.
    links: LinkLists,
    /// An allow list is in force: it is non-empty, or names a source (docs/sources.md: an allow list
    /// naming a source refuses everyone it does not hold, even while the source holds nothing).
    allow_in_force: bool,
    /// The lists name a source that is unavailable with `on_unavailable: "refuse"`.
    unavailable: bool,
}

impl Lists {
    /// Lists from compiled sets; an empty allow set means "everyone".
    pub fn new(allow: IpSet, deny: IpSet) -> Self {
        Lists {
            allow_in_force: !allow.is_empty(),
            allow,
            deny,
            links: LinkLists::default(),
            unavailable: false,
        }
    }

    /// Lists bound to sources (see `bind`): the allow list is in force when
    /// `allow_in_force` even when empty; `unavailable` marks lists a decision cannot use.
    pub fn bound(allow: IpSet, deny: IpSet, allow_in_force: bool, unavailable: bool) -> Self {
        Lists {
            allow_in_force: allow_in_force || !allow.is_empty(),
            allow,
            deny,
            links: LinkLists::default(),
            unavailable,
        }
    }

    /// The allow set (its configured entries, or with sources once bound).
    pub fn allow_set(&self) -> &IpSet {
        &self.allow
    }

    /// The deny set.
    pub fn deny_set(&self) -> &IpSet {
        &self.deny
    }

    /// Whether the allow list is in force (non-empty, or naming a source).
    pub fn allow_in_force(&self) -> bool {
        self.allow_in_force
    }

    /// Whether these lists name a source that is unavailable with `on_unavailable: "refuse"`.
    pub fn unavailable(&self) -> bool {
        self.unavailable
    }

    /// The lists with the unavailable mark cleared: `bind` starts each list naming sources from
    /// its own entries, then marks it again from the sources' current availability.
    pub fn marked_available(mut self) -> Self {
        self.unavailable = false;
        self
    }

    /// The lists with identity entries added (docs/private-link.md).
    pub fn with_links(mut self, links: LinkLists) -> Self {
        self.links = links;
        self
    }

    /// The identity entries.
    pub fn links(&self) -> &LinkLists {
        &self.links
    }

    /// Whether a request passes with its address and its connection's identity. The allow list
    /// is in force when it holds an address or an identity; a request is inside it when its
    /// address is listed OR its identity is. It is refused when its address OR its identity is
    /// in the deny list. Identities do not depend on `match` (nor on the client being known).
    #[inline]
    pub fn admits_linked(&self, addr: Option<IpAddr>, link: Option<&Identity>) -> bool {
        if self.links.allow.is_empty() && self.links.deny.is_empty() {
            return self.admits(addr);
        }
        let allow_in_force = self.allow_in_force || !self.links.allow.is_empty();
        let allowed = !allow_in_force
            || addr.is_some_and(|ip| self.allow.contains(ip))
            || self.links.allow.contains(link);
        let denied =
            addr.is_some_and(|ip| self.deny.contains(ip)) || self.links.deny.contains(link);
        allowed && !denied
    }

    /// Whether an address passes: inside the allow list when there is one, and outside the
    /// deny list. An unknown address is outside every list.
    #[inline]
    pub fn admits(&self, addr: Option<IpAddr>) -> bool {
        match addr {
            Some(ip) => {
                (!self.allow_in_force || self.allow.contains(ip)) && !self.deny.contains(ip)
            }
            None => !self.allow_in_force,
        }
    }
}

/// A host pattern of a rule: an exact name, or `*.suffix` for any subdomain of the suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// The whole host, lower case.
    Exact(String),
    /// `.suffix`, lower case, with its leading dot: matches `a.suffix`, not `suffix`.
    Subdomains(String),
}

impl HostPattern {
    /// Whether `host` (authority without its port, any case, no trailing dot) matches.
    #[inline]
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Subdomains(dot_suffix) => {
                host.len() > dot_suffix.len()
                    && host.is_char_boundary(host.len() - dot_suffix.len())
                    && host[host.len() - dot_suffix.len()..].eq_ignore_ascii_case(dot_suffix)
            }
        }
    }
}

/// A rule: where it applies, and the lists and mode that decide there.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique name; used in counters and filter state.
    pub name: String,
    /// Empty: any host.
    pub hosts: Vec<HostPattern>,
    /// Empty: any path.
    pub path_prefixes: Vec<String>,
    /// How `path_prefixes` compare with a path (`path_case`).
    pub path_case: PathCase,
    /// The rule's own lists (replacing the top-level ones).
    pub lists: Lists,
    /// The rule's own mode.
    pub mode: Mode,
}

impl Rule {
    /// Whether the rule's `hosts` (none: any host) take in this host (see [`host_of`]).
    pub fn matches_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|p| p.matches(host))
    }

    /// Whether the rule applies to a request with this host (see [`host_of`]) and this form of
    /// its path (see [`path::Forms`]).
    pub fn applies(&self, host: &str, path: &str) -> bool {
        self.matches_host(host)
            && (self.path_prefixes.is_empty()
                || self
                    .path_prefixes
                    .iter()
                    .any(|p| self.path_case.starts_with(path, p)))
    }
}

/// The compiled `access` section.
#[derive(Clone, Debug)]
pub struct Access {
    /// Top-level mode.
    pub mode: Mode,
    /// Which address is checked.
    pub match_on: MatchOn,
    /// Top-level lists.
    pub lists: Lists,
    /// Status of a local refusal (400–599).
    pub deny_status: u32,
    /// Body of a local refusal.
    pub deny_body: String,
    /// Rules, first match decides.
    pub rules: Vec<Rule>,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            mode: Mode::Enforce,
            match_on: MatchOn::Client,
            lists: Lists::default(),
            deny_status: 403,
            deny_body: "access denied\n".to_string(),
            rules: Vec::new(),
        }
    }
}

impl Access {
    /// Decides a request. `authority` and `path` are the raw `:authority` and `:path` values.
    /// Returns the verdict and the index of the deciding rule (None: the top level decided).
    pub fn decide(
        &self,
        client: Option<IpAddr>,
        downstream: Option<IpAddr>,
        authority: &str,
        path: &str,
    ) -> (Verdict, Option<usize>) {
        self.decide_linked(client, downstream, None, authority, path)
    }

    /// [`Access::decide`] for a connection that carried a private-link identity (docs/private-link.md).
    ///
    /// With rules, the request is decided for each form of its path (see [`path::Forms`]): the
    /// first form whose decision refuses decides (an enforced refusal before a dry-run one),
    /// else the path as sent. A list naming an unavailable source with `on_unavailable:
    /// "refuse"` refuses in its deciding mode.
    pub fn decide_linked(
        &self,
        client: Option<IpAddr>,
        downstream: Option<IpAddr>,
        link: Option<&Identity>,
        authority: &str,
        path: &str,
    ) -> (Verdict, Option<usize>) {
        let addr = match self.match_on {
            MatchOn::Client => client,
            MatchOn::Downstream => downstream,
        };
        if self.rules.is_empty() {
            return (self.verdict(None, addr, link), None);
        }
        let host = host_of(authority);
        let forms = path::Forms::of(path);
        let mut decided: Option<(Verdict, Option<usize>)> = None;
        for form in forms.iter() {
            let rule = self.rules.iter().position(|r| r.applies(host, form));
            let verdict = self.verdict(rule, addr, link);
            if decided.is_none_or(|(v, _)| severity(verdict) > severity(v)) {
                decided = Some((verdict, rule));
            }
            if verdict == Verdict::Deny {
                break;
            }
        }
        decided.unwrap_or((Verdict::Allow, None))
    }

    /// The verdict of the lists and mode of `rule` (None: the top level) for `addr` and `link`.
    fn verdict(
        &self,
        rule: Option<usize>,
        addr: Option<IpAddr>,
        link: Option<&Identity>,
    ) -> Verdict {
        let (lists, mode) = match rule.and_then(|i| self.rules.get(i)) {
            Some(r) => (&r.lists, r.mode),
            None => (&self.lists, self.mode),
        };
        if !lists.unavailable && lists.admits_linked(addr, link) {
            Verdict::Allow
        } else if mode == Mode::Enforce {
            Verdict::Deny
        } else {
            Verdict::DryRunDeny
        }
    }

    /// Whether the lists that decided (`rule`, or the top level) name an unavailable source
    /// whose `on_unavailable` is `"refuse"`.
    pub fn reads_unavailable(&self, rule: Option<usize>) -> bool {
        match rule.and_then(|i| self.rules.get(i)) {
            Some(r) => r.lists.unavailable,
            None => self.lists.unavailable,
        }
    }

    /// Whether the decision for a request with this `:authority` can depend on its path: some
    /// rule with `path_prefixes` takes in its host. When not, the path need not be read.
    pub fn reads_path(&self, authority: &str) -> bool {
        let host = host_of(authority);
        self.rules
            .iter()
            .any(|r| !r.path_prefixes.is_empty() && r.matches_host(host))
    }
}

/// How much a verdict refuses: an enforced refusal over a dry-run one over none.
fn severity(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Allow => 0,
        Verdict::DryRunDeny => 1,
        Verdict::Deny => 2,
    }
}

/// The host of an authority: without its port and without a trailing dot
/// (`Admin.Example.com.:8443` → `Admin.Example.com`; `[::1]:80` → `[::1]`). The port is whatever
/// follows the last `:` outside brackets, digits or not, as Envoy strips it when it matches a
/// virtual host with `ignore_port_in_host_matching` (`admin.example.com:x` is
/// `admin.example.com` there, so it is here).
pub fn host_of(authority: &str) -> &str {
    let host = match authority.rfind(':') {
        Some(colon) if authority.rfind(']').is_none_or(|close| close < colon) => {
            &authority[..colon]
        }
        _ => authority,
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    //! One test per rule of docs/access.md, named after it.
    use super::*;
    use crate::testutil::ip_set as set;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }
    fn access(allow: &[&str], deny: &[&str]) -> Access {
        Access {
            lists: Lists::new(set(allow), set(deny)),
            ..Access::default()
        }
    }
    fn verdict(a: &Access, client: Option<IpAddr>) -> Verdict {
        a.decide(client, ip("192.0.2.1"), "example.com", "/").0
    }

    #[test]
    fn allow_list_admits_only_addresses_inside_it() {
        let a = access(&["203.0.113.0/24", "2001:db8::/32"], &[]);
        assert_eq!(verdict(&a, ip("203.0.113.9")), Verdict::Allow);
        assert_eq!(verdict(&a, ip("2001:db8::9")), Verdict::Allow);
        assert_eq!(verdict(&a, ip("198.51.100.1")), Verdict::Deny);
    }

    #[test]
    fn deny_list_refuses_even_when_allowed() {
        let a = access(&["203.0.113.0/24"], &["203.0.113.66"]);
        assert_eq!(verdict(&a, ip("203.0.113.66")), Verdict::Deny);
        assert_eq!(verdict(&a, ip("203.0.113.65")), Verdict::Allow);
        let a = access(&[], &["203.0.113.66"]);
        assert_eq!(verdict(&a, ip("203.0.113.66")), Verdict::Deny);
        assert_eq!(verdict(&a, ip("8.8.8.8")), Verdict::Allow);
    }

    #[test]
    fn both_lists_empty_everyone_passes() {
        let a = access(&[], &[]);
        assert_eq!(verdict(&a, ip("8.8.8.8")), Verdict::Allow);
        assert_eq!(verdict(&a, None), Verdict::Allow);
    }

    #[test]
    fn ipv4_and_ipv6_are_separate_in_lists() {
        let a = access(&["::/0"], &[]);
        assert_eq!(verdict(&a, ip("10.0.0.1")), Verdict::Deny);
        assert_eq!(verdict(&a, ip("::ffff:10.0.0.1")), Verdict::Deny);
        assert_eq!(verdict(&a, ip("::1")), Verdict::Allow);
    }

    #[test]
    fn unknown_client_is_refused_when_an_allow_list_is_in_force_else_passes() {
        assert_eq!(
            verdict(&access(&["0.0.0.0/0", "::/0"], &[]), None),
            Verdict::Deny
        );
        assert_eq!(
            verdict(&access(&[], &["0.0.0.0/0", "::/0"]), None),
            Verdict::Allow
        );
    }

    #[test]
    fn match_downstream_checks_the_downstream_address() {
        let mut a = access(&["10.0.0.0/8"], &[]);
        a.match_on = MatchOn::Downstream;
        let (v, _) = a.decide(ip("8.8.8.8"), ip("10.1.1.1"), "h", "/");
        assert_eq!(v, Verdict::Allow);
        let (v, _) = a.decide(ip("10.1.1.1"), ip("8.8.8.8"), "h", "/");
        assert_eq!(v, Verdict::Deny);
        a.match_on = MatchOn::Client;
        let (v, _) = a.decide(ip("10.1.1.1"), ip("8.8.8.8"), "h", "/");
        assert_eq!(v, Verdict::Allow);
    }

    fn rule(name: &str, hosts: &[&str], prefixes: &[&str], allow: &[&str], mode: Mode) -> Rule {
        Rule {
            name: name.into(),
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix('*') {
                    Some(suffix) => HostPattern::Subdomains(suffix.to_string()),
                    None => HostPattern::Exact(h.to_string()),
                })
                .collect(),
            path_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            lists: Lists::new(set(allow), IpSet::empty()),
            mode,
            path_case: PathCase::Sensitive,
        }
    }

    #[test]
    fn rules_first_match_decides_with_its_own_lists_and_mode() {
        let mut a = access(&["203.0.113.0/24"], &[]);
        a.rules = vec![
            rule(
                "admin",
                &["admin.example.com"],
                &["/admin"],
                &["10.20.0.0/16"],
                Mode::Enforce,
            ),
            rule(
                "admin-all",
                &["admin.example.com"],
                &[],
                &["10.0.0.0/8"],
                Mode::DryRun,
            ),
            rule("health", &[], &["/healthz"], &[], Mode::Enforce),
        ];
        let c = ip("203.0.113.5");
        assert_eq!(
            a.decide(c, None, "admin.example.com", "/admin/x"),
            (Verdict::Deny, Some(0))
        );
        assert_eq!(
            a.decide(ip("10.20.1.1"), None, "admin.example.com", "/admin"),
            (Verdict::Allow, Some(0))
        );
        // Second rule: dry run.
        assert_eq!(
            a.decide(c, None, "admin.example.com", "/other"),
            (Verdict::DryRunDeny, Some(1))
        );
        // Rule with no allow list: everyone passes, whatever the top level says.
        assert_eq!(
            a.decide(ip("8.8.8.8"), None, "x", "/healthz"),
            (Verdict::Allow, Some(2))
        );
        // No rule: the top level decides.
        assert_eq!(
            a.decide(ip("8.8.8.8"), None, "x", "/"),
            (Verdict::Deny, None)
        );
        assert_eq!(a.decide(c, None, "x", "/"), (Verdict::Allow, None));
    }

    #[test]
    fn rules_hosts_exact_or_any_subdomain_case_insensitive_without_port() {
        let r = rule(
            "r",
            &["admin.example.com", "*.internal.example.com"],
            &[],
            &[],
            Mode::Enforce,
        );
        for host in [
            "admin.example.com",
            "ADMIN.Example.COM:8443",
            "admin.example.com.",
            "a.internal.example.com",
            "a.b.Internal.example.com:80",
        ] {
            assert!(r.applies(host_of(host), "/"), "{host}");
        }
        for host in [
            "internal.example.com",
            "xadmin.example.com",
            "admin.example.com.evil",
            "ainternal.example.com",
            "",
        ] {
            assert!(!r.applies(host_of(host), "/"), "{host}");
        }
    }

    #[test]
    fn rules_path_prefixes_are_plain_prefixes_without_the_query() {
        let r = rule("r", &[], &["/admin"], &[], Mode::Enforce);
        assert!(r.applies("h", path::path_of("/admin")));
        assert!(r.applies("h", path::path_of("/administrator?x=1")));
        assert!(!r.applies("h", path::path_of("/public?next=/admin")));
        assert!(!r.applies("h", path::path_of("/Admin")));
    }

    fn some_form_applies(r: &Rule, path: &str) -> bool {
        path::Forms::of(path)
            .iter()
            .any(|form| r.applies("h", form))
    }

    #[test]
    fn rules_path_prefixes_cannot_be_stepped_around_by_path_tricks() {
        let r = rule("r", &[], &["/admin"], &[], Mode::Enforce);
        for trick in [
            "//admin",
            "/./admin",
            "/public/../admin",
            "/../admin/x",
            "/%61dmin",
            "/adm%69n?x=1",
            "/%2Fadmin",
            "/%2fadmin",
            "\\admin",
            "/x/%2e%2e/admin",
            "/a/b/../../admin/",
        ] {
            assert!(some_form_applies(&r, trick), "{trick}");
        }
        for other in [
            "/Admin",
            "/public",
            "/%41dmin",
            "/x/admin",
            "/%00admin",
            "/",
            "/%",
        ] {
            assert!(!some_form_applies(&r, other), "{other}");
        }
    }

    #[test]
    fn mode_dry_run_lets_a_refused_request_through() {
        let mut a = access(&["203.0.113.0/24"], &[]);
        a.mode = Mode::DryRun;
        assert_eq!(verdict(&a, ip("8.8.8.8")), Verdict::DryRunDeny);
        assert_eq!(verdict(&a, ip("203.0.113.1")), Verdict::Allow);
    }

    #[test]
    fn host_of_strips_port_and_trailing_dot() {
        assert_eq!(host_of("example.com:80"), "example.com");
        assert_eq!(host_of("example.com."), "example.com");
        assert_eq!(host_of("[2001:db8::1]:443"), "[2001:db8::1]");
        assert_eq!(host_of("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of(""), "");
    }

    #[test]
    fn the_port_is_whatever_follows_the_last_colon_outside_brackets_digits_or_not() {
        assert_eq!(host_of("admin.example.com:x"), "admin.example.com");
        assert_eq!(host_of("admin.example.com:443x"), "admin.example.com");
        assert_eq!(host_of("admin.example.com:"), "admin.example.com");
        assert_eq!(host_of("admin.example.com.:x"), "admin.example.com");
        assert_eq!(host_of("admin.example.com:80:80"), "admin.example.com:80");
        assert_eq!(host_of("[2001:db8::1]:x"), "[2001:db8::1]");
        assert_eq!(host_of("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(host_of("[::1"), "[:");
        let mut a = access(&["203.0.113.0/24"], &[]);
        a.rules = vec![rule(
            "admin",
            &["admin.example.com"],
            &[],
            &["203.0.113.10"],
            Mode::Enforce,
        )];
        for authority in [
            "admin.example.com:x",
            "admin.example.com:443x",
            "ADMIN.example.com.:",
        ] {
            assert_eq!(
                a.decide(ip("203.0.113.5"), None, authority, "/"),
                (Verdict::Deny, Some(0)),
                "{authority}"
            );
        }
    }

    #[test]
    fn a_request_is_decided_for_each_form_of_its_path_and_any_refusing_form_refuses() {
        let mut a = access(&["203.0.113.0/24"], &[]);
        a.rules = vec![
            rule("public", &[], &["/public"], &["0.0.0.0/0"], Mode::Enforce),
            rule("admin", &[], &["/admin"], &["203.0.113.10"], Mode::Enforce),
        ];
        let client = ip("203.0.113.5");
        for path in [
            "/admin/users",
            "/;x/admin/users",
            "/.;/admin",
            "/x/..;/admin",
            "/admin%2F..%2Fpublic",
            "/public/..%2Fadmin",
            "//admin",
            "/admin;a=b/x",
        ] {
            assert_eq!(
                a.decide(client, None, "h", path),
                (Verdict::Deny, Some(1)),
                "{path}"
            );
        }
        for path in ["/public/x", "/other", "/Admin/users", "/x/admin"] {
            let (v, _) = a.decide(client, None, "h", path);
            assert_eq!(v, Verdict::Allow, "{path}");
        }
        // The rule admits its own client in every form.
        assert_eq!(
            a.decide(ip("203.0.113.10"), None, "h", "/x/..;/admin").0,
            Verdict::Allow
        );
        // An enforced refusal in a later form wins over a dry-run one in an earlier form.
        a.rules[0].mode = Mode::DryRun;
        a.rules[0].lists = Lists::new(set(&["198.51.100.1"]), IpSet::empty());
        assert_eq!(
            a.decide(client, None, "h", "/admin%2F..%2Fpublic"),
            (Verdict::Deny, Some(1))
        );
        assert_eq!(
            a.decide(client, None, "h", "/public/%2e%2e/x"),
            (Verdict::DryRunDeny, Some(0))
        );
    }

    #[test]
    fn path_case_insensitive_rules_match_every_case_of_their_prefixes() {
        let mut a = access(&["203.0.113.0/24"], &[]);
        let mut admin = rule("admin", &[], &["/admin"], &["203.0.113.10"], Mode::Enforce);
        admin.path_case = PathCase::Insensitive;
        a.rules = vec![admin];
        for path in ["/Admin/users", "/ADMIN", "/%41dmin", "/x/..;/aDmIn"] {
            assert_eq!(
                a.decide(ip("203.0.113.5"), None, "h", path).0,
                Verdict::Deny,
                "{path}"
            );
        }
        assert_eq!(
            a.decide(ip("203.0.113.5"), None, "h", "/public").0,
            Verdict::Allow
        );
    }
}
