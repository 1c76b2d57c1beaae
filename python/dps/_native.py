"""Low-level ctypes bindings to ``libdps`` (the C ABI of ``include/dps.h``).

Every function used by the package is declared here with its ``argtypes`` and
``restype``: a pointer return left as the default ``int`` would be truncated
to 32 bits and crash on 64-bit systems.

Library search order (:func:`load`):

1. the ``path`` argument;
2. the ``DPS_LIBRARY`` environment variable (a file path);
3. the package's own folder (where ``pip install ./python`` puts it);
4. the repository build tree: ``$CARGO_TARGET_DIR``, then ``<repo>/target``,
   ``release`` before ``debug``;
5. the system search path (``ctypes.util.find_library("dps")``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    c_bool,
    c_char,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional, Union

__all__ = [
    "LibraryNotFoundError",
    "load",
    "library_candidates",
    "EVENT_CALLBACK",
    "LOG_CALLBACK",
    "SIGN_CALLBACK",
    "HMAC_CALLBACK",
    "EXPECTED_MAJOR",
]

#: The C ABI major version this package is written against.
EXPECTED_MAJOR = 0
#: The lowest C ABI version (0xMMmmpp) this package accepts.
MIN_VERSION_NUMBER = 0x000100

if sys.platform == "darwin":
    _LIB_NAMES = ["libdps.dylib"]
elif sys.platform == "win32":
    _LIB_NAMES = ["dps.dll"]
else:
    _LIB_NAMES = ["libdps.so"]

# Opaque handle types.
class _Opaque(ctypes.Structure):
    pass


class dps_config(_Opaque):
    """Opaque ``struct dps_config``."""


class dps_client(_Opaque):
    """Opaque ``struct dps_client``."""


class dps_registration(_Opaque):
    """Opaque ``struct dps_registration``."""


class dps_error(_Opaque):
    """Opaque ``struct dps_error``."""


ConfigP = POINTER(dps_config)
ClientP = POINTER(dps_client)
RegistrationP = POINTER(dps_registration)
ErrorP = POINTER(dps_error)
dps_status = c_uint32

#: ``void (*)(void *userdata, uint32_t event, uint32_t wait_ms, dps_status cause)``
EVENT_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_uint32, dps_status)
#: ``void (*)(void *userdata, uint32_t level, const char *message)``
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p)
#: ``int (*)(void *userdata, uint32_t scheme, const uint8_t *digest, size_t digest_len,
#: uint8_t *sig, size_t sig_cap, size_t *sig_len)``
SIGN_CALLBACK = CFUNCTYPE(
    c_int32, c_void_p, c_uint32, POINTER(c_uint8), c_size_t, POINTER(c_uint8), c_size_t, POINTER(c_size_t)
)
#: ``int (*)(void *userdata, const uint8_t *data, size_t len, uint8_t *mac)``
HMAC_CALLBACK = CFUNCTYPE(c_int32, c_void_p, POINTER(c_uint8), c_size_t, POINTER(c_uint8))

# name: (restype, argtypes)
_SIGNATURES = {
    # version and status
    "dps_version": (c_char_p, []),
    "dps_version_number": (c_uint32, []),
    "dps_status_str": (c_char_p, [dps_status]),
    "dps_status_class": (c_uint32, [dps_status]),
    "dps_derive_device_key": (
        dps_status,
        [c_char_p, c_char_p, POINTER(c_char), c_size_t, POINTER(c_size_t)],
    ),
    "dps_set_log_callback": (dps_status, [LOG_CALLBACK, c_void_p, c_uint32]),
    # config
    "dps_config_new": (dps_status, [c_char_p, c_char_p, POINTER(ConfigP)]),
    "dps_config_free": (None, [ConfigP]),
    "dps_config_last_error": (ErrorP, [ConfigP]),
    "dps_config_set_symmetric_key": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_group_key": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_x509_pem": (dps_status, [ConfigP, c_char_p, c_char_p, c_char_p]),
    "dps_config_set_x509_pem_files": (
        dps_status,
        [ConfigP, c_char_p, c_char_p, c_char_p],
    ),
    "dps_config_set_pkcs12": (
        dps_status,
        [ConfigP, POINTER(c_uint8), c_size_t, c_char_p],
    ),
    "dps_config_set_pkcs12_file": (dps_status, [ConfigP, c_char_p, c_char_p]),
    "dps_config_set_tpm": (dps_status, [ConfigP, c_char_p, c_uint32, c_uint32, c_uint32, c_uint32]),
    "dps_tpm_info": (
        dps_status,
        [c_char_p, c_uint32, c_uint32, c_uint32, POINTER(c_char), c_size_t, POINTER(c_char), c_size_t,
         POINTER(c_size_t), POINTER(ErrorP)],
    ),
    "dps_config_set_x509_signer": (dps_status, [ConfigP, c_char_p, SIGN_CALLBACK, c_void_p]),
    "dps_config_set_hmac_callback": (dps_status, [ConfigP, HMAC_CALLBACK, c_void_p]),
    "dps_config_set_pkcs11_x509": (dps_status, [ConfigP, c_char_p, c_char_p, c_char_p, c_char_p]),
    "dps_config_set_pkcs11_hmac": (dps_status, [ConfigP, c_char_p, c_char_p, c_char_p]),
    "dps_config_set_payload_json": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_endpoint": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_api_version": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_csr": (dps_status, [ConfigP, c_uint32, c_char_p]),
    "dps_config_set_csr_pkcs11": (dps_status, [ConfigP, c_char_p, c_char_p, c_char_p]),
    "dps_config_set_force_registration": (dps_status, [ConfigP, c_bool]),
    "dps_config_add_trusted_ca_pem": (dps_status, [ConfigP, c_char_p]),
    "dps_config_add_trusted_ca_file": (dps_status, [ConfigP, c_char_p]),
    "dps_config_set_default_roots": (dps_status, [ConfigP, c_uint32]),
    "dps_config_set_proxy": (dps_status, [ConfigP, c_char_p]),
    "dps_config_use_proxy_from_env": (dps_status, [ConfigP]),
    "dps_config_set_timeout_ms": (dps_status, [ConfigP, c_uint32]),
    "dps_config_set_request_timeout_ms": (dps_status, [ConfigP, c_uint32]),
    "dps_config_set_sas_ttl_s": (dps_status, [ConfigP, c_uint32]),
    "dps_config_set_backoff_ms": (dps_status, [ConfigP, c_uint32, c_uint32]),
    "dps_config_set_poll_interval_ms": (dps_status, [ConfigP, c_uint32]),
    "dps_config_set_user_agent_suffix": (dps_status, [ConfigP, c_char_p]),
    # client
    "dps_client_new": (dps_status, [ConfigP, POINTER(ClientP), POINTER(ErrorP)]),
    "dps_client_free": (None, [ClientP]),
    "dps_client_register": (dps_status, [ClientP, POINTER(RegistrationP)]),
    "dps_client_step": (
        dps_status,
        [ClientP, POINTER(c_uint32), POINTER(RegistrationP)],
    ),
    "dps_client_lookup": (dps_status, [ClientP, POINTER(RegistrationP)]),
    "dps_client_cancel": (None, [ClientP]),
    "dps_client_set_event_callback": (
        dps_status,
        [ClientP, EVENT_CALLBACK, c_void_p],
    ),
    "dps_client_last_error": (ErrorP, [ClientP]),
    "dps_client_connection_string": (
        dps_status,
        [ClientP, RegistrationP, POINTER(c_char), c_size_t, POINTER(c_size_t)],
    ),
    "dps_register": (dps_status, [ConfigP, POINTER(RegistrationP), POINTER(ErrorP)]),
    # registration
    "dps_registration_status": (c_uint32, [RegistrationP]),
    "dps_registration_registration_id": (c_char_p, [RegistrationP]),
    "dps_registration_assigned_hub": (c_char_p, [RegistrationP]),
    "dps_registration_device_id": (c_char_p, [RegistrationP]),
    "dps_registration_substatus": (c_char_p, [RegistrationP]),
    "dps_registration_created_at": (c_char_p, [RegistrationP]),
    "dps_registration_last_updated_at": (c_char_p, [RegistrationP]),
    "dps_registration_etag": (c_char_p, [RegistrationP]),
    "dps_registration_payload_json": (c_char_p, [RegistrationP]),
    "dps_registration_enrollment_group_id": (c_char_p, [RegistrationP]),
    "dps_registration_error_message": (c_char_p, [RegistrationP]),
    "dps_registration_error_code": (c_int64, [RegistrationP]),
    "dps_registration_issued_certificate_count": (c_size_t, [RegistrationP]),
    "dps_registration_issued_certificate": (c_char_p, [RegistrationP, c_size_t]),
    "dps_registration_issued_chain_pem": (c_char_p, [RegistrationP]),
    "dps_registration_issued_key_pem": (c_char_p, [RegistrationP]),
    "dps_registration_free": (None, [RegistrationP]),
    # error
    "dps_error_status": (dps_status, [ErrorP]),
    "dps_error_message": (c_char_p, [ErrorP]),
    "dps_error_http_status": (c_uint32, [ErrorP]),
    "dps_error_dps_code": (c_int64, [ErrorP]),
    "dps_error_tracking_id": (c_char_p, [ErrorP]),
    "dps_error_retriable": (c_bool, [ErrorP]),
    "dps_error_cause_status": (c_uint32, [ErrorP]),
    "dps_error_free": (None, [ErrorP]),
}


class LibraryNotFoundError(OSError):
    """``libdps`` could not be found or loaded; the message lists where it looked."""


def _repo_root() -> Optional[Path]:
    # python/dps/_native.py -> repository root (only when run from a checkout).
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "Cargo.toml").is_file() and (root / "include" / "dps.h").is_file():
        return root
    return None


def library_candidates() -> List[Path]:
    """The file paths :func:`load` tries after ``path`` and ``DPS_LIBRARY``, in order."""
    out: List[Path] = []
    here = Path(__file__).resolve().parent
    out += [here / n for n in _LIB_NAMES]
    target_dirs: List[Path] = []
    env_target = os.environ.get("CARGO_TARGET_DIR")
    if env_target:
        target_dirs.append(Path(env_target))
    root = _repo_root()
    if root is not None:
        target_dirs.append(root / "target")
    for t in target_dirs:
        for profile in ("release", "debug"):
            out += [t / profile / n for n in _LIB_NAMES]
    return out


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    missing = []
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            f"{lib._name} lacks {', '.join(missing)}: it is not a compatible libdps"
        )
    number = lib.dps_version_number()
    if number >> 16 != EXPECTED_MAJOR or number < MIN_VERSION_NUMBER:
        raise LibraryNotFoundError(
            f"{lib._name} is libdps version {number >> 16}.{(number >> 8) & 0xFF}.{number & 0xFF}; "
            f"this package needs {EXPECTED_MAJOR}.x >= 0.1.0"
        )
    return lib


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _open(p: Path, how: str) -> ctypes.CDLL:
    """``ctypes.CDLL``, with a failure explained as a :class:`LibraryNotFoundError`."""
    try:
        return ctypes.CDLL(str(p))
    except OSError as e:
        raise LibraryNotFoundError(
            f"{p} ({how}) is not a loadable shared library: {e}. "
            "Point DPS_LIBRARY (or library=...) at libdps.so built by `cargo build --release -p dps`"
        ) from None


def load(path: Union[str, "os.PathLike[str]", None] = None) -> ctypes.CDLL:
    """Loads ``libdps`` (once per process) and declares every function's types.

    ``path`` (or ``DPS_LIBRARY``) selects the file explicitly; otherwise the
    locations of :func:`library_candidates` and then the system search path are
    tried. Raises :class:`LibraryNotFoundError` with the list of places tried.
    The first successful load wins; later calls return the same library
    (a different explicit ``path`` is then an error).
    """
    global _lib
    with _lock:
        explicit = path if path is not None else os.environ.get("DPS_LIBRARY") or None
        if _lib is not None:
            if explicit is not None and Path(explicit).resolve() != Path(_lib._name).resolve():
                raise LibraryNotFoundError(
                    f"libdps is already loaded from {_lib._name}; cannot switch to {explicit}"
                )
            return _lib
        if explicit is not None:
            p = Path(explicit)
            how = "given explicitly" if path is not None else "from DPS_LIBRARY"
            if not p.is_file():
                raise LibraryNotFoundError(f"libdps not found at {p} ({how})")
            _lib = _declare(_open(p, how))
            return _lib
        tried = []
        for cand in library_candidates():
            tried.append(str(cand))
            if cand.is_file():
                _lib = _declare(_open(cand, "found in the search path"))
                return _lib
        found = ctypes.util.find_library("dps")
        if found:
            try:
                _lib = _declare(ctypes.CDLL(found))
                return _lib
            except OSError:
                tried.append(found)
        raise LibraryNotFoundError(
            "libdps not found. Set DPS_LIBRARY=/path/to/libdps.so, pass library=..., "
            "install with `pip install ./python`, or build it with "
            "`cargo build --release -p dps`. Tried: " + ", ".join(tried)
        )
