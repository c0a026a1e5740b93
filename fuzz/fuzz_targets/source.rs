//! Spec §7: a list server's body in each format, and a table read from Envoy's shared data. The
//! first byte picks what the rest is. Never panics; an accepted body holds between 1 and
//! `max_entries` entries and its set holds every address of its first entry; a table that decodes
//! encodes back to exactly the same bytes (nothing in it is ignored or guessed).
#![no_main]

use client_ip_core::source::format::{parse, Accept, Rejection};
use client_ip_core::source::table::{decode, encode};
use client_ip_core::source::{Format, Select};
use libfuzzer_sys::fuzz_target;

const MAX_ENTRIES: usize = 1000;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let format = match which % 5 {
        0 => Format::Text,
        1 => Format::Aws,
        2 => Format::Gcp,
        3 => Format::Azure,
        _ => {
            if let Ok(table) = decode(body) {
                assert_eq!(
                    encode(&table),
                    body,
                    "a decoded table re-encodes to its bytes"
                );
            }
            return;
        }
    };
    let select = if which & 0x80 != 0 {
        let key = format.select_keys().first().copied().unwrap_or("service");
        Select(vec![(key.to_string(), vec!["CLOUDFRONT".into()])])
    } else {
        Select::default()
    };
    if format == Format::Text && !select.0.is_empty() {
        return; // the configuration refuses select on text
    }
    match parse(format, &select, body, &Accept::entries(MAX_ENTRIES)) {
        Ok(accepted) => {
            assert!((1..=MAX_ENTRIES).contains(&accepted.entries));
            assert!(!accepted.set.is_empty());
        }
        Err(Rejection::TooManyEntries { max }) => assert_eq!(max, MAX_ENTRIES),
        Err(_) => {}
    }
});
