//! The C ABI. This module is the only place with `unsafe` code.
//!
//! Conventions (see the README's "API conventions"):
//! - every fallible function returns a [`dps_status`]; [`DPS_OK`] is 0;
//! - outputs are written only on success; on failure out-pointers are left
//!   untouched;
//! - every `_new` has exactly one `_free`; `_free(NULL)` does nothing;
//! - strings in are NUL-terminated UTF-8 and copied during the call;
//! - strings out are either borrowed from the object that returned them (valid
//!   until it is freed) or copied into a caller buffer with its capacity;
//! - no panic crosses the boundary: each function body runs in [`guard`].
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
#![deny(missing_docs)]
// The pointer contracts are written for C callers in each function's doc
// (which becomes the header), not as Rust `# Safety` sections.
#![allow(clippy::missing_safety_doc)]

mod client;
mod config;
mod keys;
mod log;
mod registration;
mod status;
mod tpm;

pub use client::*;
pub use config::*;
pub use keys::*;
pub use log::*;
pub use registration::*;
pub use status::*;
pub use tpm::*;

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, ErrorKind};

/// Runs `f`, turning a panic into `fallback`.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Borrows a C string argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(Error::new(
            ErrorKind::NullArgument,
            format!("{name} is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::new(ErrorKind::InvalidUtf8, format!("{name} is not valid UTF-8")))
}

/// Like [`str_arg`] but NULL gives `None`.
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str_arg<'a>(
    p: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        Ok(None)
    } else {
        unsafe { str_arg(p, name) }.map(Some)
    }
}

/// Copies `s` and a NUL into `buf` (capacity `cap`), setting `*out_len` to
/// `s.len()` (without the NUL) in every case where `out_len` is not NULL.
/// A NULL `buf` with `cap == 0` is a size query: `DPS_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `buf` is NULL or valid for `cap` bytes; `out_len` is NULL or valid.
pub(crate) unsafe fn write_str_out(
    s: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> dps_status {
    if !out_len.is_null() {
        // SAFETY: valid per the caller's contract.
        unsafe { *out_len = s.len() };
    }
    if buf.is_null() {
        return if cap == 0 {
            DPS_ERR_BUFFER_TOO_SMALL
        } else {
            DPS_ERR_NULL_ARGUMENT
        };
    }
    if cap < s.len() + 1 {
        return DPS_ERR_BUFFER_TOO_SMALL;
    }
    // SAFETY: buf holds at least s.len() + 1 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    DPS_OK
}

/// A string as a C string; interior NULs (never in DPS data we keep) are cut.
pub(crate) fn cstring(s: &str) -> CString {
    let end = s.find('\0').unwrap_or(s.len());
    CString::new(&s[..end]).unwrap_or_default()
}

/// Writes `value` through `out` (checked non-NULL by the caller).
///
/// # Safety
/// `out` is valid for writes.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) {
    // SAFETY: per the caller's contract.
    unsafe { out.write(value) };
}
