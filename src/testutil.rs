//! Helpers shared by the unit tests.

/// Header lines as Envoy hands them over, from `(name, value)` pairs.
pub fn headers(lines: &[(&str, &str)]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
