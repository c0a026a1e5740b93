//! Native micro-benchmarks of the pure core (`cargo bench`), issue 4:
//! - the lookup alone (`IpSet::contains`) at 10 / 10,000 / 1,000,000 mixed IPv4/IPv6 entries,
//!   with random addresses (at 1,000,000 also per family, and for 4,096 repeating clients), next
//!   to the machine's latency of one random read from 16 MiB (what a lookup in a table larger than
//!   the cache pays at least once);
//! - the full decision per request (read the downstream address, parse the forwarding header,
//!   walk the chain, match the lists and rules, plan and format the forwarded headers) with allow
//!   lists of the same sizes. The core gets the header lines the filter fetches from Envoy: those
//!   the policy reads for that request (`Policy::header_reads`, `Policy::reads_now`), as values;
//!   a second figure gives it all nine lines of the request, as before the filter fetched only
//!   what it reads;
//! - configuring 1,000,000 entries (`config::parse`): wall time and heap (peak and retained).
//!
//! A plain `harness = false` binary, no benchmark framework: the figures are medians of timed
//! batches, and the memory figures need a counting global allocator, which this binary installs.
//! Keeping it dependency-free also keeps `cargo test` / `cargo clippy --all-targets` in CI from
//! compiling a benchmark framework they never run.
//!
//! `cargo bench` prints a table; with `BENCH_JSON=path` it also writes the figures as JSON (the
//! Envoy benchmark, `make bench`, copies them into BENCHMARKS.md). `BENCH_QUICK=1` runs fewer,
//! shorter batches.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use client_ip_core::config;
use client_ip_core::ipset::{parse_net, IpSet};
use client_ip_core::policy::{Downstream, InMemory, Policy, Request};

// ---------------------------------------------------------------------------------------------
// Heap accounting: current and peak bytes allocated through the global allocator.

#[path = "support/heap.rs"]
mod heap;
use heap::{heap_now, reset_peak};

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Deterministic data.

/// xorshift64*: reproducible lists and queries without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` list entries, half IPv4 and half IPv6, in the shapes real lists have: IPv4 /16–/32 (a
/// third of them single addresses), IPv6 /32–/64 inside 2000::/3 (a third single addresses).
/// Networks are written without host bits, as clean lists are (each entry with host bits set
/// costs a warning string).
fn entries(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let ip = rng.next() as u32;
                match rng.below(3) {
                    0 => Ipv4Addr::from(ip).to_string(),
                    _ => {
                        let len = 16 + rng.below(17) as u32;
                        let net = ip & (u32::MAX << (32 - len));
                        format!("{}/{len}", Ipv4Addr::from(net))
                    }
                }
            } else {
                let ip = (0x2000u128 << 112)
                    | (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3;
                match rng.below(3) {
                    0 => Ipv6Addr::from(ip).to_string(),
                    _ => {
                        let len = 32 + rng.below(33) as u32;
                        let net = ip & (u128::MAX << (128 - len));
                        format!("{}/{len}", Ipv6Addr::from(net))
                    }
                }
            }
        })
        .collect()
}

/// Query addresses: half inside some listed network (a random address of it), half random
/// addresses of the same family mix.
fn queries(list: &[String], n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let net = parse_net(&list[rng.below(list.len() as u64) as usize])
                .unwrap()
                .0;
            let inside = i % 2 == 0;
            match net {
                ipnet::IpNet::V4(n) => {
                    let base = if inside {
                        u32::from(n.network())
                    } else {
                        rng.next() as u32
                    };
                    let host = if inside {
                        (rng.next() as u32) & !u32::from(n.netmask())
                    } else {
                        0
                    };
                    IpAddr::V4(Ipv4Addr::from(base | host))
                }
                ipnet::IpNet::V6(n) => {
                    let random = u128::from(rng.next()) << 64 | u128::from(rng.next());
                    let bits = if inside {
                        u128::from(n.network()) | (random & !u128::from(n.netmask()))
                    } else {
                        (0x2000u128 << 112) | random >> 3
                    };
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            }
        })
        .collect()
}

fn json_list(list: &[String]) -> String {
    let mut out = String::with_capacity(list.len() * 24);
    out.push('[');
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{e}\"");
    }
    out.push(']');
    out
}

// ---------------------------------------------------------------------------------------------
// Timing.

struct Settings {
    batches: usize,
    batch_time: Duration,
}

/// Median and minimum nanoseconds per call of `f` over timed batches. `f` gets a counter so it
/// can cycle through inputs.
fn time_per_call(settings: &Settings, mut f: impl FnMut(usize)) -> (f64, f64) {
    // Calibrate a batch size that takes about `batch_time`.
    let mut iters = 1usize;
    loop {
        let t = Instant::now();
        for i in 0..iters {
            f(i);
        }
        if t.elapsed() >= settings.batch_time / 4 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    iters *= 4;
    let mut per_call: Vec<f64> = (0..settings.batches)
        .map(|b| {
            let offset = b * iters;
            let t = Instant::now();
            for i in 0..iters {
                f(offset + i);
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    (per_call[per_call.len() / 2], per_call[0])
}

struct Report {
    rows: Vec<(String, String, String)>,
    json: Vec<String>,
}

impl Report {
    fn ns(&mut self, key: &str, what: &str, (median, min): (f64, f64)) {
        self.rows.push((
            what.to_string(),
            format!("{median:.1} ns"),
            format!("min {min:.1} ns"),
        ));
        self.json.push(format!(
            "\"{key}\": {{\"median_ns\": {median:.2}, \"min_ns\": {min:.2}}}"
        ));
    }
}

// ---------------------------------------------------------------------------------------------

const SIZES: [(usize, &str); 3] = [(10, "10"), (10_000, "10k"), (1_000_000, "1M")];
const QUERIES: usize = 1 << 16;

/// Context for the 1,000,000-entry lookups: the latency of one dependent random read from a
/// 16 MiB array on this machine (a pointer chase over a random cycle), i.e. a cache miss.
fn bench_memory_latency(settings: &Settings, report: &mut Report) {
    let n = 16 << 20 >> 3; // 16 MiB of u64 slots
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng(0x1a7e_c1c1);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64) as usize); // Sattolo: one cycle through all slots
    }
    let mut next = vec![0usize; n];
    for i in 0..n {
        next[order[i]] = order[(i + 1) % n];
    }
    let mut at = 0;
    let r = time_per_call(settings, |_| {
        at = next[black_box(at)];
    });
    black_box(at);
    report.ns(
        "memory_latency_16mib",
        "(context) one random dependent read from 16 MiB",
        r,
    );
}

fn bench_lookup(settings: &Settings, report: &mut Report) {
    for (n, label) in SIZES {
        let list = entries(n, 0x5eed_0000 + n as u64);
        let set = IpSet::from_nets(list.iter().map(|e| parse_net(e).unwrap().0));
        let qs = queries(&list, QUERIES, 0x0bad_cafe);
        // Sanity: about half the queries fall inside.
        let hits = qs.iter().filter(|q| set.contains(**q)).count();
        assert!(hits >= QUERIES / 2, "{hits} hits of {QUERIES}");
        let r = time_per_call(settings, |i| {
            black_box(set.contains(black_box(qs[i & (QUERIES - 1)])));
        });
        report.ns(
            &format!("lookup_{label}"),
            &format!("lookup, {n} entries (mixed v4/v6, half hits)"),
            r,
        );
        let v4: Vec<IpAddr> = qs.iter().copied().filter(IpAddr::is_ipv4).collect();
        let v6: Vec<IpAddr> = qs.iter().copied().filter(IpAddr::is_ipv6).collect();
        if n == 1_000_000 {
            let r = time_per_call(settings, |i| {
                black_box(set.contains(black_box(v4[i % v4.len()])));
            });
            report.ns("lookup_1M_v4", "  of which IPv4 queries only", r);
            let r = time_per_call(settings, |i| {
                black_box(set.contains(black_box(v6[i % v6.len()])));
            });
            report.ns("lookup_1M_v6", "  of which IPv6 queries only", r);
            // Real traffic repeats its clients: 4,096 of them, their paths through the table cached.
            let r = time_per_call(settings, |i| {
                black_box(set.contains(black_box(qs[i & 4095])));
            });
            report.ns("lookup_1M_hot", "  4,096 repeating clients (mixed)", r);
        }
    }
}

/// The deployed shape of case (D): trusted proxies, an allow list, rules, two forwarded headers
/// and the port; the request comes through two proxies.
fn decision_config(allow: &str) -> String {
    format!(
        r#"{{
          "client_ip": {{"trusted_proxies": ["10.0.0.0/8", "127.0.0.0/8", "2001:db8:ffff::/48"]}},
          "access": {{
            "allow": {allow},
            "rules": [
              {{"name": "admin", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"]}},
              {{"name": "internal", "hosts": ["*.internal.example.com"], "deny": ["192.0.2.0/24"]}}
            ]
          }},
          "forward": {{"headers": ["x-real-ip", "x-client-ip"], "port_header": "x-client-port"}}
        }}"#
    )
}

/// The header lines the filter fetches for a request: what
/// `adapters/proxy-wasm/src/adapter/http.rs` asks Envoy for, with the full request standing in for
/// the host.
fn fetched(
    policy: &Policy,
    downstream: &Downstream,
    all: &[(String, String)],
) -> Vec<(String, String)> {
    match policy.fetch_headers(&policy.header_reads(), downstream, &mut InMemory(all)) {
        Ok(lines) => lines,
        Err(never) => match never {},
    }
}

fn bench_decision(settings: &Settings, report: &mut Report) {
    for (n, label) in SIZES {
        let list = entries(n, 0x5eed_0000 + n as u64);
        let (policy, _) = config::parse(decision_config(&json_list(&list)).as_bytes()).unwrap();
        // 1024 requests whose clients are half inside the allow list.
        let clients = queries(&list, 1024, 0xfeed);
        let requests: Vec<Vec<(String, String)>> = clients
            .iter()
            .map(|c| {
                let c = match c {
                    IpAddr::V4(v4) => format!("{v4}:41000"),
                    IpAddr::V6(v6) => format!("[{v6}]:41000"),
                };
                [
                    (":authority", "www.example.com"),
                    (":path", "/api/v1/items?page=2"),
                    (":method", "GET"),
                    (":scheme", "https"),
                    ("user-agent", "curl/8.5.0"),
                    ("accept", "*/*"),
                    ("x-forwarded-for", &format!("{c}, 10.1.2.3")),
                    ("x-forwarded-proto", "https"),
                    ("x-request-id", "6d2c3bb0-8a2b-4f7e-9a53-0d1f6f0e2b11"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
            })
            .collect();
        let downstream_text = b"10.0.0.7:51234".to_vec();
        let all_lines = requests;
        let downstream = Downstream::read(Some(&downstream_text), || None);
        let requests: Vec<Vec<(String, String)>> = all_lines
            .iter()
            .map(|all| fetched(&policy, &downstream, all))
            .collect();
        if n == 10 {
            // As the filter fetched them before: every line of the request.
            let r = time_per_call(settings, |i| {
                let headers = &all_lines[i & 1023];
                let request = Request {
                    downstream: Downstream::read(Some(black_box(&downstream_text)), || None),
                    headers,
                };
                let decision = policy.decide(&request);
                policy.header_plan(&request, &decision).for_each(|op| {
                    black_box(op);
                });
                black_box(decision);
            });
            report.ns(
                "decision_10_all_lines",
                "full decision, 10 entries, given all 9 header lines",
                r,
            );
        }
        let r = time_per_call(settings, |i| {
            let headers = &requests[i & 1023];
            let request = Request {
                downstream: Downstream::read(Some(black_box(&downstream_text)), || None),
                headers,
            };
            let decision = policy.decide(&request);
            let mut written = 0usize;
            policy.header_plan(&request, &decision).for_each(|op| {
                black_box(op);
                written += 1;
            });
            black_box((decision, written));
        });
        report.ns(
            &format!("decision_{label}"),
            &format!("full decision, allow list of {n} entries"),
            r,
        );
        if n != 1_000_000 {
            continue;
        }
        // Where the time of a decision goes (1,000,000 entries).
        let r = time_per_call(settings, |_| {
            black_box(Downstream::read(Some(black_box(&downstream_text)), || None));
        });
        report.ns(
            "part_downstream",
            "  of which: read the downstream address",
            r,
        );
        let r = time_per_call(settings, |i| {
            let headers = &requests[i & 1023];
            black_box(policy.resolver.resolve(downstream.addr, black_box(headers)));
        });
        report.ns(
            "part_resolve",
            "  of which: resolve (parse and walk the chain)",
            r,
        );
        let resolved: Vec<_> = requests
            .iter()
            .map(|h| {
                policy
                    .resolver
                    .resolve(downstream.addr, h)
                    .client
                    .map(|c| c.ip())
            })
            .collect();
        let r = time_per_call(settings, |i| {
            black_box(policy.access.decide(
                black_box(resolved[i & 1023]),
                downstream.addr.map(|d| d.ip()),
                "www.example.com",
                "/api/v1/items?page=2",
            ));
        });
        report.ns(
            "part_access",
            "  of which: access (rules, allow-list lookup)",
            r,
        );
        let decisions: Vec<_> = requests
            .iter()
            .map(|headers| {
                policy.decide(&Request {
                    downstream,
                    headers,
                })
            })
            .collect();
        let r = time_per_call(settings, |i| {
            let request = Request {
                downstream,
                headers: &requests[i & 1023],
            };
            policy
                .header_plan(&request, black_box(&decisions[i & 1023]))
                .for_each(|op| {
                    black_box(op);
                });
        });
        report.ns(
            "part_plan",
            "  of which: header plan (format the address text)",
            r,
        );
    }
}

fn bench_configure(report: &mut Report, runs: usize) {
    let n = 1_000_000;
    let list = entries(n, 0x5eed_0000 + n as u64);
    let doc = format!(r#"{{"access": {{"allow": {}}}}}"#, json_list(&list));
    drop(list);
    let mut times = Vec::new();
    let mut peak = 0;
    let mut retained = 0;
    for _ in 0..runs {
        let before = reset_peak();
        let t = Instant::now();
        let parsed = config::parse(black_box(doc.as_bytes()));
        let elapsed = t.elapsed();
        let (policy, _) = parsed.unwrap();
        peak = peak.max(heap::peak() - before);
        retained = heap_now() - before;
        times.push(elapsed.as_secs_f64() * 1000.0);
        drop(black_box(policy));
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    report.rows.push((
        format!(
            "configure {n} entries (config::parse; JSON text {:.1} MiB)",
            mib(doc.len())
        ),
        format!("{median:.0} ms"),
        format!(
            "heap peak {:.1} MiB, retained {:.1} MiB",
            mib(peak),
            mib(retained)
        ),
    ));
    report.json.push(format!(
        "\"configure_1M\": {{\"median_ms\": {median:.1}, \"peak_heap_mib\": {:.2}, \"retained_heap_mib\": {:.2}, \"json_mib\": {:.2}}}",
        mib(peak),
        mib(retained),
        mib(doc.len())
    ));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run a smoke
    // pass only when not benchmarking.
    let benching = std::env::args().any(|a| a == "--bench");
    let quick = !benching || std::env::var_os("BENCH_QUICK").is_some();
    let settings = if quick {
        Settings {
            batches: 5,
            batch_time: Duration::from_millis(20),
        }
    } else {
        Settings {
            batches: 15,
            batch_time: Duration::from_millis(100),
        }
    };
    let mut report = Report {
        rows: Vec::new(),
        json: Vec::new(),
    };
    // `cargo bench -- lookup` (or decision, configure) runs one group.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| group.contains(o.as_str()));
    if wanted("lookup") {
        bench_memory_latency(&settings, &mut report);
        bench_lookup(&settings, &mut report);
    }
    if wanted("decision") {
        bench_decision(&settings, &mut report);
    }
    if wanted("configure") {
        bench_configure(&mut report, if quick { 1 } else { 3 });
    }

    let width = report.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (what, value, extra) in &report.rows {
        println!("{what:<width$}  {value:>10}  {extra}");
    }
    if let Some(path) = std::env::var_os("BENCH_JSON") {
        let json = format!("{{\n  {}\n}}\n", report.json.join(",\n  "));
        std::fs::write(&path, json).expect("BENCH_JSON: cannot write");
    }
}
