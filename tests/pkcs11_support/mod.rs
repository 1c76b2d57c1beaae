//! Test support for PKCS#11 keys: a SoftHSM2 token store in a temporary directory, tokens and
//! keys generated inside the token (non-extractable), and certificates for a token key (a
//! self-signed one, or a CSR for `dps_emulator::pki::TestCa::sign_csr_der`) signed by the
//! token through the library's own [`Pkcs11Signer`].
//!
//! Use from a test file with `#[path = "pkcs11_support/mod.rs"] mod pkcs11_support;` (the
//! file must have `required-features = ["pkcs11"]`).
#![allow(dead_code)]

pub mod certs;
pub mod tpm;

pub use certs::*;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, CertificateType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// The SoftHSM2 module Debian installs (package `softhsm2`).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

pub const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Fails the test with a clear message when a prerequisite is missing (never a silent pass).
pub fn require_file(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "prerequisite missing: {path} ({what}); install it (apt-get install {what}) - \
         .ci/run does"
    );
}

/// A directory under the cargo target dir, removed first if a previous run left it.
pub fn fresh_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Clean up directories of earlier runs whose process is gone.
    if let Ok(rd) = std::fs::read_dir(&base) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = n.strip_prefix(&format!("{name}-")) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

/// The process-wide SoftHSM2 token store: a temporary directory named by `SOFTHSM2_CONF`
/// (SoftHSM reads it once, at `C_Initialize`, so one store serves the whole test process).
pub struct SoftHsm {
    pub dir: PathBuf,
    /// The config file: pass `SOFTHSM2_CONF=<conf>` to a child process (CLI, Python, C
    /// example) so it sees the same tokens.
    pub conf: PathBuf,
    pub module: PathBuf,
    ctx: Pkcs11,
    /// Serialises token creation (each takes "the" free slot).
    create: Mutex<()>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A label unique in this process.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn softhsm() -> &'static SoftHsm {
    static HSM: OnceLock<SoftHsm> = OnceLock::new();
    HSM.get_or_init(|| {
        require_file(SOFTHSM_MODULE, "softhsm2");
        let dir = fresh_dir("softhsm");
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        set_env("SOFTHSM2_CONF", &conf);
        let ctx = Pkcs11::new(SOFTHSM_MODULE).expect("load SoftHSM2");
        init_ctx(&ctx);
        SoftHsm {
            dir,
            conf,
            module: PathBuf::from(SOFTHSM_MODULE),
            ctx,
            create: Mutex::new(()),
        }
    })
}

/// Sets an environment variable for a module this process loads later.
pub fn set_env(name: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: set_var races only with threads reading the environment through libc. It is
    // called from OnceLock initialisers, before the module that reads the variable is loaded;
    // the other test threads of this binary read no environment meanwhile.
    unsafe { std::env::set_var(name, value) };
}

pub fn init_ctx(ctx: &Pkcs11) {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
}

/// A token with a user PIN, to generate keys in.
pub struct Token {
    pub label: String,
    pub pin: String,
    pub so_pin: String,
    pub module: PathBuf,
    pub slot: Slot,
    ctx: Pkcs11,
}

impl SoftHsm {
    /// A new token `label` with user PIN `pin` (SO PIN "5678"), initialised in this process.
    pub fn new_token(&self, label: &str, pin: &str) -> Token {
        let _g = self.create.lock().unwrap_or_else(|p| p.into_inner());
        let slot = self
            .ctx
            .get_all_slots()
            .unwrap()
            .into_iter()
            .find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .is_ok_and(|t| !t.token_initialized())
            })
            .expect("SoftHSM has a free slot");
        let so = AuthPin::from("5678".to_string());
        self.ctx.init_token(slot, &so, label).expect("C_InitToken");
        // After C_InitToken SoftHSM may renumber the slot: find it by label.
        let slot = self
            .ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .is_ok_and(|t| t.label() == label)
            })
            .expect("the new token");
        let s = self.ctx.open_rw_session(slot).unwrap();
        s.login(UserType::So, Some(&so)).unwrap();
        s.init_pin(&AuthPin::from(pin.to_string())).unwrap();
        s.logout().unwrap();
        drop(s);
        Token {
            label: label.into(),
            pin: pin.into(),
            so_pin: "5678".into(),
            module: self.module.clone(),
            slot,
            ctx: self.ctx.clone(),
        }
    }
}

impl SoftHsm {
    /// `C_Finalize` then `C_Initialize` on this process's SoftHSM: every session and login
    /// of every user of the module in the process is gone, as after a token reset.
    pub fn finalize_and_initialize(&self) {
        self.ctx.clone().finalize().expect("C_Finalize");
        init_ctx(&self.ctx);
    }

    /// `C_Finalize` alone: the next user must initialise the module again.
    pub fn finalize_only(&self) {
        self.ctx.clone().finalize().expect("C_Finalize");
    }

    /// `C_Initialize` (or nothing if someone did it already).
    pub fn initialize(&self) {
        init_ctx(&self.ctx);
    }
}

impl Token {
    /// Re-initialises the token in place (`C_InitToken` with the SO PIN, same label, new user
    /// PIN setup): every object in it is erased. No session may be open on it.
    pub fn reinitialize(&mut self) {
        self.slot = self.find_slot();
        let so = AuthPin::from(self.so_pin.clone());
        self.ctx
            .init_token(self.slot, &so, &self.label)
            .expect("C_InitToken on the used token");
        let s = self.ctx.open_rw_session(self.slot).unwrap();
        s.login(UserType::So, Some(&so)).unwrap();
        s.init_pin(&AuthPin::from(self.pin.clone())).unwrap();
        s.logout().unwrap();
    }
}

fn label_id(label: &str, id: &[u8]) -> [Attribute; 2] {
    [
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
    ]
}

impl Token {
    /// A token reached through another module context (tpm2-pkcs11 tokens made by tpm2_ptool).
    pub fn existing(ctx: Pkcs11, module: &Path, label: &str, pin: &str) -> Token {
        let slot = ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label() == label))
            .unwrap_or_else(|| panic!("no token labelled {label}"));
        Token {
            label: label.into(),
            pin: pin.into(),
            so_pin: String::new(),
            module: module.into(),
            slot,
            ctx,
        }
    }

    /// The slot holding the token now (SoftHSM renumbers slots after `C_Initialize`).
    pub fn find_slot(&self) -> Slot {
        self.ctx
            .get_slots_with_initialized_token()
            .unwrap()
            .into_iter()
            .find(|s| {
                self.ctx
                    .get_token_info(*s)
                    .is_ok_and(|t| t.label() == self.label)
            })
            .unwrap_or_else(|| panic!("no token labelled {}", self.label))
    }

    /// A logged-in read-write session (the caller's own; SoftHSM shares the login).
    pub fn session(&self) -> Session {
        let s = self.ctx.open_rw_session(self.find_slot()).unwrap();
        match s.login(UserType::User, Some(&AuthPin::from(self.pin.clone()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => panic!("login: {e}"),
        }
        s
    }

    /// The URI of object `label` with the module path and the PIN.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={}?module-path={}&pin-value={}",
            self.label,
            object,
            self.module.display(),
            self.pin
        )
    }

    /// An EC key pair (curve OID DER) generated in the token: sensitive, not extractable.
    pub fn generate_ec(&self, label: &str, id: &[u8], curve_oid: &[u8]) -> ObjectHandle {
        self.generate_ec_with(label, id, curve_oid, &[])
    }

    /// [`Token::generate_ec`] with extra private key attributes.
    pub fn generate_ec_with(
        &self,
        label: &str,
        id: &[u8],
        curve_oid: &[u8],
        extra: &[Attribute],
    ) -> ObjectHandle {
        let s = self.session();
        let [l, i] = label_id(label, id);
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(curve_oid.to_vec()),
            l.clone(),
            i.clone(),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            l,
            i,
        ];
        private.extend_from_slice(extra);
        s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .expect("C_GenerateKeyPair (EC)")
            .1
    }

    /// An RSA key pair generated in the token: sensitive, not extractable.
    pub fn generate_rsa(&self, label: &str, id: &[u8], bits: u64) -> ObjectHandle {
        let s = self.session();
        let [l, i] = label_id(label, id);
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::ModulusBits(bits.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
            l.clone(),
            i.clone(),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            l,
            i,
        ];
        s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
            .expect("C_GenerateKeyPair (RSA)")
            .1
    }

    /// A generic secret (the SAS key) created in the token with C_CreateObject from `key`:
    /// sensitive, not extractable, usable for CKM_SHA256_HMAC.
    pub fn create_hmac_key(&self, label: &str, id: &[u8], key: &[u8]) -> ObjectHandle {
        let s = self.session();
        let [l, i] = label_id(label, id);
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Value(key.to_vec()),
            l,
            i,
        ])
        .expect("C_CreateObject (generic secret)")
    }

    /// Stores a DER certificate in the token next to the key `label`/`id`.
    pub fn store_certificate(&self, label: &str, id: &[u8], der: &[u8]) -> ObjectHandle {
        let s = self.session();
        let [l, i] = label_id(label, id);
        s.create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Value(der.to_vec()),
            Attribute::Subject(cert_subject(der).to_vec()),
            l,
            i,
        ])
        .expect("C_CreateObject (certificate)")
    }

    /// Deletes the private keys labelled `label` (their public keys stay).
    pub fn destroy_private(&self, label: &str) {
        let s = self.session();
        for o in s
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()
        {
            s.destroy_object(o).unwrap();
        }
    }

    /// Deletes every object labelled `label`.
    pub fn destroy(&self, label: &str) {
        let s = self.session();
        for o in s
            .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
            .unwrap()
        {
            s.destroy_object(o).unwrap();
        }
    }
}
