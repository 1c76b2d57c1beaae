"""The Python package against dps-emulator: every credential kind, failures,
the status callback, logging, cancellation, proxy, library loading."""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import dps
from conftest import FIXTURES, GROUP_KEY, KEY, OTHER_KEY, REPO, SCOPE, Emu

V1_REG_ID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
V1_DEVICE_KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="


# ---------------------------------------------------------------------------------------------
# Credential kinds


def test_symmetric_key(emu: Emu) -> None:
    reg = dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts())
    assert reg.status is dps.RegistrationStatus.ASSIGNED
    assert reg.assigned_hub == "hub-a.azure-devices.net"
    assert reg.device_id == "dev-sym-device"
    assert reg.registration_id == "dev-sym"
    assert reg.substatus in ("initialAssignment",)
    assert reg.created_at and reg.last_updated_at and reg.etag
    assert reg.payload is None and reg.enrollment_group_id is None
    assert reg.connection_string == (
        f"HostName=hub-a.azure-devices.net;DeviceId=dev-sym-device;SharedAccessKey={KEY}"
    )
    # Frozen, and the secret stays out of repr() and to_dict().
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.device_id = "x"  # type: ignore[misc]
    assert KEY not in repr(reg)
    assert "connection_string" not in reg.to_dict()
    assert reg.to_dict()["status"] == "assigned"
    assert reg.to_dict(include_secrets=True)["connection_string"] == reg.connection_string


def test_group_key_with_payload_dict(emu: Emu) -> None:
    payload = {"model": "x1", "fw": [1, 2], "nested": {"ok": True}}
    reg = dps.register(SCOPE, V1_REG_ID, group_key=GROUP_KEY, payload=payload, **emu.opts())
    assert reg.device_id == V1_REG_ID
    assert reg.payload == payload
    assert reg.enrollment_group_id == "sym-group"
    assert reg.connection_string is not None
    assert reg.connection_string.endswith(f";SharedAccessKey={V1_DEVICE_KEY}")


def test_enrollment_payload_is_returned_as_dict(emu: Emu) -> None:
    reg = dps.register(SCOPE, "dev-payload", symmetric_key=KEY, **emu.opts())
    assert reg.payload == {"firmware": "1.2.3", "site": "lab"}


def test_x509_pem_files_registration_id_from_cn(emu: Emu) -> None:
    reg = dps.register(
        SCOPE,
        cert=FIXTURES / "p256.cert.pem",
        key=str(FIXTURES / "p256.key.pem"),
        **emu.opts(),
    )
    assert reg.device_id == "x509-p256-device"
    assert reg.connection_string == f"HostName={reg.assigned_hub};DeviceId=x509-p256-device;x509=true"


def test_x509_pem_bytes_and_text(emu: Emu) -> None:
    cert = (FIXTURES / "p256.cert.pem").read_bytes()
    key = (FIXTURES / "p256.sec1.key.pem").read_text()
    reg = dps.register(SCOPE, "x509-p256-device", cert=cert, key=key, **emu.opts(trusted_roots=emu.ca.read_bytes()))
    assert reg.device_id == "x509-p256-device"


def test_x509_encrypted_key_with_password(emu: Emu) -> None:
    try:
        reg = dps.register(
            SCOPE,
            cert=FIXTURES / "p256.cert.pem",
            key=FIXTURES / "p256.enc.key.pem",
            key_password="fixture-pass",
            **emu.opts(),
        )
    except dps.CredentialError as e:
        if "without the encrypted-keys feature" in e.message:
            pytest.skip(f"{dps.version()} was built without the encrypted-keys feature")
        raise
    assert reg.device_id == "x509-p256-device"
    with pytest.raises(dps.CredentialError) as ei:
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", key=FIXTURES / "p256.enc.key.pem", key_password="nope", **emu.opts())
    assert ei.value.status == dps.Status.KEY_PASSWORD


def test_x509_chain_for_group(emu: Emu) -> None:
    reg = dps.register(SCOPE, cert=FIXTURES / "chain.pem", key=FIXTURES / "chain-leaf.key.pem", **emu.opts())
    assert reg.device_id == "x509-chain-device"
    assert reg.enrollment_group_id == "x509-chain-group"


def test_pkcs12_file_and_bytes(emu: Emu) -> None:
    if "pkcs12" not in dps.version():
        # A build without the `pkcs12` feature must say so clearly.
        with pytest.raises(dps.UsageError) as ei:
            dps.Client(SCOPE, pkcs12=FIXTURES / "rsa.p12", pkcs12_password="fixture-pass", **emu.opts())
        assert ei.value.status == dps.Status.UNSUPPORTED
        pytest.skip(f"{dps.version()} was built without the pkcs12 feature")
    reg = dps.register(SCOPE, pkcs12=FIXTURES / "rsa.p12", pkcs12_password="fixture-pass", **emu.opts())
    assert reg.device_id == "x509-rsa-device"
    data = (FIXTURES / "rsa.p12").read_bytes()
    reg = dps.register(SCOPE, "x509-rsa-device", pkcs12=data, pkcs12_password="fixture-pass", **emu.opts())
    assert reg.device_id == "x509-rsa-device"
    with pytest.raises(dps.CredentialError) as ei:
        dps.register(SCOPE, pkcs12=data, pkcs12_password="wrong", **emu.opts())
    assert ei.value.status == dps.Status.PKCS12_PASSWORD


def test_lookup_after_register(emu: Emu) -> None:
    dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts())
    reg = dps.lookup(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts())
    assert reg.status is dps.RegistrationStatus.ASSIGNED
    assert reg.device_id == "dev-sym-device"


def test_client_reuse_and_context_manager(emu: Emu) -> None:
    with dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts()) as c:
        a = c.register()
        b = c.register()
        assert a.device_id == b.device_id == "dev-sym-device"
        assert c.lookup().assigned_hub == a.assigned_hub
    with pytest.raises(dps.UsageError):
        c.register()
    c.close()  # idempotent


def test_retries_throttling_and_server_errors(emu: Emu) -> None:
    events = []
    reg = dps.register(SCOPE, "dev-flaky", symmetric_key=KEY, on_status=events.append, **emu.opts())
    assert reg.status is dps.RegistrationStatus.ASSIGNED
    causes = [e.cause for e in events if e.event is dps.Event.RETRYING]
    assert causes[:3] == [dps.Status.THROTTLED, dps.Status.THROTTLED, dps.Status.SERVICE]


# ---------------------------------------------------------------------------------------------
# Failures


def test_wrong_key_is_unauthorized_with_detail(emu: Emu) -> None:
    with pytest.raises(dps.UnauthorizedError) as ei:
        dps.register(SCOPE, "dev-sym", symmetric_key=OTHER_KEY, **emu.opts())
    e = ei.value
    assert isinstance(e, dps.ServiceError) and isinstance(e, dps.DpsError)
    assert e.status == dps.Status.UNAUTHORIZED == 401
    assert e.http_status == 401
    assert e.dps_code == 401002
    assert e.tracking_id and len(e.tracking_id) >= 8
    assert e.tracking_id in e.message and "401002" in e.message
    assert not e.retriable
    assert OTHER_KEY not in str(e)


def test_unknown_device_x509_thumbprint_is_unauthorized(emu: Emu) -> None:
    # p384 is not enrolled.
    with pytest.raises(dps.UnauthorizedError):
        dps.register(SCOPE, cert=FIXTURES / "p384.cert.pem", key=FIXTURES / "p384.sec1.key.pem", **emu.opts())


def test_disabled_enrollment(emu: Emu) -> None:
    with pytest.raises(dps.EnrollmentDisabledError) as ei:
        dps.register(SCOPE, "dev-disabled", symmetric_key=KEY, **emu.opts())
    assert ei.value.status == dps.Status.DISABLED
    assert isinstance(ei.value, dps.RegistrationFailedError)


def test_failed_registration_carries_dps_code(emu: Emu) -> None:
    with pytest.raises(dps.RegistrationFailedError) as ei:
        dps.register(SCOPE, "dev-failed", symmetric_key=KEY, **emu.opts())
    e = ei.value
    assert e.status == dps.Status.REGISTRATION_FAILED
    assert e.dps_code == 400207
    assert "Custom allocation failed" in e.message
    # The lookup shows the failed state as a result, not an exception.
    reg = dps.lookup(SCOPE, "dev-failed", symmetric_key=KEY, **emu.opts())
    assert reg.status is dps.RegistrationStatus.FAILED
    assert reg.error_code == 400207
    assert reg.connection_string is None


def test_unknown_scope_is_not_found(emu: Emu) -> None:
    with pytest.raises(dps.NotFoundError) as ei:
        dps.register("0ne99999999", "dev-sym", symmetric_key=KEY, **emu.opts())
    assert ei.value.http_status == 404


def test_untrusted_server(emu: Emu) -> None:
    # Built-in Azure roots only: the emulator CA is not trusted.
    with pytest.raises(dps.TlsError) as ei:
        dps.register(SCOPE, "dev-sym", symmetric_key=KEY, endpoint=emu.endpoint, timeout=10, request_timeout=5)
    assert ei.value.status == dps.Status.TLS_SERVER_UNTRUSTED
    assert isinstance(ei.value, dps.NetworkError) and isinstance(ei.value, ConnectionError)


def test_connection_refused_until_deadline(emu: Emu) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(dps.DeadlineExceededError) as ei:
        dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(endpoint=f"localhost:{port}", timeout=1))
    assert ei.value.retriable
    assert "connect" in ei.value.message.lower()
    assert ei.value.cause == dps.Status.CONNECT
    assert isinstance(ei.value, TimeoutError)


@pytest.mark.parametrize(
    "kwargs, status, exc",
    [
        (dict(id_scope="not a scope"), dps.Status.INVALID_ID_SCOPE, dps.UsageError),
        (dict(registration_id="-bad-"), dps.Status.INVALID_REGISTRATION_ID, dps.UsageError),
        (dict(symmetric_key="not base64!"), dps.Status.INVALID_KEY, dps.CredentialError),
        (dict(payload="[1,2]"), dps.Status.INVALID_PAYLOAD, dps.UsageError),
        (dict(endpoint="host:notaport"), dps.Status.INVALID_ENDPOINT, dps.UsageError),
        (dict(proxy="ftp://nope"), dps.Status.INVALID_PROXY, dps.UsageError),
        (dict(trusted_roots=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), dps.Status.INVALID_TRUST_ANCHOR, dps.CredentialError),
        (dict(trusted_roots="/nonexistent/ca.pem"), dps.Status.FILE_READ, dps.CredentialError),
        (dict(timeout=0), dps.Status.INVALID_ARGUMENT, dps.UsageError),
        (dict(default_roots="none", trusted_roots=None), dps.Status.INVALID_TRUST_ANCHOR, dps.CredentialError),
    ],
)
def test_configuration_errors(emu: Emu, kwargs, status, exc) -> None:
    args = dict(id_scope=SCOPE, registration_id="dev-sym", symmetric_key=KEY, **emu.opts())
    args.update(kwargs)
    if args.get("trusted_roots") is None:
        args.pop("trusted_roots")
    with pytest.raises(exc) as ei:
        dps.Client(**args)
    assert ei.value.status == status
    assert isinstance(ei.value, ValueError)
    assert ei.value.message


def test_credential_argument_checks(emu: Emu) -> None:
    with pytest.raises(dps.UsageError, match="one credential"):
        dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, group_key=GROUP_KEY)
    with pytest.raises(dps.UsageError) as ei:
        dps.Client(SCOPE, "dev-sym")
    assert ei.value.status == dps.Status.NO_CREDENTIAL
    with pytest.raises(dps.CredentialError) as ei:
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", key=FIXTURES / "mismatch.key.pem", **emu.opts())
    assert ei.value.status == dps.Status.KEY_MISMATCH
    with pytest.raises(dps.CredentialError) as ei:
        dps.Client(SCOPE, "other-id", cert=FIXTURES / "p256.cert.pem", key=FIXTURES / "p256.key.pem", **emu.opts())
    assert ei.value.status == dps.Status.INVALID_CERTIFICATE
    with pytest.raises(dps.CredentialError) as ei:
        dps.Client(SCOPE, cert="/nonexistent/cert.pem", key=b"-----BEGIN PRIVATE KEY-----\n", **emu.opts())
    assert ei.value.status == dps.Status.FILE_READ


# ---------------------------------------------------------------------------------------------
# Deadline, cancel


def test_deadline_while_assigning(emu: Emu) -> None:
    t0 = time.monotonic()
    with pytest.raises(dps.DeadlineExceededError):
        dps.register(SCOPE, "dev-slow", symmetric_key=KEY, **emu.opts(timeout=1.5))
    assert time.monotonic() - t0 < 5


def test_cancel_from_another_thread(emu: Emu) -> None:
    events = []
    with dps.Client(SCOPE, "dev-slow", symmetric_key=KEY, on_status=events.append, **emu.opts()) as c:
        threading.Timer(0.3, c.cancel).start()
        t0 = time.monotonic()
        with pytest.raises(dps.CancelledError):
            c.register()
        assert time.monotonic() - t0 < 3
        assert events[-1].event is dps.Event.FAILED and events[-1].cause == dps.Status.CANCELLED
    # A cancel before a registration is not lost: it ends the next one at once,
    # and only that one; the client stays usable.
    with dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts()) as c:
        c.cancel()
        with pytest.raises(dps.CancelledError):
            c.register()
        assert c.register().device_id == "dev-sym-device"


def test_cancel_from_the_callback(emu: Emu) -> None:
    with dps.Client(SCOPE, "dev-slow", symmetric_key=KEY, **emu.opts()) as c:
        def cb(ev: dps.StatusEvent) -> None:
            if ev.event is dps.Event.ASSIGNING:
                c.cancel()

        c.set_status_callback(cb)
        with pytest.raises(dps.CancelledError):
            c.register()


# ---------------------------------------------------------------------------------------------
# Status callback and logging


def test_status_callback_events(emu: Emu) -> None:
    events = []
    dps.register(SCOPE, "dev-sym", symmetric_key=KEY, on_status=events.append, **emu.opts())
    kinds = [e.event for e in events]
    assert kinds[0] is dps.Event.REGISTERING
    assert dps.Event.ASSIGNING in kinds
    assert kinds[-1] is dps.Event.ASSIGNED
    assert all(isinstance(e.wait, float) for e in events)


def test_status_callback_failure_event(emu: Emu) -> None:
    events = []
    with pytest.raises(dps.UnauthorizedError):
        dps.register(SCOPE, "dev-sym", symmetric_key=OTHER_KEY, on_status=events.append, **emu.opts())
    assert events[-1] == dps.StatusEvent(dps.Event.FAILED, 0.0, dps.Status.UNAUTHORIZED)


def test_exception_in_status_callback_surfaces(emu: Emu) -> None:
    calls = []

    def bad(ev: dps.StatusEvent) -> None:
        calls.append(ev.event)
        raise RuntimeError("boom from callback")

    with dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, on_status=bad, **emu.opts()) as c:
        with pytest.raises(RuntimeError, match="boom from callback"):
            c.register()
        assert calls == [dps.Event.REGISTERING]
        # The run was ended: the client registers normally afterwards.
        c.set_status_callback(None)
        assert c.register().device_id == "dev-sym-device"


def test_close_from_the_callback_is_refused(emu: Emu) -> None:
    with dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts()) as c:
        c.set_status_callback(lambda ev: c.close())
        with pytest.raises(dps.UsageError, match=r"close\(\) called from the status callback"):
            c.register()
        c.set_status_callback(None)
        assert c.register().device_id == "dev-sym-device"


def test_keyboard_interrupt_in_callback_cancels_and_propagates(emu: Emu) -> None:
    with dps.Client(SCOPE, "dev-slow", symmetric_key=KEY, **emu.opts()) as c:
        def cb(ev: dps.StatusEvent) -> None:
            if ev.event is dps.Event.ASSIGNING:
                raise KeyboardInterrupt

        c.set_status_callback(cb)
        with pytest.raises(KeyboardInterrupt):
            c.register()
        c.set_status_callback(None)
    with dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts()) as c:
        assert c.register().device_id == "dev-sym-device"


def test_exception_in_a_log_filter_surfaces(emu: Emu, caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if "PUT /" in record.getMessage():
                raise LookupError("filter exploded")
            return True

    f = Exploding()
    logger = logging.getLogger("dps")
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.DEBUG, logger="dps"):
            t0 = time.monotonic()
            with pytest.raises(LookupError, match="filter exploded"):
                # dev-slow never finishes: only the exception can end this call early.
                dps.register(SCOPE, "dev-slow", symmetric_key=KEY, **emu.opts(timeout=20))
            assert time.monotonic() - t0 < 3
    finally:
        logger.removeFilter(f)
    assert dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts()).device_id == "dev-sym-device"


def test_exception_in_callback_cannot_crash_the_process(emu: Emu) -> None:
    script = f"""
import sys
sys.path.insert(0, {str(REPO / 'python')!r})
import dps
def cb(ev):
    raise ValueError("callback exploded " + ev.event.name)
def cb2(ev):
    if ev.event is dps.Event.FAILED:
        1 / 0
opts = dict(endpoint={emu.endpoint!r}, trusted_roots={str(emu.ca)!r}, default_roots="none")
try:
    dps.register({SCOPE!r}, "dev-sym", symmetric_key={KEY!r}, on_status=cb, **opts)
except ValueError as e:
    print("surfaced:", e)
c = dps.Client({SCOPE!r}, "dev-sym", symmetric_key="{OTHER_KEY}", on_status=cb2, **opts)
try:
    c.register()
except ZeroDivisionError:
    print("zero division surfaced")
reg = dps.register({SCOPE!r}, "dev-sym", symmetric_key={KEY!r}, **opts)
print("survived", reg.device_id)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "surfaced: callback exploded REGISTERING" in p.stdout
    assert "zero division surfaced" in p.stdout
    assert "survived dev-sym-device" in p.stdout


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts and never sends a byte (the
    client blocks reading the TLS ServerHello)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("op", ["register", "lookup"])
def test_ctrl_c_ends_a_blocked_call_at_once(op: str, library: Path) -> None:
    """SIGINT to a process blocked in a read (request timeout 30 s, deadline
    60 s, library logging at TRACE through Python logging): KeyboardInterrupt
    within about 100 ms."""
    hole = BlackHole()
    script = f"""
import logging, sys, time
sys.path.insert(0, {str(REPO / 'python')!r})
logging.basicConfig(level=5, stream=sys.stderr)
import dps
dps.set_log_level(dps.TRACE)
print("ready", flush=True)
try:
    dps.{op}({SCOPE!r}, "dev-sym", symmetric_key={KEY!r}, endpoint="127.0.0.1:{hole.port}",
             default_roots="none", trusted_roots={str(FIXTURES / 'chain-root.cert.pem')!r},
             timeout=60, request_timeout=30)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic(), flush=True)
except BaseException as e:
    print("other", type(e).__name__, e, flush=True)
"""
    try:
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        assert hole.accepted.wait(20), "the client never connected"
        time.sleep(0.5)  # well inside the blocked read
        assert p.poll() is None
        sent = time.monotonic()
        p.send_signal(__import__("signal").SIGINT)
        line = p.stdout.readline().split()
        p.wait(10)
    finally:
        hole.close()
    assert line and line[0] == "interrupted", line
    latency = float(line[1]) - sent  # time.monotonic() is system-wide on Linux
    print(f"{op}: KeyboardInterrupt {latency * 1000:.1f} ms after SIGINT")
    assert latency < 0.3, f"{latency:.3f} s"


def test_messages_for_bad_arguments(emu: Emu) -> None:
    for bad in (float("nan"), float("inf"), -float("inf")):
        for kw in ("timeout", "request_timeout", "poll_interval", "sas_ttl"):
            with pytest.raises(ValueError, match=f"{kw} must be a finite number of seconds"):
                dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(**{kw: bad}))
        with pytest.raises(ValueError, match="backoff minimum must be a finite number"):
            dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(backoff=(bad, 1)))
    for bad in (5, "5", (1,), (1, 2, 3), {"a": 1}):
        with pytest.raises(TypeError, match=r"backoff must be a \(minimum, maximum\) pair of seconds"):
            dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(backoff=bad))
    with pytest.raises(TypeError, match="timeout must be a number of seconds, not str"):
        dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(timeout="10"))
    try:
        dps.set_log_level("debug")
        dps.set_log_level("TRACE")
        with pytest.raises(ValueError, match="unknown log level name 'loud'"):
            dps.set_log_level("loud")
        for bad in (1.5, True, [10]):
            with pytest.raises(TypeError, match=r"set_log_level\(\) takes a logging level"):
                dps.set_log_level(bad)  # type: ignore[arg-type]
    finally:
        dps.set_log_level(logging.DEBUG)


def test_dps_library_pointing_at_a_non_library(tmp_path: Path) -> None:
    fake = tmp_path / "libdps.so"
    fake.write_text("not a shared library\n")
    env = dict(os.environ, DPS_LIBRARY=str(fake))
    code = f"""
import sys
sys.path.insert(0, {str(REPO / 'python')!r})
import dps
try:
    dps.version()
except dps.LibraryNotFoundError as e:
    print("LibraryNotFoundError:", e)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert f"LibraryNotFoundError: {fake} (from DPS_LIBRARY) is not a loadable shared library" in p.stdout


def test_library_logs_go_to_python_logging(emu: Emu, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dps"):
        dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts())
    msgs = [r.getMessage() for r in caplog.records if r.name == "dps"]
    assert any("assigned to hub-a.azure-devices.net" in m for m in msgs), msgs
    assert any(r.levelno == logging.INFO for r in caplog.records if r.name == "dps")
    assert any("PUT /0ne00000001/registrations/dev-sym/register" in m for m in msgs)
    assert not any(KEY in m or "sig=" in m and "<redacted>" not in m for m in msgs)
    # Turning library logging off stops the lines at the source.
    caplog.clear()
    dps.set_log_level(None)
    try:
        with caplog.at_level(logging.DEBUG, logger="dps"):
            dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts())
        assert not [r for r in caplog.records if r.name == "dps"]
    finally:
        dps.set_log_level(logging.DEBUG)


# ---------------------------------------------------------------------------------------------
# Proxy


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that counts tunnels."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.tunnels: list = []
        self.auth: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].decode().split(" ")
        self.auth += [ln.decode() for ln in lines if ln.lower().startswith(b"proxy-authorization:")]
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        u = socket.create_connection(("127.0.0.1", int(port)))
        c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [c, u]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 10)
                if not r:
                    return
                for s in r:
                    d = s.recv(65536)
                    if not d:
                        return
                    (u if s is c else c).sendall(d)
        finally:
            c.close()
            u.close()

    def close(self) -> None:
        self.sock.close()


def test_proxy(emu: Emu) -> None:
    p = ConnectProxy()
    try:
        reg = dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(proxy=f"http://user:s3cret@127.0.0.1:{p.port}"))
        assert reg.device_id == "dev-sym-device"
        assert p.tunnels == [f"localhost:{emu.port}"]
        assert p.auth and p.auth[0].lower().startswith("proxy-authorization: basic ")
        # From the environment.
        os.environ["HTTPS_PROXY"] = f"http://127.0.0.1:{p.port}"
        os.environ.pop("NO_PROXY", None)
        try:
            dps.register(SCOPE, "dev-sym", symmetric_key=KEY, **emu.opts(proxy="env"))
        finally:
            del os.environ["HTTPS_PROXY"]
        assert len(p.tunnels) == 2
    finally:
        p.close()


# ---------------------------------------------------------------------------------------------
# Functions, library


def test_derive_device_key() -> None:
    assert dps.derive_device_key(GROUP_KEY, V1_REG_ID) == V1_DEVICE_KEY
    with pytest.raises(dps.CredentialError) as ei:
        dps.derive_device_key("not base64!", V1_REG_ID)
    assert ei.value.status == dps.Status.INVALID_KEY
    with pytest.raises(dps.UsageError) as ei:
        dps.derive_device_key(GROUP_KEY, "bad id!")
    assert ei.value.status == dps.Status.INVALID_REGISTRATION_ID


def test_status_lookup() -> None:
    assert dps.status_str(dps.Status.UNAUTHORIZED).startswith("DPS rejected the credential")
    assert dps.status_str(12345) == "unknown status"
    assert dps.Status(401) is dps.Status.UNAUTHORIZED
    assert dps.Status(777).name == "UNKNOWN_777"
    assert dps.error_class(303) is dps.TlsError
    assert dps.error_class(461) is dps.EnrollmentDisabledError
    assert dps.error_class(102) is dps.UsageError


def test_version() -> None:
    assert dps.version().startswith("dps/0.1.")


def test_library_loading_errors(library: Path) -> None:
    code = """
import sys
sys.path.insert(0, {py!r})
import dps
try:
    dps.load_library("/nonexistent/libdps.so")
except dps.LibraryNotFoundError as e:
    print("explicit:", e)
lib = dps.load_library({lib!r})
print("loaded", dps.version())
"""
    env = dict(os.environ)
    env.pop("DPS_LIBRARY", None)
    p = subprocess.run(
        [sys.executable, "-c", code.format(py=str(REPO / "python"), lib=str(library))],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "explicit: libdps not found at /nonexistent/libdps.so" in p.stdout
    assert "loaded dps/0.1." in p.stdout
    # DPS_LIBRARY pointing nowhere: a clear error naming the variable's value.
    env["DPS_LIBRARY"] = "/nonexistent/other.so"
    p = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'python')!r}); import dps; dps.version()"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode != 0 and "libdps not found at /nonexistent/other.so" in p.stderr


# ---------------------------------------------------------------------------------------------
# Certificate issuance from a CSR (experimental)

_CSR_ENROLLMENTS = f"""
[[enrollments]]
registration_id = "py-csr"
attestation = "symmetric_key"
primary_key = "{KEY}"

[[enrollments]]
registration_id = "py-csr-broken"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [
  {{ on = "register", issued_chain = "wrong_key" }},
  {{ on = "register", issued_chain = "wrong_order" }},
  {{ on = "register", issued_chain = "expired" }},
]
"""


@pytest.fixture(scope="module")
def csr_emu(tmp_path_factory: pytest.TempPathFactory, library: Path):
    """An emulator of its own (the scripted faults are consumed): the standard settings and
    hubs (the fixture's text before its first enrollment) plus the CSR enrollments."""
    from conftest import EMULATOR_CONFIG, start_emulator, stop_emulator

    tmp = tmp_path_factory.mktemp("csr-emulator")
    config = tmp / "emulator.toml"
    standard = EMULATOR_CONFIG.read_text()
    config.write_text(standard[: standard.index("[[enrollments]]")] + _CSR_ENROLLMENTS)
    emu = start_emulator(config, tmp)
    try:
        yield emu
    finally:
        stop_emulator(emu)


def _pem_certs(pem: str):
    from cryptography import x509

    return x509.load_pem_x509_certificates(pem.encode())


def _spki(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("kind", ["p256", "p384"])
def test_csr_generated_key(csr_emu: Emu, kind: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    reg = dps.register(SCOPE, "py-csr", symmetric_key=KEY, csr=kind, **csr_emu.opts())
    assert reg.status is dps.RegistrationStatus.ASSIGNED
    certs = _pem_certs(reg.issued_chain_pem or "")
    assert len(certs) == 2
    assert certs[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "py-csr"
    assert certs[1].public_bytes(serialization.Encoding.PEM) == csr_emu.ca.read_bytes()
    assert len(reg.issued_certificate_chain) == 2
    key_pem = reg.issued_key_pem or ""
    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert key.curve.name == {"p256": "secp256r1", "p384": "secp384r1"}[kind]  # type: ignore[attr-defined]
    assert _spki(key.public_key()) == _spki(certs[0].public_key())
    # the key is a secret: not in repr() nor to_dict() unless asked
    body = key_pem.splitlines()[1]
    assert body not in repr(reg)
    assert "issued_key_pem" not in reg.to_dict()
    assert reg.to_dict(include_secrets=True)["issued_key_pem"] == key_pem
    assert reg.to_dict()["issued_chain_pem"] == reg.issued_chain_pem


def test_csr_pem_key_file_and_bytes(csr_emu: Emu) -> None:
    from cryptography.hazmat.primitives import serialization

    path = FIXTURES / "rsa.pkcs1.key.pem"
    want = _spki(serialization.load_pem_private_key(path.read_bytes(), None).public_key())
    for source in (str(path), path, path.read_bytes()):
        reg = dps.register(SCOPE, "py-csr", symmetric_key=KEY, csr=source, **csr_emu.opts())
        assert reg.issued_key_pem is None, "the caller holds the key"
        assert _spki(_pem_certs(reg.issued_chain_pem or "")[0].public_key()) == want


def test_csr_rsa2048_follows_the_library_build(csr_emu: Emu) -> None:
    """With the `rsa-keygen` feature (named in dps.version()) an RSA-2048 key is generated;
    without it the kind is refused at configuration time (UNSUPPORTED, naming the feature)."""
    if "rsa-keygen" in dps.version():
        reg = dps.register(SCOPE, "py-csr", symmetric_key=KEY, csr="rsa2048", **csr_emu.opts())
        leaf = _pem_certs(reg.issued_chain_pem or "")[0]
        assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]
        assert (reg.issued_key_pem or "").startswith("-----BEGIN PRIVATE KEY-----")
    else:
        with pytest.raises(dps.UsageError) as ei:
            dps.Client(SCOPE, "py-csr", symmetric_key=KEY, csr="rsa2048", **csr_emu.opts())
        assert ei.value.status == dps.Status.UNSUPPORTED
        assert "`rsa-keygen`" in ei.value.message


def test_csr_refusals(csr_emu: Emu, tmp_path: Path) -> None:
    # the scripted broken chains, each its own status, all IssuedCertificateError
    with dps.Client(SCOPE, "py-csr-broken", symmetric_key=KEY, csr="p256", **csr_emu.opts()) as c:
        for status, words in [
            (dps.Status.ISSUED_KEY_MISMATCH, "certifies another public key than the CSR's"),
            (dps.Status.ISSUED_CHAIN_BROKEN, "out of order"),
            (dps.Status.ISSUED_CERT_NOT_VALID, "expired at"),
        ]:
            with pytest.raises(dps.IssuedCertificateError) as ei:
                c.register()
            assert ei.value.status == status, ei.value
            assert words in ei.value.message
            assert isinstance(ei.value, dps.NetworkError)
        assert c.register().issued_chain_pem  # the script is over
    # bad csr= values
    with pytest.raises(dps.CredentialError):
        dps.Client(SCOPE, "py-csr", symmetric_key=KEY, csr=b"not a key", **csr_emu.opts())
    with pytest.raises(dps.CredentialError) as ei:
        dps.Client(SCOPE, "py-csr", symmetric_key=KEY, csr=str(tmp_path / "missing.pem"), **csr_emu.opts())
    assert ei.value.status == dps.Status.FILE_READ
    if "pkcs11" not in dps.version():  # the token case is in pkcs11_cases.py
        with pytest.raises(dps.UsageError) as ei:
            dps.Client(SCOPE, "py-csr", symmetric_key=KEY, csr="pkcs11:token=t;object=k", **csr_emu.opts())
        assert ei.value.status == dps.Status.UNSUPPORTED
        assert "pkcs11" in ei.value.message
    with pytest.raises(TypeError):
        dps.Client(SCOPE, "py-csr", symmetric_key=KEY, csr=42, **csr_emu.opts())  # type: ignore[arg-type]
