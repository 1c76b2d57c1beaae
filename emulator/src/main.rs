//! `dps-emulator --config FILE [--port N] [--ca-out FILE] [--quiet]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dps_emulator::{Config, Emulator};

const USAGE: &str = "usage: dps-emulator --config FILE [--port N] [--ca-out FILE] [--quiet]

  --config FILE   emulator configuration (.toml or .json; see emulator/README.md)
  --port N        port on 127.0.0.1 (overrides the config's `port`; 0 = ephemeral)
  --ca-out FILE   write the PEM of the CA that signed the server certificate here
  --quiet         do not log one line per request
";

struct Args {
    config: PathBuf,
    port: Option<u16>,
    ca_out: Option<PathBuf>,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut config, mut port, mut ca_out, mut quiet) = (None, None, None, false);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => config = Some(PathBuf::from(value("--config")?)),
            "--port" | "-p" => {
                let v = value("--port")?;
                port = Some(
                    v.parse::<u16>()
                        .map_err(|_| format!("--port {v:?} is not a port number (0-65535)"))?,
                );
            }
            "--ca-out" => ca_out = Some(PathBuf::from(value("--ca-out")?)),
            "--quiet" | "-q" => quiet = true,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config FILE is required")?,
        port,
        ca_out,
        quiet,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dps-emulator: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dps-emulator: bad config: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = args.port {
        cfg.port = Some(p);
    }
    cfg.log_requests = !args.quiet;
    let scope = cfg.id_scope.clone();
    let n_enr = cfg.enrollments.len();
    let n_hubs = cfg.hubs.len();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("dps-emulator: cannot install signal handler: {e}");
            return ExitCode::FAILURE;
        }
    }
    let emu = match Emulator::start(cfg) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dps-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.ca_out
        && let Err(e) = std::fs::write(path, emu.ca_pem())
    {
        eprintln!("dps-emulator: cannot write CA to {}: {e}", path.display());
        emu.stop();
        return ExitCode::FAILURE;
    }
    eprintln!(
        "dps-emulator: listening on {} (127.0.0.1:{}), id scope {scope}, {n_enr} enrollment(s), {n_hubs} hub(s)",
        emu.base_url(),
        emu.port()
    );
    match &args.ca_out {
        Some(p) => eprintln!("dps-emulator: CA certificate written to {}", p.display()),
        None => eprintln!(
            "dps-emulator: tip: --ca-out FILE writes the CA certificate clients must trust"
        ),
    }
    // Machine-readable line for scripts that start the binary with --port 0.
    println!("listening {}", emu.base_url());

    let mut last = emu.counters();
    let mut last_log = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last_log.elapsed() >= Duration::from_secs(60) {
            let c = emu.counters();
            if c != last {
                eprintln!("dps-emulator: counters: {c}");
                last = c;
            }
            last_log = Instant::now();
        }
    }
    eprintln!("dps-emulator: shutting down; counters: {}", emu.counters());
    emu.stop();
    ExitCode::SUCCESS
}
