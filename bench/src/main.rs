//! `dps-bench`: the Rust half of `bench/run` (a harness only: every dps figure is
//! measured on the C drivers in `bench/c/`, linked against the release `libdps.a`).
//!
//! Subcommands (all results are JSON files that `report` turns into one table):
//! - `setup DIR`: device credentials and the emulator configuration for the bench.
//! - `procs --n N --out FILE -- CMD ARGS...`: runs a command N times, one process per
//!   registration; CPU (user + system of the child, from `getrusage`) and wall time of each.
//! - `curl --n N --out FILE ...`: the by-hand peer: `curl -X PUT …/register`, then
//!   `curl …/operations/{operationId}` (two processes, two TLS handshakes per registration).
//! - `report DIR [--write FILE]`: the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// Individual symmetric key of `bench-sym` (and of the latency device).
const SYM_KEY: &str = "QmVuY2htYXJrIGtleSBmb3IgZHBzIGJlbmNoLCAzMiE=";
/// Group key of `bench-group` (throughput runs: every device is distinct).
const GROUP_KEY: &str =
    "R3JvdXAga2V5IGZvciB0aGUgZHBzIGJlbmNoIHRocm91Z2hwdXQgcnVucywgNjQgYnl0ZXMgbG9uZyEhISEhIQ==";
const SCOPE: &str = "0ne0000BE9C";
/// Latency device: Retry-After `LAT_RETRY_AFTER_S` over `LAT_POLLS` polls.
const LAT_RETRY_AFTER_S: u64 = 1;
const LAT_POLLS: u64 = 3;

type Res<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("setup") => setup(&args[1..]),
        Some("procs") => procs(&args[1..]),
        Some("curl") => curl(&args[1..]),
        Some("report") => report(&args[1..]),
        _ => Err("usage: dps-bench setup|procs|curl|report ... (see bench/README.md)".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dps-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options; positional arguments are returned under "".
fn opts(args: &[String]) -> Res<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            let rest: Vec<String> = it.cloned().collect();
            m.insert(
                "--".into(),
                serde_json::to_string(&rest).unwrap_or_default(),
            );
            break;
        }
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or(format!("--{name} needs a value"))?;
            m.insert(name.to_string(), v.clone());
        } else {
            m.insert(String::new(), a.clone());
        }
    }
    Ok(m)
}

fn need<'a>(m: &'a BTreeMap<String, String>, k: &str) -> Res<&'a str> {
    m.get(k).map(String::as_str).ok_or(format!("missing --{k}"))
}

fn num(m: &BTreeMap<String, String>, k: &str) -> Res<u64> {
    need(m, k)?
        .parse()
        .map_err(|_| format!("--{k} must be a number"))
}

fn write_json(path: &str, v: &Value) -> Res<()> {
    std::fs::write(
        path,
        serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
    )
    .map_err(|e| format!("{path}: {e}"))
}

// ---------------------------------------------------------------- setup

fn setup(args: &[String]) -> Res<()> {
    let m = opts(args)?;
    let dir = PathBuf::from(need(&m, "")?);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dev = dps_emulator::pki::self_signed_device("bench-x509");
    let w = |name: &str, s: &str| std::fs::write(dir.join(name), s).map_err(|e| e.to_string());
    w("x509-cert.pem", &dev.cert_pem)?;
    w("x509-key.pem", &dev.key_pem)?;
    let cfg = format!(
        r#"# dps-bench emulator configuration (written by `dps-bench setup`).
id_scope = "{SCOPE}"
retry_after_secs = 0
assigning_polls = 0
[limits]
max_connections = 512
[[hubs]]
host_name = "bench-hub.azure-devices.net"
[[enrollments]]
registration_id = "bench-sym"
attestation = "symmetric_key"
primary_key = "{SYM_KEY}"
[[enrollments]]
registration_id = "bench-x509"
attestation = "x509"
thumbprint = "{thumb}"
[[enrollments]]
registration_id = "bench-lat"
attestation = "symmetric_key"
primary_key = "{SYM_KEY}"
retry_after_secs = {LAT_RETRY_AFTER_S}
assigning_polls = {polls}
[[enrollments]]
group_id = "bench-group"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
"#,
        thumb = dev.sha256_thumbprint,
        polls = LAT_POLLS - 1,
    );
    w("emulator.toml", &cfg)?;
    w(
        "env.sh",
        &format!(
            "BENCH_SCOPE={SCOPE}\nBENCH_SYM_KEY={SYM_KEY}\nBENCH_GROUP_KEY={GROUP_KEY}\nBENCH_LAT_RETRY_AFTER_S={LAT_RETRY_AFTER_S}\nBENCH_LAT_POLLS={LAT_POLLS}\n"
        ),
    )?;
    Ok(())
}

// ---------------------------------------------------------------- child CPU

/// User + system CPU of all waited-for children so far, in microseconds.
fn children_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    tv_us(ru.ru_utime) + tv_us(ru.ru_stime)
}

fn tv_us(t: libc::timeval) -> u64 {
    (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64
}

fn sample(cpu_us: u64, wall: Duration) -> Value {
    json!({ "cpu_us": cpu_us, "wall_us": wall.as_micros() as u64 })
}

// ---------------------------------------------------------------- procs

fn procs(args: &[String]) -> Res<()> {
    let m = opts(args)?;
    let n = num(&m, "n")?;
    let out = need(&m, "out")?;
    let cmd: Vec<String> = serde_json::from_str(need(&m, "--")?).map_err(|e| e.to_string())?;
    let (prog, rest) = cmd.split_first().ok_or("no command after --")?;
    let mut samples = Vec::new();
    let mut failures = 0;
    for _ in 0..n {
        let c0 = children_cpu_us();
        let t0 = Instant::now();
        let st = Command::new(prog)
            .args(rest)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("{prog}: {e}"))?;
        let wall = t0.elapsed();
        let cpu = children_cpu_us() - c0;
        if !st.success() {
            failures += 1;
        }
        samples.push(sample(cpu, wall));
    }
    write_json(out, &json!({ "samples": samples, "failures": failures }))
}

// ---------------------------------------------------------------- curl

fn url_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

fn sas_token(scope: &str, id: &str, key_b64: &str) -> Res<String> {
    let key = B64.decode(key_b64).map_err(|e| e.to_string())?;
    let sr = url_encode(&format!("{scope}/registrations/{id}"));
    let se = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 3600;
    let sig = B64.encode(dps_emulator::sas::hmac_sha256(
        &key,
        format!("{sr}\n{se}").as_bytes(),
    ));
    Ok(format!(
        "SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration",
        url_encode(&sig)
    ))
}

/// One curl process; returns its stdout.
fn run_curl(base: &[String], extra: &[String]) -> Res<String> {
    let out = Command::new("curl")
        .args(base)
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl exited with {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn curl(args: &[String]) -> Res<()> {
    let m = opts(args)?;
    let n = num(&m, "n")?;
    let out = need(&m, "out")?;
    let url = need(&m, "url")?;
    let scope = need(&m, "scope")?;
    let id = need(&m, "id")?;
    let api = "2021-06-01";
    let mut base: Vec<String> = ["-sS", "--fail-with-body", "--cacert", need(&m, "ca")?]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let (Some(c), Some(k)) = (m.get("cert"), m.get("key-file")) {
        base.extend(["--cert", c, "--key", k].iter().map(|s| s.to_string()));
    }
    let mut samples = Vec::new();
    let mut failures = 0;
    for _ in 0..n {
        let c0 = children_cpu_us();
        let t0 = Instant::now();
        // The SAS token is computed outside curl (as a by-hand script would with a helper);
        // its cost is in this process, not counted for curl.
        let auth: Vec<String> = match m.get("key") {
            Some(k) => vec![
                "-H".into(),
                format!("Authorization: {}", sas_token(scope, id, k)?),
            ],
            None => vec![],
        };
        let mut put = auth.clone();
        put.extend([
            "-X".into(),
            "PUT".into(),
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            format!("{{\"registrationId\":\"{id}\"}}"),
            format!("{url}/{scope}/registrations/{id}/register?api-version={api}"),
        ]);
        let ok = (|| -> Res<()> {
            let body = run_curl(&base, &put)?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("PUT answer: {e}"))?;
            let op = v["operationId"].as_str().ok_or("no operationId")?;
            let mut get = auth.clone();
            get.push(format!(
                "{url}/{scope}/registrations/{id}/operations/{op}?api-version={api}"
            ));
            let body = run_curl(&base, &get)?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("GET answer: {e}"))?;
            if v["status"] != "assigned" {
                return Err(format!("not assigned: {body}"));
            }
            Ok(())
        })();
        let wall = t0.elapsed();
        let cpu = children_cpu_us() - c0;
        if let Err(e) = ok {
            eprintln!("dps-bench curl: {e}");
            failures += 1;
        }
        samples.push(sample(cpu, wall));
    }
    write_json(out, &json!({ "samples": samples, "failures": failures }))
}

// ---------------------------------------------------------------- report

fn load(dir: &Path, name: &str) -> Option<Value> {
    let s = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&s).ok()
}

/// `reg <cpu_us> <wall_us>` lines from bench/c/register_loop.
fn load_loop(dir: &Path, name: &str) -> Option<Value> {
    let s = std::fs::read_to_string(dir.join(name)).ok()?;
    let samples: Vec<Value> = s
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["reg", c, w] => Some(
                    json!({"cpu_us": c.parse::<u64>().ok()?, "wall_us": w.parse::<u64>().ok()?}),
                ),
                _ => None,
            }
        })
        .collect();
    Some(json!({ "samples": samples, "failures": 0 }))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn field(v: &Value, k: &str) -> Vec<f64> {
    v["samples"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s[k].as_f64()).collect())
        .unwrap_or_default()
}

/// Parsed emulator counters (`<phase>.counters`: the shutdown line + `emu_cpu_us=`).
fn counters(dir: &Path, phase: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Ok(s) = std::fs::read_to_string(dir.join(format!("{phase}.counters"))) {
        for tok in s.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=')
                && let Ok(v) = v.parse::<f64>()
            {
                m.insert(k.trim_matches(['[', ']']).to_string(), v);
            }
        }
        // "[register 202]=5" splits into "[register" and "202]=5".
        let mut prev = "";
        for tok in s.split_whitespace() {
            if let Some((k, v)) = tok.split_once("]=")
                && prev.starts_with('[')
                && let Ok(v) = v.parse::<f64>()
            {
                m.insert(format!("{} {k}", &prev[1..]), v);
            }
            prev = tok;
        }
    }
    m
}

fn ms(us: Option<f64>) -> String {
    us.map(|v| format!("{:.2}", v / 1000.0))
        .unwrap_or("n/a".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "n/a".into(),
    }
}

fn cmd_line(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "n/a".into())
}

/// The Node peer's version, from the pinned node_modules it runs with.
fn node_client_version() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../emulator/node-conformance/node_modules/azure-iot-provisioning-device-http/package.json",
    );
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn report(args: &[String]) -> Res<()> {
    let m = opts(args)?;
    let dir = PathBuf::from(need(&m, "")?);
    let dir = dir.as_path();
    let meta = load(dir, "meta.json").unwrap_or(json!({}));
    let mut problems: Vec<String> = Vec::new();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Cost of one registration (loopback, Retry-After 0, one poll)\n"
    );
    let _ = writeln!(
        t,
        "Medians over n registrations. CPU = user + system of the client (the emulator is a separate process).\n\
         Conns/handshakes/requests per registration are the emulator's counters for that run divided by n.\n"
    );
    let _ = writeln!(
        t,
        "| Client | Credential | n | CPU ms | wall ms | CPU vs curl | CPU vs Node | TCP conns | TLS handshakes | requests |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rows: &[(&str, &str, &str)] = &[
        ("c-loop", "dps (C, libdps.a), in one process", "loop"),
        (
            "floor-loop",
            "floor: bare rustls client (Rust, same TLS stack, PUT + GET, no dps), in one process",
            "loop",
        ),
        (
            "c-proc",
            "dps (C, libdps.a), one process per registration",
            "proc",
        ),
        ("curl", "curl by hand: PUT + GET, 2 processes", "proc"),
        (
            "node-seq",
            "Node azure-iot-provisioning-device-http, in one process",
            "loop",
        ),
        (
            "node-proc",
            "Node azure-iot-provisioning-device-http, one process per registration",
            "proc",
        ),
    ];
    let mut cpu_of: BTreeMap<String, f64> = BTreeMap::new();
    for kind in ["sym", "x509"] {
        for (name, _, _) in rows {
            let key = format!("{name}-{kind}");
            let v = if name.ends_with("-loop") {
                load_loop(dir, &format!("{key}.reg"))
            } else {
                load(dir, &format!("{key}.json"))
            };
            if let Some(v) = v
                && let Some(c) = median(field(&v, "cpu_us"))
            {
                cpu_of.insert(key, c);
            }
        }
    }
    for kind in ["sym", "x509"] {
        let cred = if kind == "sym" {
            "symmetric key"
        } else {
            "X.509"
        };
        for (name, label, mode) in rows {
            if *name == "floor-loop" && kind != "sym" {
                continue; // the floor is measured for the symmetric key only
            }
            let key = format!("{name}-{kind}");
            let v = if name.ends_with("-loop") {
                load_loop(dir, &format!("{key}.reg"))
            } else {
                load(dir, &format!("{key}.json"))
            };
            let Some(v) = v else {
                problems.push(format!("{key}: no result"));
                continue;
            };
            let n = field(&v, "cpu_us").len() as f64;
            if n == 0.0 || v["failures"].as_u64() != Some(0) {
                problems.push(format!("{key}: {} samples, failures {}", n, v["failures"]));
            }
            let cpu = median(field(&v, "cpu_us"));
            let wall = median(field(&v, "wall_us"));
            // Compare like with like: in-process loops with in-process, processes with processes.
            let (curl_key, node_key) = if *mode == "loop" {
                (format!("curl-{kind}"), format!("node-seq-{kind}"))
            } else {
                (format!("curl-{kind}"), format!("node-proc-{kind}"))
            };
            let vs_curl = if name.starts_with("curl") {
                "1.00x".to_string()
            } else {
                ratio(cpu, cpu_of.get(&curl_key).copied())
            };
            let vs_node = ratio(cpu, cpu_of.get(&node_key).copied());
            let c = counters(dir, &key);
            let per = |k: &str| {
                c.get(k)
                    .map(|x| format!("{:.2}", x / n.max(1.0)))
                    .unwrap_or("n/a".into())
            };
            if (name.starts_with("c-") || name.starts_with("floor"))
                && c.get("tls_handshakes").copied() != Some(n)
            {
                problems.push(format!(
                    "{key}: {} TLS handshakes for {n} registrations",
                    per("tls_handshakes")
                ));
            }
            let _ = writeln!(
                t,
                "| {label} | {cred} | {n} | {} | {} | {vs_curl} | {vs_node} | {} | {} | {} |",
                ms(cpu),
                ms(wall),
                per("tcp_connections"),
                per("tls_handshakes"),
                per("requests"),
            );
        }
    }
    let floor = cpu_of.get("floor-loop-sym").copied();
    let dps_loop = cpu_of.get("c-loop-sym").copied();
    if floor.is_none() {
        problems.push("floor-loop-sym: no result".into());
    }
    let _ = writeln!(
        t,
        "\ndps / floor (symmetric key, in one process, CPU): {}. The floor does per registration what \
         `register_loop` does (read the CA file, build the TLS config and the SAS token, connect, \
         handshake, PUT, GET) with nothing else: no retries, deadlines, proxy, error \
         classification or C ABI.",
        ratio(dps_loop, floor)
    );
    if let Some(b) = load(dir, "proc-baseline.json").and_then(|v| median(field(&v, "cpu_us"))) {
        let _ = writeln!(
            t,
            "\nFor scale: starting an empty process (`/bin/true`) costs {} ms CPU here, included in every per-process row.",
            ms(Some(b))
        );
    }
    let _ = writeln!(
        t,
        "\n\"vs Node\" compares in-process rows with the in-process Node run and per-process rows with per-process Node runs; curl is always two processes (it cannot carry the operationId from the PUT into a GET on the same connection), so it pays two TLS handshakes.\n"
    );

    // Latency
    let _ = writeln!(
        t,
        "### Added latency: total wall time minus what the server asked (N polls x Retry-After R)\n"
    );
    let _ = writeln!(
        t,
        "Library defaults for dps here (no poll-interval override). Medians over n registrations.\n"
    );
    let _ = writeln!(
        t,
        "| Client | Server asks | n | median wall ms | added ms |"
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|");
    for (key, label, r_s, polls) in [
        ("lat0-c", "dps (C, libdps.a)", 0, 1),
        ("lat0-node", "Node azure-iot-provisioning-device-http", 0, 1),
        ("lat-c", "dps (C, libdps.a)", LAT_RETRY_AFTER_S, LAT_POLLS),
        (
            "lat-node",
            "Node azure-iot-provisioning-device-http",
            LAT_RETRY_AFTER_S,
            LAT_POLLS,
        ),
    ] {
        let floor = (r_s * polls * 1_000_000) as f64;
        let v = if key.ends_with("-c") {
            load_loop(dir, &format!("{key}.reg"))
        } else {
            load(dir, &format!("{key}.json"))
        };
        if v.as_ref()
            .is_none_or(|v| v["failures"].as_u64() != Some(0) || field(v, "wall_us").is_empty())
        {
            problems.push(format!("{key}: missing or failed"));
        }
        if let Some(v) = v {
            let w = median(field(&v, "wall_us"));
            if w.is_some_and(|w| w < floor) {
                problems.push(format!("{key}: faster than the server asked"));
            }
            let _ = writeln!(
                t,
                "| {label} | Retry-After {r_s} s x {polls} poll(s) = {} ms | {} | {} | {} |",
                r_s * polls * 1000,
                field(&v, "wall_us").len(),
                ms(w),
                ms(w.map(|w| w - floor))
            );
        }
    }

    // Footprint
    let fp = load(dir, "footprint.json");
    match &fp {
        None => problems.push("footprint.json: missing or not JSON".into()),
        Some(f) => {
            if f["exe_sym"].as_f64().is_none_or(|b| b < 100_000.0) {
                problems.push("footprint: no executable size".into());
            }
            for k in ["heap_sym", "heap_x509", "heap_sym_rsa"] {
                if !f[k].is_null() && f[k].as_f64().is_none_or(|b| b < 1000.0) {
                    problems.push(format!("footprint: implausible {k}"));
                }
            }
        }
    }
    if let Some(f) = fp {
        let _ = writeln!(t, "\n### Footprint\n");
        let _ = writeln!(t, "| What | Size |");
        let _ = writeln!(t, "|---|---:|");
        let kb = |v: &Value| {
            v.as_f64()
                .map(|b| format!("{:.0} KiB ({:.0} bytes)", b / 1024.0, b))
                .unwrap_or("n/a".into())
        };
        for (k, what) in [
            (
                "exe_sym",
                "`c-examples/register_symmetric_key.c`, default features (pkcs12 built in, unused, dropped by --gc-sections)",
            ),
            (
                "exe_sym_nopkcs12",
                "`register_symmetric_key.c`, `--no-default-features --features encrypted-keys` (no PKCS#12, no rustls log records)",
            ),
            (
                "exe_x509",
                "`register_x509.c` (PEM files, encrypted keys), default features",
            ),
            ("exe_x509_nopkcs12", "`register_x509.c`, same features"),
            (
                "exe_pfx",
                "`register_pfx.c` (PKCS#12 used), default features",
            ),
        ] {
            let _ = writeln!(t, "| stripped executable: {what} | {} |", kb(&f[k]));
        }
        let _ = writeln!(
            t,
            "| peak heap, one symmetric-key registration (valgrind massif, heap + overhead) | {} |",
            kb(&f["heap_sym"])
        );
        let _ = writeln!(
            t,
            "| peak heap, one X.509 registration | {} |",
            kb(&f["heap_x509"])
        );
        let _ = writeln!(
            t,
            "| peak heap, one symmetric-key registration, server sends an RSA-2048 leaf + intermediate (like Azure) | {} |",
            kb(&f["heap_sym_rsa"])
        );
        if let Some(p) = f["profile"].as_str() {
            let _ = writeln!(t, "\nBuild: {p}");
        }
    }

    // Throughput
    let _ = writeln!(
        t,
        "\n### Throughput (one process, distinct devices of a symmetric-key group, one connection per registration, Retry-After 0)\n"
    );
    let _ = writeln!(
        t,
        "dps = `bench/c/register_threads.c` on libdps.a, one thread per concurrent client, library defaults; \
         Node = one process, K concurrent registrations.\n"
    );
    let _ = writeln!(
        t,
        "| Concurrency | dps reg/s | Node reg/s | dps / Node | dps CPU ms/reg | Node CPU ms/reg | emulator CPU ms/reg (dps run) | emulator busy (dps run, % of one core) |"
    );
    let _ = writeln!(t, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut emu_cpu_per_reg = Vec::new();
    let mut best = 0.0f64;
    for k in [1, 8, 64] {
        let d = load(dir, &format!("tp-dps-{k}.json"));
        let nd = load(dir, &format!("tp-node-{k}.json"));
        let rate = |v: &Option<Value>| {
            v.as_ref().and_then(|v| {
                let r = v["registrations"].as_f64()?;
                Some(r / (v["wall_us"].as_f64()? / 1e6))
            })
        };
        let cpu_per = |v: &Option<Value>| {
            v.as_ref().and_then(|v| {
                let r = v["registrations"].as_f64()?;
                (r > 0.0).then(|| v["cpu_us"].as_f64().unwrap_or(0.0) / r)
            })
        };
        let c = counters(dir, &format!("tp-dps-{k}"));
        let emu = d.as_ref().and_then(|v| {
            let r = v["registrations"].as_f64()?;
            let us = c.get("emu_cpu_us")?;
            (r >= 50.0).then(|| us / r)
        });
        if let Some(e) = emu {
            emu_cpu_per_reg.push(e);
        }
        let busy = d.as_ref().and_then(|v| {
            let us = c.get("emu_cpu_us")?;
            Some(format!("{:.0} %", us / v["wall_us"].as_f64()? * 100.0))
        });
        let (rd, rn) = (rate(&d), rate(&nd));
        best = best.max(rd.unwrap_or(0.0)).max(rn.unwrap_or(0.0));
        for (name, v) in [("tp-dps", &d), ("tp-node", &nd)] {
            let ok = v.as_ref().is_some_and(|v| {
                v["failures"].as_u64() == Some(0) && v["registrations"].as_u64().unwrap_or(0) > 0
            });
            if !ok {
                problems.push(format!("{name}-{k}: missing, failed or zero registrations"));
            }
        }
        let f = |r: Option<f64>| r.map(|r| format!("{r:.0}")).unwrap_or("n/a".into());
        let _ = writeln!(
            t,
            "| {k} | {} | {} | {} | {} | {} | {} | {} |",
            f(rd),
            f(rn),
            ratio(rd, rn),
            ms(cpu_per(&d)),
            ms(cpu_per(&nd)),
            ms(emu),
            busy.unwrap_or("n/a".into()),
        );
    }

    // Emulator capacity
    let _ = writeln!(t, "\n### Emulator capacity\n");
    let cores = meta["nproc"].as_f64().unwrap_or(1.0);
    match median(emu_cpu_per_reg) {
        Some(e) => {
            let _ = writeln!(
                t,
                "The emulator spends {} ms CPU per registration (TLS handshake + PUT + GET; from /proc, median of the dps throughput runs), \
                 so alone it would sustain about {:.0} registrations/s on this machine's {cores} cores. The highest rate measured above \
                 ({best:.0}/s) shares those cores with the clients, so the client figures are bounded by the shared CPU, not by an emulator limit.",
                ms(Some(e)),
                cores * 1e6 / e,
            );
        }
        None => {
            let _ = writeln!(
                t,
                "Too few registrations in this run to estimate the emulator's CPU per registration."
            );
        }
    }

    // Targets (README): the worst case of each figure in this run.
    let _ = writeln!(t, "\n### Against the project targets\n");
    let _ = writeln!(t, "| Target | This run | Met |");
    let _ = writeln!(t, "|---|---|---|");
    let mut worst_ratio: Option<f64> = None;
    for kind in ["sym", "x509"] {
        for dps_key in ["c-loop", "c-proc"] {
            if let (Some(d), Some(c)) = (
                cpu_of.get(&format!("{dps_key}-{kind}")),
                cpu_of.get(&format!("curl-{kind}")),
            ) {
                let r = d / c;
                worst_ratio = Some(worst_ratio.map_or(r, |w: f64| w.max(r)));
            }
        }
    }
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    if let Some(r) = worst_ratio {
        let _ = writeln!(
            t,
            "| CPU per registration <= 0.25x curl | {r:.2}x (worst of in-process / per-process, symmetric key / X.509) | {} |",
            yes(r <= 0.25)
        );
    }
    let mut hs_worst: Option<f64> = None;
    for key in ["c-loop-sym", "c-proc-sym", "c-loop-x509", "c-proc-x509"] {
        let c = counters(dir, key);
        let n = if key.starts_with("c-loop") {
            load_loop(dir, &format!("{key}.reg"))
        } else {
            load(dir, &format!("{key}.json"))
        }
        .map(|v| field(&v, "cpu_us").len() as f64)
        .unwrap_or(0.0);
        if let Some(h) = c.get("tls_handshakes")
            && n > 0.0
        {
            hs_worst = Some(hs_worst.map_or(h / n, |w: f64| w.max(h / n)));
        }
    }
    if let Some(h) = hs_worst {
        let _ = writeln!(
            t,
            "| One TLS handshake per registration | {h:.2} | {} |",
            yes(h <= 1.0)
        );
    }
    for (key, r_s, polls) in [("lat-c", LAT_RETRY_AFTER_S, LAT_POLLS), ("lat0-c", 0, 1)] {
        if let Some(w) =
            load_loop(dir, &format!("{key}.reg")).and_then(|v| median(field(&v, "wall_us")))
        {
            let added = w - (r_s * polls * 1_000_000) as f64;
            let _ = writeln!(
                t,
                "| No wait beyond what the server asks (Retry-After {r_s} s x {polls}) | +{} ms | {} |",
                ms(Some(added)),
                yes(added < 50_000.0)
            );
        }
    }
    if let (Some(d), Some(f)) = (dps_loop, floor) {
        let _ = writeln!(
            t,
            "| CPU per registration <= 1.2x the bare rustls floor (in one process, symmetric key) | {:.2}x | {} |",
            d / f,
            yes(d <= 1.2 * f)
        );
        let _ = writeln!(
            t,
            "| CPU per registration <= 0.5 ms in one process (symmetric key) | {} ms | {} |",
            ms(Some(d)),
            yes(d <= 500.0)
        );
    }
    if let Some(f) = load(dir, "footprint.json") {
        if let Some(h) = [
            f["heap_sym"].as_f64(),
            f["heap_x509"].as_f64(),
            f["heap_sym_rsa"].as_f64(),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
        {
            let _ = writeln!(
                t,
                "| Peak heap <= 96 KiB | {:.1} KiB (worst of the heap rows above) | {} |",
                h / 1024.0,
                yes(h <= 96.0 * 1024.0)
            );
        }
        if let Some(b) = f["exe_sym_nopkcs12"].as_f64() {
            let _ = writeln!(
                t,
                "| Stripped C example <= 1.0 MB without PKCS#12 | {:.2} MB ({b:.0} bytes, `register_symmetric_key.c`, `--no-default-features --features encrypted-keys`) | {} |",
                b / 1e6,
                yes(b <= 1e6)
            );
        }
    }

    let mut doc = String::new();
    let _ = writeln!(doc, "# dps benchmark results\n");
    let _ = writeln!(
        doc,
        "Date: {}  \nMachine: {} ({} cores), {}  \nVersions: {}; {}; node {} with azure-iot-provisioning-device-http {}; {}; dps {}  \nMode: {}\n",
        meta["date"].as_str().unwrap_or("?"),
        meta["cpu"].as_str().unwrap_or("?"),
        meta["nproc"],
        meta["uname"].as_str().unwrap_or("?"),
        cmd_line("rustc", &["--version"]),
        cmd_line("cc", &["--version"]),
        cmd_line("node", &["--version"]),
        node_client_version(),
        cmd_line("curl", &["--version"])
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        env!("CARGO_PKG_VERSION"),
        meta["mode"].as_str().unwrap_or("full"),
    );
    let _ = writeln!(
        doc,
        "The machine is shared and noisy: compare the ratios within this run, not absolute times across runs.\n"
    );
    doc.push_str(&t);
    print!("{doc}");
    if let Some(path) = m.get("write") {
        // Sections written by other tools (bench/sizes: sizes per target and the firmware
        // levers, from cross builds this run does not make) are carried over as they are.
        if let Ok(old) = std::fs::read_to_string(path) {
            for block in kept_blocks(&old) {
                doc.push('\n');
                doc.push_str(block);
                doc.push('\n');
            }
        }
        std::fs::write(path, &doc).map_err(|e| format!("{path}: {e}"))?;
    }
    if m.contains_key("check") && !problems.is_empty() {
        return Err(format!(
            "sanity checks failed:\n  {}",
            problems.join("\n  ")
        ));
    }
    Ok(())
}

/// The `<!-- NAME:begin -->` ... `<!-- NAME:end -->` blocks of a previous RESULTS.md
/// (markers included), which `report --write` keeps.
fn kept_blocks(old: &str) -> Vec<&str> {
    let mut v = Vec::new();
    let mut rest = old;
    while let Some(b) = rest.find("<!-- ") {
        let tail = &rest[b..];
        let name = tail[5..]
            .split(" -->")
            .next()
            .and_then(|m| m.strip_suffix(":begin"));
        let Some(name) = name.filter(|n| !n.is_empty() && !n.contains(char::is_whitespace)) else {
            rest = &tail[5..];
            continue;
        };
        let end_marker = format!("<!-- {name}:end -->");
        match tail.find(&end_marker) {
            Some(e) => {
                v.push(&tail[..e + end_marker.len()]);
                rest = &tail[e + end_marker.len()..];
            }
            None => break,
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::kept_blocks;

    #[test]
    fn kept_blocks_are_found_with_their_markers() {
        let old = "# r\n<!-- sizes:begin -->\n| a |\n<!-- sizes:end -->\ntext <!-- x --> \n<!-- f:begin -->y<!-- f:end -->";
        assert_eq!(
            kept_blocks(old),
            vec![
                "<!-- sizes:begin -->\n| a |\n<!-- sizes:end -->",
                "<!-- f:begin -->y<!-- f:end -->"
            ]
        );
        assert!(kept_blocks("<!-- sizes:begin --> unterminated").is_empty());
    }
}
