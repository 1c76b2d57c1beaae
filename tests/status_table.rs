//! One status table: `ErrorKind` (src/error.rs) is the source; the C header's `DPS_*` status
//! defines, Python's `Status`, Python's ctypes signatures and the README's status table are
//! checked against it and against each other, both ways.

use std::collections::BTreeMap;
use std::path::Path;

use dps::ErrorKind;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `DPS_OK`, `DPS_PENDING` and every `DPS_ERR_*` define of the header, name without prefix.
fn header_statuses() -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for line in read("include/dps.h").lines() {
        let mut w = line.split_whitespace();
        if w.next() != Some("#define") {
            continue;
        }
        let (Some(name), Some(val)) = (w.next(), w.next()) else {
            continue;
        };
        let short = match name.strip_prefix("DPS_ERR_") {
            Some(s) => s,
            None if name == "DPS_OK" || name == "DPS_PENDING" => &name[4..],
            None => continue,
        };
        let v: u32 = val.parse().unwrap_or_else(|_| panic!("{name} = {val}"));
        assert!(m.insert(short.to_owned(), v).is_none(), "{name} twice");
    }
    m
}

#[test]
fn header_matches_error_kinds_both_ways() {
    let h = header_statuses();
    let mut by_code: BTreeMap<u32, &str> = BTreeMap::new();
    for (name, &code) in &h {
        assert!(
            by_code.insert(code, name).is_none(),
            "code {code} used twice in the header"
        );
    }
    for &k in ErrorKind::ALL {
        assert!(
            by_code.contains_key(&k.code()),
            "{k:?} ({}) has no DPS_ERR_* define in include/dps.h",
            k.code()
        );
    }
    for (&code, name) in &by_code {
        if code > 1 {
            assert!(
                ErrorKind::from_code(code).is_some(),
                "DPS_ERR_{name} = {code} has no ErrorKind"
            );
        }
    }
    assert_eq!(h["OK"], 0);
    assert_eq!(h["PENDING"], 1);
}

/// The `NAME = number` members of a Python IntEnum class in python/dps/_status.py.
fn python_enum(class: &str) -> BTreeMap<String, u32> {
    let src = read("python/dps/_status.py");
    let start = src.find(&format!("class {class}(")).expect(class);
    let body = &src[start..];
    let end = body[1..].find("\nclass ").map_or(body.len(), |i| i + 1);
    let mut py = BTreeMap::new();
    for line in body[..end].lines() {
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        let Some((name, val)) = rest.split_once(" = ") else {
            continue;
        };
        if let Ok(v) = val.trim().parse::<u32>() {
            py.insert(name.trim().to_owned(), v);
        }
    }
    py
}

#[test]
fn python_status_matches_header_both_ways() {
    assert_eq!(
        python_enum("Status"),
        header_statuses(),
        "python Status vs include/dps.h"
    );
}

#[test]
fn python_classes_match_header_and_error_classes() {
    let mut h = BTreeMap::new();
    for line in read("include/dps.h").lines() {
        let mut w = line.split_whitespace();
        if let (Some("#define"), Some(name), Some(v)) = (w.next(), w.next(), w.next()) {
            if let Some(short) = name.strip_prefix("DPS_CLASS_") {
                h.insert(short.to_owned(), v.parse::<u32>().unwrap());
            }
        }
    }
    assert_eq!(
        python_enum("StatusClass"),
        h,
        "python StatusClass vs include/dps.h"
    );
    for &k in ErrorKind::ALL {
        let c = k.class() as u32;
        assert!(
            h.values().any(|&v| v == c),
            "{k:?}: class {c} has no DPS_CLASS_*"
        );
    }
}

#[test]
fn readme_table_matches_header_both_ways() {
    let src = read("README.md");
    let start = src
        .find("### Status codes")
        .expect("README: ### Status codes");
    let section = &src[start..];
    let end = section[4..].find("\n#").map_or(section.len(), |i| i + 4);
    let mut readme = BTreeMap::new();
    for row in section[..end].lines().filter(|l| l.starts_with('|')) {
        let mut rest = row;
        while let Some(i) = rest.find('`') {
            let after = &rest[i + 1..];
            let Some(j) = after.find('`') else { break };
            let name = &after[..j];
            let tail = after[j + 1..].trim_start();
            let num: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(v) = num.parse::<u32>() {
                let short = name.strip_prefix("DPS_ERR_").or(name.strip_prefix("DPS_"));
                readme.insert(short.unwrap_or(name).to_owned(), v);
            }
            rest = &after[j + 1..];
        }
    }
    assert_eq!(
        readme,
        header_statuses(),
        "README status table vs include/dps.h"
    );
}

/// Function prototypes of the header: name -> number of parameters.
fn header_prototypes() -> BTreeMap<String, usize> {
    let h = read("include/dps.h");
    // Drop comments, then join lines so prototypes spanning lines read as one.
    let mut text = String::new();
    let mut rest = h.as_str();
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    text.push_str(rest);
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| [l, " "])
        .collect();
    let mut m = BTreeMap::new();
    for stmt in text.split(';') {
        let stmt = stmt.rsplit(['{', '}']).next().unwrap_or("").trim();
        if stmt.starts_with("typedef") || !stmt.ends_with(')') {
            continue;
        }
        let Some(open) = stmt.find('(') else { continue };
        let name = stmt[..open].split([' ', '*']).next_back().unwrap_or("");
        if !name.starts_with("dps_") {
            continue;
        }
        let params = stmt[open + 1..stmt.len() - 1].trim();
        let n = if params == "void" || params.is_empty() {
            0
        } else {
            params.split(',').count()
        };
        m.insert(name.to_owned(), n);
    }
    m
}

#[test]
fn python_signatures_match_header_prototypes() {
    let script = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_native", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(json.dumps({k: len(v[1]) for k, v in m._SIGNATURES.items()}))
"#;
    let native = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dps/_native.py");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&native)
        .output()
        .expect("python3 runs (CI installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: BTreeMap<String, usize> = serde_json::from_slice(&out.stdout).expect("json");
    let h = header_prototypes();
    assert!(
        h.len() > 40,
        "parsed only {} prototypes from the header",
        h.len()
    );
    for (name, n) in &py {
        match h.get(name) {
            None => {
                panic!("python/dps/_native.py binds {name}, which include/dps.h does not declare")
            }
            Some(hn) => assert_eq!(
                hn, n,
                "{name}: {hn} parameters in the header, {n} in Python"
            ),
        }
    }
}

#[test]
fn version_names_the_rustls_of_the_build() {
    let lock = read("Cargo.lock");
    let needle = "name = \"rustls\"\nversion = \"";
    let at = lock.find(needle).expect("rustls in Cargo.lock") + needle.len();
    let rustls = lock[at..].split('"').next().unwrap();
    let v = unsafe { std::ffi::CStr::from_ptr(dps::ffi::dps_version()) }
        .to_str()
        .unwrap();
    assert!(v.contains(&format!("(rustls {rustls}, ring")), "{v}");
    assert!(
        v.starts_with(&format!("dps/{} ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
}
