"""pytest fixtures: one dps-emulator process per session (127.0.0.1, ephemeral port).

Nothing is built here. Build first:  cargo build --release -p dps -p dps-emulator
"""

from __future__ import annotations

import hashlib
import os
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "x509"
SCOPE = "0ne00000001"
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
OTHER_KEY = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE="
GROUP_KEY = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
BUILD_HINT = "run `cargo build --release -p dps -p dps-emulator` from the repository root first"

# DPS_TEST_INSTALLED=1 (.ci/wheel-test): test the installed package and its bundled library,
# not the checkout.
INSTALLED = os.environ.get("DPS_TEST_INSTALLED") == "1"
if not INSTALLED:
    sys.path.insert(0, str(REPO / "python"))


def _target_dirs() -> list:
    dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(Path(os.environ["CARGO_TARGET_DIR"]))
    dirs.append(REPO / "target")
    return dirs


def _find(env: str, name: str, profiles=("release",)) -> Path:
    if os.environ.get(env):
        p = Path(os.environ[env])
        if not p.is_file():
            pytest.exit(f"{env}={p} does not exist; {BUILD_HINT}", returncode=4)
        return p
    tried = []
    for t in _target_dirs():
        for prof in profiles:
            p = t / prof / name
            tried.append(str(p))
            if p.is_file():
                return p
    pytest.exit(f"{name} not found (tried {', '.join(tried)}); {BUILD_HINT}", returncode=4)
    raise AssertionError  # unreachable


def thumbprint(pem_path: Path) -> str:
    """SHA-256 of the first certificate's DER, as the emulator wants it."""
    text = pem_path.read_text()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(text[start:end])).hexdigest()


@dataclass
class Emu:
    port: int
    ca: Path
    endpoint: str
    proc: subprocess.Popen

    def opts(self, **kw):
        """Common options: endpoint, only the emulator CA, short timeouts."""
        base = dict(
            endpoint=self.endpoint,
            trusted_roots=str(self.ca),
            default_roots="none",
            timeout=20,
            request_timeout=5,
            backoff=(0.01, 0.1),
        )
        base.update(kw)
        return base


def _config(tmp: Path) -> str:
    chain_root = FIXTURES / "chain-root.cert.pem"
    return f"""
id_scope = "{SCOPE}"
retry_after_secs = 0
assigning_polls = 1
log_requests = false
[[hubs]]
host_name = "hub-a.azure-devices.net"
[[hubs]]
host_name = "hub-b.azure-devices.net"

[[enrollments]]
registration_id = "dev-sym"
attestation = "symmetric_key"
primary_key = "{KEY}"
device_id = "dev-sym-device"
allocation = "static"
hubs = ["hub-a.azure-devices.net"]

[[enrollments]]
group_id = "sym-group"
attestation = "symmetric_key"
primary_key = "{GROUP_KEY}"
echo_payload = true

[[enrollments]]
registration_id = "dev-payload"
attestation = "symmetric_key"
primary_key = "{KEY}"
payload = {{ firmware = "1.2.3", site = "lab" }}

[[enrollments]]
registration_id = "dev-disabled"
attestation = "symmetric_key"
primary_key = "{KEY}"
enabled = false

[[enrollments]]
registration_id = "dev-failed"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [ {{ on = "register", result = "failed", error_code = 400207, times = 1000 }} ]

[[enrollments]]
registration_id = "dev-flaky"
attestation = "symmetric_key"
primary_key = "{KEY}"
faults = [ {{ on = "register", status = 429, retry_after = "0", times = 2 }}, {{ on = "register", status = 503, retry_after = "0" }} ]

[[enrollments]]
registration_id = "dev-slow"
attestation = "symmetric_key"
primary_key = "{KEY}"
retry_after_secs = 1
faults = [ {{ on = "register", action = "endless_assigning", times = 1000 }} ]

[[enrollments]]
registration_id = "x509-p256-device"
attestation = "x509"
thumbprint = "{thumbprint(FIXTURES / 'p256.cert.pem')}"

[[enrollments]]
registration_id = "x509-rsa-device"
attestation = "x509"
thumbprint = "{thumbprint(FIXTURES / 'rsa.cert.pem')}"

[[enrollments]]
group_id = "x509-chain-group"
attestation = "x509"
ca_file = "{chain_root}"
"""


@pytest.fixture(scope="session", autouse=True)
def library() -> Path:
    """Loads target/release/libdps.so (or $DPS_LIBRARY) once for the session."""
    if INSTALLED:
        import dps

        pkg = Path(dps.__file__).resolve().parent
        assert REPO / "python" not in pkg.parents, f"imported {pkg}, not the installed package"
        lib = pkg / "libdps.so"
        assert lib.is_file(), f"the installed package has no {lib}"
    else:
        lib = _find("DPS_LIBRARY", "libdps.so")
    os.environ["DPS_LIBRARY"] = str(lib)
    import dps

    dps.load_library(lib)
    return lib


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Iterator[Emu]:
    exe = _find("DPS_EMULATOR", "dps-emulator", profiles=("release", "debug"))
    tmp = tmp_path_factory.mktemp("emulator")
    cfg = tmp / "emulator.toml"
    cfg.write_text(_config(tmp))
    ca = tmp / "ca.pem"
    proc = subprocess.Popen(
        [str(exe), "--config", str(cfg), "--port", "0", "--ca-out", str(ca), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line_box: list = []

    def read_first_line() -> None:
        assert proc.stdout is not None
        line_box.append(proc.stdout.readline())

    t = threading.Thread(target=read_first_line, daemon=True)
    t.start()
    t.join(30)
    line = line_box[0].strip() if line_box else ""
    if not line.startswith("listening https://localhost:"):
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        pytest.exit(f"dps-emulator did not start (first line {line!r}): {err}", returncode=4)
    port = int(line.rsplit(":", 1)[1])
    # Drain stderr so the emulator never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
    try:
        yield Emu(port=port, ca=ca, endpoint=f"localhost:{port}", proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def emu(emulator: Emu) -> Emu:
    if emulator.proc.poll() is not None:
        pytest.fail(f"the emulator exited with {emulator.proc.returncode}")
    return emulator


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
