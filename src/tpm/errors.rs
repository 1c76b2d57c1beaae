//! TPM failures as [`crate::Error`]s that carry the response code.

use crate::error::{Error, ErrorKind};

/// The numeric TSS2_RC of an ESAPI error, when it has one.
pub(crate) fn response_code(e: &tss_esapi::Error) -> Option<u32> {
    use tss_esapi::constants::response_code::Tss2ResponseCode;
    let text = match e {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(z)) => z.to_string(),
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(o)) => o.to_string(),
        _ => return None,
    };
    // tss-esapi 7 prints these as "Response code value: 0x...".
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

/// An error of kind [`ErrorKind::Tpm`] naming the step and the response code.
pub(crate) fn tpm_error(step: &str, e: &tss_esapi::Error) -> Error {
    tpm_error_kind(ErrorKind::Tpm, step, e)
}

pub(crate) fn tpm_error_kind(kind: ErrorKind, step: &str, e: &tss_esapi::Error) -> Error {
    let msg = match response_code(e) {
        Some(rc) if rc >> 16 == 0 => format!("{step} failed: TPM_RC {rc:#010x} ({e})"),
        Some(rc) => {
            if matches!(rc >> 16, 0x0a | 0x0c) || rc == 0x0007_0007 {
                // The connection is broken or the ESAPI context is stuck mid-command: the worker
                // reconnects before the next command.
                CONNECTION_BROKEN.with(|b| b.set(true));
            }
            format!(
                "{step} failed: TSS2_RC {rc:#010x} ({})",
                describe_tss_rc(rc)
            )
        }
        None => format!("{step} failed: {e}"),
    };
    Error::new(kind, msg)
}

thread_local! {
    /// Set on the worker thread when an error shows the TPM connection is unusable.
    pub(crate) static CONNECTION_BROKEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A TSS2_RC from a software layer of tpm2-tss (the TPM's own codes have layer 0).
fn describe_tss_rc(rc: u32) -> String {
    let layer = match rc >> 16 {
        0x07 => "ESAPI",
        0x08 => "SAPI",
        0x09 => "marshalling",
        0x0a => "TCTI",
        0x0b => "resource manager",
        0x0c => "resource manager TCTI",
        0x06 => "FAPI",
        _ => "tpm2-tss",
    };
    let what = match rc & 0xffff {
        1 => "general failure",
        2 => "not implemented",
        3 => "bad context",
        4 => "ABI mismatch",
        5 => "bad reference",
        6 => "insufficient buffer",
        7 => "bad sequence (an earlier command did not complete)",
        8 => "no connection",
        9 => "try again",
        10 => "I/O error: the TPM is unreachable or closed the connection",
        11 => "bad value",
        12 => "not permitted",
        16 => "bad size",
        17 => "malformed response",
        19 => "insufficient response",
        21 => "not supported",
        23 => "out of memory",
        24 => "bad ESAPI handle",
        27 => "response authorization failed",
        _ => "error",
    };
    format!("{layer} layer: {what}")
}
