"""Status codes of the C ABI (``dps_status``), as a Python :class:`enum.IntEnum`."""

from __future__ import annotations

import enum

__all__ = ["Status", "StatusClass", "Event", "RegistrationStatus"]


class StatusClass(enum.IntEnum):
    """The class of a status (``DPS_CLASS_*``, from ``dps_status_class``): what to do about it."""

    NONE = 0
    """``OK`` and ``PENDING``: not a failure."""
    USAGE = 1
    """1xx: a bad argument or configuration; nothing was sent."""
    CREDENTIAL = 2
    """2xx: a key, certificate, password, token or trusted root is unusable."""
    NETWORK = 3
    """3xx: DNS, TCP, TLS, proxy, or a malformed or oversized answer."""
    REFUSED = 4
    """400-459: DPS refused the request."""
    REGISTRATION_FAILED = 5
    """460-499: the registration ended ``failed``, or the enrollment is disabled."""
    LIFECYCLE = 6
    """5xx: the deadline passed or the operation was cancelled."""
    INTERNAL = 9
    """9xx and unknown codes: internal failure."""


class Status(enum.IntEnum):
    """A ``dps_status`` code (``DPS_OK``, ``DPS_ERR_*``). Numbers are stable.

    Groups: 1xx usage, 2xx credentials and trust, 3xx network and TLS, 4xx
    refusals by DPS, 5xx deadline and cancel, 9xx internal.
    """

    OK = 0
    """Success."""

    PENDING = 1
    """Not an error: the step API is not finished; call again after ``*wait_ms``."""

    NULL_ARGUMENT = 100
    """A required pointer argument was NULL."""

    INVALID_UTF8 = 101
    """A string argument is not valid UTF-8."""

    INVALID_ARGUMENT = 102
    """An argument is empty, out of range or malformed."""

    BUFFER_TOO_SMALL = 103
    """The output buffer is too small; ``*out_len`` holds the needed length (without the NUL)."""

    INVALID_ID_SCOPE = 104
    """The ID scope is not 1-64 ASCII letters and digits."""

    INVALID_REGISTRATION_ID = 105
    """The registration ID breaks the DPS rules (1-128 of ``A-Z a-z 0-9 . _ : -``, alphanumeric first, alphanumeric or ``-`` last)."""

    INVALID_PAYLOAD = 106
    """The payload is not a JSON object."""

    INVALID_ENDPOINT = 107
    """The endpoint is not ``host`` or ``host:port``."""

    NO_CREDENTIAL = 108
    """No credential was configured."""

    INVALID_STATE = 109
    """The call is not valid in the object's current state."""

    UNSUPPORTED = 110
    """The feature is not part of this build (for example PKCS#12)."""

    INVALID_PROXY = 111
    """The proxy URL is malformed."""

    PAYLOAD_TOO_LARGE = 112
    """The payload is larger than DPS accepts in one message (96 KB)."""

    INVALID_KEY = 200
    """The symmetric key is not base64 of 16-64 bytes."""

    INVALID_CERTIFICATE = 201
    """The certificate (chain) could not be parsed, or its CN differs from the registration ID."""

    INVALID_PRIVATE_KEY = 202
    """The private key could not be parsed or is of an unsupported type."""

    KEY_MISMATCH = 203
    """The private key does not belong to the leaf certificate."""

    KEY_PASSWORD = 204
    """The private key is encrypted and the password is missing or wrong."""

    INVALID_PKCS12 = 205
    """The PKCS#12 file could not be parsed."""

    PKCS12_PASSWORD = 206
    """The PKCS#12 password is wrong."""

    INVALID_TRUST_ANCHOR = 207
    """A trusted root certificate could not be parsed, or no root is left."""

    FILE_READ = 208
    """A file could not be read."""

    SIGNER_FAILED = 209
    """An external key (signing or HMAC callback, PKCS#11 token, TPM) failed or returned an unusable result."""

    PKCS11_PIN = 210
    """The PKCS#11 PIN is missing, wrong or locked."""

    PKCS11_OBJECT = 211
    """The PKCS#11 URI matches no usable object or token, or more than one."""

    PKCS11_MODULE = 212
    """The PKCS#11 module is missing, is not a PKCS#11 module, or failed to initialise."""
    TPM = 220
    """A TPM command failed, the TPM is unreachable, or a key it should hold is missing."""

    TPM_ACTIVATION_FAILED = 221
    """The TPM refused the DPS activation blob (not made for this TPM's EK and SRK, or altered)."""

    DNS = 300
    """The host name could not be resolved."""

    CONNECT = 301
    """The TCP connection could not be established."""

    TIMEOUT = 302
    """A request timed out."""

    TLS_SERVER_UNTRUSTED = 303
    """The server certificate is not trusted (unknown issuer, expired, ...)."""

    TLS_SERVER_NAME_MISMATCH = 304
    """The server certificate is not valid for the endpoint's host name."""

    TLS_CLIENT_CERT_REJECTED = 305
    """The server rejected the client certificate in the TLS handshake."""

    TLS = 306
    """Another TLS failure."""

    CONNECTION_LOST = 307
    """The connection closed or reset before a complete response."""

    PROXY = 308
    """The HTTP proxy failed or refused the CONNECT tunnel."""

    RESPONSE_TOO_LARGE = 309
    """The server response exceeded the size limit (128 KiB body, 16 KiB head)."""

    MALFORMED_RESPONSE = 310
    """The server response is not valid HTTP or not the JSON DPS sends."""

    ISSUED_KEY_MISMATCH = 311
    """Certificate issuance (experimental): the issued leaf certifies another key than the CSR's."""

    ISSUED_NAME_MISMATCH = 312
    """Certificate issuance: the issued leaf's subject CN is not the registration ID."""

    ISSUED_CHAIN_BROKEN = 313
    """Certificate issuance: the issued chain is missing, malformed, out of order or not signed."""

    ISSUED_CERT_NOT_VALID = 314
    """Certificate issuance: the issued leaf is expired or not yet valid."""

    BAD_REQUEST = 400
    """DPS answered 400 Bad Request."""

    UNAUTHORIZED = 401
    """DPS answered 401: wrong key, expired token or unknown certificate."""

    FORBIDDEN = 403
    """DPS answered 403."""

    NOT_FOUND = 404
    """DPS answered 404: unknown ID scope, enrollment or operation."""

    CONFLICT = 409
    """DPS answered 409: a concurrent registration of the same device."""

    UNSUPPORTED_MEDIA_TYPE = 415
    """DPS answered 415: the body was not JSON."""

    THROTTLED = 429
    """DPS answered 429 and retrying stopped."""

    SERVICE = 450
    """DPS answered another error status (5xx after retries, or an unexpected code)."""

    REGISTRATION_FAILED = 460
    """The registration ended with status ``failed``; see the DPS error code."""

    DISABLED = 461
    """The enrollment is disabled."""

    DEADLINE_EXCEEDED = 500
    """The overall deadline passed; the error detail holds the last failure."""

    CANCELLED = 501
    """The registration was cancelled with ``dps_client_cancel``."""

    PANIC = 900
    """A Rust panic was caught at the C boundary; the client is unusable and must be freed."""

    INTERNAL = 901
    """An internal invariant failed."""

    @classmethod
    def _missing_(cls, value: object) -> "Status":
        # Unknown codes (a newer library) become pseudo-members instead of failing.
        if isinstance(value, int):
            m = int.__new__(cls, value)
            m._name_ = f"UNKNOWN_{value}"
            m._value_ = value
            return m
        return None  # type: ignore[return-value]


class Event(enum.IntEnum):
    """A progress event (``DPS_EVENT_*``) passed to the status callback."""

    REGISTERING = 1
    """The register request (PUT) is about to be sent."""
    ASSIGNING = 2
    """DPS is assigning; the next poll is in ``wait_ms``."""
    RETRYING = 3
    """A transient failure (``cause``); retrying in ``wait_ms``."""
    ASSIGNED = 4
    """The device is assigned."""
    FAILED = 5
    """The registration failed with status ``cause``."""


class RegistrationStatus(str, enum.Enum):
    """The DPS registration status (``DPS_REGISTRATION_*``), valued by its wire spelling."""

    UNASSIGNED = "unassigned"
    ASSIGNING = "assigning"
    ASSIGNED = "assigned"
    FAILED = "failed"
    DISABLED = "disabled"

    @classmethod
    def from_code(cls, code: int) -> "RegistrationStatus":
        """Maps a ``DPS_REGISTRATION_*`` number to the enum."""
        return [cls.UNASSIGNED, cls.ASSIGNING, cls.ASSIGNED, cls.FAILED, cls.DISABLED][code] if 0 <= code <= 4 else cls.UNASSIGNED

    def __str__(self) -> str:
        return self.value
