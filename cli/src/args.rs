//! A small hand-written command-line parser: `--flag`, `--flag VALUE`,
//! `--flag=VALUE`, `-v`/`-vv`, `-q`, `-h`, and `--` to end options.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// How an option is used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A switch without a value.
    Flag,
    /// Takes one value; given at most once.
    Value,
    /// Takes one value; may be repeated.
    Repeated,
    /// Takes a value if one follows (`--opt=V`, or a next argument not starting with `-`);
    /// given alone, its value is empty.
    Optional,
}

/// One known option.
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
}

const fn flag(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Flag,
    }
}
const fn value(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Value,
    }
}
const fn repeated(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Repeated,
    }
}

const fn optional(name: &'static str) -> Spec {
    Spec {
        name,
        kind: Kind::Optional,
    }
}

/// TPM attestation options of `register`.
pub const TPM: &[Spec] = &[
    optional("--tpm"),
    value("--tpm-handles"),
    flag("--tpm-create-missing"),
];

/// `dps tpm-info`.
pub const TPM_INFO: &[Spec] = &[
    value("--tcti"),
    value("--tpm-handles"),
    flag("--tpm-create-missing"),
    flag("--json"),
];

/// Connection and device options shared by `register` and `lookup`.
pub const CONNECTION: &[Spec] = &[
    value("--id-scope"),
    value("--registration-id"),
    value("--endpoint"),
    repeated("--ca"),
    value("--roots"),
    value("--proxy"),
    flag("--proxy-from-env"),
    value("--timeout"),
    value("--request-timeout"),
    value("--poll-interval"),
    value("--backoff"),
    value("--sas-ttl"),
    value("--max-retry-after"),
    value("--api-version"),
    value("--user-agent-suffix"),
];

/// Credential options.
pub const CREDENTIALS: &[Spec] = &[
    value("--symmetric-key"),
    value("--group-key"),
    value("--cert"),
    value("--private-key"),
    value("--key-password"),
    value("--pkcs12"),
    value("--pkcs12-password"),
    value("--pkcs11-uri"),
    value("--pkcs11-hmac-uri"),
    value("--pkcs11-module"),
    value("--pkcs11-pin"),
];

/// Output options.
pub const OUTPUT: &[Spec] = &[
    flag("--json"),
    flag("--quiet"),
    flag("--progress"),
    flag("--verbose"),
    flag("--connection-string"),
];

/// Options only `register` has.
pub const REGISTER_ONLY: &[Spec] = &[
    value("--payload"),
    flag("--force"),
    value("--save"),
    value("--use-saved"),
];

/// Certificate issuance (`register`, `renew`).
pub const CSR: &[Spec] = &[
    value("--csr"),
    value("--csr-key-password"),
    value("--cert-out"),
    value("--key-out"),
    flag("--overwrite"),
];

/// `renew`: the current certificate and key (the X.509 credential of the renewal).
pub const RENEW: &[Spec] = &[
    value("--cert"),
    value("--private-key"),
    value("--key-password"),
    value("--payload"),
    value("--pkcs11-module"),
    value("--pkcs11-pin"),
];

/// `dps sas`.
pub const SAS: &[Spec] = &[
    value("--id-scope"),
    value("--registration-id"),
    value("--symmetric-key"),
    value("--group-key"),
    value("--ttl"),
    value("--expiry"),
    flag("--json"),
];

/// `dps derive-key`.
pub const DERIVE: &[Spec] = &[
    value("--group-key"),
    repeated("--registration-id"),
    value("--registration-ids"),
    flag("--json"),
];

/// Parsed options of one command.
#[derive(Default, Debug)]
pub struct Parsed {
    values: BTreeMap<&'static str, Vec<String>>,
    flags: BTreeMap<&'static str, u32>,
    pub help: bool,
}

impl Parsed {
    /// The value of a single-valued option.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// All values of a repeatable option.
    pub fn values(&self, name: &str) -> &[String] {
        self.values.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether a switch was given.
    pub fn flag(&self, name: &str) -> bool {
        self.count(name) > 0
    }

    /// How many times a switch was given (`-vv` counts 2).
    pub fn count(&self, name: &str) -> u32 {
        self.flags.get(name).copied().unwrap_or(0)
    }

    /// Whether an option (value or switch) was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name) || self.flags.contains_key(name)
    }
}

/// Parses `args` against the option tables. Errors are one-line usage messages.
pub fn parse(command: &str, args: &[OsString], tables: &[&[Spec]]) -> Result<Parsed, String> {
    let find = |name: &str| {
        tables
            .iter()
            .flat_map(|t| t.iter())
            .find(|s| s.name == name)
    };
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let raw = args[i]
            .to_str()
            .ok_or_else(|| format!("argument {:?} is not valid UTF-8", args[i]))?;
        i += 1;
        if raw == "--" {
            if i < args.len() {
                return Err(format!(
                    "unexpected argument {:?} for `dps {command}`",
                    args[i]
                ));
            }
            break;
        }
        // Short switches: -h, -q, -v, -vv, -j.
        if raw.starts_with('-') && !raw.starts_with("--") && raw.len() > 1 {
            for c in raw[1..].chars() {
                let long = match c {
                    'h' => {
                        p.help = true;
                        continue;
                    }
                    'q' => "--quiet",
                    'v' => "--verbose",
                    'j' => "--json",
                    _ => {
                        return Err(format!("unknown option -{c} for `dps {command}`"));
                    }
                };
                let spec = find(long).ok_or_else(|| {
                    format!("option -{c} ({long}) does not apply to `dps {command}`")
                })?;
                *p.flags.entry(spec.name).or_default() += 1;
            }
            continue;
        }
        if !raw.starts_with("--") {
            return Err(format!(
                "unexpected argument {raw:?} for `dps {command}` (options start with --)"
            ));
        }
        let (name, inline) = match raw.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (raw, None),
        };
        if name == "--help" {
            p.help = true;
            continue;
        }
        let spec = find(name).ok_or_else(|| {
            let hint = suggest(name, tables)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            format!("unknown option {name} for `dps {command}`{hint}")
        })?;
        match spec.kind {
            Kind::Flag => {
                if inline.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                *p.flags.entry(spec.name).or_default() += 1;
            }
            Kind::Optional => {
                let v = match inline {
                    Some(v) => v,
                    None => match args.get(i).and_then(|a| a.to_str()) {
                        Some(next) if !next.starts_with('-') => {
                            i += 1;
                            next.to_owned()
                        }
                        _ => String::new(),
                    },
                };
                let slot = p.values.entry(spec.name).or_default();
                if !slot.is_empty() {
                    return Err(format!("{name} is given more than once"));
                }
                slot.push(v);
            }
            Kind::Value | Kind::Repeated => {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args.get(i).ok_or_else(|| format!("{name} needs a value"))?;
                        i += 1;
                        v.to_str()
                            .ok_or_else(|| format!("the value of {name} is not valid UTF-8"))?
                            .to_owned()
                    }
                };
                let slot = p.values.entry(spec.name).or_default();
                if spec.kind == Kind::Value && !slot.is_empty() {
                    return Err(format!("{name} is given more than once"));
                }
                slot.push(v);
            }
        }
    }
    Ok(p)
}

/// The closest known option name, for typos.
fn suggest(name: &str, tables: &[&[Spec]]) -> Option<&'static str> {
    tables
        .iter()
        .flat_map(|t| t.iter())
        .map(|s| (distance(name, s.name), s.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn an_optional_value_takes_a_following_word_or_nothing() {
        let t: &[&[Spec]] = &[TPM, CONNECTION];
        let p = parse("register", &os(&["--tpm", "--id-scope", "x"]), t).unwrap();
        assert_eq!(p.value("--tpm"), Some(""));
        assert_eq!(p.value("--id-scope"), Some("x"));
        let p = parse("register", &os(&["--tpm", "swtpm:port=1"]), t).unwrap();
        assert_eq!(p.value("--tpm"), Some("swtpm:port=1"));
        let p = parse("register", &os(&["--tpm=mssim"]), t).unwrap();
        assert_eq!(p.value("--tpm"), Some("mssim"));
        assert!(parse("register", &os(&["--tpm", "--tpm"]), t).is_err());
    }

    #[test]
    fn values_flags_and_inline() {
        let p = parse(
            "register",
            &os(&[
                "--id-scope",
                "0ne1",
                "--ca=a.pem",
                "--ca",
                "b.pem",
                "-vv",
                "--json",
            ]),
            &[CONNECTION, OUTPUT],
        )
        .unwrap();
        assert_eq!(p.value("--id-scope"), Some("0ne1"));
        assert_eq!(p.values("--ca"), ["a.pem", "b.pem"]);
        assert_eq!(p.count("--verbose"), 2);
        assert!(p.flag("--json") && !p.flag("--quiet"));
    }

    #[test]
    fn errors() {
        let e = parse("register", &os(&["--id-scop", "x"]), &[CONNECTION]).unwrap_err();
        assert!(e.contains("did you mean --id-scope"), "{e}");
        let e = parse("register", &os(&["--id-scope"]), &[CONNECTION]).unwrap_err();
        assert_eq!(e, "--id-scope needs a value");
        let e = parse(
            "register",
            &os(&["--id-scope", "a", "--id-scope", "b"]),
            &[CONNECTION],
        )
        .unwrap_err();
        assert!(e.contains("more than once"));
        let e = parse("register", &os(&["stray"]), &[CONNECTION]).unwrap_err();
        assert!(e.contains("unexpected argument"));
        let e = parse("sas", &os(&["--json=1"]), &[SAS]).unwrap_err();
        assert_eq!(e, "--json takes no value");
    }
}
