//! The forms of a request path that path rules are decided on (docs/access.md).
//!
//! An upstream may route a path in another form than the one sent: a WSGI app decodes `%2F`
//! before routing, Tomcat, Jetty and Spring drop `;` parameters from each segment, a router may
//! ignore case. So a rule's `path_prefixes` are matched against every form: the path as sent
//! (without its query), its normalised form (percent-decoded once, `\` as `/`, repeated slashes
//! merged, dot segments removed), and that form with the `;` parameters of each segment removed;
//! a rule with `path_case: "insensitive"` compares ASCII case-insensitively. The decision takes
//! the form that refuses (see `access`). A path needing none of this (no `%`, `;`, `\`, `//` or
//! segment starting with `.`: nearly every request) has one form, the path itself, and costs
//! no allocation.

/// How a rule's `path_prefixes` compare with a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathCase {
    /// Byte for byte (the default).
    #[default]
    Sensitive,
    /// ASCII case-insensitively (`/Admin` is `/admin`), for upstreams whose router folds case.
    Insensitive,
}

impl PathCase {
    /// Whether `path` starts with `prefix` under this comparison.
    #[inline]
    pub fn starts_with(self, path: &str, prefix: &str) -> bool {
        match self {
            PathCase::Sensitive => path.starts_with(prefix),
            PathCase::Insensitive => {
                path.len() >= prefix.len()
                    && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
        }
    }
}

/// The path without its query string or fragment.
pub fn path_of(path: &str) -> &str {
    match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    }
}

/// The distinct forms of one path (see the module documentation), the path as sent first.
#[derive(Debug, PartialEq, Eq)]
pub struct Forms<'a> {
    sent: &'a str,
    normalised: Option<String>,
    without_params: Option<String>,
}

impl<'a> Forms<'a> {
    /// The forms of `path` (a `:path` value; its query is dropped).
    pub fn of(path: &'a str) -> Forms<'a> {
        let sent = path_of(path);
        if is_plain(sent) {
            return Forms {
                sent,
                normalised: None,
                without_params: None,
            };
        }
        let decoded = percent_decode_printable(sent).replace('\\', "/");
        let without_params = decoded
            .contains(';')
            .then(|| normalise(&strip_params(&decoded)));
        let normalised = normalise(&decoded);
        let without_params = without_params.filter(|w| *w != normalised && w != sent);
        Forms {
            sent,
            normalised: (normalised != sent).then_some(normalised),
            without_params,
        }
    }

    /// Each distinct form, the path as sent first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.sent)
            .chain(self.normalised.as_deref())
            .chain(self.without_params.as_deref())
    }
}

/// Whether every form of `path` is `path` itself: no `%`, `;` or `\`, and no `/` followed by
/// `/` or `.` (a repeated slash or a segment that may be a dot segment).
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'%' | b'\\' | b';' => false,
        b'/' => !matches!(bytes.get(i + 1), Some(b'/' | b'.')),
        _ => true,
    })
}

/// Each segment without its `;` parameters (`/a;x/b;y=1` → `/a/b`).
fn strip_params(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    out
}

/// Repeated slashes merged, `.` segments dropped and `..` removing the segment before it; a
/// trailing slash kept (also after a final dot segment). Never empty: at least `/`.
fn normalise(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Decodes `%XX` escapes whose byte is printable ASCII (0x21–0x7E), once; others stay as
/// written.
fn percent_decode_printable(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = (hi * 16 + lo) as u8;
                if (0x21..=0x7E).contains(&byte) {
                    out.push(byte as char);
                    i += 3;
                    continue;
                }
            }
        }
        // Copy one whole character (the path is UTF-8; only ASCII is ever decoded).
        let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    //! Spec §4, the forms of a path: one test per form, and the plain path's single form.
    use super::*;

    fn forms(path: &str) -> Vec<String> {
        Forms::of(path).iter().map(str::to_string).collect()
    }

    #[test]
    fn a_plain_path_has_one_form_without_allocating() {
        for path in ["/", "/admin/users", "/a-b_c~d/e.f", "", "/x?q=//y;z%2F"] {
            let f = Forms::of(path);
            assert_eq!(f.normalised, None, "{path}");
            assert_eq!(f.without_params, None, "{path}");
            assert_eq!(forms(path), vec![path_of(path).to_string()]);
        }
    }

    #[test]
    fn the_path_as_sent_is_the_first_form() {
        assert_eq!(forms("/admin%2F..%2Fpublic")[0], "/admin%2F..%2Fpublic");
        assert_eq!(
            forms("/admin%2F..%2Fpublic"),
            ["/admin%2F..%2Fpublic", "/public"]
        );
        assert_eq!(forms("//admin?x"), ["//admin", "/admin"]);
    }

    #[test]
    fn the_normalised_form_is_decoded_once_with_backslashes_merged_slashes_and_no_dot_segments() {
        for (path, want) in [
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/../admin/x", "/admin/x"),
            ("/%61dmin", "/admin"),
            ("/%2Fadmin", "/admin"),
            ("/%5Cadmin", "/admin"),
            ("\\admin", "/admin"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/a/b/../../admin/", "/admin/"),
            ("/a/./b/../c/", "/a/c/"),
            ("/..", "/"),
            ("/%252F", "/%2F"),
        ] {
            assert_eq!(forms(path).last().map(String::as_str), Some(want), "{path}");
        }
        assert_eq!(forms("/%e2%82%ac/%zz/é"), ["/%e2%82%ac/%zz/é"]);
        assert_eq!(forms("/%00admin"), ["/%00admin"]);
    }

    #[test]
    fn the_parameter_form_drops_each_segments_semicolon_parameters() {
        assert_eq!(
            forms("/;x/admin/users"),
            ["/;x/admin/users", "/admin/users"]
        );
        assert_eq!(forms("/.;/admin"), ["/.;/admin", "/admin"]);
        assert_eq!(forms("/x/..;/admin"), ["/x/..;/admin", "/admin"]);
        assert_eq!(
            forms("/admin;jsessionid=1"),
            ["/admin;jsessionid=1", "/admin"]
        );
        assert_eq!(
            forms("/a%3Bx/..%2F;y/admin"),
            ["/a%3Bx/..%2F;y/admin", "/;y/admin", "/admin"]
        );
    }

    #[test]
    fn path_case_insensitive_compares_ascii_case_insensitively() {
        assert!(PathCase::Insensitive.starts_with("/Admin/users", "/admin"));
        assert!(PathCase::Insensitive.starts_with("/ADMIN", "/admin"));
        assert!(!PathCase::Insensitive.starts_with("/Adm", "/admin"));
        assert!(!PathCase::Sensitive.starts_with("/Admin/users", "/admin"));
        assert!(PathCase::Sensitive.starts_with("/admin/users", "/admin"));
        // A multi-byte character where the prefix ends is not split.
        assert!(!PathCase::Insensitive.starts_with("/é", "/a"));
    }
}
