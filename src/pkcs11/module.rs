//! PKCS#11 modules, loaded and initialised once per process.
//!
//! `C_Initialize` may be called once per module per process, and `C_Finalize` would pull the
//! rug from under every other user of the module in the process. So the modules live in a
//! process-wide registry keyed by the module's canonical path: the first key opened from a
//! module loads it and calls `C_Initialize` (with `CKF_OS_LOCKING_OK`, so the module may be
//! used from several threads); later keys, on any thread, share that context. Modules are
//! never finalised or unloaded. A module that another library in the process initialised
//! already (`CKR_CRYPTOKI_ALREADY_INITIALIZED`) is used as is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};

use super::error::ck_error;
use crate::error::{Error, ErrorKind, Result};

/// One loaded and initialised module.
pub(crate) struct Module {
    pub(crate) ctx: Pkcs11,
    pub(crate) path: PathBuf,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The module at `path`, loaded and initialised on first use.
pub(crate) fn load(path: &Path) -> Result<Arc<Module>> {
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        Error::new(
            ErrorKind::Pkcs11Module,
            format!("PKCS#11 module {} not found: {e}", path.display()),
        )
    })?;
    // The lock is held while loading, so two threads never initialise the same module.
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = reg.get(&canonical) {
        return Ok(m.clone());
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| {
        let why = match e {
            CkError::LibraryLoading(e) => format!("it cannot be loaded ({e})"),
            CkError::MissingSymbol(s) => {
                format!("it is not a PKCS#11 module (no {s})")
            }
            other => format!("it is not a usable PKCS#11 module ({other})"),
        };
        Error::new(
            ErrorKind::Pkcs11Module,
            format!("PKCS#11 module {}: {why}", path.display()),
        )
    })?;
    let m = Arc::new(Module {
        ctx,
        path: canonical.clone(),
    });
    m.initialize()?;
    log::debug!("PKCS#11 module {} initialised", canonical.display());
    reg.insert(canonical, m.clone());
    Ok(m)
}

impl Module {
    fn initialize(&self) -> Result<()> {
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(e) => {
                let mut err = ck_error(&e, "initialisation");
                err.kind = ErrorKind::Pkcs11Module;
                err.message = format!("PKCS#11 module {}: {}", self.path.display(), err.message);
                Err(err)
            }
        }
    }

    /// Initialises the module again after another user in the process finalised it
    /// (`CKR_CRYPTOKI_NOT_INITIALIZED`). Serialised with loading by the registry lock.
    pub(crate) fn reinitialize(&self) -> Result<()> {
        let _reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        log::warn!(
            "PKCS#11 module {} was finalised by another user; initialising it again",
            self.path.display()
        );
        self.initialize()
    }
}
