//! A bounded mutation fuzzer on the stable toolchain, so that fuzzing runs
//! in every `cargo test`: the same target bodies as the cargo-fuzz targets
//! (`fuzz/targets.rs`), seeded from the checked-in corpora
//! (`fuzz/corpus/<target>/`), mutated by a deterministic PRNG (bit flips,
//! byte sets, interesting bytes, inserts, deletes, duplications, splices,
//! truncations). A panic is a failure; the input is written to
//! `target/fuzz-crashes/` and printed.
//!
//! Bounded by time per target: `DPS_FUZZ_SECS` (default 3 s per target);
//! `DPS_FUZZ_SEED` changes the PRNG seed. The executions per target are
//! printed. This is not coverage-guided: libFuzzer through cargo-fuzz
//! (nightly, see fuzz/README.md) is the deeper tool.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"0",
    b"ffffffffffffffff",
    b"18446744073709551615",
    b"-1",
    b"\0",
    b"\xff",
    b":",
    b";",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 99999999999\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"%",
    b"%zz",
    b"=",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"-----BEGIN CERTIFICATE-----\n",
    b"-----END CERTIFICATE-----\n",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
    b"GMT",
    b"9999",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let s = INTERESTING[rng.below(INTERESTING.len())];
                input.splice(i..i, s.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk: Vec<u8> = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, chunk);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            6 if len > 0 => input.truncate(rng.below(len)),
            7 if len > 0 => {
                // Replace a digit run with an extreme number.
                let i = rng.below(len);
                if input[i].is_ascii_digit() {
                    let s = INTERESTING[3 + rng.below(3)];
                    input.splice(i..i + 1, s.iter().copied());
                }
            }
            _ => {
                let i = rng.below(len + 1);
                input.insert(i, rng.next() as u8);
            }
        }
    }
    // Keep inputs bounded so that one iteration stays cheap.
    input.truncate(256 * 1024);
}

fn fuzz(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    let secs: f64 = std::env::var("DPS_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let seed: u64 = std::env::var("DPS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_d0c5);
    let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let budget = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut execs = 0u64;
    let mut slowest = Duration::ZERO;
    // The seeds themselves first.
    for s in &seeds {
        target(s);
        execs += 1;
    }
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crash = None;
    while started.elapsed() < budget {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let t = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| target(&input)));
        slowest = slowest.max(t.elapsed());
        execs += 1;
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            crash = Some((input, msg));
            break;
        }
    }
    std::panic::set_hook(prev_hook);
    println!(
        "fuzz {name}: {execs} executions in {:.1} s, slowest input {:?}",
        started.elapsed().as_secs_f64(),
        slowest
    );
    if let Some((input, msg)) = crash {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
        let _ = std::fs::create_dir_all(&out);
        let file = out.join(format!("{name}-{execs}"));
        let _ = std::fs::write(&file, &input);
        panic!(
            "{name} panicked ({msg}) on input saved to {}: {:?}",
            file.display(),
            String::from_utf8_lossy(&input[..input.len().min(512)])
        );
    }
    assert!(
        slowest < Duration::from_secs(10),
        "{name}: one input took {slowest:?}"
    );
}

#[test]
fn fuzz_http_response() {
    fuzz("http_response", targets::http_response);
}

#[test]
fn fuzz_wire_json() {
    fuzz("wire_json", targets::wire_json);
}

#[test]
fn fuzz_retry_after() {
    fuzz("retry_after", targets::retry_after);
}

#[test]
fn fuzz_sas() {
    fuzz("sas", targets::sas);
}

#[test]
fn fuzz_pem() {
    fuzz("pem", targets::pem);
}

#[test]
fn fuzz_server_strings() {
    fuzz("server_strings", targets::server_strings);
}

#[cfg(feature = "pkcs12")]
#[test]
fn fuzz_pkcs12() {
    fuzz("pkcs12", targets::pkcs12);
}

/// Regression inputs found by fuzzing (each once crashed or misbehaved).
#[test]
fn fuzz_regressions() {
    // A second chunk whose size overflows `body.len() + size`.
    targets::http_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n}\r\n0\r\n\r\n",
    );
    // HTTP-dates with an over-long year (overflowed the day count).
    targets::retry_after(b"Sun Nov  6 08:49:37 19943");
    targets::retry_after(b"Sun, 06 Nov 18446744073709551615 08:49:37 GMT");
    // 45 control characters, each escaped to 6 characters, made a refusal
    // message of 410 characters (server_strings, libFuzzer, 1 484 executions).
    targets::server_strings(b"2022-0?.8x\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18\x18a");
}
