//! RFC 7512 PKCS#11 URIs: `pkcs11:token=dps;object=device-key;type=private?module-path=...`.
//!
//! The path attributes select a token and an object; the query attributes say which module to
//! load and where the PIN comes from (`pin-value` or `pin-source`). Values are percent-decoded.
//! A PIN given in the URI, by `pin-source` or by [`Pkcs11Uri::set_pin`] is kept in zeroized
//! memory and never appears in `Debug`, `Display`, logs or errors.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// The object class a URI asks for (`type=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// `type=private`: a private key.
    Private,
    /// `type=public`: a public key.
    Public,
    /// `type=cert`: a certificate.
    Cert,
    /// `type=secret-key`: a secret (symmetric) key.
    SecretKey,
    /// `type=data`: a data object.
    Data,
}

impl ObjectType {
    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "private" => Self::Private,
            "public" => Self::Public,
            "cert" => Self::Cert,
            "secret-key" => Self::SecretKey,
            "data" => Self::Data,
            _ => return None,
        })
    }

    /// The value as written in a URI.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }
}

/// Where the PIN comes from.
#[derive(Clone)]
pub(crate) enum PinSpec {
    Value(Zeroizing<String>),
    File(PathBuf),
}

/// A parsed RFC 7512 PKCS#11 URI. `Debug` and `Display` never show the PIN.
#[derive(Clone, Default)]
pub struct Pkcs11Uri {
    pub(crate) token: Option<String>,
    pub(crate) manufacturer: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) library_manufacturer: Option<String>,
    pub(crate) library_description: Option<String>,
    pub(crate) library_version: Option<(u8, u8)>,
    pub(crate) slot_id: Option<u64>,
    pub(crate) slot_description: Option<String>,
    pub(crate) slot_manufacturer: Option<String>,
    pub(crate) object: Option<Vec<u8>>,
    pub(crate) id: Option<Vec<u8>>,
    pub(crate) object_type: Option<ObjectType>,
    pub(crate) module_path: Option<PathBuf>,
    pub(crate) pin: Option<PinSpec>,
}

fn bad(msg: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("invalid PKCS#11 URI: {msg}"),
    )
}

/// Percent-decodes `v` (the value of attribute `name`).
fn decode(name: &str, v: &str) -> Result<Vec<u8>> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    bad(format_args!(
                        "attribute '{name}' has a '%' not followed by two hex digits"
                    ))
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn utf8(name: &str, v: Vec<u8>) -> Result<String> {
    String::from_utf8(v).map_err(|_| bad(format_args!("attribute '{name}' is not UTF-8")))
}

fn set<T>(slot: &mut Option<T>, name: &str, v: T) -> Result<()> {
    if slot.is_some() {
        return Err(bad(format_args!("attribute '{name}' appears twice")));
    }
    *slot = Some(v);
    Ok(())
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI. Errors name the offending attribute, never its value (which
    /// may be a PIN).
    pub fn parse(uri: &str) -> Result<Self> {
        let rest = uri
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &uri[7..])
            .ok_or_else(|| bad("it does not start with 'pkcs11:'"))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut u = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').ok_or_else(|| {
                bad("a path attribute has no '=' (attributes are name=value, separated by ';')")
            })?;
            let raw = decode(name, value)?;
            match name {
                "token" => set(&mut u.token, name, utf8(name, raw)?)?,
                "manufacturer" => set(&mut u.manufacturer, name, utf8(name, raw)?)?,
                "serial" => set(&mut u.serial, name, utf8(name, raw)?)?,
                "model" => set(&mut u.model, name, utf8(name, raw)?)?,
                "library-manufacturer" => set(&mut u.library_manufacturer, name, utf8(name, raw)?)?,
                "library-description" => set(&mut u.library_description, name, utf8(name, raw)?)?,
                "library-version" => {
                    let s = utf8(name, raw)?;
                    let (maj, min) = s.split_once('.').unwrap_or((s.as_str(), "0"));
                    let v = maj
                        .parse::<u8>()
                        .ok()
                        .zip(min.parse::<u8>().ok())
                        .ok_or_else(|| {
                            bad("library-version is not of the form M or M.N (0-255 each)")
                        })?;
                    set(&mut u.library_version, name, v)?
                }
                "slot-id" => {
                    let s = utf8(name, raw)?;
                    let id = s
                        .parse::<u64>()
                        .map_err(|_| bad("slot-id is not a decimal number"))?;
                    set(&mut u.slot_id, name, id)?
                }
                "slot-description" => set(&mut u.slot_description, name, utf8(name, raw)?)?,
                "slot-manufacturer" => set(&mut u.slot_manufacturer, name, utf8(name, raw)?)?,
                "object" => set(&mut u.object, name, raw)?,
                "id" => set(&mut u.id, name, raw)?,
                "type" => {
                    let s = utf8(name, raw)?;
                    let t = ObjectType::parse(&s).ok_or_else(|| {
                        bad(format_args!(
                            "type '{s}' is not one of private, public, cert, secret-key, data"
                        ))
                    })?;
                    set(&mut u.object_type, name, t)?
                }
                // RFC 7512 2.3: a consumer must not use a URI with a path attribute it does not
                // understand, since that attribute would narrow the match.
                _ => return Err(bad(format_args!("unknown path attribute '{name}'"))),
            }
        }
        for attr in query.into_iter().flat_map(|q| q.split('&')) {
            if attr.is_empty() {
                continue;
            }
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| bad("a query attribute has no '='"))?;
            match name {
                "module-path" => {
                    let p = utf8(name, decode(name, value)?)?;
                    if p.is_empty() {
                        return Err(bad("module-path is empty"));
                    }
                    set(&mut u.module_path, name, PathBuf::from(p))?
                }
                "pin-value" => {
                    let pin = Zeroizing::new(decode(name, value)?);
                    let pin = std::str::from_utf8(&pin)
                        .map_err(|_| bad("pin-value is not UTF-8"))?
                        .to_owned();
                    set(
                        &mut u.pin,
                        "pin-value/pin-source",
                        PinSpec::Value(pin.into()),
                    )?
                }
                "pin-source" => {
                    let s = utf8(name, decode(name, value)?)?;
                    let path = match s.strip_prefix("file:") {
                        // file:///p and file:/p name the same local file.
                        Some(p) => p.strip_prefix("//").unwrap_or(p).to_owned(),
                        None if s.contains("://") || s.starts_with('|') => {
                            return Err(bad("pin-source must be a file path or a file: URI"));
                        }
                        None => s,
                    };
                    if path.is_empty() {
                        return Err(bad("pin-source is empty"));
                    }
                    set(
                        &mut u.pin,
                        "pin-value/pin-source",
                        PinSpec::File(path.into()),
                    )?
                }
                "module-name" => {
                    return Err(bad(
                        "module-name is not supported: give the module's file with module-path",
                    ));
                }
                _ => return Err(bad(format_args!("unknown query attribute '{name}'"))),
            }
        }
        if u.object.is_none() && u.id.is_none() {
            return Err(bad("it names no object: give object= (the label) or id="));
        }
        Ok(u)
    }

    /// Sets the module (the PKCS#11 shared library) to load, replacing `module-path`.
    pub fn set_module_path(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.module_path = Some(path.into());
        self
    }

    /// Sets the user PIN, replacing `pin-value` or `pin-source`. The copy is zeroized on drop.
    pub fn set_pin(&mut self, pin: &str) -> &mut Self {
        self.pin = Some(PinSpec::Value(Zeroizing::new(pin.to_owned())));
        self
    }

    /// The module path, if the URI or a setter gave one.
    pub fn module_path(&self) -> Option<&Path> {
        self.module_path.as_deref()
    }

    /// The object label (`object=`), if any.
    pub fn object_label(&self) -> Option<&[u8]> {
        self.object.as_deref()
    }

    /// The object id (`id=`), if any.
    pub fn object_id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// The requested object type (`type=`), if any.
    pub fn object_type(&self) -> Option<ObjectType> {
        self.object_type
    }

    /// The token label (`token=`), if any.
    pub fn token_label(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a PIN was given (by value, file or setter).
    pub fn has_pin(&self) -> bool {
        self.pin.is_some()
    }

    /// The PIN, read from `pin-source` if needed. A trailing newline in the file is dropped.
    pub(crate) fn resolve_pin(&self) -> Result<Option<Zeroizing<String>>> {
        match &self.pin {
            None => Ok(None),
            Some(PinSpec::Value(v)) => Ok(Some(v.clone())),
            Some(PinSpec::File(p)) => {
                let bytes = Zeroizing::new(std::fs::read(p).map_err(|e| {
                    Error::new(
                        ErrorKind::FileRead,
                        format!("cannot read the PKCS#11 pin-source {}: {e}", p.display()),
                    )
                })?);
                let s = std::str::from_utf8(&bytes).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        format!("the PKCS#11 pin-source {} is not UTF-8", p.display()),
                    )
                })?;
                let s = s.strip_suffix('\n').unwrap_or(s);
                let s = s.strip_suffix('\r').unwrap_or(s);
                Ok(Some(Zeroizing::new(s.to_owned())))
            }
        }
    }
}

fn push_enc(out: &mut String, v: &[u8]) {
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl fmt::Display for Pkcs11Uri {
    /// The URI without its query (so without the module path and the PIN).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("pkcs11:");
        let mut first = true;
        let mut add = |name: &str, v: &[u8]| {
            if !first {
                s.push(';');
            }
            first = false;
            s.push_str(name);
            s.push('=');
            push_enc(&mut s, v);
        };
        let strs = [
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("token", &self.token),
        ];
        for (n, v) in strs {
            if let Some(v) = v {
                add(n, v.as_bytes());
            }
        }
        if let Some((a, b)) = self.library_version {
            add("library-version", format!("{a}.{b}").as_bytes());
        }
        if let Some(id) = self.slot_id {
            add("slot-id", id.to_string().as_bytes());
        }
        if let Some(v) = &self.object {
            add("object", v);
        }
        if let Some(v) = &self.id {
            add("id", v);
        }
        if let Some(t) = self.object_type {
            add("type", t.as_str().as_bytes());
        }
        f.write_str(&s)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = match &self.pin {
            None => "none",
            Some(PinSpec::Value(_)) => "<redacted>",
            Some(PinSpec::File(_)) => "<from pin-source>",
        };
        f.debug_struct("Pkcs11Uri")
            .field("uri", &self.to_string())
            .field("module_path", &self.module_path)
            .field("pin", &pin)
            .finish()
    }
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_and_query() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=my%20token;object=dev%2dkey;id=%01%a2;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=12%334",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("my token"));
        assert_eq!(u.object.as_deref(), Some(&b"dev-key"[..]));
        assert_eq!(u.id.as_deref(), Some(&[0x01, 0xa2][..]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        assert_eq!(
            u.module_path(),
            Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(u.resolve_pin().unwrap().unwrap().as_str(), "1234");
        assert_eq!(
            u.to_string(),
            "pkcs11:token=my%20token;object=dev-key;id=%01%A2;type=private"
        );
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("1234") && dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn pin_source_file_and_setter() {
        let dir = std::env::temp_dir().join(format!("dps-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pin");
        std::fs::write(&f, "9876\n").unwrap();
        let mut u =
            Pkcs11Uri::parse(&format!("pkcs11:object=k?pin-source=file:{}", f.display())).unwrap();
        assert_eq!(u.resolve_pin().unwrap().unwrap().as_str(), "9876");
        assert!(!format!("{u:?}").contains("9876"));
        u.set_pin("0000");
        assert_eq!(u.resolve_pin().unwrap().unwrap().as_str(), "0000");
        let missing = Pkcs11Uri::parse("pkcs11:object=k?pin-source=/nonexistent/pin").unwrap();
        assert_eq!(missing.resolve_pin().unwrap_err().kind, ErrorKind::FileRead);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_uris_are_refused_without_echoing_secrets() {
        for (uri, needle) in [
            ("pkcs:object=k", "pkcs11:"),
            ("pkcs11:object=k%4", "'%'"),
            ("pkcs11:object=k%zz", "'%'"),
            ("pkcs11:object", "no '='"),
            ("pkcs11:object=k;s3cr3t", "no '='"),
            ("pkcs11:object=a;object=b", "twice"),
            (
                "pkcs11:object=a;colour=red",
                "unknown path attribute 'colour'",
            ),
            ("pkcs11:object=a;type=key", "type 'key'"),
            ("pkcs11:object=a;slot-id=x", "slot-id"),
            ("pkcs11:token=t", "names no object"),
            ("pkcs11:object=a?pin-value=s3cr3t&pin-source=/p", "twice"),
            ("pkcs11:object=a?pin-value=s3cr3t%zz", "'%'"),
            ("pkcs11:object=a?module-name=softhsm2", "module-name"),
            ("pkcs11:object=a?pin-source=https://x/p", "pin-source"),
            ("pkcs11:object=a?frobnicate=1", "unknown query attribute"),
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{uri}");
            assert!(e.message.contains(needle), "{uri}: {}", e.message);
            assert!(!e.message.contains("s3cr3t"), "{uri}: {}", e.message);
        }
    }
}
