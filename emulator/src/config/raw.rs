//! The serde shapes of the configuration file (TOML or JSON, one schema). Unknown fields and
//! unknown enum values are refused by serde, so a typo is reported where it is, by the
//! parser's own position (TOML span or JSON line).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Allocation, ChainFault, CsrKeyType, FaultOn, Reprovision};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub id_scope: Option<String>,
    pub port: Option<u16>,
    pub retry_after_secs: Option<u32>,
    pub assigning_polls: Option<u32>,
    pub api_versions: Option<Vec<String>>,
    pub strict_polling: Option<bool>,
    pub log_requests: Option<bool>,
    pub chunked_responses: Option<bool>,
    #[serde(default)]
    pub hubs: Vec<RawHub>,
    #[serde(default)]
    pub enrollments: Vec<RawEnrollment>,
    pub tls: Option<RawTls>,
    pub limits: Option<RawLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHub {
    pub host_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
    pub server_cert_file: Option<PathBuf>,
    pub server_key_file: Option<PathBuf>,
    pub versions: Option<Vec<TlsVersion>>,
}

#[derive(Clone, Copy, Deserialize)]
pub(super) enum TlsVersion {
    #[serde(rename = "1.2")]
    V12,
    #[serde(rename = "1.3")]
    V13,
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub idle_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub max_head_bytes: Option<usize>,
}

/// `attestation = "..."` of an enrollment. A new kind (TPM) is a new variant here, its fields
/// in [`RawEnrollment`], and its arm in `validate::attestation` (see `dps::auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AttestationKind {
    SymmetricKey,
    X509,
    Tpm,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnrollment {
    pub registration_id: Option<String>,
    pub group_id: Option<String>,
    pub attestation: Option<AttestationKind>,
    pub primary_key: Option<String>,
    pub secondary_key: Option<String>,
    pub thumbprint: Option<String>,
    pub secondary_thumbprint: Option<String>,
    pub ca_pem: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// TPM: the device's EK, base64 TPM2B_PUBLIC (what `dps tpm-info` prints).
    pub endorsement_key: Option<String>,
    /// TPM: the device's IoT Hub key (base64, 32 bytes) sent in the final answer; random
    /// per registration when absent.
    pub hub_key: Option<String>,
    /// TPM fault: which activation blob to damage.
    pub corrupt_blob: Option<super::CorruptBlob>,
    pub device_id: Option<String>,
    pub enabled: Option<bool>,
    pub allocation: Option<Allocation>,
    pub hubs: Option<Vec<String>>,
    pub initial_hub: Option<String>,
    pub reprovision: Option<Reprovision>,
    pub payload: Option<serde_json::Value>,
    pub echo_payload: Option<bool>,
    pub retry_after_secs: Option<u32>,
    pub assigning_polls: Option<u32>,
    #[serde(default)]
    pub faults: Vec<RawFault>,
    pub issuance: Option<RawIssuance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuance {
    pub ca_cert_file: Option<PathBuf>,
    pub ca_key_file: Option<PathBuf>,
    pub ca_cert_pem: Option<String>,
    pub ca_key_pem: Option<String>,
    pub validity_days: Option<u32>,
    pub key_types: Option<Vec<CsrKeyType>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StrOrInt {
    Str(String),
    Int(u64),
}

/// `action = "..."` of a fault step.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Action {
    Close,
    Truncate,
    MalformedJson,
    WrongContentType,
    Delay,
    Oversized,
    Trickle,
    BlackHole,
    EndlessAssigning,
}

/// `result = "..."` of a fault step.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum ResultKind {
    Failed,
    Disabled,
    AssignedWithoutHub,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub on: Option<FaultOn>,
    pub action: Option<Action>,
    pub result: Option<ResultKind>,
    pub status: Option<u16>,
    pub error_code: Option<u32>,
    pub message: Option<String>,
    pub retry_after: Option<StrOrInt>,
    pub retry_after_http_date_secs: Option<u64>,
    pub ms: Option<u64>,
    pub bytes: Option<usize>,
    pub chunk_bytes: Option<usize>,
    pub interval_ms: Option<u64>,
    pub content_type: Option<String>,
    pub issued_chain: Option<ChainFault>,
    pub times: Option<u32>,
}
