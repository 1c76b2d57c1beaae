//! The saved assignment (`--save` / `--use-saved`): what a device needs at its
//! next boot to connect to its hub without asking DPS again.
//!
//! ```json
//! {
//!   "version": 1,
//!   "idScope": "0ne00000001",
//!   "registrationId": "dev-sym",
//!   "endpoint": "global.azure-devices-provisioning.net",
//!   "assignedHub": "hub-a.azure-devices.net",
//!   "deviceId": "dev-sym-device",
//!   "substatus": "initialAssignment",
//!   "createdDateTimeUtc": "...", "lastUpdatedDateTimeUtc": "...", "etag": "...",
//!   "payload": { ... },
//!   "savedAt": "2026-11-28T18:00:00Z"
//! }
//! ```
//!
//! No secret is stored: the device keeps its own credential.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use dps::{Registration, RegistrationStatus};
use serde_json::{Value, json};

use crate::output::is_unsafe_char;

/// A cached assignment read back from a file.
pub struct Assignment {
    id_scope: String,
    registration_id: String,
    endpoint: String,
    assigned_hub: String,
    device_id: String,
    substatus: Option<String>,
    created: Option<String>,
    updated: Option<String>,
    etag: Option<String>,
    payload: Option<String>,
    enrollment_group_id: Option<String>,
    pub saved_at: String,
}

impl Assignment {
    /// Whether this assignment is for the device being registered: same ID
    /// scope, registration ID (both case-insensitive, as in DPS) and endpoint.
    pub fn matches(&self, id_scope: &str, registration_id: &str, endpoint: &str) -> bool {
        self.id_scope.eq_ignore_ascii_case(id_scope)
            && self.registration_id.eq_ignore_ascii_case(registration_id)
            && normalize_endpoint(&self.endpoint) == normalize_endpoint(endpoint)
    }

    /// As a registration result (status `assigned`).
    pub fn to_registration(&self) -> Registration {
        Registration {
            status: Some(RegistrationStatus::Assigned),
            registration_id: Some(self.registration_id.clone()),
            assigned_hub: Some(self.assigned_hub.clone()),
            device_id: Some(self.device_id.clone()),
            substatus: self.substatus.clone(),
            created_date_time_utc: self.created.clone(),
            last_updated_date_time_utc: self.updated.clone(),
            etag: self.etag.clone(),
            payload_json: self.payload.clone(),
            enrollment_group_id: self.enrollment_group_id.clone(),
            ..Registration::default()
        }
    }
}

fn normalize_endpoint(e: &str) -> String {
    let e = e.trim().to_ascii_lowercase();
    e.strip_suffix(":443").map(str::to_owned).unwrap_or(e)
}

/// Reads `path`: `Ok(None)` when it does not exist, `Err` when it is unusable.
pub fn load(path: &str) -> Result<Option<Assignment>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(field) = unsafe_field(&v) {
        return Err(format!("{field} holds control characters"));
    }
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let req = |k: &str| {
        s(k).filter(|x| !x.is_empty())
            .ok_or_else(|| format!("no {k:?}"))
    };
    Ok(Some(Assignment {
        id_scope: req("idScope")?,
        registration_id: req("registrationId")?,
        endpoint: req("endpoint")?,
        assigned_hub: req("assignedHub")?,
        device_id: req("deviceId")?,
        substatus: s("substatus"),
        created: s("createdDateTimeUtc"),
        updated: s("lastUpdatedDateTimeUtc"),
        etag: s("etag"),
        payload: v
            .get("payload")
            .filter(|p| p.is_object())
            .map(Value::to_string),
        enrollment_group_id: s("enrollmentGroupId"),
        saved_at: s("savedAt").unwrap_or_default(),
    }))
}

/// Why an assignment was not saved.
#[derive(Debug, PartialEq)]
pub enum SaveError {
    /// What DPS sent holds control characters (escape sequences, CR/LF, NUL ...) that a boot
    /// script reading the file would pass on: nothing was written.
    Unsafe(String),
    /// The file could not be written.
    Io(String),
}

/// The first string in `v` (a field name, with its path in nested objects and arrays) that
/// holds a character that must not reach a terminal or a script raw.
fn unsafe_field(v: &Value) -> Option<String> {
    unsafe_path(v).map(|p| p.strip_prefix('.').map(str::to_owned).unwrap_or(p))
}

/// [`unsafe_field`] with a leading `.` before a top-level name.
fn unsafe_path(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.chars().any(is_unsafe_char).then(String::new),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| unsafe_path(x).map(|p| format!("[{i}]{p}"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let key = if k.chars().any(is_unsafe_char) {
                Some(String::new())
            } else {
                unsafe_path(x)
            };
            key.map(|p| format!(".{}{p}", crate::output::clean(k)))
        }),
        _ => None,
    }
}

/// Writes the assignment atomically (temporary file + rename), mode 0600 on Unix.
/// Refuses (writing nothing) when a value DPS sent holds control characters.
pub fn save(path: &str, id_scope: &str, endpoint: &str, r: &Registration) -> Result<(), SaveError> {
    let payload = r
        .payload_json
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    let mut v = json!({
        "version": 1,
        "idScope": id_scope,
        "registrationId": r.registration_id,
        "endpoint": endpoint,
        "assignedHub": r.assigned_hub,
        "deviceId": r.device_id,
        "substatus": r.substatus,
        "createdDateTimeUtc": r.created_date_time_utc,
        "lastUpdatedDateTimeUtc": r.last_updated_date_time_utc,
        "etag": r.etag,
        "enrollmentGroupId": r.enrollment_group_id,
        "payload": payload,
        "savedAt": rfc3339_now(),
    });
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    if let Some(field) = unsafe_field(&v) {
        return Err(SaveError::Unsafe(format!(
            "the {field} sent by DPS holds control characters"
        )));
    }
    let text = serde_json::to_string_pretty(&v).map_err(|e| SaveError::Io(e.to_string()))? + "\n";
    let tmp = format!("{path}.tmp-{}", std::process::id());
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        SaveError::Io(e.to_string())
    })
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_888_800), "2026-11-28T18:00:00Z");
    }

    #[test]
    fn endpoint_match_ignores_default_port_and_case() {
        assert_eq!(
            normalize_endpoint("Global.azure-devices-provisioning.net:443"),
            "global.azure-devices-provisioning.net"
        );
    }

    #[test]
    fn unsafe_fields_are_named() {
        assert_eq!(unsafe_field(&json!({"a": "ok", "b": ["é", 1]})), None);
        assert_eq!(
            unsafe_field(&json!({"deviceId": "d\u{1b}[2J"})).as_deref(),
            Some("deviceId")
        );
        assert_eq!(
            unsafe_field(&json!({"payload": {"x": ["ok", "\r\n"]}})).as_deref(),
            Some("payload.x[1]")
        );
        assert_eq!(
            unsafe_field(&json!({"payload": {"k\u{0}": 1}})).as_deref(),
            Some("payload.k\\u{0}")
        );
    }

    #[test]
    fn save_refuses_control_characters_and_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("dps-cli-saved-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        let path = path.to_str().unwrap();
        let mut r = Registration {
            registration_id: Some("dev".into()),
            assigned_hub: Some("hub.example.net".into()),
            device_id: Some("dev\u{1b}]0;pwned\u{7}".into()),
            ..Registration::default()
        };
        assert_eq!(
            save(path, "0ne1", "e.example.net", &r),
            Err(SaveError::Unsafe(
                "the deviceId sent by DPS holds control characters".into()
            ))
        );
        assert!(!std::path::Path::new(path).exists());
        r.device_id = Some("dev".into());
        save(path, "0ne1", "e.example.net", &r).unwrap();
        assert!(
            load(path)
                .unwrap()
                .unwrap()
                .matches("0NE1", "DEV", "e.example.net:443")
        );
        // A file edited to hold an escape sequence is not used.
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("\"dev\"", "\"d\\u001bev\"");
        std::fs::write(path, text).unwrap();
        let e = load(path).err().unwrap();
        assert!(e.contains("holds control characters"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
