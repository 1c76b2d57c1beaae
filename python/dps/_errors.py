"""The :class:`DpsError` hierarchy: one class per failure class of ``dps_status``."""

from __future__ import annotations

from typing import Dict, Optional, Type

from ._status import Status, StatusClass

__all__ = [
    "DpsError",
    "UsageError",
    "CredentialError",
    "NetworkError",
    "TlsError",
    "ServiceError",
    "UnauthorizedError",
    "NotFoundError",
    "ThrottledError",
    "RegistrationFailedError",
    "EnrollmentDisabledError",
    "DeadlineExceededError",
    "CancelledError",
    "InternalError",
    "error_class",
]


class DpsError(Exception):
    """A failed DPS operation.

    Attributes:
        status: the :class:`~dps.Status` code (``DPS_ERR_*``).
        message: one line, with the HTTP status, DPS errorCode and trackingId
            when known; never contains secrets.
        http_status: the HTTP status of the last response from DPS, or ``None``.
        dps_code: the DPS ``errorCode`` (for example 401002), or ``None``.
        tracking_id: the DPS ``trackingId`` to quote to Azure support, or ``None``.
        retriable: whether trying again later could succeed.
        cause: for a deadline or cancellation, the :class:`~dps.Status` of the
            last failure being retried (for example ``Status.CONNECT``), or ``None``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        http_status: Optional[int] = None,
        dps_code: Optional[int] = None,
        tracking_id: Optional[str] = None,
        retriable: bool = False,
        cause: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.status = Status(status)
        self.message = message
        self.http_status = http_status or None
        self.dps_code = dps_code or None
        self.tracking_id = tracking_id or None
        self.retriable = retriable
        self.cause = Status(cause) if cause else None

    def __str__(self) -> str:
        return f"{self.message} [{self.status.name} {int(self.status)}]"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status.name}, message={self.message!r}, "
            f"http_status={self.http_status}, dps_code={self.dps_code}, "
            f"tracking_id={self.tracking_id!r}, retriable={self.retriable})"
        )


class UsageError(DpsError, ValueError):
    """1xx: a bad argument or configuration (nothing was sent)."""


class CredentialError(DpsError, ValueError):
    """2xx: a key, certificate, PKCS#12 file, password or trusted root is unusable."""


class NetworkError(DpsError, ConnectionError):
    """3xx: DNS, TCP, timeouts, proxy, or a malformed response."""


class TlsError(NetworkError):
    """303-306: the TLS handshake failed (untrusted server, name mismatch, client cert rejected)."""


class IssuedCertificateError(NetworkError):
    """311-314 (experimental certificate issuance): the ``issuedCertificateChain`` DPS sent
    for the CSR was refused before it was handed out: the leaf is not for the CSR's key
    (``ISSUED_KEY_MISMATCH``), not for the registration ID (``ISSUED_NAME_MISMATCH``), the
    chain is broken or out of order (``ISSUED_CHAIN_BROKEN``) or the leaf is not valid now
    (``ISSUED_CERT_NOT_VALID``)."""


class ServiceError(DpsError):
    """4xx (400-450): DPS refused the request; see ``http_status`` and ``dps_code``."""


class UnauthorizedError(ServiceError):
    """401: wrong key, expired token or unknown certificate."""


class NotFoundError(ServiceError):
    """404: unknown ID scope, enrollment or operation."""


class ThrottledError(ServiceError):
    """429: DPS kept throttling the device."""


class RegistrationFailedError(DpsError):
    """460: the registration ended with status ``failed`` (see ``dps_code``)."""


class EnrollmentDisabledError(RegistrationFailedError):
    """461: the enrollment is disabled."""


class DeadlineExceededError(DpsError, TimeoutError):
    """500: the overall deadline passed; the detail holds the last failure."""


class CancelledError(DpsError):
    """501: the operation was cancelled (:meth:`dps.Client.cancel`)."""


class InternalError(DpsError):
    """9xx: a bug in the library (a caught panic or a broken invariant)."""


_EXACT: Dict[int, Type[DpsError]] = {
    Status.UNAUTHORIZED: UnauthorizedError,
    Status.NOT_FOUND: NotFoundError,
    Status.THROTTLED: ThrottledError,
    Status.REGISTRATION_FAILED: RegistrationFailedError,
    Status.DISABLED: EnrollmentDisabledError,
    Status.DEADLINE_EXCEEDED: DeadlineExceededError,
    Status.CANCELLED: CancelledError,
}


_BY_CLASS: Dict[int, Type[DpsError]] = {
    StatusClass.USAGE: UsageError,
    StatusClass.CREDENTIAL: CredentialError,
    StatusClass.NETWORK: NetworkError,
    StatusClass.REFUSED: ServiceError,
    StatusClass.REGISTRATION_FAILED: RegistrationFailedError,
    StatusClass.LIFECYCLE: DpsError,
}

#: The TLS statuses within the network class (their own subclass).
_TLS = {
    Status.TLS_SERVER_UNTRUSTED,
    Status.TLS_SERVER_NAME_MISMATCH,
    Status.TLS_CLIENT_CERT_REJECTED,
    Status.TLS,
}


#: The statuses of a refused issued chain (their own subclass).
_ISSUED = {
    Status.ISSUED_KEY_MISMATCH,
    Status.ISSUED_NAME_MISMATCH,
    Status.ISSUED_CHAIN_BROKEN,
    Status.ISSUED_CERT_NOT_VALID,
}


def error_class(status: int) -> Type[DpsError]:
    """The exception class raised for ``status``: the library's ``dps_status_class`` decides
    the family; a few statuses have their own subclass."""
    from . import _native

    status = int(status)
    if status in _EXACT:
        return _EXACT[status]
    if status in _TLS:
        return TlsError
    if status in _ISSUED:
        return IssuedCertificateError
    cls = _native.load().dps_status_class(status)
    return _BY_CLASS.get(cls, InternalError)
