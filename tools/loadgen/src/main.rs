//! loadgen: closed-loop HTTP/1.1 load from several loopback source addresses, every response checked.
//!
//! ```text
//! loadgen --target 127.0.0.1:8080 --duration-s 300 --max-requests 3000000 --report out.json \
//!   --class name=allowed-a,src=127.0.0.11,conns=2,per_conn=0,expect=200,seen=127.0.0.11,forge=1 \
//!   --class name=refused-a,src=127.0.0.21,conns=1,per_conn=100,expect=403,forge=1
//! ```
//!
//! A class is a set of connections bound to `src`. `per_conn` requests go over one connection before
//! it is closed and another opened (0: keep it until the server closes it); `expect` is the status
//! every response must have (`any`: not checked, for reconfiguration runs, where the status changes);
//! `seen` is the client address the app must have been told (the upstream echoes `x-real-ip` back as
//! `x-seen-real-ip`); `forge=1` makes every request forge `X-Forwarded-For`, `X-Real-IP` and
//! `X-Client-IP` (naming `forge_ip`, default 127.0.0.11).
//!
//! Failures are counted, never hidden: a connect, write or read error, a connection closed before a
//! whole response, an unexpected status, a wrong `x-seen-real-ip`. Status changes are recorded with
//! their wall-clock time (ns since the Unix epoch) and worker (connection slot) so that a
//! reconfiguration's effect can be timed.
//! Bounded: it stops at `--duration-s` or after `--max-requests`, whichever comes first. Loopback only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

#[derive(Clone, Debug)]
struct Class {
    name: String,
    src: IpAddr,
    conns: usize,
    per_conn: u64,
    expect: Option<u16>,
    seen: Option<String>,
    forge: bool,
    forge_ip: String,
    path: String,
}

impl Class {
    fn parse(spec: &str) -> Result<Class, String> {
        let mut c = Class {
            name: String::new(),
            src: "127.0.0.1".parse().unwrap(),
            conns: 1,
            per_conn: 0,
            expect: None,
            seen: None,
            forge: false,
            forge_ip: "127.0.0.11".into(),
            path: "/".into(),
        };
        for kv in spec.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or(format!("{kv:?}: expected key=value"))?;
            match k {
                "name" => c.name = v.into(),
                "src" => c.src = v.parse().map_err(|_| format!("src {v:?}"))?,
                "conns" => c.conns = v.parse().map_err(|_| format!("conns {v:?}"))?,
                "per_conn" => c.per_conn = v.parse().map_err(|_| format!("per_conn {v:?}"))?,
                "expect" if v == "any" => c.expect = None,
                "expect" => c.expect = Some(v.parse().map_err(|_| format!("expect {v:?}"))?),
                "seen" => c.seen = Some(v.into()),
                "forge" => c.forge = v == "1",
                "forge_ip" => c.forge_ip = v.into(),
                "path" => c.path = v.into(),
                _ => return Err(format!("unknown class key {k:?}")),
            }
        }
        if c.name.is_empty() {
            return Err("a class needs name=".into());
        }
        if !c.src.is_loopback() {
            return Err(format!("src {} is not a loopback address", c.src));
        }
        Ok(c)
    }

    fn request(&self) -> Vec<u8> {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: soak.example.com\r\nUser-Agent: loadgen\r\nx-class: {}\r\n",
            self.path, self.name
        );
        if self.forge {
            let f = &self.forge_ip;
            r.push_str(&format!(
                "X-Forwarded-For: {f}\r\nX-Real-IP: {f}\r\nX-Client-IP: {f}\r\n"
            ));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

/// Counts of one class (one per thread, merged at the end).
#[derive(Default, Debug)]
struct Tally {
    sent: u64,
    completed: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    unexpected_status: u64,
    seen_mismatch: u64,
    connects: u64,
    server_closes: u64,
    /// (unix ns, worker, previous status, new status)
    transitions: Vec<(u128, usize, u16, u16)>,
    /// (unix ns, error kind), the first few
    error_log: Vec<(u128, String)>,
    /// latency histogram: bucket i counts responses in [2^i, 2^(i+1)) microseconds
    latency_us: [u64; 32],
    max_latency_us: u64,
    /// (unix ns at the response, µs) of responses slower than SLOW_US, the first few thousand:
    /// when the slow ones happened (e.g. around a list refresh, tests/reliability/refresh.py)
    slow: Vec<(u128, u64)>,
}

/// Responses at least this slow are recorded with their time.
const SLOW_US: u64 = 20_000;

impl Tally {
    fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        if self.error_log.len() < 50 {
            self.error_log.push((now_ns(), kind.to_string()));
        }
    }

    fn merge(&mut self, o: Tally) {
        self.sent += o.sent;
        self.completed += o.completed;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.unexpected_status += o.unexpected_status;
        self.seen_mismatch += o.seen_mismatch;
        self.connects += o.connects;
        self.server_closes += o.server_closes;
        self.transitions.extend(o.transitions);
        self.error_log.extend(o.error_log);
        for (a, b) in self.latency_us.iter_mut().zip(o.latency_us) {
            *a += b;
        }
        self.max_latency_us = self.max_latency_us.max(o.max_latency_us);
        self.slow.extend(o.slow);
    }

    fn percentile_us(&self, p: f64) -> u64 {
        let total: u64 = self.latency_us.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = (total as f64 * p).ceil() as u64;
        let mut acc = 0;
        for (i, n) in self.latency_us.iter().enumerate() {
            acc += n;
            if acc >= want {
                return 1u64 << (i + 1); // upper bound of the bucket
            }
        }
        self.max_latency_us
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

struct Response {
    status: u16,
    close: bool,
    seen_real_ip: Option<String>,
}

fn read_response(r: &mut BufReader<TcpStream>) -> Result<Response, &'static str> {
    let mut line = String::new();
    let n = r.read_line(&mut line).map_err(|_| "read error")?;
    if n == 0 {
        return Err("closed before a response");
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let mut length: Option<usize> = None;
    let mut close = false;
    let mut seen = None;
    loop {
        line.clear();
        let n = r.read_line(&mut line).map_err(|_| "read error")?;
        if n == 0 {
            return Err("closed inside a response head");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err("bad header line");
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse().map_err(|_| "bad content-length")?);
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        } else if k.eq_ignore_ascii_case("x-seen-real-ip") {
            seen = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked response (not expected)");
        }
    }
    let length = length.ok_or("no content-length")?;
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)
        .map_err(|_| "closed inside a response body")?;
    Ok(Response {
        status,
        close,
        seen_real_ip: seen,
    })
}

fn connect(src: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    socket.connect_timeout(&SockAddr::from(target), Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    socket.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(socket.into())
}

fn worker(
    id: usize,
    class: Class,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    budget: Arc<AtomicU64>,
    max_requests: u64,
) -> Tally {
    let mut t = Tally::default();
    let request = class.request();
    let mut conn: Option<(TcpStream, BufReader<TcpStream>, u64)> = None;
    let mut last_status: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        if budget.fetch_add(1, Ordering::Relaxed) >= max_requests {
            break;
        }
        if conn.is_none() {
            match connect(class.src, target).and_then(|s| Ok((s.try_clone()?, s))) {
                Ok((w, r)) => {
                    t.connects += 1;
                    conn = Some((w, BufReader::with_capacity(16 * 1024, r), 0));
                }
                Err(_) => {
                    t.error("connect");
                    thread::sleep(Duration::from_millis(5));
                    continue;
                }
            }
        }
        let (w, r, used) = conn.as_mut().unwrap();
        let started = Instant::now();
        if w.write_all(&request).is_err() {
            t.error("write");
            conn = None;
            continue;
        }
        t.sent += 1;
        *used += 1;
        match read_response(r) {
            Ok(resp) => {
                let us = started.elapsed().as_micros() as u64;
                t.latency_us[(63 - us.max(1).leading_zeros() as usize).min(31)] += 1;
                t.max_latency_us = t.max_latency_us.max(us);
                if us >= SLOW_US && t.slow.len() < 2000 {
                    t.slow.push((now_ns(), us));
                }
                t.completed += 1;
                *t.statuses.entry(resp.status).or_default() += 1;
                if last_status != resp.status {
                    if t.transitions.len() < 100_000 {
                        t.transitions.push((now_ns(), id, last_status, resp.status));
                    }
                    last_status = resp.status;
                }
                if class.expect.is_some_and(|e| e != resp.status) {
                    t.unexpected_status += 1;
                }
                if resp.status == 200 {
                    if let Some(want) = &class.seen {
                        if resp.seen_real_ip.as_deref() != Some(want.as_str()) {
                            t.seen_mismatch += 1;
                        }
                    }
                }
                if resp.close {
                    t.server_closes += 1;
                    conn = None;
                } else if class.per_conn > 0 && *used >= class.per_conn {
                    conn = None;
                }
            }
            Err(kind) => {
                t.error(kind);
                conn = None;
            }
        }
    }
    t
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn report(classes: &[(Class, Tally)], elapsed: f64, started_ns: u128) -> String {
    let mut out =
        format!("{{\"elapsed_s\": {elapsed:.3}, \"started_ns\": {started_ns}, \"classes\": {{");
    for (i, (c, t)) in classes.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        let errors: Vec<String> = t
            .errors
            .iter()
            .map(|(k, v)| format!("{}: {v}", json_str(k)))
            .collect();
        let mut transitions = t.transitions.clone();
        transitions.sort();
        let transitions: Vec<String> = transitions
            .iter()
            .map(|(ts, w, a, b)| format!("[{ts}, {w}, {a}, {b}]"))
            .collect();
        let error_log: Vec<String> = t
            .error_log
            .iter()
            .map(|(ts, k)| format!("[{ts}, {}]", json_str(k)))
            .collect();
        let mut slow = t.slow.clone();
        slow.sort();
        let slow: Vec<String> = slow.iter().map(|(ts, us)| format!("[{ts}, {us}]")).collect();
        out.push_str(&format!(
            "{}: {{\"src\": \"{}\", \"conns\": {}, \"per_conn\": {}, \"expect\": {}, \"seen\": {}, \
             \"forge\": {}, \"sent\": {}, \"completed\": {}, \"statuses\": {{{}}}, \"errors\": {{{}}}, \
             \"unexpected_status\": {}, \"seen_mismatch\": {}, \"connects\": {}, \"server_closes\": {}, \
             \"latency_us\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}, \
             \"transitions\": [{}], \"error_log\": [{}], \"slow\": [{}]}}",
            json_str(&c.name),
            c.src,
            c.conns,
            c.per_conn,
            c.expect.map_or("\"any\"".to_string(), |e| e.to_string()),
            c.seen.as_deref().map_or("null".to_string(), json_str),
            c.forge,
            t.sent,
            t.completed,
            statuses.join(", "),
            errors.join(", "),
            t.unexpected_status,
            t.seen_mismatch,
            t.connects,
            t.server_closes,
            t.percentile_us(0.5),
            t.percentile_us(0.99),
            t.percentile_us(0.999),
            t.max_latency_us,
            transitions.join(", "),
            error_log.join(", "),
            slow.join(", "),
        ));
    }
    out.push_str("}}\n");
    out
}

fn main() {
    let mut target: Option<SocketAddr> = None;
    let mut duration = Duration::from_secs(10);
    let mut max_requests = u64::MAX;
    let mut report_path: Option<String> = None;
    let mut classes = Vec::new();
    let mut args = std::env::args().skip(1);
    let usage = "usage: loadgen --target IP:PORT [--duration-s S] [--max-requests N] \
                 [--report FILE] --class name=..,src=..[,conns=..][,per_conn=..][,expect=..][,seen=..][,forge=1]";
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| panic!("{a} needs a value\n{usage}"))
        };
        match a.as_str() {
            "--target" => target = Some(val().parse().expect("--target IP:PORT")),
            "--duration-s" => duration = Duration::from_secs_f64(val().parse().expect("seconds")),
            "--max-requests" => max_requests = val().parse().expect("a count"),
            "--report" => report_path = Some(val()),
            "--class" => classes.push(Class::parse(&val()).unwrap_or_else(|e| panic!("{e}"))),
            _ => panic!("unknown argument {a}\n{usage}"),
        }
    }
    let target = target.expect(usage);
    assert!(
        target.ip().is_loopback(),
        "the target must be a loopback address"
    );
    assert!(!classes.is_empty(), "{usage}");
    assert!(duration <= Duration::from_secs(3600), "at most an hour");

    let stop = Arc::new(AtomicBool::new(false));
    let budget = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let started_ns = now_ns();
    let results: Arc<Mutex<Vec<(usize, Tally)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    let mut id = 0;
    for (ci, class) in classes.iter().enumerate() {
        for _ in 0..class.conns {
            id += 1;
            let (class, stop, budget, results) =
                (class.clone(), stop.clone(), budget.clone(), results.clone());
            handles.push(thread::spawn(move || {
                let t = worker(id, class, target, stop, budget, max_requests);
                results.lock().unwrap().push((ci, t));
            }));
        }
    }
    while started.elapsed() < duration && budget.load(Ordering::Relaxed) < max_requests {
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("worker panicked");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut merged: Vec<(Class, Tally)> = classes
        .iter()
        .map(|c| (c.clone(), Tally::default()))
        .collect();
    for (ci, t) in std::mem::take(&mut *results.lock().unwrap()) {
        merged[ci].1.merge(t);
    }
    let text = report(&merged, elapsed, started_ns);
    match report_path {
        Some(p) => std::fs::write(&p, &text).expect("write the report"),
        None => print!("{text}"),
    }
    let sent: u64 = merged.iter().map(|(_, t)| t.sent).sum();
    eprintln!(
        "loadgen: {sent} requests in {elapsed:.1} s ({:.0}/s)",
        sent as f64 / elapsed
    );
}
