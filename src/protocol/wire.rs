//! JSON bodies of the device runtime API (PROTOCOL.md sections 2 and 3).

use serde::Deserialize;
use serde_json::Value;

use super::validate;
use crate::error::{Error, ErrorKind, Result};

/// `EnrollmentStatus` (PROTOCOL.md 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationStatus {
    /// Initial state; this client treats it like `assigning`.
    Unassigned,
    /// The service is still working.
    Assigning,
    /// Done: the device has a hub.
    Assigned,
    /// Terminal failure; see the error code and message.
    Failed,
    /// The enrollment is disabled.
    Disabled,
}

impl RegistrationStatus {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unassigned" => Self::Unassigned,
            "assigning" => Self::Assigning,
            "assigned" => Self::Assigned,
            "failed" => Self::Failed,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unassigned => "unassigned",
            Self::Assigning => "assigning",
            Self::Assigned => "assigned",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
}

/// The outcome of a registration or status lookup: `DeviceRegistrationResult`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registration {
    /// Status of the registration (`assigned` for a successful registration).
    pub status: Option<RegistrationStatus>,
    /// The registration ID, as echoed by DPS.
    pub registration_id: Option<String>,
    /// IoT hub host name the device was assigned to.
    pub assigned_hub: Option<String>,
    /// Device ID in that hub.
    pub device_id: Option<String>,
    /// `initialAssignment`, `deviceDataMigrated`, `deviceDataReset` or `reprovisionedToInitialAssignment`.
    pub substatus: Option<String>,
    /// `createdDateTimeUtc`, as sent.
    pub created_date_time_utc: Option<String>,
    /// `lastUpdatedDateTimeUtc`, as sent.
    pub last_updated_date_time_utc: Option<String>,
    /// Opaque etag.
    pub etag: Option<String>,
    /// Payload returned by a custom allocation policy, as compact JSON object text.
    pub payload_json: Option<String>,
    /// DPS `errorCode` for `failed` results.
    pub error_code: Option<i64>,
    /// DPS `errorMessage` for `failed` results.
    pub error_message: Option<String>,
    /// The enrollment group that matched (from `x509` or `symmetricKey`), if any.
    pub enrollment_group_id: Option<String>,
    /// `issuedCertificateChain` (base64 DER, leaf first); only with a CSR on preview API versions.
    pub issued_certificate_chain: Vec<String>,
    /// The operation ID this result came from (empty for lookups).
    pub operation_id: Option<String>,
    /// With a CSR (experimental): `issuedCertificateChain` as PEM, leaf first, after the
    /// checks (the leaf certifies the CSR's key, its CN is the registration ID, each
    /// certificate is issued by the next, the leaf is valid now).
    pub issued_certificate_chain_pem: Option<String>,
    /// With a CSR whose key the library generated: that private key as PKCS#8 PEM
    /// (zeroized on drop, redacted in `Debug`).
    pub issued_private_key_pem: Option<crate::credential::SecretPem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOperation {
    operation_id: Option<String>,
    status: Option<String>,
    registration_state: Option<WireState>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireState {
    registration_id: Option<String>,
    created_date_time_utc: Option<String>,
    assigned_hub: Option<String>,
    device_id: Option<String>,
    status: Option<String>,
    substatus: Option<String>,
    error_code: Option<i64>,
    error_message: Option<String>,
    last_updated_date_time_utc: Option<String>,
    etag: Option<String>,
    payload: Option<Value>,
    x509: Option<WireGroupRef>,
    symmetric_key: Option<WireGroupRef>,
    issued_certificate_chain: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireGroupRef {
    enrollment_group_id: Option<String>,
}

/// `ProvisioningServiceErrorDetails` (PROTOCOL.md 3.6). Every member optional:
/// error bodies from proxies and load balancers are not always DPS's.
#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Six-digit DPS error code.
    pub error_code: Option<i64>,
    /// Opaque tracking ID.
    pub tracking_id: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
    /// Service time stamp.
    pub timestamp_utc: Option<String>,
}

/// An operation response: the operation ID and the registration state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `operationId` (may be empty on terminal answers).
    pub operation_id: String,
    /// Outer `status`.
    pub status: RegistrationStatus,
    /// `registrationState`, with the outer status and operation ID filled in.
    pub registration: Registration,
}

fn malformed(what: impl std::fmt::Display) -> Error {
    // serde_json's messages may quote (escaped) input: keep them short.
    let what = validate::server_message(&what.to_string());
    Error::new(
        ErrorKind::MalformedResponse,
        format!("malformed DPS response: {what}"),
    )
}

fn parse_status(s: &str) -> Result<RegistrationStatus> {
    RegistrationStatus::parse(s).ok_or_else(|| {
        malformed(format!(
            "unknown status {:?}",
            s.chars().take(32).collect::<String>()
        ))
    })
}

fn convert_state(w: WireState, sent_registration_id: &str) -> Result<Registration> {
    let status = w.status.as_deref().map(parse_status).transpose()?;
    let payload_json = match w.payload {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err(malformed("registrationState.payload is not an object")),
    };
    let enrollment_group_id = w
        .x509
        .and_then(|g| g.enrollment_group_id)
        .or(w.symmetric_key.and_then(|g| g.enrollment_group_id));
    match w.registration_id.as_deref() {
        Some(got) => validate::registration_id(sent_registration_id, got)?,
        None if status == Some(RegistrationStatus::Assigned) => {
            return Err(malformed(
                "an 'assigned' registrationState without registrationId",
            ));
        }
        None => {}
    }
    if let Some(h) = w.assigned_hub.as_deref().filter(|s| !s.is_empty()) {
        validate::host_name(h)?;
    }
    if let Some(d) = w.device_id.as_deref().filter(|s| !s.is_empty()) {
        validate::device_id(d)?;
    }
    for (field, value) in [
        ("substatus", &w.substatus),
        ("createdDateTimeUtc", &w.created_date_time_utc),
        ("lastUpdatedDateTimeUtc", &w.last_updated_date_time_utc),
        ("etag", &w.etag),
        ("enrollmentGroupId", &enrollment_group_id),
    ] {
        if let Some(v) = value {
            validate::text_field(field, v)?;
        }
    }
    let chain = w.issued_certificate_chain.unwrap_or_default();
    for c in &chain {
        validate::text_field("issuedCertificateChain", c)?;
    }
    Ok(Registration {
        status,
        registration_id: w.registration_id,
        assigned_hub: w.assigned_hub,
        device_id: w.device_id,
        substatus: w.substatus,
        created_date_time_utc: w.created_date_time_utc,
        last_updated_date_time_utc: w.last_updated_date_time_utc,
        etag: w.etag,
        payload_json,
        error_code: w.error_code,
        error_message: w.error_message.as_deref().map(validate::server_message),
        enrollment_group_id,
        issued_certificate_chain: chain,
        operation_id: None,
        issued_certificate_chain_pem: None,
        issued_private_key_pem: None,
    })
}

/// Parses a `RegistrationOperationStatus` (PUT register and GET operation)
/// and validates every string in it (see [`validate`]); the
/// `registrationId` it carries must equal `sent_registration_id`
/// (case-insensitively).
pub fn parse_operation(body: &[u8], sent_registration_id: &str) -> Result<Operation> {
    let w: WireOperation = serde_json::from_slice(body).map_err(malformed)?;
    let status = match w.status.as_deref() {
        Some(s) => parse_status(s)?,
        None => return Err(malformed("missing status")),
    };
    let mut registration = convert_state(
        w.registration_state.unwrap_or_default(),
        sent_registration_id,
    )?;
    registration.status = Some(status);
    let operation_id = w.operation_id.unwrap_or_default();
    if operation_id.is_empty()
        && matches!(
            status,
            RegistrationStatus::Assigning | RegistrationStatus::Unassigned
        )
    {
        return Err(malformed(
            "missing operationId while the registration is in progress",
        ));
    }
    if !operation_id.is_empty() {
        validate::operation_id(&operation_id)?;
    }
    registration.operation_id = Some(operation_id.clone()).filter(|s| !s.is_empty());
    Ok(Operation {
        operation_id,
        status,
        registration,
    })
}

/// Parses a `DeviceRegistrationResult` (POST status lookup), validated like
/// [`parse_operation`].
pub fn parse_registration(body: &[u8], sent_registration_id: &str) -> Result<Registration> {
    let w: WireState = serde_json::from_slice(body).map_err(malformed)?;
    convert_state(w, sent_registration_id)
}

/// Parses an error body; anything unparseable gives an empty [`ErrorBody`].
/// The message, tracking ID and time stamp are made safe to show
/// ([`validate::server_message`]).
pub fn parse_error_body(body: &[u8]) -> ErrorBody {
    let mut e: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let clean = |v: Option<String>| {
        v.map(|s| validate::server_message(&s))
            .filter(|s| !s.is_empty())
    };
    e.message = clean(e.message);
    e.tracking_id = clean(e.tracking_id);
    e.timestamp_utc = clean(e.timestamp_utc);
    e
}

/// Largest payload accepted: DPS caps a message at 96 KB (PROTOCOL.md 6);
/// 512 bytes are left for the rest of the request body.
pub const MAX_PAYLOAD_BYTES: usize = 96 * 1024 - 512;

/// Checks that `json` is a JSON object within [`MAX_PAYLOAD_BYTES`], with no
/// key repeated in any object, and returns it in compact form.
///
/// Repeated keys are refused: JSON leaves their meaning open (RFC 8259 4),
/// and parsers disagree (first wins, last wins, error), so the custom
/// allocation webhook could read another payload than the one the device
/// checked. Keys are otherwise kept as given (`" a"` and `"a"` are two keys).
pub fn normalize_payload(json: &str) -> Result<String> {
    let invalid = |m: String| Error::new(ErrorKind::InvalidPayload, m);
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = serde::Deserialize::deserialize(&mut de).and_then(|v: StrictValue| {
        de.end()?;
        Ok(v.0)
    });
    match parsed {
        Ok(v @ Value::Object(_)) => {
            let compact = v.to_string();
            if compact.len() > MAX_PAYLOAD_BYTES {
                return Err(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "the payload is {} bytes once compacted; DPS accepts messages up to 96 KB, \
                         so at most {MAX_PAYLOAD_BYTES} bytes of payload",
                        compact.len()
                    ),
                ));
            }
            Ok(compact)
        }
        Ok(_) => Err(invalid("the payload must be a JSON object".into())),
        Err(e) => {
            let m = e.to_string();
            if let Some(key) = m.strip_prefix(DUPLICATE_KEY_MARK) {
                let key = key.split(" at line ").next().unwrap_or(key);
                return Err(invalid(format!(
                    "the payload has the key {} more than once in one object; repeated keys are ambiguous in JSON",
                    crate::config::echo(key)
                )));
            }
            Err(invalid(format!(
                "the payload is not valid JSON: {}",
                validate::server_message(&m)
            )))
        }
    }
}

const DUPLICATE_KEY_MARK: &str = "dps: duplicate key: ";

/// A `serde_json::Value` that refuses repeated keys in any object.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "{DUPLICATE_KEY_MARK}{key}"
                )));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The `DeviceRegistration` request body: `{"registrationId":..., "payload":...}`.
/// `payload_json` must come from [`normalize_payload`].
pub fn request_body(registration_id: &str, payload_json: Option<&str>) -> String {
    register_body(registration_id, payload_json, None)
}

/// The `csr` member of the register body (PROTOCOL.md 3.2): `"csr":"<base64 DER>"`.
pub fn csr_member(csr_base64: &str) -> String {
    format!("\"csr\":{}", Value::String(csr_base64.to_owned()))
}

/// The register body with `extra` members (JSON text `"name":value[,...]`, such as a TPM
/// credential's `"tpm":{...}`) after `registrationId`.
pub fn register_body(
    registration_id: &str,
    payload_json: Option<&str>,
    extra: Option<&str>,
) -> String {
    let id = Value::String(registration_id.to_owned()).to_string();
    let extra = extra.map(|e| format!(",{e}")).unwrap_or_default();
    match payload_json {
        Some(p) => format!("{{\"registrationId\":{id}{extra},\"payload\":{p}}}"),
        None => format!("{{\"registrationId\":{id}{extra}}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSIGNED: &str = r#"{"operationId":"5.506603669bd3e2bf.b3602f8f-76fe-4341-9214-bb6cfb891b8a","status":"assigned",
 "registrationState":{"x509":{},"registrationId":"my-x509-device","createdDateTimeUtc":"2022-08-27T17:53:19.5143497Z",
 "assignedHub":"MyExampleHub.azure-devices.net","deviceId":"my-x509-device","status":"assigned","substatus":"initialAssignment",
 "lastUpdatedDateTimeUtc":"2022-08-27T17:53:19.7519141Z","etag":"IjEyMDA4NmYyLTAwMDAtMDMwMC0wMDAwLTYzMGE1YTBmMDAwMCI="}}"#;

    #[test]
    fn parses_assigned() {
        let op = parse_operation(ASSIGNED.as_bytes(), "my-x509-device").unwrap();
        assert_eq!(op.status, RegistrationStatus::Assigned);
        let r = op.registration;
        assert_eq!(
            r.assigned_hub.as_deref(),
            Some("MyExampleHub.azure-devices.net")
        );
        assert_eq!(r.device_id.as_deref(), Some("my-x509-device"));
        assert_eq!(r.substatus.as_deref(), Some("initialAssignment"));
        assert_eq!(
            r.created_date_time_utc.as_deref(),
            Some("2022-08-27T17:53:19.5143497Z")
        );
        assert_eq!(r.payload_json, None);
    }

    #[test]
    fn parses_assigning_and_failed() {
        let op = parse_operation(br#"{"operationId":"5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550","status":"assigning"}"#, "d").unwrap();
        assert_eq!(op.status, RegistrationStatus::Assigning);
        assert_eq!(
            op.operation_id,
            "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550"
        );
        let failed = br#"{"operationId":"4.d0a6","status":"failed","registrationState":{"registrationId":"myRegistrationId","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400"}}"#;
        let op = parse_operation(failed, "myRegistrationId").unwrap();
        assert_eq!(op.registration.error_code, Some(400207));
        let disabled = br#"{"operationId":"","status":"disabled","registrationState":{"registrationId":"myRegistrationId","status":"disabled"}}"#;
        assert_eq!(
            parse_operation(disabled, "MYREGISTRATIONID")
                .unwrap()
                .status,
            RegistrationStatus::Disabled
        );
    }

    // PROTOCOL.md V10 edge cases.
    #[test]
    fn rejects_malformed() {
        for bad in [
            &br#"{"operationId":"x","status":"weird"}"#[..],
            br#"{"operationId":"x","status":"assigned","registrationState":123}"#,
            br#"{"errorCode":401002,"trackingId":"8ad0463c","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}"#,
            br#"{"status":"assigning"}"#,
            br#"not json"#,
            br#"[]"#,
            br#"{"operationId":"x","status":"assigned","registrationState":{"payload":[1]}}"#,
        ] {
            assert_eq!(parse_operation(bad, "d").unwrap_err().kind, ErrorKind::MalformedResponse);
        }
    }

    fn assigned_with(field: &str, value: &str) -> Vec<u8> {
        let mut state = serde_json::json!({
            "registrationId": "dev-1",
            "assignedHub": "hub.azure-devices.net",
            "deviceId": "dev-1",
            "status": "assigned",
            "substatus": "initialAssignment",
            "etag": "IjEi",
        });
        state[field] = Value::String(value.to_owned());
        serde_json::json!({"operationId": "5.a.b", "status": "assigned", "registrationState": state})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn hostile_answers_are_refused() {
        parse_operation(&assigned_with("deviceId", "dev-1"), "DEV-1").unwrap();
        for (field, value) in [
            ("assignedHub", "evil.example.com;SharedAccessKey=AAAA"),
            ("assignedHub", "hub.net\r\nX"),
            ("assignedHub", &"a".repeat(100_000)),
            ("deviceId", "dev;SharedAccessKey=AAAA;x=1"),
            ("deviceId", "dev\u{1b}[2J"),
            ("deviceId", "dev\0hidden"),
            ("registrationId", "someone-else"),
            ("substatus", "initial\u{1b}]0;pwned\u{7}"),
            ("etag", "a\nb"),
            ("createdDateTimeUtc", "2022\0"),
            ("lastUpdatedDateTimeUtc", "\u{9b}31m"),
        ] {
            let e = parse_operation(&assigned_with(field, value), "dev-1").unwrap_err();
            assert_eq!(e.kind, ErrorKind::MalformedResponse, "{field} {value:?}");
            assert!(e.message.contains(field), "{}", e.message);
            assert!(
                !e.message.chars().any(validate::is_control),
                "{:?}",
                e.message
            );
            assert!(e.message.chars().count() < 300, "{}", e.message.len());
            let lookup = serde_json::from_slice::<Value>(&assigned_with(field, value)).unwrap()
                ["registrationState"]
                .to_string();
            assert!(parse_registration(lookup.as_bytes(), "dev-1").is_err());
        }
        // An 'assigned' state must say whom it is for.
        let anonymous = br#"{"operationId":"x","status":"assigned","registrationState":{"assignedHub":"h.net","deviceId":"d","status":"assigned"}}"#;
        assert!(parse_operation(anonymous, "d").is_err());
        // Operation IDs: bounded and URL-safe (they go into the next request line).
        for op in ["a/../../x", "a b", "a\r\nHost: x", &"o".repeat(100_000)] {
            let body = serde_json::json!({"operationId": op, "status": "assigning"});
            let e = parse_operation(body.to_string().as_bytes(), "d").unwrap_err();
            assert!(e.message.contains("operationId"), "{}", e.message);
        }
        // Messages are cleaned and cut, not refused.
        let failed = serde_json::json!({"operationId": "x", "status": "failed", "registrationState": {
            "registrationId": "d", "status": "failed", "errorCode": 400207,
            "errorMessage": format!("bad\u{1b}[31m\r\nthing{}", "!".repeat(10_000))}});
        let r = parse_operation(failed.to_string().as_bytes(), "d")
            .unwrap()
            .registration;
        let m = r.error_message.unwrap();
        assert!(m.starts_with("bad[31m thing!!!"), "{m}");
        assert_eq!(m.chars().count(), validate::MAX_SERVER_MESSAGE_CHARS + 1);
        let body = parse_error_body(
            format!(
                r#"{{"errorCode":400004,"trackingId":"t\u0000x","message":"\u001b[2J{}"}}"#,
                "m".repeat(5000)
            )
            .as_bytes(),
        );
        assert_eq!(body.tracking_id.as_deref(), Some("tx"));
        let m = body.message.unwrap();
        assert!(m.starts_with("[2Jmmm") && m.ends_with('…'), "{m}");
        // serde_json's own messages quote input: bounded too.
        let huge = format!(
            r#"{{"operationId":"x","status":"assigned","registrationState":"{}"}}"#,
            r"\u001b".repeat(50_000)
        );
        let e = parse_operation(huge.as_bytes(), "d").unwrap_err();
        assert!(e.message.chars().count() < 400 && !e.message.chars().any(validate::is_control));
    }

    #[test]
    fn payload_object_or_null() {
        let op = parse_operation(br#"{"operationId":"x","status":"assigned","registrationState":{"registrationId":"d","payload":{"a":"b"},"symmetricKey":{"enrollmentGroupId":"g1"}}}"#, "d").unwrap();
        assert_eq!(
            op.registration.payload_json.as_deref(),
            Some(r#"{"a":"b"}"#)
        );
        assert_eq!(op.registration.enrollment_group_id.as_deref(), Some("g1"));
        let op = parse_operation(
            br#"{"operationId":"x","status":"assigned","registrationState":{"registrationId":"d","payload":null}}"#,
            "d",
        )
        .unwrap();
        assert_eq!(op.registration.payload_json, None);
    }

    #[test]
    fn error_bodies() {
        let e = parse_error_body(br#"{"errorCode":401002,"trackingId":"f40da7ba","message":"Invalid certificate","timestampUtc":"2019-03-15T19:43:02.7904455Z"}"#);
        assert_eq!(e.error_code, Some(401002));
        assert_eq!(e.tracking_id.as_deref(), Some("f40da7ba"));
        assert_eq!(parse_error_body(b"<html>"), ErrorBody::default());
    }

    #[test]
    fn payload_keys() {
        for dup in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"x":{"b":[{"c":1,"c":{}}]}}"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let e = normalize_payload(dup).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidPayload);
            assert!(e.message.contains("more than once"), "{}", e.message);
        }
        let e = normalize_payload(r#"{"ke\ny":1,"ke\ny":2}"#).unwrap_err();
        assert!(e.message.contains(r#""ke\ny""#), "{}", e.message);
        // Keys are data: kept exactly, whitespace included; same key in two objects is fine.
        assert_eq!(
            normalize_payload(r#"{" a ":1,"a":2,"o":{"a":3},"l":[{"a":1},{"a":2}]}"#).unwrap(),
            r#"{" a ":1,"a":2,"l":[{"a":1},{"a":2}],"o":{"a":3}}"#
        );
        assert_eq!(
            normalize_payload(r#"{"n":-1,"u":18446744073709551615,"f":1.5,"t":true,"z":null}"#)
                .unwrap(),
            r#"{"f":1.5,"n":-1,"t":true,"u":18446744073709551615,"z":null}"#
        );
    }

    #[test]
    fn payload_and_body() {
        assert_eq!(normalize_payload(r#"{ "a" : 1 }"#).unwrap(), r#"{"a":1}"#);
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
        let e = normalize_payload(&big).unwrap_err();
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge, "{e}");
        assert!(e.message.contains("up to 96 KB"), "{e}");
        for bad in ["[1]", "1", "\"s\"", "{", "null", "{} x", "{}{}"] {
            assert_eq!(
                normalize_payload(bad).unwrap_err().kind,
                ErrorKind::InvalidPayload
            );
        }
        assert_eq!(
            request_body("dev\"1", None),
            r#"{"registrationId":"dev\"1"}"#
        );
        assert_eq!(
            request_body("d", Some(r#"{"a":1}"#)),
            r#"{"registrationId":"d","payload":{"a":1}}"#
        );
    }
}
