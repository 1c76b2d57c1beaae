//! The device side of TPM attestation (PROTOCOL.md 5.4), on tpm2-tss through `tss-esapi`.
//!
//! A [`Tpm`] is one connection to a TPM chosen by a TCTI string (`device:/dev/tpmrm0` by default,
//! `swtpm:host=H,port=P`, `mssim:host=H,port=P`, `tabrmd[:bus_type=session]`). It reads the
//! endorsement key (EK, `0x81010001`) and storage root key (SRK, `0x81000001`), creating them from
//! the standard templates only when [`TpmOptions::create_missing`] is set; derives the default
//! registration ID from the EK; answers the DPS challenge ([`Tpm::activate`]: PolicySecret,
//! ActivateCredential, Import, Load, EvictControl of the identity key); and signs SAS tokens with
//! the persisted identity key by TPM2_HMAC ([`TpmHmacKey`], an [`HmacKey`]).
//!
//! **Bounded time.** Every TPM command runs on a worker thread that owns the ESAPI context; the
//! caller waits for the answer until a deadline ([`TpmOptions::command_timeout`] per operation,
//! or an earlier deadline given to the `*_until` methods) and then gives up with
//! [`ErrorKind::DeadlineExceeded`] (or [`ErrorKind::Cancelled`] through a
//! [`CancelToken`]). tpm2-tss has no per-command timeout on its TCTIs, so a TPM that stops
//! answering leaves that worker blocked: the [`Tpm`] is then marked unusable (every later call
//! fails at once with [`ErrorKind::Tpm`]) and the worker ends when the TCTI returns.
//!
//! A broken connection (TCTI I/O error: the TPM process died, the socket closed) is reported
//! with its TSS2_RC and the next call reconnects, so a TPM that comes back is used again.
//!
//! **Secrets.** The nonce, the inner wrapper key, the identity key and the hub key never appear in
//! logs, errors or `Debug` output; errors carry the TPM response code (`TPM_RC 0x...` from the
//! TPM, `TSS2_RC 0x...` with the tpm2-tss layer named otherwise). tpm2-tss itself prints its
//! own WARNING/ERROR lines (codes only) to stderr on failures; `TSS2_LOG=all+none` silences it.
//!
//! **Cost** (TPM commands on the wire, checked by a counting proxy in the tests; ESAPI resends
//! a command the TPM answers with TPM_RC_RETRY, which is not counted): open 7 (GetCapability +
//! ReadPublic per key, ReadPublic of each public area, GetCapability(TPM2_PT_INPUT_BUFFER));
//! activation 9 (StartAuthSession, PolicySecret, ActivateCredential, FlushContext, Import, Load,
//! GetCapability or EvictControl of the previous key, EvictControl, FlushContext), 11 when a
//! new connection replaces a key it has not looked up yet; HMAC 1 (TPM2_HMAC) up to the input
//! buffer, else 1 + ceil(len / buffer) sequence commands + 6 to reconnect.

mod activation;
mod errors;
mod hmac;
mod keys;
mod raw;
#[cfg(test)]
mod tests;
mod worker;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tss_esapi::Context;
use tss_esapi::constants::PropertyTag;
use tss_esapi::handles::{ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::structures::Public;
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;

use crate::credential::HmacKey;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::CancelToken;

pub(crate) use errors::{CONNECTION_BROKEN, tpm_error, tpm_error_kind};
pub use hmac::TpmHmacKey;
use keys::resolve_or_create;
use worker::Worker;

/// The TCG default handle of the RSA endorsement key.
pub const DEFAULT_EK_HANDLE: u32 = 0x8101_0001;
/// The conventional handle of the storage root key.
pub const DEFAULT_SRK_HANDLE: u32 = 0x8100_0001;
/// Where DPS clients persist the identity (HMAC) key.
pub const DEFAULT_IDENTITY_HANDLE: u32 = 0x8100_0100;

/// Which TPM and which handles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmOptions {
    /// The TCTI: `device:/dev/tpmrm0` (default), `swtpm:host=H,port=P`, `mssim:host=H,port=P`,
    /// `tabrmd` or `tabrmd:bus_name=...,bus_type=session|system`.
    pub tcti: String,
    /// Persistent handle of the EK (`0x81010001`).
    pub ek_handle: u32,
    /// Persistent handle of the SRK (`0x81000001`).
    pub srk_handle: u32,
    /// Persistent handle the identity key is stored at (`0x81000100`).
    pub identity_handle: u32,
    /// Create the EK and SRK from the standard templates (TCG EK profile RSA-2048, TCG SRK
    /// template) and persist them when they are missing. Off by default: provisioning is
    /// normally the device maker's job, and creating an EK takes seconds on real TPMs.
    pub create_missing: bool,
    /// How long one TPM operation (open, activation, one HMAC) may take (default 60 s; creating
    /// an RSA primary key takes 5-40 s on some hardware TPMs).
    pub command_timeout: Duration,
}

impl Default for TpmOptions {
    fn default() -> Self {
        TpmOptions {
            tcti: "device:/dev/tpmrm0".to_owned(),
            ek_handle: DEFAULT_EK_HANDLE,
            srk_handle: DEFAULT_SRK_HANDLE,
            identity_handle: DEFAULT_IDENTITY_HANDLE,
            create_missing: false,
            command_timeout: Duration::from_secs(60),
        }
    }
}

/// What `dps tpm-info` prints: the data an Azure portal individual enrollment takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmInfo {
    /// The default registration ID derived from the EK (52 lowercase base32 characters).
    pub registration_id: String,
    /// base64 of the EK's TPM2B_PUBLIC (the enrollment's "Endorsement key").
    pub endorsement_key: String,
    /// base64 of the SRK's TPM2B_PUBLIC.
    pub storage_root_key: String,
}

/// Opens the TPM, reads the EK and SRK, and returns the enrollment data.
pub fn tpm_info(options: &TpmOptions) -> Result<TpmInfo> {
    let tpm = Tpm::open(options)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(TpmInfo {
        registration_id: tpm.registration_id(),
        endorsement_key: b64.encode(tpm.endorsement_key()),
        storage_root_key: b64.encode(tpm.storage_root_key()),
    })
}

/// The ESAPI context and the handles it resolved; lives on the worker thread only.
pub(crate) struct State {
    pub(crate) ctx: Option<Context>,
    pub(crate) tcti: TctiNameConf,
    /// The TCTI as the caller wrote it (the raw sequence path parses host and port from it).
    pub(crate) tcti_text: String,
    pub(crate) ek: ObjectHandle,
    pub(crate) srk: ObjectHandle,
    /// The identity key's ESAPI handle, when it is known to exist.
    pub(crate) identity: Option<ObjectHandle>,
    pub(crate) ek_handle: u32,
    pub(crate) srk_handle: u32,
    pub(crate) identity_handle: u32,
    /// TPM2_PT_INPUT_BUFFER, capped at what a TPM2B_MAX_BUFFER holds.
    pub(crate) input_buffer: usize,
    pub(crate) commands: Arc<AtomicU64>,
}

impl State {
    /// The context (absent only while a raw HMAC sequence borrows the connection, or after
    /// reopening it failed: then it is reopened here).
    pub(crate) fn ctx(&mut self) -> Result<&mut Context> {
        if self.ctx.is_none() {
            self.reopen()?;
        }
        self.ctx
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Tpm, "the TPM connection could not be reopened"))
    }

    /// Counts `n` TPM commands (for the measurements in bench/RESULTS.md).
    pub(crate) fn count(&self, n: u64) {
        self.commands.fetch_add(n, Ordering::Relaxed);
    }

    /// Resolves a persistent handle: TPM2_GetCapability(handles) to see whether something is
    /// stored there (asking TPM2_ReadPublic directly would make tpm2-tss print an error for an
    /// empty slot), then TPM2_ReadPublic through ESAPI. `None` if the slot is empty.
    pub(crate) fn persistent(&mut self, handle: u32) -> Result<Option<ObjectHandle>> {
        use tss_esapi::constants::CapabilityType;
        use tss_esapi::structures::CapabilityData;
        let tpm_handle = persistent_handle(handle)?;
        self.count(1);
        let (data, _more) = self
            .ctx()?
            .get_capability(CapabilityType::Handles, handle, 1)
            .map_err(|e| tpm_error("TPM2_GetCapability(TPM_CAP_HANDLES)", &e))?;
        let present = match data {
            CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
            _ => false,
        };
        if !present {
            return Ok(None);
        }
        self.count(1);
        match self.ctx()?.tr_from_tpm_public(tpm_handle) {
            Ok(h) => Ok(Some(h)),
            Err(e) => Err(tpm_error(
                &format!("reading the object at {handle:#010x}"),
                &e,
            )),
        }
    }

    /// TPM2_ReadPublic of a resolved object: the TPM2B_PUBLIC bytes.
    pub(crate) fn public_bytes(&mut self, object: ObjectHandle, what: &str) -> Result<Vec<u8>> {
        self.count(1);
        let (public, _, _) = self
            .ctx()?
            .read_public(object.into())
            .map_err(|e| tpm_error(&format!("TPM2_ReadPublic of the {what}"), &e))?;
        tpm2b_public(&public)
    }
}

/// A connection to a TPM. `Send + Sync`: calls from several threads are serialised.
pub struct Tpm {
    worker: Mutex<Worker>,
    ek_public: Vec<u8>,
    srk_public: Vec<u8>,
    options: TpmOptions,
    commands: Arc<AtomicU64>,
}

impl fmt::Debug for Tpm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tpm")
            .field("tcti", &self.options.tcti)
            .field(
                "identity_handle",
                &format_args!("{:#010x}", self.options.identity_handle),
            )
            .finish_non_exhaustive()
    }
}

impl Tpm {
    /// Connects to the TPM, reads the EK and the SRK (creating them when asked to).
    pub fn open(options: &TpmOptions) -> Result<Tpm> {
        Self::open_until(options, Instant::now() + options.command_timeout, None)
    }

    /// [`Tpm::open`] bounded by `deadline` and `cancel`.
    pub fn open_until(
        options: &TpmOptions,
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<Tpm> {
        let tcti = parse_tcti(&options.tcti)?;
        for (what, h) in [
            ("EK", options.ek_handle),
            ("SRK", options.srk_handle),
            ("identity", options.identity_handle),
        ] {
            persistent_handle(h).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("the {what} handle {h:#010x} is not a persistent handle (0x81xxxxxx)"),
                )
            })?;
        }
        if options.identity_handle == options.ek_handle
            || options.identity_handle == options.srk_handle
            || options.ek_handle == options.srk_handle
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the EK, SRK and identity handles must differ (activation replaces the object \
                 at the identity handle)",
            ));
        }
        let commands = Arc::new(AtomicU64::new(0));
        let opts = options.clone();
        let counter = commands.clone();
        let (worker, opened) = Worker::start(
            move || open_state(tcti, &opts, counter),
            deadline.min(Instant::now() + options.command_timeout),
            cancel,
        )?;
        let (ek_public, srk_public) = opened;
        Ok(Tpm {
            worker: Mutex::new(worker),
            ek_public,
            srk_public,
            options: options.clone(),
            commands,
        })
    }

    /// The EK's TPM2B_PUBLIC (with its 2-byte size), as DPS takes it (base64) in
    /// `tpm.endorsementKey`.
    pub fn endorsement_key(&self) -> Vec<u8> {
        self.ek_public.clone()
    }

    /// The SRK's TPM2B_PUBLIC, for `tpm.storageRootKey`.
    pub fn storage_root_key(&self) -> Vec<u8> {
        self.srk_public.clone()
    }

    /// The default registration ID: lowercase unpadded base32 of SHA-256(TPM2B_PUBLIC(EK)).
    pub fn registration_id(&self) -> String {
        registration_id_from_ek(&self.ek_public)
    }

    /// The options this TPM was opened with.
    pub fn options(&self) -> &TpmOptions {
        &self.options
    }

    /// How many TPM commands this connection has sent so far (ESAPI calls, including the
    /// TPM2_ReadPublic that resolving a persistent handle costs).
    pub fn command_count(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    /// Answers the DPS challenge: activates the base64-decoded `authenticationKey` blob of the
    /// 401 answer (or of `registrationState.tpm.authenticationKey` in the `assigned` answer)
    /// and persists the HMAC key it carries at the identity handle, replacing any key there.
    pub fn activate(&self, authentication_key: &[u8]) -> Result<()> {
        self.activate_until(
            authentication_key,
            Instant::now() + self.options.command_timeout,
            None,
        )
    }

    /// [`Tpm::activate`] bounded by `deadline` and `cancel`.
    pub fn activate_until(
        &self,
        authentication_key: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<()> {
        let blob = activation::ActivationBlob::parse(authentication_key)?;
        self.run(deadline, cancel, move |st| activation::activate(st, &blob))
    }

    /// Imports the hub key of the `assigned` answer (`registrationState.tpm.authenticationKey`,
    /// base64-decoded: an activation blob like the challenge's) and returns the key that signs
    /// IoT Hub SAS tokens with it. The hub key replaces the DPS identity key at the identity
    /// handle, as every DPS client does.
    pub fn import_hub_key(self: &Arc<Self>, authentication_key: &[u8]) -> Result<TpmHmacKey> {
        self.activate(authentication_key)?;
        Ok(self.hmac_key())
    }

    /// The persisted identity key (the DPS key after [`Tpm::activate`], the hub key after
    /// [`Tpm::import_hub_key`]) as an [`HmacKey`].
    pub fn hmac_key(self: &Arc<Self>) -> TpmHmacKey {
        TpmHmacKey::new(self.clone())
    }

    /// TPM2_HMAC-SHA256 with the identity key (sequence commands past the input buffer).
    pub fn hmac_until(
        &self,
        data: &[u8],
        deadline: Instant,
        cancel: Option<&CancelToken>,
    ) -> Result<[u8; 32]> {
        let data = data.to_vec();
        self.run(deadline, cancel, move |st| hmac::hmac(st, &data))
    }

    fn run<T: Send + 'static>(
        &self,
        deadline: Instant,
        cancel: Option<&CancelToken>,
        job: impl FnOnce(&mut State) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let deadline = deadline.min(Instant::now() + self.options.command_timeout);
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        worker.run(deadline, cancel, job)
    }
}

impl HmacKey for TpmHmacKey {
    fn hmac_sha256(&self, data: &[u8]) -> Result<[u8; 32]> {
        self.sign(data)
    }

    fn describe(&self) -> String {
        self.description()
    }
}

/// The EK's and the SRK's TPM2B_PUBLIC.
type Publics = (Vec<u8>, Vec<u8>);

/// Opens the context on the worker thread and reads EK and SRK.
fn open_state(
    tcti: TctiNameConf,
    options: &TpmOptions,
    commands: Arc<AtomicU64>,
) -> Result<(State, Publics)> {
    let ctx = Context::new(tcti.clone()).map_err(|e| {
        tpm_error(
            &format!("connecting to the TPM through TCTI '{}'", options.tcti),
            &e,
        )
    })?;
    let mut st = State {
        ctx: Some(ctx),
        tcti,
        tcti_text: options.tcti.clone(),
        ek: ObjectHandle::None,
        srk: ObjectHandle::None,
        identity: None,
        ek_handle: options.ek_handle,
        srk_handle: options.srk_handle,
        identity_handle: options.identity_handle,
        input_buffer: 1024,
        commands,
    };
    st.ek = resolve_or_create(&mut st, options.ek_handle, "EK", options.create_missing)?;
    st.srk = resolve_or_create(&mut st, options.srk_handle, "SRK", options.create_missing)?;
    let ek_public = st.public_bytes(st.ek, "EK")?;
    require_rsa_2048(&ek_public, "EK", options.ek_handle)?;
    let srk_public = st.public_bytes(st.srk, "SRK")?;
    require_rsa_2048(&srk_public, "SRK", options.srk_handle)?;
    st.count(1);
    let input = st
        .ctx()?
        .get_tpm_property(PropertyTag::InputBuffer)
        .map_err(|e| tpm_error("reading TPM2_PT_INPUT_BUFFER", &e))?;
    st.input_buffer = input
        .map(|v| v as usize)
        .unwrap_or(1024)
        .clamp(64, tss_esapi::structures::MaxBuffer::MAX_SIZE);
    Ok((st, (ek_public, srk_public)))
}

/// DPS TPM attestation takes RSA-2048 EKs and SRKs only (PROTOCOL.md 5.4: every DPS client
/// uses the TCG RSA-2048 EK template, and the service encrypts its seeds with RSA-OAEP to both
/// keys): an ECC (or other) key at the handle is refused before anything is sent.
pub(crate) fn require_rsa_2048(tpm2b_public: &[u8], what: &str, handle: u32) -> Result<()> {
    use tss_esapi::traits::UnMarshall;
    let public = tpm2b_public
        .get(2..)
        .ok_or_else(|| Error::new(ErrorKind::Tpm, format!("the {what} public area is empty")))
        .and_then(|b| {
            Public::unmarshall(b)
                .map_err(|e| tpm_error(&format!("parsing the {what} public area"), &e))
        })?;
    let found = match &public {
        Public::Rsa { parameters, .. } => {
            let bits = u16::from(parameters.key_bits());
            if bits == 2048 {
                return Ok(());
            }
            format!("an RSA-{bits} key")
        }
        Public::Ecc { parameters, .. } => {
            format!("an ECC key (curve {:?})", parameters.ecc_curve())
        }
        Public::KeyedHash { .. } => "a KEYEDHASH object".to_owned(),
        Public::SymCipher { .. } => "a SYMCIPHER object".to_owned(),
    };
    let how = if what == "EK" {
        "the TCG RSA EK template, e.g. tpm2_createek -G rsa"
    } else {
        "an RSA-2048 storage key, e.g. tpm2_createprimary -G rsa + tpm2_evictcontrol"
    };
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "the {what} at {handle:#010x} is {found}: DPS TPM attestation takes RSA-2048 \
             {what}s only (provision one with {how}, or point the {what} handle at one)"
        ),
    ))
}

/// TPM2B_PUBLIC bytes (u16 size, then TPMT_PUBLIC) of a public area.
pub(crate) fn tpm2b_public(public: &Public) -> Result<Vec<u8>> {
    let body = public
        .marshall()
        .map_err(|e| tpm_error("marshalling a TPMT_PUBLIC", &e))?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The default DPS registration ID of an EK (PROTOCOL.md 5.4, vector V8).
pub fn registration_id_from_ek(ek_tpm2b_public: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, ek_tpm2b_public);
    base32_lower_unpadded(digest.as_ref())
}

/// RFC 4648 base32, lowercase alphabet, without `=` padding.
fn base32_lower_unpadded(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Parses a TCTI string into tpm2-tss' loader form, with a clear error.
pub(crate) fn parse_tcti(tcti: &str) -> Result<TctiNameConf> {
    let known = ["device", "swtpm", "mssim", "tabrmd"];
    let name = tcti.split(':').next().unwrap_or("");
    if !known.contains(&name) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "unknown TCTI '{tcti}': expected device:/dev/tpmrm0, swtpm:host=H,port=P, \
                 mssim:host=H,port=P or tabrmd[:bus_type=session|system]"
            ),
        ));
    }
    // The device TCTI (every real TPM) and a bare `tabrmd` are built directly: tss-esapi's
    // string parser compiles regular expressions for every TCTI string, a transient ~330 KiB of
    // heap (bench/RESULTS.md) that a device should not pay for its TPM's path. The network
    // TCTIs (simulators) and tabrmd options still go through it.
    match tcti.split_once(':').unwrap_or((tcti, "")) {
        ("device", path) => {
            let conf = tss_esapi::tcti_ldr::DeviceConfig::from_str(path).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("malformed TCTI '{tcti}': {e}"),
                )
            })?;
            return Ok(TctiNameConf::Device(conf));
        }
        ("tabrmd", "") => {
            return Ok(TctiNameConf::Tabrmd(
                tss_esapi::tcti_ldr::TabrmdConfig::default(),
            ));
        }
        _ => {}
    }
    TctiNameConf::from_str(tcti).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("malformed TCTI '{tcti}': {e}"),
        )
    })
}

pub(crate) fn persistent_handle(handle: u32) -> Result<TpmHandle> {
    PersistentTpmHandle::new(handle)
        .map(TpmHandle::Persistent)
        .map_err(|_| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{handle:#010x} is not a persistent handle"),
            )
        })
}

pub(crate) fn persistent_of(handle: TpmHandle) -> Persistent {
    match handle {
        TpmHandle::Persistent(p) => Persistent::Persistent(p),
        // persistent_handle() only builds the persistent variant.
        _ => unreachable!("not a persistent handle"),
    }
}
