"""The Pythonic API over the C ABI: :class:`Client`, :func:`register`, :func:`lookup`."""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import math
import os
import threading
from ctypes import byref, c_char, c_size_t, c_uint32, c_uint8
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from ._errors import DpsError, UsageError, error_class
from ._status import Event, RegistrationStatus, Status

__all__ = [
    "Client",
    "Registration",
    "StatusEvent",
    "register",
    "lookup",
    "derive_device_key",
    "status_str",
    "version",
    "set_log_level",
    "load_library",
    "PemSource",
    "SIGNATURE_SCHEMES",
    "TRACE",
]

log = logging.getLogger("dps")

#: A ``logging`` level for the library's TRACE lines (below ``DEBUG``).
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

#: PEM input: ``bytes`` (the PEM text), ``str`` (PEM text if it contains
#: ``-----BEGIN``, else a file path) or an ``os.PathLike`` (a file path).
PemSource = Union[str, bytes, bytearray, "os.PathLike[str]"]

_ROOTS = {"azure": 0, "mozilla": 1, "none": 2}
# dps_config_set_csr kinds (DPS_CSR_*): keys the library generates, and DPS_CSR_PEM.
_CSR_GENERATED = {"p256": 0, "p384": 1, "rsa2048": 3}
_CSR_PEM = 2
_C_TO_PY_LEVEL = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG, 5: TRACE}

# --------------------------------------------------------------------------------------------
# Library, logging bridge


_log_state_lock = threading.Lock()
_log_trampoline: Optional[Any] = None  # the CFUNCTYPE object: must outlive its use by C
_log_level = logging.DEBUG

# An exception raised while a library log line was handed to Python logging (a
# filter or handler that raises) cannot propagate through C. It is kept here,
# keyed by the thread that asked for the C call (worker threads are mapped to
# the thread waiting for them; a library-internal thread maps to None), the
# call in progress is cancelled, and the exception is raised by that call.
_calls_lock = threading.Lock()
_callback_errors: Dict[Optional[int], BaseException] = {}
_worker_owner: Dict[int, int] = {}  # worker thread ident -> the caller's thread ident


def _on_log(_userdata: Any, level: int, message: Optional[bytes]) -> None:
    # Runs inside a C call, possibly on any thread: nothing may propagate into C.
    try:
        py_level = _C_TO_PY_LEVEL.get(level, logging.DEBUG)
        if log.isEnabledFor(py_level):
            text = (message or b"").decode("utf-8", "replace")
            log.log(py_level, "%s", text)
    except BaseException as e:  # noqa: BLE001 - kept and re-raised by the API call
        try:
            _keep_callback_error(e)
        except BaseException:  # noqa: BLE001
            pass


def _keep_callback_error(e: BaseException) -> None:
    me = threading.get_ident()
    with _calls_lock:
        owner: Optional[int] = _worker_owner.get(me)
        if owner is None and not isinstance(threading.current_thread(), threading._DummyThread):
            owner = me  # a short C call made directly by this Python thread
        # (a thread of the library itself: None, raised by the next call)
        _callback_errors.setdefault(owner, e)


def _has_callback_error(owner: int) -> bool:
    with _calls_lock:
        return owner in _callback_errors or None in _callback_errors


def _raise_callback_error(owner: Optional[int] = None) -> None:
    """Raises (once) an exception kept from a log callback for this thread."""
    if owner is None:
        owner = threading.get_ident()
    with _calls_lock:
        e = _callback_errors.pop(owner, None)
        if e is None:
            e = _callback_errors.pop(None, None)
    if e is not None:
        raise e


def _c_level(py_level: Optional[int]) -> int:
    if py_level is None:
        return 0
    if py_level <= TRACE:
        return 5
    if py_level <= logging.DEBUG:
        return 4
    if py_level <= logging.INFO:
        return 3
    if py_level <= logging.WARNING:
        return 2
    return 1


def _install_log_bridge(lib: ctypes.CDLL) -> None:
    global _log_trampoline
    with _log_state_lock:
        if _log_trampoline is None:
            _log_trampoline = _native.LOG_CALLBACK(_on_log)
            atexit.register(_uninstall_log_bridge)
        st = lib.dps_set_log_callback(_log_trampoline, None, _c_level(_log_level))
    if st != Status.OK:
        log.warning("dps: library logs are not routed to Python logging: %s", _status_text(lib, st))


def _uninstall_log_bridge() -> None:
    lib = _native._lib
    if lib is not None:
        lib.dps_set_log_callback(_native.LOG_CALLBACK(), None, 0)


def load_library(path: Union[str, "os.PathLike[str]", None] = None) -> ctypes.CDLL:
    """Loads ``libdps`` (see :mod:`dps._native` for the search order) and routes its
    log lines to the ``logging`` logger ``"dps"``. Called implicitly by every API
    function; call it first to choose the library file explicitly."""
    first = _native._lib is None
    lib = _native.load(path)
    if first:
        _install_log_bridge(lib)
    return lib


def _lib(path: Union[str, "os.PathLike[str]", None] = None) -> ctypes.CDLL:
    if _native._lib is not None and path is None:
        return _native._lib
    return load_library(path)


_LEVEL_NAMES = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def set_log_level(level: Union[int, str, None]) -> None:
    """Sets the most verbose library log level delivered to the ``"dps"`` logger:
    a ``logging`` level (``logging.DEBUG`` by default; :data:`TRACE` for TLS
    detail), its name in any case (``"debug"``, ``"TRACE"``), or ``None`` to
    stop the library from logging. Lines are filtered inside the library
    before they are formatted; the ``"dps"`` logger's own level and handlers
    apply after that. Raises ``TypeError`` for another type and ``ValueError``
    for an unknown name."""
    global _log_level
    if isinstance(level, str):
        if level.strip().lower() not in _LEVEL_NAMES:
            raise ValueError(
                f"unknown log level name {level!r}: use one of "
                f"{', '.join(n for n in _LEVEL_NAMES if n != 'warn')} (any case), a logging level number, or None"
            )
        level = _LEVEL_NAMES[level.strip().lower()]
    elif level is not None and (isinstance(level, bool) or not isinstance(level, int)):
        raise TypeError(
            f"set_log_level() takes a logging level (such as logging.DEBUG or \"debug\") or None, "
            f"not {type(level).__name__}"
        )
    _log_level = level  # type: ignore[assignment]
    lib = _lib()
    _install_log_bridge(lib)


# --------------------------------------------------------------------------------------------
# Small helpers


def _status_text(lib: ctypes.CDLL, status: int) -> str:
    s = lib.dps_status_str(status)
    return s.decode("utf-8", "replace") if s else "unknown status"


def _dec(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "replace")


def _enc(s: Optional[str], what: str) -> Optional[bytes]:
    if s is None:
        return None
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    if "\0" in s:
        raise UsageError(Status.INVALID_ARGUMENT, f"{what} contains a NUL character")
    return s.encode("utf-8")


def _check_seconds(seconds: float, what: str) -> None:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(seconds).__name__}")
    if not math.isfinite(seconds):
        raise UsageError(Status.INVALID_ARGUMENT, f"{what} must be a finite number of seconds, not {seconds!r}")


def _ms(seconds: float, what: str) -> int:
    _check_seconds(seconds, what)
    ms = int(round(seconds * 1000))
    if ms < 0 or ms > 0xFFFFFFFF:
        raise UsageError(Status.INVALID_ARGUMENT, f"{what} is out of range: {seconds!r} s")
    return ms


def _pem(source: PemSource, what: str) -> Tuple[Optional[Path], Optional[bytes]]:
    """(path, None) for a file path, (None, text) for PEM text."""
    if isinstance(source, (bytes, bytearray)):
        return None, bytes(source)
    if isinstance(source, str):
        if "-----BEGIN" in source:
            return None, source.encode("utf-8")
        return Path(source), None
    if isinstance(source, os.PathLike):
        return Path(os.fspath(source)), None
    raise TypeError(f"{what} must be PEM bytes, PEM text or a file path, not {type(source).__name__}")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise error_class(Status.FILE_READ)(
            Status.FILE_READ, f"cannot read the {what} {str(path)!r}: {e.strerror or e}"
        ) from None


def _error_from_ptr(lib: ctypes.CDLL, status: int, err: Any) -> DpsError:
    """Builds the exception from a ``dps_error*`` (may be NULL)."""
    if err:
        status = lib.dps_error_status(err)
        return error_class(status)(
            status,
            _dec(lib.dps_error_message(err)) or _status_text(lib, status),
            http_status=lib.dps_error_http_status(err) or None,
            dps_code=lib.dps_error_dps_code(err) or None,
            tracking_id=_dec(lib.dps_error_tracking_id(err)),
            retriable=bool(lib.dps_error_retriable(err)),
            cause=lib.dps_error_cause_status(err) or None,
        )
    return error_class(status)(status, _status_text(lib, status))


# --------------------------------------------------------------------------------------------
# Public value types


@dataclass(frozen=True)
class Registration:
    """The outcome of a registration or status lookup (immutable).

    ``connection_string`` is the IoT Hub connection string for the device
    (``HostName=…;DeviceId=…;SharedAccessKey=…`` for symmetric keys,
    ``…;x509=true`` for certificates). It contains the device key: it is left
    out of ``repr()`` and comparisons, and out of :meth:`to_dict` unless asked.
    """

    status: RegistrationStatus
    registration_id: Optional[str] = None
    assigned_hub: Optional[str] = None
    device_id: Optional[str] = None
    substatus: Optional[str] = None
    created_at: Optional[str] = None
    last_updated_at: Optional[str] = None
    etag: Optional[str] = None
    payload: Optional[Dict[str, Any]] = field(default=None, hash=False)
    enrollment_group_id: Optional[str] = None
    error_code: Optional[int] = None
    error_message: Optional[str] = None
    issued_certificate_chain: Tuple[str, ...] = ()
    connection_string: Optional[str] = field(default=None, repr=False, compare=False)
    #: With ``csr=`` (experimental): the issued chain as PEM, leaf first, after the
    #: library's checks.
    issued_chain_pem: Optional[str] = None
    #: With a generated ``csr=`` key (``"p256"``, ``"p384"``, ``"rsa2048"``): that private key
    #: as PKCS#8 PEM. A secret: left out of ``repr()``, comparisons and :meth:`to_dict`
    #: unless asked. (The library zeroizes its copy; a Python ``str`` cannot be wiped.)
    issued_key_pem: Optional[str] = field(default=None, repr=False, compare=False)

    def to_dict(self, *, include_secrets: bool = False) -> Dict[str, Any]:
        """The fields as a JSON-ready dict (``status`` as its wire string)."""
        d = asdict(self)
        d["status"] = self.status.value
        d["issued_certificate_chain"] = list(self.issued_certificate_chain)
        if not include_secrets:
            d.pop("connection_string")
            d.pop("issued_key_pem")
        return d


@dataclass(frozen=True)
class StatusEvent:
    """A progress event given to the ``on_status`` callback.

    ``wait`` is the coming wait in seconds for ``ASSIGNING`` and ``RETRYING``
    (else 0); ``cause`` is the failure :class:`Status` for ``RETRYING`` and
    ``FAILED`` (else ``None``).
    """

    event: Event
    wait: float = 0.0
    cause: Optional[Status] = None


StatusCallback = Callable[[StatusEvent], Any]


# --------------------------------------------------------------------------------------------
# Functions


def version() -> str:
    """The library version and build, e.g. ``"dps/0.1.0 (rustls 0.23.46, ring; pkcs12)"``."""
    return _dec(_lib().dps_version()) or ""


def status_str(status: int) -> str:
    """The library's description of a status code (``"unknown status"`` for unknown ones)."""
    return _status_text(_lib(), int(status))


def derive_device_key(group_key: str, registration_id: str) -> str:
    """Derives a device key from an enrollment group key, as DPS does:
    ``base64(HMAC-SHA256(base64decode(group_key), registration_id))``.

    Raises :class:`~dps.CredentialError` (bad key) or :class:`~dps.UsageError`
    (bad registration ID). The result is a secret.
    """
    lib = _lib()
    buf = ctypes.create_string_buffer(64)
    n = c_size_t(0)
    st = lib.dps_derive_device_key(
        _enc(group_key, "group_key"), _enc(registration_id, "registration_id"), buf, len(buf), byref(n)
    )
    if st != Status.OK:
        raise error_class(st)(st, _status_text(lib, st))
    return buf.raw[: n.value].decode("ascii")


def tpm_info(tcti: Optional[str] = None, *, create_missing: bool = False,
             library: Union[str, "os.PathLike[str]", None] = None) -> Tuple[str, str]:
    """``(registration_id, endorsement_key)`` of the TPM at ``tcti`` (default
    ``device:/dev/tpmrm0``): the EK-derived registration ID and the base64 EK
    TPM2B_PUBLIC an Azure portal TPM enrollment takes. ``create_missing`` creates
    the EK and SRK from the standard templates when absent. Needs a ``libdps``
    built with the ``tpm`` feature (else :class:`~dps.UsageError`, UNSUPPORTED).
    """
    lib = _lib(library)
    rid = ctypes.create_string_buffer(64)
    ek = ctypes.create_string_buffer(4096)
    n = c_size_t(0)
    err = _native.ErrorP()
    st = lib.dps_tpm_info(_enc(tcti, "tcti"), 0, 0, 1 if create_missing else 0,
                          rid, len(rid), ek, len(ek), byref(n), byref(err))
    if st != Status.OK:
        try:
            raise _error_from_ptr(lib, st, err)
        finally:
            lib.dps_error_free(err)
    return rid.value.decode("ascii"), ek.raw[: n.value].decode("ascii")


# --------------------------------------------------------------------------------------------
# Configuration


class _Config:
    """Owns a ``dps_config*`` while it is being filled; freed on close."""

    def __init__(self, lib: ctypes.CDLL, id_scope: str, registration_id: Optional[str]) -> None:
        self.lib = lib
        self.ptr = _native.ConfigP()
        st = lib.dps_config_new(_enc(id_scope, "id_scope"), _enc(registration_id, "registration_id"), byref(self.ptr))
        if st != Status.OK:
            what = {Status.INVALID_ID_SCOPE: f"id scope {id_scope!r}", Status.INVALID_REGISTRATION_ID: f"registration id {registration_id!r}"}
            raise error_class(st)(st, f"{_status_text(lib, st)}: {what.get(st, '')}".rstrip(": "))

    def call(self, fn: str, *args: Any) -> None:
        st = getattr(self.lib, fn)(self.ptr, *args)
        _raise_callback_error()
        if st != Status.OK:
            raise _error_from_ptr(self.lib, st, self.lib.dps_config_last_error(self.ptr))

    def close(self) -> None:
        if self.ptr:
            self.lib.dps_config_free(self.ptr)
            self.ptr = _native.ConfigP()

    def __enter__(self) -> "_Config":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _configure(
    cfg: _Config,
    *,
    symmetric_key: Optional[str],
    group_key: Optional[str],
    cert: Optional[PemSource],
    key: Optional[PemSource],
    key_password: Optional[str],
    pkcs12: Union[bytes, str, "os.PathLike[str]", None],
    pkcs12_password: Optional[str],
    payload: Union[Mapping[str, Any], str, None],
    endpoint: Optional[str],
    trusted_roots: Union[PemSource, Sequence[PemSource], None],
    default_roots: Optional[str],
    proxy: Union[str, bool, None],
    timeout: Optional[float],
    request_timeout: Optional[float],
    poll_interval: Optional[float],
    backoff: Optional[Tuple[float, float]],
    sas_ttl: Optional[float],
    api_version: Optional[str],
    force_registration: bool,
    user_agent_suffix: Optional[str],
    tpm: Union[str, bool, None] = None,
    tpm_handles: Optional[Tuple[int, int, int]] = None,
    tpm_create_missing: bool = False,
    external: Sequence[str] = (),
    csr: Optional[PemSource] = None,
    pkcs11_module: Union[str, "os.PathLike[str]", None] = None,
    pkcs11_pin: Optional[str] = None,
) -> None:
    kinds = [n for n, v in (("symmetric_key", symmetric_key), ("group_key", group_key), ("cert", cert), ("pkcs12", pkcs12)) if v is not None]
    if tpm not in (None, False):
        kinds.append("tpm")
    if external:  # signer, hmac, pkcs11_uri, pkcs11_hmac_uri: set by _configure_key
        kinds = [k for k in kinds if k != "cert"] + list(external)
    if len(kinds) > 1:
        raise UsageError(Status.INVALID_ARGUMENT, f"give one credential, not {' and '.join(kinds)}")
    if not kinds:
        raise UsageError(Status.NO_CREDENTIAL, "no credential: give symmetric_key, group_key, cert (+ key), pkcs12, signer, hmac, pkcs11_uri or pkcs11_hmac_uri")
    if key is not None and cert is None and not external:
        raise UsageError(Status.INVALID_ARGUMENT, "key is given without cert")
    lib = cfg.lib

    if tpm not in (None, False):
        # tpm=True: the default TCTI (device:/dev/tpmrm0); tpm="swtpm:host=...,port=...".
        ek_h, srk_h, id_h = tpm_handles or (0, 0, 0)
        tcti = None if tpm is True else _enc(tpm, "tpm")  # type: ignore[arg-type]
        cfg.call("dps_config_set_tpm", tcti, ek_h, srk_h, id_h, 1 if tpm_create_missing else 0)
    elif symmetric_key is not None:
        cfg.call("dps_config_set_symmetric_key", _enc(symmetric_key, "symmetric_key"))
    elif group_key is not None:
        cfg.call("dps_config_set_group_key", _enc(group_key, "group_key"))
    elif cert is not None and not external:
        cpath, ctext = _pem(cert, "cert")
        kpath, ktext = _pem(key if key is not None else cert, "key")
        pw = _enc(key_password, "key_password")
        if cpath is not None and kpath is not None:
            cfg.call("dps_config_set_x509_pem_files", os.fsencode(cpath), os.fsencode(kpath), pw)
        else:
            ctext = ctext if ctext is not None else _read(cpath, "certificate file")  # type: ignore[arg-type]
            ktext = ktext if ktext is not None else _read(kpath, "key file")  # type: ignore[arg-type]
            cfg.call("dps_config_set_x509_pem", ctext, ktext, pw)
    elif pkcs12 is not None:
        pw = _enc(pkcs12_password or "", "pkcs12_password")
        if isinstance(pkcs12, (bytes, bytearray)):
            data = bytes(pkcs12)
            arr = (c_uint8 * len(data)).from_buffer_copy(data)
            cfg.call("dps_config_set_pkcs12", arr, len(data), pw)
        elif isinstance(pkcs12, (str, os.PathLike)):
            cfg.call("dps_config_set_pkcs12_file", os.fsencode(pkcs12), pw)
        else:
            raise TypeError("pkcs12 must be the file's bytes or a file path")

    if endpoint is not None:
        cfg.call("dps_config_set_endpoint", _enc(endpoint, "endpoint"))
    if api_version is not None:
        cfg.call("dps_config_set_api_version", _enc(api_version, "api_version"))
    if force_registration:
        cfg.call("dps_config_set_force_registration", True)
    if payload is not None:
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        cfg.call("dps_config_set_payload_json", _enc(text, "payload"))
    if default_roots is not None:
        if default_roots not in _ROOTS:
            raise UsageError(Status.INVALID_ARGUMENT, f"default_roots must be one of {sorted(_ROOTS)}, not {default_roots!r}")
        cfg.call("dps_config_set_default_roots", _ROOTS[default_roots])
    if trusted_roots is not None:
        roots: Iterable[PemSource]
        if isinstance(trusted_roots, (list, tuple)):
            roots = trusted_roots
        else:
            roots = [trusted_roots]  # type: ignore[list-item]
        for r in roots:
            rpath, rtext = _pem(r, "trusted root")
            if rpath is not None:
                cfg.call("dps_config_add_trusted_ca_file", os.fsencode(rpath))
            else:
                cfg.call("dps_config_add_trusted_ca_pem", rtext)
    if proxy is True or proxy == "env":
        cfg.call("dps_config_use_proxy_from_env")
    elif isinstance(proxy, str):
        cfg.call("dps_config_set_proxy", _enc(proxy, "proxy"))
    elif proxy not in (None, False):
        raise TypeError("proxy must be a URL, 'env', True or None")
    if timeout is not None:
        cfg.call("dps_config_set_timeout_ms", _ms(timeout, "timeout"))
    if request_timeout is not None:
        cfg.call("dps_config_set_request_timeout_ms", _ms(request_timeout, "request_timeout"))
    if poll_interval is not None:
        cfg.call("dps_config_set_poll_interval_ms", _ms(poll_interval, "poll_interval"))
    if backoff is not None:
        if isinstance(backoff, (str, bytes)) or not isinstance(backoff, (tuple, list)) or len(backoff) != 2:
            raise TypeError(
                f"backoff must be a (minimum, maximum) pair of seconds such as (1, 60), not {backoff!r}"
            )
        lo, hi = backoff
        cfg.call("dps_config_set_backoff_ms", _ms(lo, "backoff minimum"), _ms(hi, "backoff maximum"))
    if sas_ttl is not None:
        _check_seconds(sas_ttl, "sas_ttl")
        if not 0 <= sas_ttl <= 0xFFFFFFFF:
            raise UsageError(Status.INVALID_ARGUMENT, f"sas_ttl is out of range: {sas_ttl!r} s")
        cfg.call("dps_config_set_sas_ttl_s", int(sas_ttl))
    if user_agent_suffix is not None:
        cfg.call("dps_config_set_user_agent_suffix", _enc(user_agent_suffix, "user_agent_suffix"))
    if csr is not None:
        _configure_csr(cfg, csr, pkcs11_module, pkcs11_pin)
    del lib


def _configure_csr(
    cfg: _Config,
    csr: PemSource,
    pkcs11_module: Union[str, "os.PathLike[str]", None] = None,
    pkcs11_pin: Optional[str] = None,
) -> None:
    """``csr=``: a key the library generates (``"p256"``, ``"p384"``, ``"rsa2048"``), a PEM
    private key (bytes, PEM text or a file path) or a PKCS#11 token key (``"pkcs11:..."``)."""
    if isinstance(csr, str) and csr in _CSR_GENERATED:
        cfg.call("dps_config_set_csr", _CSR_GENERATED[csr], None)
        return
    if isinstance(csr, str) and csr.startswith("pkcs11:"):
        # A token key (RFC 7512 URI): the token signs the CSR; pkcs11_module / pkcs11_pin apply.
        module = os.fsencode(pkcs11_module) if pkcs11_module is not None else None
        cfg.call("dps_config_set_csr_pkcs11", _enc(csr, "csr"), module, _enc(pkcs11_pin, "pkcs11_pin"))
        return
    if not isinstance(csr, (str, bytes, bytearray, os.PathLike)):
        raise TypeError(
            f"csr must be 'p256', 'p384', 'rsa2048', PEM bytes, PEM text or a key file path, not {type(csr).__name__}"
        )
    path, text = _pem(csr, "csr")
    if text is None:
        text = _read(path, "CSR key file")  # type: ignore[arg-type]
    cfg.call("dps_config_set_csr", _CSR_PEM, text)


# --------------------------------------------------------------------------------------------
# Keys the library never sees: a signer callable, an HMAC callable, PKCS#11 tokens

#: The ``scheme`` a ``signer`` callable receives, and the digest it signs.
SIGNATURE_SCHEMES = {
    1: "ecdsa-p256-sha256",  # 32-byte SHA-256 digest; return DER or raw r||s (64 bytes)
    2: "ecdsa-p384-sha384",  # 48-byte SHA-384 digest; DER or raw r||s (96 bytes)
    3: "rsa-pkcs1-sha256",  # 32-byte SHA-256 digest; RSASSA-PKCS1-v1_5 (DigestInfo added by the signer)
    4: "rsa-pss-sha256",  # 32-byte SHA-256 digest; RSASSA-PSS, MGF1-SHA-256, 32-byte salt
}

#: ``signer(scheme, digest) -> signature``
Signer = Callable[[str, bytes], bytes]
#: ``hmac(data) -> 32-byte HMAC-SHA256``
HmacFunction = Callable[[bytes], bytes]


class _ExternalKey:
    """The C trampolines for a ``signer``/``hmac`` callable, kept alive as long as the client
    (the C config and client call them), and the exception a callable raised, re-raised to the
    caller of the library function that called it."""

    def __init__(self, signer: Optional[Signer], hmac: Optional[HmacFunction]) -> None:
        self._signer = signer
        self._hmac = hmac
        self.error: Optional[BaseException] = None
        self.sign_cb = _native.SIGN_CALLBACK(self._sign) if signer is not None else None
        self.hmac_cb = _native.HMAC_CALLBACK(self._mac) if hmac is not None else None

    def _sign(self, _ud: Any, scheme: int, digest: Any, digest_len: int, sig: Any, cap: int, sig_len: Any) -> int:
        try:
            name = SIGNATURE_SCHEMES.get(scheme)
            if name is None:
                raise ValueError(f"unknown signature scheme {scheme}")
            out = self._signer(name, ctypes.string_at(digest, digest_len))  # type: ignore[misc]
            if not isinstance(out, (bytes, bytearray, memoryview)):
                raise TypeError(f"the signer returned {type(out).__name__}, not bytes")
            out = bytes(out)
            if not 0 < len(out) <= cap:
                raise ValueError(f"the signer returned {len(out)} bytes (1..{cap} allowed)")
            ctypes.memmove(sig, out, len(out))
            sig_len[0] = len(out)
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised to the caller
            self.error = e
            return 1

    def _mac(self, _ud: Any, data: Any, n: int, mac: Any) -> int:
        try:
            out = self._hmac(ctypes.string_at(data, n))  # type: ignore[misc]
            if not isinstance(out, (bytes, bytearray, memoryview)) or len(out) != 32:
                raise ValueError("the hmac callable must return the 32-byte HMAC-SHA256")
            ctypes.memmove(mac, bytes(out), 32)
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised to the caller
            self.error = e
            return 1

    def reraise(self, err: DpsError) -> DpsError:
        """``err`` (the library's DPS_ERR_SIGNER_FAILED); raises the callable's exception instead,
        chained from ``err``, when there is one."""
        e, self.error = self.error, None
        if e is not None and err.status == Status.SIGNER_FAILED:
            raise e from err
        return err


def _configure_key(
    cfg: _Config,
    ext: _ExternalKey,
    *,
    cert: Optional[PemSource],
    key: Optional[PemSource],
    pkcs11_uri: Optional[str],
    pkcs11_hmac_uri: Optional[str],
    pkcs11_module: Union[str, "os.PathLike[str]", None],
    pkcs11_pin: Optional[str],
) -> None:
    """Sets the credential whose key the library never sees (``signer``, ``hmac``, PKCS#11)."""
    if key is not None:
        raise UsageError(Status.INVALID_ARGUMENT, "key does not go with signer or pkcs11_uri: the key is elsewhere")
    chain: Optional[bytes] = None
    if cert is not None:
        cpath, ctext = _pem(cert, "cert")
        chain = ctext if ctext is not None else _read(cpath, "certificate file")  # type: ignore[arg-type]
    module = os.fsencode(pkcs11_module) if pkcs11_module is not None else None
    pin = _enc(pkcs11_pin, "pkcs11_pin")
    try:
        if ext.sign_cb is not None:
            if chain is None:
                raise UsageError(Status.INVALID_ARGUMENT, "signer needs cert (the certificate chain, leaf first)")
            cfg.call("dps_config_set_x509_signer", chain, ext.sign_cb, None)
        elif ext.hmac_cb is not None:
            if cert is not None:
                raise UsageError(Status.INVALID_ARGUMENT, "cert does not go with hmac")
            cfg.call("dps_config_set_hmac_callback", ext.hmac_cb, None)
        elif pkcs11_uri is not None:
            cfg.call("dps_config_set_pkcs11_x509", _enc(pkcs11_uri, "pkcs11_uri"), chain, module, pin)
        elif pkcs11_hmac_uri is not None:
            if cert is not None:
                raise UsageError(Status.INVALID_ARGUMENT, "cert does not go with pkcs11_hmac_uri")
            cfg.call("dps_config_set_pkcs11_hmac", _enc(pkcs11_hmac_uri, "pkcs11_hmac_uri"), module, pin)
    except DpsError as err:
        raise ext.reraise(err) from None
    finally:
        del pin


# --------------------------------------------------------------------------------------------
# Client


class Client:
    """A DPS registration client: one configuration, one keep-alive TLS
    connection, one registration at a time.

    Exactly one credential keyword is required:

    - ``symmetric_key``: an individual enrollment's key (base64);
    - ``group_key``: an enrollment group key (base64); the device key is derived
      from it and ``registration_id``;
    - ``cert`` (+ ``key``, ``key_password``): a PEM certificate chain (leaf
      first) and its private key, as file paths, PEM ``str`` or ``bytes``;
      ``key`` may be left out when ``cert`` also holds the key;
    - ``pkcs12`` (+ ``pkcs12_password``): a ``.pfx``/``.p12`` file path or bytes;
    - ``signer`` (+ ``cert``): a callable ``signer(scheme, digest) -> bytes`` holding the
      certificate's private key (the ``cryptography`` package, a vendor SDK, a secure
      element); ``scheme`` is one of :data:`SIGNATURE_SCHEMES`' values, ``digest`` the
      hash to sign (the library hashes); return DER or raw ``r||s`` for ECDSA, the
      signature for RSA. It is called once during ``Client(...)`` (the signature is checked
      against ``cert``) and for each TLS handshake, on the thread calling the library;
    - ``hmac``: a callable ``hmac(data) -> bytes`` returning the 32-byte HMAC-SHA256 of the
      SAS string-to-sign with the device key;
    - ``pkcs11_uri`` (+ ``cert``, else the certificate stored in the token): the X.509 key
      in a PKCS#11 token, an RFC 7512 URI; ``pkcs11_hmac_uri``: the SAS key as a generic
      secret in a token; both with ``pkcs11_module`` (the module's path) and ``pkcs11_pin``
      unless the URI has ``module-path=`` and ``pin-value=``/``pin-source=``.

    An exception raised by ``signer`` or ``hmac`` fails the library call with
    ``DPS_ERR_SIGNER_FAILED`` and is re-raised to the caller (chained from that
    :class:`~dps.DpsError`). The callables are kept alive as long as the client.

    - ``tpm`` (+ ``tpm_handles`` ``(ek, srk, identity)``, 0 for a default, and
      ``tpm_create_missing``): TPM attestation, ``True`` for the default TCTI
      ``device:/dev/tpmrm0`` or a TCTI string such as ``"swtpm:host=H,port=P"``.

    With an X.509 credential ``registration_id`` may be ``None``: the
    certificate's subject CN is used; with ``tpm``, the EK-derived ID.

    Other options: ``payload`` (a dict sent as the custom allocation payload),
    ``endpoint`` (``host`` or ``host:port``; default
    ``global.azure-devices-provisioning.net``), ``trusted_roots`` (PEM sources
    of extra roots, e.g. the emulator CA), ``default_roots`` (``"azure"``,
    ``"mozilla"`` or ``"none"``), ``proxy`` (``http://[user:pass@]host:port``,
    or ``"env"``/``True`` for ``HTTPS_PROXY``/``NO_PROXY``), ``timeout`` (the
    overall deadline in seconds, default 300), ``request_timeout`` (seconds per
    request, default 30), ``poll_interval``, ``backoff`` (``(min, max)``
    seconds), ``sas_ttl`` (seconds), ``api_version``, ``force_registration``,
    ``user_agent_suffix``, ``on_status`` (a callable receiving
    :class:`StatusEvent`) and ``library`` (the ``libdps`` file to load).

    ``csr`` (experimental certificate issuance, api-version 2025-07-01-preview): ``"p256"``,
    ``"p384"`` or ``"rsa2048"`` (a key generated in memory; ``rsa2048`` needs a library built
    with the ``rsa-keygen`` feature, else :class:`UsageError` ``UNSUPPORTED``), or a PEM
    private key (bytes, PEM text or a file path), or a PKCS#11 token key ``"pkcs11:..."``
    (signed in the token; ``pkcs11_module``/``pkcs11_pin`` apply; needs a library with the
    ``pkcs11`` feature, else ``UNSUPPORTED``). The result carries ``issued_chain_pem``
    and, for a generated key, ``issued_key_pem``; a chain that fails the library's checks
    raises :class:`IssuedCertificateError`.

    Usable as a context manager; :meth:`cancel` works from any thread.
    """

    def __init__(
        self,
        id_scope: str,
        registration_id: Optional[str] = None,
        *,
        symmetric_key: Optional[str] = None,
        group_key: Optional[str] = None,
        cert: Optional[PemSource] = None,
        key: Optional[PemSource] = None,
        key_password: Optional[str] = None,
        pkcs12: Union[bytes, str, "os.PathLike[str]", None] = None,
        pkcs12_password: Optional[str] = None,
        payload: Union[Mapping[str, Any], str, None] = None,
        endpoint: Optional[str] = None,
        trusted_roots: Union[PemSource, Sequence[PemSource], None] = None,
        default_roots: Optional[str] = None,
        proxy: Union[str, bool, None] = None,
        timeout: Optional[float] = None,
        request_timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
        backoff: Optional[Tuple[float, float]] = None,
        sas_ttl: Optional[float] = None,
        api_version: Optional[str] = None,
        force_registration: bool = False,
        user_agent_suffix: Optional[str] = None,
        on_status: Optional[StatusCallback] = None,
        library: Union[str, "os.PathLike[str]", None] = None,
        tpm: Union[str, bool, None] = None,
        tpm_handles: Optional[Tuple[int, int, int]] = None,
        tpm_create_missing: bool = False,
        signer: Optional[Signer] = None,
        hmac: Optional[HmacFunction] = None,
        pkcs11_uri: Optional[str] = None,
        pkcs11_hmac_uri: Optional[str] = None,
        pkcs11_module: Union[str, "os.PathLike[str]", None] = None,
        pkcs11_pin: Optional[str] = None,
        csr: Optional[PemSource] = None,
    ) -> None:
        self._h = _native.ClientP()
        self._lib = _lib(library)
        self._op_lock = threading.RLock()
        self._handle_lock = threading.Lock()  # cancel() vs. free
        self._busy_thread: Optional[int] = None  # the thread inside register()/lookup()
        self._wake = threading.Event()
        self._worker: Optional[threading.Thread] = None  # the thread inside a blocking C call
        self._call_box: List[Any] = []
        self._events: List[Tuple[int, int, int]] = []  # queued by C, delivered by the caller
        self._on_status: Optional[StatusCallback] = None
        self._trampoline: Optional[Any] = None  # kept alive while C holds it
        # signer/hmac trampolines: kept alive as long as this object (the C client calls them).
        self._key = _ExternalKey(signer, hmac)
        external = [n for n, v in (("signer", signer), ("hmac", hmac), ("pkcs11_uri", pkcs11_uri), ("pkcs11_hmac_uri", pkcs11_hmac_uri)) if v is not None]
        csr_token = isinstance(csr, str) and csr.startswith("pkcs11:")
        if (pkcs11_module is not None or pkcs11_pin is not None) and pkcs11_uri is None and pkcs11_hmac_uri is None and not csr_token:
            raise UsageError(Status.INVALID_ARGUMENT, "pkcs11_module and pkcs11_pin need pkcs11_uri, pkcs11_hmac_uri or csr='pkcs11:...'")
        with _Config(self._lib, id_scope, registration_id) as cfg:
            _configure(
                cfg,
                symmetric_key=symmetric_key,
                group_key=group_key,
                cert=cert,
                key=key,
                key_password=key_password,
                pkcs12=pkcs12,
                pkcs12_password=pkcs12_password,
                payload=payload,
                endpoint=endpoint,
                trusted_roots=trusted_roots,
                default_roots=default_roots,
                proxy=proxy,
                timeout=timeout,
                request_timeout=request_timeout,
                poll_interval=poll_interval,
                backoff=backoff,
                sas_ttl=sas_ttl,
                api_version=api_version,
                force_registration=force_registration,
                user_agent_suffix=user_agent_suffix,
                tpm=tpm,
                tpm_handles=tpm_handles,
                tpm_create_missing=tpm_create_missing,
                external=external,
                csr=csr,
                pkcs11_module=pkcs11_module,
                pkcs11_pin=pkcs11_pin,
            )
            if external:
                _configure_key(
                    cfg,
                    self._key,
                    cert=cert,
                    key=key,
                    pkcs11_uri=pkcs11_uri,
                    pkcs11_hmac_uri=pkcs11_hmac_uri,
                    pkcs11_module=pkcs11_module,
                    pkcs11_pin=pkcs11_pin,
                )
            err = _native.ErrorP()
            h = _native.ClientP()
            st = self._lib.dps_client_new(cfg.ptr, byref(h), byref(err))
            if st == Status.OK:
                self._h = h
            _raise_callback_error()
            if st != Status.OK:
                try:
                    raise _error_from_ptr(self._lib, st, err)
                finally:
                    self._lib.dps_error_free(err)
            self._h = h
        self.id_scope = id_scope
        self.set_status_callback(on_status)

    def __repr__(self) -> str:
        state = "open" if self._h else "closed"
        return f"<dps.Client id_scope={getattr(self, 'id_scope', '?')!r} {state}>"

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Cancels any operation in progress and frees the client. Idempotent."""
        if not self._h:
            return
        if self._busy_thread == threading.get_ident():
            raise UsageError(Status.INVALID_STATE, "close() called from the status callback; call cancel() instead")
        worker = self._worker
        if worker is threading.current_thread():
            raise UsageError(Status.INVALID_STATE, "close() called from a log handler during a library call")
        self.cancel()
        if worker is not None and worker.is_alive():
            worker.join()  # a cancelled C call returns within milliseconds
        with self._op_lock, self._handle_lock:
            if self._h:
                self._lib.dps_client_free(self._h)
                self._h = _native.ClientP()
                self._trampoline = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _check(self) -> None:
        if not self._h:
            raise UsageError(Status.INVALID_STATE, "the client is closed")

    # -- callback ----------------------------------------------------------------------------

    def set_status_callback(self, callback: Optional[StatusCallback]) -> None:
        """Sets (or clears, with ``None``) the progress callback. It runs on the
        thread that called :meth:`register`, between the library's steps (the
        library queues the events; they are delivered when its step returns,
        before any wait). An exception it raises, ``KeyboardInterrupt``
        included, ends the registration (the library is cancelled) and is
        raised from :meth:`register`."""
        with self._op_lock:
            self._check()
            if callback is None:
                st = self._lib.dps_client_set_event_callback(self._h, _native.EVENT_CALLBACK(), None)
                self._trampoline = None
            else:
                if not callable(callback):
                    raise TypeError("the status callback must be callable")
                tramp = _native.EVENT_CALLBACK(self._on_event)
                st = self._lib.dps_client_set_event_callback(self._h, tramp, None)
                self._trampoline = tramp
            self._on_status = callback
            if st != Status.OK:
                raise error_class(st)(st, _status_text(self._lib, st))

    def _on_event(self, _userdata: Any, event: int, wait_ms: int, cause: int) -> None:
        # Runs inside a C call, on the worker thread: only queue the event.
        try:
            self._events.append((event, wait_ms, cause))
        except BaseException:  # noqa: BLE001 - nothing may propagate into C
            pass

    def _deliver_events(self) -> None:
        """Calls the status callback with the queued events, on this thread;
        its exceptions propagate."""
        while self._events:
            event, wait_ms, cause = self._events.pop(0)
            cb = self._on_status
            if cb is None:
                continue
            try:
                ev = StatusEvent(Event(event), wait_ms / 1000.0, Status(cause) if cause else None)
            except ValueError:
                continue  # an event of a newer library
            cb(ev)

    def _call(self, fn: Any, *args: Any) -> int:
        """Runs a blocking C call on a worker thread while this thread waits
        in slices of 20 ms, so that ``KeyboardInterrupt`` (or any exception a
        signal handler raises) is raised here at once, whatever the library is
        doing: the client is then cancelled (a blocked read, connect or wait
        ends within milliseconds), the worker is awaited, and the exception
        propagates. An exception kept from the log callback cancels the call
        too and is raised when it returns."""
        owner = threading.get_ident()
        done = threading.Event()
        box: List[Any] = []
        self._call_box = box  # what the call returned, once it has (read by register's cleanup)

        def run() -> None:
            me = threading.get_ident()
            with _calls_lock:
                _worker_owner[me] = owner
            try:
                box.append(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box.append(e)
            finally:
                with _calls_lock:
                    _worker_owner.pop(me, None)
                done.set()

        worker = threading.Thread(target=run, name="dps-call", daemon=True)
        self._worker = worker
        worker.start()
        cancelled = False
        try:
            while not done.wait(0.02):
                if not cancelled and _has_callback_error(owner):
                    cancelled = True
                    self._lib.dps_client_cancel(self._h)
        except BaseException:
            self._lib.dps_client_cancel(self._h)
            done.wait(5.0)
            raise
        _raise_callback_error(owner)
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return int(result)

    # -- operations --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancels the registration or lookup in progress: it raises
        :class:`~dps.CancelledError` promptly. A cancel made while nothing is in
        progress is kept and ends the next registration or lookup at once (a
        watchdog racing the start never loses it); each cancel ends one call.
        Safe from any thread and from the status callback."""
        with self._handle_lock:
            if self._h:
                self._lib.dps_client_cancel(self._h)
        self._wake.set()

    def register(self) -> Registration:
        """Registers the device and blocks until DPS assigns it (retrying
        throttling, server and network errors within the deadline).

        ``KeyboardInterrupt`` (Ctrl-C) ends it within about 100 ms whatever
        the library is doing (a wait, a connect, a blocked read): the library
        call runs on a worker thread and this thread waits for it in short
        slices; the registration is cancelled and ``KeyboardInterrupt``
        propagates. :meth:`cancel` from another thread raises
        :class:`~dps.CancelledError`. An exception raised by the status
        callback or by a ``logging`` handler or filter of the ``"dps"`` logger
        ends the registration and is raised here. Other failures raise a
        :class:`~dps.DpsError` subclass.
        """
        lib = self._lib
        with self._op_lock:
            self._check()
            self._wake.clear()
            self._events.clear()
            self._busy_thread = threading.get_ident()
            out = _native.RegistrationP()
            wait = c_uint32(0)
            finished = False
            try:
                while True:
                    st = self._call(lib.dps_client_step, self._h, byref(wait), byref(out))
                    if st == Status.PENDING:
                        self._deliver_events()
                        if wait.value:
                            self._wake.wait(wait.value / 1000.0)
                        continue
                    finished = True
                    try:
                        self._deliver_events()
                    except BaseException:
                        if st == Status.OK:
                            lib.dps_registration_free(out)
                        raise
                    if st == Status.OK:
                        return self._take(out)
                    raise self._last_error(st)
            finally:
                self._busy_thread = None
                self._events.clear()
                if not finished:
                    # Interrupted in Python (KeyboardInterrupt, a callback's exception...).
                    self._end_interrupted_run(wait, out)

    def _end_interrupted_run(self, wait: Any, out: Any) -> None:
        """Ends a registration interrupted in Python, so that the client is
        reusable: cancels it, waits for a step still running on the worker,
        and if the run is still in progress takes the (immediate) cancelled
        step that ends it."""
        lib = self._lib
        lib.dps_client_cancel(self._h)
        worker = self._worker
        if worker is not None and worker.is_alive():
            worker.join(10.0)  # a cancelled call returns within milliseconds
            if worker.is_alive():
                return  # never seen; the run ends with its step, cancelled
        box = self._call_box
        last = box[0] if box else None
        if last == Status.OK:
            lib.dps_registration_free(out)  # the step ended just as it was interrupted
        elif last == Status.PENDING:
            out2 = _native.RegistrationP()
            if lib.dps_client_step(self._h, byref(wait), byref(out2)) == Status.OK:
                lib.dps_registration_free(out2)
        with _calls_lock:
            _callback_errors.pop(threading.get_ident(), None)

    def lookup(self) -> Registration:
        """Asks DPS for the device's current registration (Device Registration
        Status Lookup, not billable) without re-registering. The result's
        ``status`` may be ``FAILED`` or ``DISABLED``. Blocking; ``KeyboardInterrupt``
        and :meth:`cancel` interrupt it as they do :meth:`register`."""
        lib = self._lib
        with self._op_lock:
            self._check()
            out = _native.RegistrationP()
            self._busy_thread = threading.get_ident()
            try:
                st = self._call(lib.dps_client_lookup, self._h, byref(out))
            finally:
                self._busy_thread = None
                self._events.clear()
            if st != Status.OK:
                raise self._last_error(st)
            return self._take(out)

    def _last_error(self, st: int) -> DpsError:
        err = _error_from_ptr(self._lib, st, self._lib.dps_client_last_error(self._h))
        return self._key.reraise(err)

    def _take(self, reg: Any) -> Registration:
        """Copies a ``dps_registration*`` into a :class:`Registration` and frees it."""
        lib = self._lib
        try:
            payload_text = _dec(lib.dps_registration_payload_json(reg))
            payload = json.loads(payload_text) if payload_text else None
            n = lib.dps_registration_issued_certificate_count(reg)
            chain = tuple(_dec(lib.dps_registration_issued_certificate(reg, i)) or "" for i in range(n))
            code = lib.dps_registration_error_code(reg)
            return Registration(
                status=RegistrationStatus.from_code(lib.dps_registration_status(reg)),
                registration_id=_dec(lib.dps_registration_registration_id(reg)),
                assigned_hub=_dec(lib.dps_registration_assigned_hub(reg)),
                device_id=_dec(lib.dps_registration_device_id(reg)),
                substatus=_dec(lib.dps_registration_substatus(reg)),
                created_at=_dec(lib.dps_registration_created_at(reg)),
                last_updated_at=_dec(lib.dps_registration_last_updated_at(reg)),
                etag=_dec(lib.dps_registration_etag(reg)),
                payload=payload,
                enrollment_group_id=_dec(lib.dps_registration_enrollment_group_id(reg)),
                error_code=code or None,
                error_message=_dec(lib.dps_registration_error_message(reg)),
                issued_certificate_chain=chain,
                connection_string=self._connection_string(reg),
                issued_chain_pem=_dec(lib.dps_registration_issued_chain_pem(reg)),
                issued_key_pem=_dec(lib.dps_registration_issued_key_pem(reg)),
            )
        finally:
            lib.dps_registration_free(reg)

    def _connection_string(self, reg: Any) -> Optional[str]:
        lib = self._lib
        n = c_size_t(0)
        buf = (c_char * 512)()
        st = lib.dps_client_connection_string(self._h, reg, buf, len(buf), byref(n))
        if st == Status.BUFFER_TOO_SMALL:
            buf = (c_char * (n.value + 1))()
            st = lib.dps_client_connection_string(self._h, reg, buf, len(buf), byref(n))
        if st != Status.OK:
            return None  # no hub or device ID (a failed or disabled lookup result)
        try:
            return buf.raw[: n.value].decode("utf-8")
        finally:
            ctypes.memset(buf, 0, len(buf))


def register(id_scope: str, registration_id: Optional[str] = None, **options: Any) -> Registration:
    """Registers a device in one call and returns its :class:`Registration`.

    Takes the arguments of :class:`Client` (one credential keyword, and
    ``payload``, ``endpoint``, ``trusted_roots``, ``proxy``, ``timeout``,
    ``on_status``, ...). Raises a :class:`~dps.DpsError` subclass carrying the
    status, HTTP status, DPS errorCode and trackingId.

    Example::

        reg = dps.register("0ne00000001", "dev-sym",
                           symmetric_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                           endpoint="localhost:8443", trusted_roots="/tmp/dps-ca.pem")
        print(reg.assigned_hub, reg.device_id)
    """
    with Client(id_scope, registration_id, **options) as c:
        return c.register()


def lookup(id_scope: str, registration_id: Optional[str] = None, **options: Any) -> Registration:
    """Looks up a device's current registration without re-registering
    (arguments as :func:`register`)."""
    with Client(id_scope, registration_id, **options) as c:
        return c.lookup()
