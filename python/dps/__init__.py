"""Azure IoT Hub Device Provisioning Service (DPS) device client.

A pure-Python package over the ``libdps`` C ABI (loaded with :mod:`ctypes`)::

    import dps

    reg = dps.register(
        "0ne00000001", "dev-sym",
        symmetric_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        endpoint="localhost:8443", trusted_roots="/tmp/dps-ca.pem",
    )
    print(reg.assigned_hub, reg.device_id, reg.payload)

Failures raise :class:`DpsError` subclasses with ``status``, ``http_status``,
``dps_code``, ``tracking_id`` and ``message``. Library log lines go to the
``logging`` logger ``"dps"``.
"""

from ._api import (
    TRACE,
    Client,
    SIGNATURE_SCHEMES,
    PemSource,
    Registration,
    StatusEvent,
    derive_device_key,
    tpm_info,
    load_library,
    lookup,
    register,
    set_log_level,
    status_str,
    version,
)
from ._errors import (
    CancelledError,
    CredentialError,
    DeadlineExceededError,
    DpsError,
    EnrollmentDisabledError,
    InternalError,
    IssuedCertificateError,
    NetworkError,
    NotFoundError,
    RegistrationFailedError,
    ServiceError,
    ThrottledError,
    TlsError,
    UnauthorizedError,
    UsageError,
    error_class,
)
from ._native import LibraryNotFoundError
from ._status import Event, RegistrationStatus, Status, StatusClass

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Registration",
    "StatusEvent",
    "register",
    "lookup",
    "derive_device_key",
    "tpm_info",
    "status_str",
    "version",
    "set_log_level",
    "load_library",
    "PemSource",
    "SIGNATURE_SCHEMES",
    "TRACE",
    "Status",
    "StatusClass",
    "Event",
    "RegistrationStatus",
    "DpsError",
    "UsageError",
    "CredentialError",
    "NetworkError",
    "TlsError",
    "IssuedCertificateError",
    "ServiceError",
    "UnauthorizedError",
    "NotFoundError",
    "ThrottledError",
    "RegistrationFailedError",
    "EnrollmentDisabledError",
    "DeadlineExceededError",
    "CancelledError",
    "InternalError",
    "LibraryNotFoundError",
    "error_class",
]
