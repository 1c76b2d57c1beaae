//! One PKCS#11 session per key holder: find the token, open a session, log in once, find the
//! object; reopen everything once when the token was removed or reset.

use std::sync::{Arc, Mutex};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::error::{ck_error, is_dead_handle, is_lost_session, object_error};
use super::module::{self, Module};
use super::uri::{ObjectType, Pkcs11Uri};
use crate::error::{Error, ErrorKind, Result};

/// An open session with the key object found in it.
struct Open {
    session: Session,
    slot: Slot,
    key: ObjectHandle,
}

/// A key object in a token, with its own session (opened on first use, reopened after the
/// token went away). Calls are serialised on the session: PKCS#11 allows one operation at a
/// time per session.
pub(crate) struct KeySession {
    module: Arc<Module>,
    uri: Pkcs11Uri,
    class: ObjectClass,
    pin: Option<Zeroizing<String>>,
    state: Mutex<Option<Open>>,
}

fn class_name(c: ObjectClass) -> &'static str {
    match c {
        ObjectClass::PRIVATE_KEY => "private key",
        ObjectClass::PUBLIC_KEY => "public key",
        ObjectClass::SECRET_KEY => "secret key",
        ObjectClass::CERTIFICATE => "certificate",
        _ => "object",
    }
}

fn uri_class(t: ObjectType) -> ObjectClass {
    match t {
        ObjectType::Private => ObjectClass::PRIVATE_KEY,
        ObjectType::Public => ObjectClass::PUBLIC_KEY,
        ObjectType::Cert => ObjectClass::CERTIFICATE,
        ObjectType::SecretKey => ObjectClass::SECRET_KEY,
        ObjectType::Data => ObjectClass::DATA,
    }
}

impl KeySession {
    /// Loads the module, finds the token, logs in and finds the `class` object the URI names.
    pub(crate) fn open(uri: &Pkcs11Uri, class: ObjectClass) -> Result<Self> {
        if let Some(t) = uri.object_type() {
            if uri_class(t) != class {
                return Err(object_error(format!(
                    "the PKCS#11 URI asks for type={} but a {} is needed",
                    t.as_str(),
                    class_name(class)
                )));
            }
        }
        let path = uri.module_path().ok_or_else(|| {
            Error::new(
                ErrorKind::Pkcs11Module,
                format!("no PKCS#11 module for {uri}: add module-path= to the URI or set it"),
            )
        })?;
        let module = module::load(path)?;
        let pin = uri.resolve_pin()?;
        let mut uri = uri.clone();
        uri.pin = None; // one copy of the PIN (zeroized on drop) is enough
        let ks = KeySession {
            module,
            uri,
            class,
            pin,
            state: Mutex::new(None),
        };
        ks.check_library()?;
        let open = ks.connect()?;
        *ks.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(open);
        Ok(ks)
    }

    /// The URI (without the PIN) for messages.
    pub(crate) fn uri(&self) -> &Pkcs11Uri {
        &self.uri
    }

    fn check_library(&self) -> Result<()> {
        let u = &self.uri;
        if u.library_manufacturer.is_none()
            && u.library_description.is_none()
            && u.library_version.is_none()
        {
            return Ok(());
        }
        let info = self
            .module
            .ctx
            .get_library_info()
            .map_err(|e| ck_error(&e, "reading the module information"))?;
        let v = info.library_version();
        let ok = u
            .library_manufacturer
            .as_deref()
            .is_none_or(|m| m == info.manufacturer_id())
            && u.library_description
                .as_deref()
                .is_none_or(|d| d == info.library_description())
            && u.library_version
                .is_none_or(|(a, b)| a == v.major() && b == v.minor());
        if ok {
            Ok(())
        } else {
            Err(object_error(format!(
                "the PKCS#11 module {} is not the library {} asks for (it is '{}' '{}' {}.{})",
                self.module.path.display(),
                self.uri,
                info.manufacturer_id(),
                info.library_description(),
                v.major(),
                v.minor()
            )))
        }
    }

    /// The one slot whose token matches the URI.
    fn find_slot(&self) -> Result<Slot> {
        let ctx = &self.module.ctx;
        let u = &self.uri;
        let slots = match ctx.get_slots_with_token() {
            // Someone in the process called C_Finalize: initialise the module again.
            Err(CkError::Pkcs11(RvError::CryptokiNotInitialized, _)) => {
                self.module.reinitialize()?;
                ctx.get_slots_with_token()
            }
            other => other,
        }
        .map_err(|e| ck_error(&e, "listing the slots"))?;
        let mut found = Vec::new();
        let mut seen = Vec::new();
        for slot in slots {
            if u.slot_id.is_some_and(|id| id != slot.id()) {
                continue;
            }
            if u.slot_description.is_some() || u.slot_manufacturer.is_some() {
                let Ok(si) = ctx.get_slot_info(slot) else {
                    continue;
                };
                if u.slot_description
                    .as_deref()
                    .is_some_and(|d| d != si.slot_description())
                    || u.slot_manufacturer
                        .as_deref()
                        .is_some_and(|m| m != si.manufacturer_id())
                {
                    continue;
                }
            }
            let Ok(ti) = ctx.get_token_info(slot) else {
                continue;
            };
            if !ti.token_initialized() {
                continue;
            }
            seen.push(format!("'{}'", ti.label()));
            let matches = u.token.as_deref().is_none_or(|t| t == ti.label())
                && u.manufacturer
                    .as_deref()
                    .is_none_or(|m| m == ti.manufacturer_id())
                && u.serial.as_deref().is_none_or(|s| s == ti.serial_number())
                && u.model.as_deref().is_none_or(|m| m == ti.model());
            if matches {
                found.push(slot);
            }
        }
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(object_error(format!(
                "no token in PKCS#11 module {} matches {} (tokens present: {})",
                self.module.path.display(),
                self.uri,
                if seen.is_empty() {
                    "none".to_string()
                } else {
                    seen.join(", ")
                }
            ))),
            many => Err(object_error(format!(
                "{} tokens match {} ({}): add token= or serial= to the URI",
                many.len(),
                self.uri,
                seen.join(", ")
            ))),
        }
    }

    fn login(&self, session: &Session, slot: Slot) -> Result<()> {
        let ti = self
            .module
            .ctx
            .get_token_info(slot)
            .map_err(|e| ck_error(&e, "reading the token information"))?;
        let res = match &self.pin {
            Some(pin) => {
                let auth = AuthPin::from(pin.as_str().to_owned());
                session.login(UserType::User, Some(&auth))
            }
            None if ti.protected_authentication_path() => session.login(UserType::User, None),
            None if ti.login_required() => {
                return Err(Error::new(
                    ErrorKind::Pkcs11Pin,
                    format!(
                        "the PKCS#11 token '{}' needs a PIN: add pin-value= or pin-source= to \
                         the URI or set it",
                        ti.label()
                    ),
                ));
            }
            None => return Ok(()),
        };
        match res {
            // Login state is per token and process: another key holder logged in already.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => {
                let mut err = ck_error(&e, "login");
                err.message = format!("{} (token '{}')", err.message, ti.label());
                Err(err)
            }
        }
    }

    /// The template that selects objects of `class` named by the URI.
    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut t = vec![Attribute::Class(class)];
        if let Some(l) = self.uri.object_label() {
            t.push(Attribute::Label(l.to_vec()));
        }
        if let Some(id) = self.uri.object_id() {
            t.push(Attribute::Id(id.to_vec()));
        }
        t
    }

    /// Finds the token, opens a session, logs in and finds the object.
    fn connect(&self) -> Result<Open> {
        let slot = self.find_slot()?;
        let session = self
            .module
            .ctx
            .open_ro_session(slot)
            .map_err(|e| ck_error(&e, "opening a session"))?;
        self.login(&session, slot)?;
        let found = session
            .find_objects(&self.template(self.class))
            .map_err(|e| ck_error(&e, "finding the object"))?;
        match found.as_slice() {
            [key] => Ok(Open {
                session,
                slot,
                key: *key,
            }),
            [] => {
                let mut others = Vec::new();
                for c in [
                    ObjectClass::CERTIFICATE,
                    ObjectClass::PUBLIC_KEY,
                    ObjectClass::PRIVATE_KEY,
                    ObjectClass::SECRET_KEY,
                ] {
                    if c != self.class
                        && session
                            .find_objects(&self.template(c))
                            .is_ok_and(|v| !v.is_empty())
                    {
                        others.push(class_name(c));
                    }
                }
                let detail = if others.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the token holds a {} of that name, but not the {} (was it \
                         generated or imported elsewhere?)",
                        others.join(" and a "),
                        class_name(self.class)
                    )
                };
                Err(object_error(format!(
                    "no {} matches {}{detail}",
                    class_name(self.class),
                    self.uri
                )))
            }
            many => Err(object_error(format!(
                "{} {}s match {}: add id= or object= to the URI to choose one",
                many.len(),
                class_name(self.class),
                self.uri
            ))),
        }
    }

    /// Runs `f` with the session and the key object. If the session or token went away, the
    /// session is reopened (token found again, login, object found again) and `f` runs once
    /// more.
    pub(crate) fn with_key<R>(
        &self,
        what: &str,
        f: impl Fn(&Session, ObjectHandle) -> cryptoki::error::Result<R>,
    ) -> Result<R> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut retried = false;
        loop {
            if state.is_none() {
                *state = Some(self.connect()?);
            }
            let Some(open) = state.as_ref() else {
                return Err(Error::new(ErrorKind::Internal, "PKCS#11 session missing"));
            };
            match f(&open.session, open.key) {
                Ok(r) => return Ok(r),
                Err(e) if !retried && is_lost_session(&e) => {
                    log::warn!(
                        "PKCS#11 {what} with {}: {}; reopening the session",
                        self.uri,
                        ck_error(&e, what).message
                    );
                    retried = true;
                    if let Some(old) = state.take() {
                        if is_dead_handle(&e) {
                            // Nothing left to close: closing would only fail and log an error.
                            std::mem::forget(old.session);
                        } else {
                            let _ = old.session.close();
                        }
                    }
                }
                Err(e) => return Err(ck_error(&e, what)),
            }
        }
    }

    /// Which of `wanted` the token supports for signing (C_GetMechanismInfo for each, since
    /// cryptoki logs an error for every vendor mechanism in a full C_GetMechanismList).
    pub(crate) fn mechanisms(
        &self,
        wanted: &[cryptoki::mechanism::MechanismType],
    ) -> Result<Vec<cryptoki::mechanism::MechanismType>> {
        let slot = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match state.as_ref() {
                Some(open) => open.slot,
                None => self.find_slot()?,
            }
        };
        let mut out = Vec::new();
        for &m in wanted {
            match self.module.ctx.get_mechanism_info(slot, m) {
                Ok(info) if info.sign() => out.push(m),
                Ok(_) | Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {}
                Err(e) => return Err(ck_error(&e, "reading the mechanism information")),
            }
        }
        Ok(out)
    }

    /// Reads `attrs` of the one object of `class` named by the URI in this token, if there is
    /// one (the certificate or the public key next to a private key).
    pub(crate) fn sibling_attributes(
        &self,
        class: ObjectClass,
        attrs: &[AttributeType],
    ) -> Result<Option<Vec<Attribute>>> {
        let template = self.template(class);
        let found = self.with_key("finding an object", |s, _| s.find_objects(&template))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => {
                let one = *one;
                self.with_key("reading attributes", |s, _| s.get_attributes(one, attrs))
                    .map(Some)
            }
            many => Err(object_error(format!(
                "{} {}s match {}: add id= to the URI to choose one",
                many.len(),
                class_name(class),
                self.uri
            ))),
        }
    }
}
