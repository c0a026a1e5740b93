//! Helpers shared by the unit tests.

/// Header lines as Envoy hands them over, from `(name, value)` pairs.
pub fn headers(lines: &[(&str, &str)]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error message a configuration is refused with; panics when it is accepted.
pub fn config_error(json: &str) -> String {
    match crate::config::parse(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

/// xorshift64*: random test inputs, reproducible from a seed and without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next value of the sequence (not an `Iterator`: the sequence never ends).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}
