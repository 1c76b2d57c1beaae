//! Option values: secrets in their four forms (`VALUE`, `env:NAME`, `@FILE`, `-`), files,
//! seconds, and options that fall back to an environment variable.

use std::time::Duration;

use dps::{Error, ErrorKind};
use zeroize::Zeroizing;

use crate::args::Parsed;
use crate::exit::{self, Failure, Res};

/// A secret given as VALUE, `env:NAME`, `@FILE` or `-` (stdin).
pub fn secret(option: &str, raw: &str) -> Res<Zeroizing<String>> {
    let v = if let Some(name) = raw.strip_prefix("env:") {
        std::env::var(name).map_err(|_| {
            Failure::Usage(format!(
                "{option} env:{name}: the environment variable is not set"
            ))
        })?
    } else if let Some(path) = raw.strip_prefix('@') {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Failure::Other(
                exit::CREDENTIAL,
                format!("{option}: cannot read {path:?}: {e}"),
            )
        })?);
        text.lines().next().unwrap_or("").trim().to_owned()
    } else if raw == "-" {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().read_line(&mut line).map_err(|e| {
            Failure::Other(
                exit::CREDENTIAL,
                format!("{option}: cannot read stdin: {e}"),
            )
        })?;
        line.trim().to_owned()
    } else {
        raw.to_owned()
    };
    Ok(Zeroizing::new(v))
}

pub fn read_file(option: &str, path: &str) -> Res<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        Failure::Dps(Error::new(
            ErrorKind::FileRead,
            format!("{option}: cannot read {path:?}: {e}"),
        ))
    })
}

pub fn seconds(option: &str, raw: &str) -> Res<Duration> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| Failure::Usage(format!("{option} {raw:?} is not a number of seconds")))?;
    if !v.is_finite() || !(0.0..=4_294_967.0).contains(&v) {
        return Err(Failure::Usage(format!("{option} {raw:?} is out of range")));
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn env_or(p: &Parsed, option: &str, env: &str) -> Option<String> {
    p.value(option)
        .map(str::to_owned)
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_forms() {
        assert_eq!(secret("--k", "abc").ok().unwrap().as_str(), "abc");
        let dir = std::env::temp_dir().join(format!("dps-cli-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k");
        std::fs::write(&f, "  first \nsecond\n").unwrap();
        let at = format!("@{}", f.display());
        assert_eq!(secret("--k", &at).ok().unwrap().as_str(), "first");
        match secret("--k", &format!("@{}", dir.join("missing").display())) {
            Err(Failure::Other(code, m)) => {
                assert_eq!(code, exit::CREDENTIAL);
                assert!(m.starts_with("--k: cannot read"), "{m}");
            }
            _ => panic!("a missing @FILE must fail with the credential class"),
        }
        match secret("--k", "env:DPS_CLI_TEST_SURELY_UNSET") {
            Err(Failure::Usage(m)) => assert!(m.contains("is not set"), "{m}"),
            _ => panic!("an unset env:NAME must be a usage error"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seconds_range() {
        assert_eq!(
            seconds("--t", " 1.5 ").ok(),
            Some(Duration::from_millis(1500))
        );
        for bad in ["-1", "nan", "inf", "1e10", "soon"] {
            assert!(seconds("--t", bad).is_err(), "{bad}");
        }
    }
}
