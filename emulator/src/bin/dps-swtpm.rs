//! `dps-swtpm`: a fresh software TPM for tests outside Rust (the Python TPM tests).
//!
//! Starts swtpm through [`Swtpm::start`] (the start-up every Rust TPM test uses: a temporary
//! state directory, so a fresh EK; ephemeral loopback ports), prints one line
//! `tcti swtpm:host=127.0.0.1,port=P`, then waits until its standard input closes, and stops
//! swtpm and removes the directory. A test holds the pipe: however it ends, the TPM goes.
//! Without swtpm installed it exits 1 naming the Debian packages.

use std::io::{Read, Write};
use std::process::ExitCode;

use dps_emulator::tpm::swtpm::Swtpm;

const USAGE: &str = "usage: dps-swtpm

Starts a fresh software TPM (swtpm, temporary state, ephemeral ports on 127.0.0.1), prints
`tcti swtpm:host=127.0.0.1,port=P` and runs until standard input is closed.
";

fn main() -> ExitCode {
    if let Some(a) = std::env::args().nth(1) {
        if a == "--help" || a == "-h" {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        eprintln!("dps-swtpm: unknown argument {a:?}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let started = std::panic::catch_unwind(Swtpm::start);
    let swtpm = match started {
        Ok(s) => s,
        Err(p) => {
            let why = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("swtpm did not start");
            eprintln!("dps-swtpm: {why}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout();
    if writeln!(out, "tcti {}", swtpm.tcti())
        .and_then(|_| out.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    drop(swtpm);
    ExitCode::SUCCESS
}
