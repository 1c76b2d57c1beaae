//! `dps_config`: the settings of a registration, built with setters.

use std::cell::UnsafeCell;
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::*;
use crate::config::ConfigBuilder;
use crate::credential::x509::csr::rsa_keygen_unsupported;
use crate::credential::{CsrAlgorithm, CsrKey};
use crate::error::{Error, ErrorKind};
use crate::transport::tls::DefaultRoots;

/// The settings for registering one device: ID scope, registration ID,
/// credential, endpoint, trust, payload, timeouts.
///
/// Methods: `dps_config_new`, `dps_config_free`, `dps_config_last_error`, and
/// the `dps_config_set_*` / `dps_config_add_*` setters. Used by
/// `dps_register` and `dps_client_new`, which copy what they need.
///
/// Thread safety: setters must not run concurrently with any other use of
/// the same config. Once configured, a config may be read (by `dps_register`
/// and `dps_client_new`) from any number of threads at once. A call on a config
/// made while a setter of the same config is running (from a signing callback
/// called by `dps_config_set_x509_signer`, say) returns `DPS_ERR_INVALID_STATE`
/// (`dps_config_last_error`: NULL) instead of touching it.
pub struct dps_config {
    /// Set while a setter runs: re-entrant calls are refused, never aliased.
    busy: AtomicBool,
    inner: UnsafeCell<ConfigInner>,
}

struct ConfigInner {
    builder: ConfigBuilder,
    last_error: Option<Box<dps_error>>,
}

/// Clears the busy flag when a setter ends, also by a panic.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Use the Azure subset of the Mozilla root bundle (DigiCert Global Root G2
/// and G3, Microsoft RSA and ECC Root CA 2017). The default.
pub const DPS_ROOTS_AZURE: u32 = 0;
/// Use the whole Mozilla root bundle (about 150 roots). Only in builds with
/// the `mozilla-roots` cargo feature; otherwise the setter returns
/// `DPS_ERR_UNSUPPORTED`.
pub const DPS_ROOTS_MOZILLA: u32 = 1;
/// Use no built-in roots: only those added with `dps_config_add_trusted_ca_*`.
pub const DPS_ROOTS_NONE: u32 = 2;

impl ConfigInner {
    fn record(&mut self, r: Result<(), Error>) -> dps_status {
        match r {
            Ok(()) => {
                self.last_error = None;
                DPS_OK
            }
            Err(e) => {
                let code = e.kind.code();
                self.last_error = Some(dps_error::new(e));
                code
            }
        }
    }
}

impl dps_config {
    /// The builder, unless a setter of this config is running (a re-entrant call).
    pub(crate) fn builder(&self) -> Result<&ConfigBuilder, Error> {
        if self.busy.load(Ordering::Acquire) {
            return Err(busy_error());
        }
        // SAFETY: no setter holds the cell mutably (busy is clear); readers share it.
        Ok(unsafe { &(*self.inner.get()).builder })
    }
}

fn busy_error() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        "the config is in use by a setter that is still running (a callback called back into it)",
    )
}

/// Runs a setter on a non-NULL config, recording its error message.
pub(super) fn with_config(
    config: *mut dps_config,
    f: impl FnOnce(&mut ConfigBuilder) -> Result<(), Error>,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        // SAFETY: the caller passes NULL or a live config.
        let Some(c) = (unsafe { config.as_ref() }) else {
            return DPS_ERR_NULL_ARGUMENT;
        };
        if c.busy.swap(true, Ordering::AcqRel) {
            return DPS_ERR_INVALID_STATE;
        }
        let _busy = Busy(&c.busy);
        // SAFETY: `busy` was clear and is now set by this call: no other reference into the
        // cell exists until it is cleared, and the caller does not share the config with
        // another thread during a setter.
        let inner = unsafe { &mut *c.inner.get() };
        let r = f(&mut inner.builder);
        inner.record(r)
    })
}

pub(super) fn read_file(path: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::FileRead,
            format!("cannot read {}: {e}", crate::config::echo(path)),
        )
    })
}

/// Creates a configuration for a device.
///
/// - `id_scope`: the DPS ID scope (for example `0ne00000001`); copied.
/// - `registration_id`: the device's registration ID; copied. May be NULL when
///   an X.509 credential is set: the leaf certificate's subject CN is used; or
///   with `dps_config_set_tpm`: the ID derived from the EK is used.
/// - `out`: receives the new config on success; free it with `dps_config_free`.
///
/// Defaults: endpoint `global.azure-devices-provisioning.net:443`,
/// api-version `2021-06-01`, Azure roots, deadline 5 min, request timeout
/// 30 s, SAS lifetime 1 h, no proxy, no payload.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_ID_SCOPE` or `DPS_ERR_INVALID_REGISTRATION_ID`; `*out` is
/// untouched on failure. Thread-safe.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_new(
    id_scope: *const c_char,
    registration_id: *const c_char,
    out: *mut *mut dps_config,
) -> dps_status {
    guard(DPS_ERR_PANIC, || {
        if out.is_null() {
            return DPS_ERR_NULL_ARGUMENT;
        }
        let r = (|| {
            // SAFETY: C strings per the contract above.
            let scope = unsafe { str_arg(id_scope, "id_scope") }?;
            let id = unsafe { opt_str_arg(registration_id, "registration_id") }?;
            let mut b = ConfigBuilder::new(scope)?;
            if let Some(id) = id {
                b.registration_id(id)?;
            }
            Ok::<_, Error>(b)
        })();
        match r {
            Ok(builder) => {
                let c = Box::new(dps_config {
                    busy: AtomicBool::new(false),
                    inner: UnsafeCell::new(ConfigInner {
                        builder,
                        last_error: None,
                    }),
                });
                // SAFETY: out is non-NULL and writable per the contract.
                unsafe { put(out, Box::into_raw(c)) };
                DPS_OK
            }
            Err(e) => e.kind.code(),
        }
    })
}

/// Frees a config and zeroizes the secrets it holds (keys, passwords).
/// NULL is ignored. Clients and registrations made from it stay valid.
/// Must not be called while another thread uses the config.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_config_free(config: *mut dps_config) {
    guard((), || {
        if !config.is_null() {
            // SAFETY: config came from dps_config_new and is freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// The error of the last failed setter on this config (read it with
/// `dps_error_message`, `dps_error_status`, ...), or NULL if the last setter
/// succeeded, `config` is NULL, or a setter of this config is running (a
/// re-entrant call from its callback). Borrowed, like `dps_client_last_error`:
/// valid until the next setter on this config or its free; never pass it to
/// `dps_error_free`. Never contains secrets.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dps_config_last_error(config: *const dps_config) -> *const dps_error {
    guard(std::ptr::null(), || {
        // SAFETY: NULL or a live config.
        let Some(c) = (unsafe { config.as_ref() }) else {
            return std::ptr::null();
        };
        if c.busy.load(Ordering::Acquire) {
            return std::ptr::null();
        }
        // SAFETY: no setter is running (busy clear): shared access.
        unsafe { (*c.inner.get()).last_error.as_deref() }
            .map_or(std::ptr::null(), |e| e as *const dps_error)
    })
}

/// Sends a custom allocation payload with the registration. `json` must be a
/// JSON object; it is checked and copied. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`, `DPS_ERR_INVALID_PAYLOAD` (not a JSON
/// object, or a key repeated in one object) or `DPS_ERR_PAYLOAD_TOO_LARGE` (over 96 KB once
/// compacted). Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_payload_json(
    config: *mut dps_config,
    json: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.payload_json(unsafe { str_arg(json, "json") }?).map(drop)
    })
}

/// Sets the DPS endpoint, `host` or `host:port` (default
/// `global.azure-devices-provisioning.net`, port 443). The host is also the
/// TLS server name (SNI) and must match the server certificate. Copied.
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or
/// `DPS_ERR_INVALID_ENDPOINT`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_endpoint(
    config: *mut dps_config,
    host_port: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.endpoint(unsafe { str_arg(host_port, "host_port") }?)
            .map(drop)
    })
}

/// Overrides the `api-version` query parameter (default `2021-06-01`).
/// Copied. Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`
/// or `DPS_ERR_INVALID_ARGUMENT`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_api_version(
    config: *mut dps_config,
    api_version: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.api_version(unsafe { str_arg(api_version, "api_version") }?)
            .map(drop)
    })
}

/// `dps_config_set_csr`: generate an ECDSA P-256 key (`key_pem` NULL).
pub const DPS_CSR_P256: u32 = 0;
/// `dps_config_set_csr`: generate an ECDSA P-384 key (`key_pem` NULL).
pub const DPS_CSR_P384: u32 = 1;
/// `dps_config_set_csr`: use the private key in `key_pem` (PKCS#8, PKCS#1 RSA or SEC1 EC;
/// ECDSA P-256/P-384 or RSA 2048-8192).
pub const DPS_CSR_PEM: u32 = 2;
/// `dps_config_set_csr`: generate an RSA-2048 key (`key_pem` NULL). Needs a library built
/// with the cargo feature `rsa-keygen` (`dps_version` names it); otherwise
/// `dps_config_set_csr` returns `DPS_ERR_UNSUPPORTED`.
pub const DPS_CSR_RSA2048: u32 = 3;

/// **Experimental.** Sends a certificate signing request with the registration (certificate
/// issuance, api-version 2025-07-01-preview, which becomes the default unless
/// `dps_config_set_api_version` was called). `kind` is `DPS_CSR_P256`, `DPS_CSR_P384` or
/// `DPS_CSR_RSA2048` (the library generates the key when the client is created from this
/// config; `key_pem` must be NULL) or `DPS_CSR_PEM` (`key_pem` is the key, copied). The CSR's
/// subject CN is the registration ID. The issued chain, checked, is read with
/// `dps_registration_issued_chain_pem`, a generated key with
/// `dps_registration_issued_key_pem`. `DPS_CSR_RSA2048` needs the `rsa-keygen` build feature.
/// Whether the real DPS accepts a CSR over HTTPS is unconfirmed.
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8`,
/// `DPS_ERR_INVALID_ARGUMENT` (unknown `kind`, or `key_pem` given with a generated kind),
/// `DPS_ERR_UNSUPPORTED` (`DPS_CSR_RSA2048` without the `rsa-keygen` feature) or
/// `DPS_ERR_INVALID_PRIVATE_KEY`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_csr(
    config: *mut dps_config,
    kind: u32,
    key_pem: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: NULL or a C string per the contract.
        let pem = unsafe { opt_str_arg(key_pem, "key_pem") }?;
        let key = match (kind, pem) {
            (DPS_CSR_P256, None) => CsrKey::generate(CsrAlgorithm::P256),
            (DPS_CSR_P384, None) => CsrKey::generate(CsrAlgorithm::P384),
            (DPS_CSR_RSA2048, None) if !CsrAlgorithm::Rsa2048.is_supported() => {
                return Err(rsa_keygen_unsupported());
            }
            (DPS_CSR_RSA2048, None) => CsrKey::generate(CsrAlgorithm::Rsa2048),
            (DPS_CSR_P256 | DPS_CSR_P384 | DPS_CSR_RSA2048, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "key_pem must be NULL when the library generates the key (DPS_CSR_P256, DPS_CSR_P384, DPS_CSR_RSA2048)",
                ));
            }
            (DPS_CSR_PEM, Some(p)) => CsrKey::from_pem(p.as_bytes(), None)?,
            (DPS_CSR_PEM, None) => {
                return Err(Error::new(
                    ErrorKind::NullArgument,
                    "key_pem is NULL (DPS_CSR_PEM needs the private key)",
                ));
            }
            (k, _) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown CSR kind {k} (DPS_CSR_P256, DPS_CSR_P384, DPS_CSR_RSA2048 or DPS_CSR_PEM)"
                    ),
                ));
            }
        };
        b.csr(key);
        Ok(())
    })
}

/// Adds `forceRegistration=true` to the register request when `force` is
/// true. Returns `DPS_OK` or `DPS_ERR_NULL_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_force_registration(
    config: *mut dps_config,
    force: bool,
) -> dps_status {
    with_config(config, |b| {
        b.force_registration(force);
        Ok(())
    })
}

/// Adds trusted root certificates (one or more PEM blocks) for verifying the
/// server; parsed once, here. Verification is never turned off: this is how
/// to trust a private DPS or the emulator. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or
/// `DPS_ERR_INVALID_TRUST_ANCHOR`. Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_add_trusted_ca_pem(
    config: *mut dps_config,
    pem: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.add_trusted_roots_pem(unsafe { str_arg(pem, "pem") }?.as_bytes())
            .map(drop)
    })
}

/// Like `dps_config_add_trusted_ca_pem`, reading the PEM file at `path`.
/// Also returns `DPS_ERR_FILE_READ`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_add_trusted_ca_file(
    config: *mut dps_config,
    path: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        let pem = read_file(unsafe { str_arg(path, "path") }?)?;
        b.add_trusted_roots_pem(&pem).map(drop)
    })
}

/// Chooses the built-in roots: `DPS_ROOTS_AZURE` (default),
/// `DPS_ROOTS_MOZILLA` or `DPS_ROOTS_NONE`. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_ARGUMENT` (unknown value) or
/// `DPS_ERR_UNSUPPORTED` (`DPS_ROOTS_MOZILLA` without the `mozilla-roots`
/// feature).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_default_roots(
    config: *mut dps_config,
    roots: u32,
) -> dps_status {
    with_config(config, |b| {
        let r = match roots {
            DPS_ROOTS_AZURE => DefaultRoots::Azure,
            DPS_ROOTS_MOZILLA => DefaultRoots::Mozilla,
            DPS_ROOTS_NONE => DefaultRoots::None,
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!("unknown roots value {roots}"),
                ));
            }
        };
        b.default_roots(r)?;
        Ok(())
    })
}

/// Sends all traffic through an HTTP CONNECT proxy,
/// `http://[user:password@]host[:port]` (port 8080 if absent; user and
/// password may be percent-encoded and are sent as Basic auth). Copied; the
/// credentials are zeroized on free and never logged. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or `DPS_ERR_INVALID_PROXY`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_proxy(
    config: *mut dps_config,
    url: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.proxy(unsafe { str_arg(url, "url") }?).map(drop)
    })
}

/// Opts in to `HTTPS_PROXY` / `https_proxy`, honouring `NO_PROXY`; reads the
/// environment now (set the endpoint first). Without this call the
/// environment is ignored. Returns `DPS_OK` (also when no proxy applies),
/// `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_PROXY`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_use_proxy_from_env(config: *mut dps_config) -> dps_status {
    with_config(config, |b| b.proxy_from_env().map(drop))
}

/// Sets the overall deadline of one registration in milliseconds (default
/// 300000), covering every request, wait and retry. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_ARGUMENT` (0).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_timeout_ms(
    config: *mut dps_config,
    deadline_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.deadline(Duration::from_millis(deadline_ms.into()))
            .map(drop)
    })
}

/// Sets the per-request timeout in milliseconds: connect, TLS handshake and
/// the whole response (default 30000). Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_ARGUMENT` (0).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_request_timeout_ms(
    config: *mut dps_config,
    timeout_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.request_timeout(Duration::from_millis(timeout_ms.into()))
            .map(drop)
    })
}

/// Sets the SAS token lifetime in seconds (default 3600); tokens are renewed
/// when a tenth of it (at least 30 s) remains. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_ARGUMENT` (0).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_sas_ttl_s(
    config: *mut dps_config,
    ttl_s: u32,
) -> dps_status {
    with_config(config, |b| {
        b.sas_ttl(Duration::from_secs(ttl_s.into())).map(drop)
    })
}

/// Sets the exponential backoff bounds for retries when DPS sends no
/// `Retry-After` (default 1000 to 60000 ms, with jitter). Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_ARGUMENT` (min > max).
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_backoff_ms(
    config: *mut dps_config,
    min_ms: u32,
    max_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.backoff(
            Duration::from_millis(min_ms.into()),
            Duration::from_millis(max_ms.into()),
        )
        .map(drop)
    })
}

/// Sets the poll interval used when DPS sends no `Retry-After` (default 2000
/// ms). Returns `DPS_OK` or `DPS_ERR_NULL_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_poll_interval_ms(
    config: *mut dps_config,
    interval_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.poll_interval(Duration::from_millis(interval_ms.into()));
        Ok(())
    })
}

/// Limits polls of one operation to `max_polls` per sliding window of
/// `window_ms` (default 5 per 10000 ms, DPS's documented per-device limit).
/// `Retry-After` is honoured exactly, 0 included, while the window has room;
/// then the next poll waits for a free slot (or the registration ends with
/// `DPS_ERR_DEADLINE_EXCEEDED` when that slot is past the deadline).
///
/// Returns `DPS_OK`, `DPS_ERR_NULL_ARGUMENT` or `DPS_ERR_INVALID_ARGUMENT`
/// (`max_polls` or `window_ms` 0). Not thread-safe on the same config.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_poll_rate(
    config: *mut dps_config,
    max_polls: u32,
    window_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.poll_rate(max_polls, Duration::from_millis(window_ms.into()))
            .map(drop)
    })
}

/// Caps the `Retry-After` the client honours, in milliseconds (default
/// 300000): a longer one is shortened to this. The registration deadline
/// still applies. Returns `DPS_OK` or `DPS_ERR_NULL_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_max_retry_after_ms(
    config: *mut dps_config,
    max_ms: u32,
) -> dps_status {
    with_config(config, |b| {
        b.max_retry_after(Duration::from_millis(max_ms.into()));
        Ok(())
    })
}

/// Appends text (at most 128 printable characters) to the User-Agent, for
/// example a firmware version. Copied. Returns `DPS_OK`,
/// `DPS_ERR_NULL_ARGUMENT`, `DPS_ERR_INVALID_UTF8` or `DPS_ERR_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn dps_config_set_user_agent_suffix(
    config: *mut dps_config,
    suffix: *const c_char,
) -> dps_status {
    with_config(config, |b| {
        // SAFETY: C string per the contract.
        b.user_agent_suffix(unsafe { str_arg(suffix, "suffix") }?)
            .map(drop)
    })
}
