"""Keys the library never sees: a ``signer`` callable (keys held by the ``cryptography``
package) and an ``hmac`` callable; the PKCS#11 keywords are tested by pkcs11_cases.py, run
here in its own process with the library built with the ``pkcs11`` feature."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac as hmac_mod
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import dps
from conftest import FIXTURES, GROUP_KEY, KEY, SCOPE, Emu

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
except ModuleNotFoundError:  # reported, never a silent pass
    pytest.fail("these tests need the `cryptography` package (pip install cryptography; .ci/run does)", pytrace=False)


def _load_key(name: str):
    return serialization.load_pem_private_key((FIXTURES / name).read_bytes(), password=None)


def cryptography_signer(key, seen: List[str]):
    """A ``signer`` over a key held by ``cryptography``: signs the digest the library gives."""

    def sign(scheme: str, digest: bytes) -> bytes:
        seen.append(scheme)
        if scheme == "ecdsa-p256-sha256":
            return key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        if scheme == "ecdsa-p384-sha384":
            return key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
        if scheme == "rsa-pkcs1-sha256":
            return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        if scheme == "rsa-pss-sha256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return key.sign(digest, pss, utils.Prehashed(hashes.SHA256()))
        raise ValueError(scheme)

    return sign


def test_signer_callable_registers_ecdsa_and_rsa(emu: Emu) -> None:
    for cert, key, device in [
        ("p256.cert.pem", "p256.key.pem", "x509-p256-device"),
        ("rsa.cert.pem", "rsa.key.pem", "x509-rsa-device"),
    ]:
        seen: List[str] = []
        reg = dps.register(SCOPE, cert=FIXTURES / cert, signer=cryptography_signer(_load_key(key), seen), **emu.opts())
        assert reg.device_id == device
        assert seen, "the signer was called"
        assert len(seen) >= 2, f"{device}: the check and the TLS handshake sign: {seen}"


def test_callables_are_kept_alive_as_long_as_the_client(emu: Emu) -> None:
    seen: List[str] = []
    client = dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=cryptography_signer(_load_key("p256.key.pem"), seen), **emu.opts())
    gc.collect()
    with client:
        assert client.register().device_id == "x509-p256-device"
        assert client.register().device_id == "x509-p256-device"


def test_signer_exception_is_re_raised_to_the_caller(emu: Emu) -> None:
    class VendorSdkError(Exception):
        pass

    def broken(scheme: str, digest: bytes) -> bytes:
        raise VendorSdkError("secure element busy")

    # During the check in Client(): the callable's exception, chained from SIGNER_FAILED.
    with pytest.raises(VendorSdkError) as ei:
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=broken, **emu.opts())
    assert isinstance(ei.value.__cause__, dps.DpsError)
    assert ei.value.__cause__.status == dps.Status.SIGNER_FAILED

    # During register(): it works for the check, then fails in the TLS handshake.
    good = cryptography_signer(_load_key("p256.key.pem"), [])
    calls = []

    def flaky(scheme: str, digest: bytes) -> bytes:
        calls.append(scheme)
        if len(calls) > 1:
            raise VendorSdkError("removed")
        return good(scheme, digest)

    with dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=flaky, **emu.opts()) as c:
        with pytest.raises(VendorSdkError) as ei:
            c.register()
        assert ei.value.__cause__.status == dps.Status.SIGNER_FAILED

    # Garbage and wrong types are errors too; another key is a mismatch before any traffic.
    with pytest.raises(TypeError):
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=lambda s, d: "not bytes", **emu.opts())
    with pytest.raises(dps.DpsError) as ei2:
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=lambda s, d: b"\x30\x01garbage", **emu.opts())
    assert ei2.value.status in (dps.Status.SIGNER_FAILED, dps.Status.KEY_MISMATCH)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(dps.DpsError) as ei2:
        dps.Client(SCOPE, cert=FIXTURES / "p256.cert.pem", signer=cryptography_signer(other, []), **emu.opts())
    assert ei2.value.status == dps.Status.KEY_MISMATCH


def test_hmac_callable_individual_and_group_derived(emu: Emu) -> None:
    def mac_with(key_b64: str):
        key = base64.b64decode(key_b64)
        return lambda data: hmac_mod.new(key, data, hashlib.sha256).digest()

    reg = dps.register(SCOPE, "dev-sym", hmac=mac_with(KEY), **emu.opts())
    assert reg.device_id == "dev-sym-device"
    derived = dps.derive_device_key(GROUP_KEY, "py-factory-dev")
    reg = dps.register(SCOPE, "py-factory-dev", hmac=mac_with(derived), **emu.opts())
    assert reg.device_id == "py-factory-dev"
    with pytest.raises(ValueError):
        dps.register(SCOPE, "dev-sym", hmac=lambda data: b"short", **emu.opts())


def test_usage_errors() -> None:
    with pytest.raises(dps.UsageError):
        dps.Client(SCOPE, "x", symmetric_key=KEY, hmac=lambda d: b"")
    with pytest.raises(dps.UsageError):
        dps.Client(SCOPE, signer=lambda s, d: b"")  # no cert
    with pytest.raises(dps.UsageError):
        dps.Client(SCOPE, "x", symmetric_key=KEY, pkcs11_pin="1234")


# ---------------------------------------------------------------------------------------------
# PKCS#11 and TPM: pkcs11_cases.py and tpm_cases.py in their own process, with the library built
# with both hardware features (.ci/build-release: target/release-hw)


def test_hardware_cases_with_the_hw_library() -> None:
    here = Path(__file__).resolve().parent
    lib = None
    for t in ([Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []) + [here.parents[1] / "target"]:
        if (t / "release-hw" / "libdps.so").is_file():
            lib = t / "release-hw" / "libdps.so"
            break
    lib = Path(os.environ["DPS_HW_LIBRARY"]) if os.environ.get("DPS_HW_LIBRARY") else lib
    assert lib is not None and lib.is_file(), "target/release-hw/libdps.so is missing: run .ci/build-release (it builds it)"
    env = dict(os.environ, DPS_LIBRARY=str(lib))
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         str(here / "pkcs11_cases.py"), str(here / "tpm_cases.py")],
        cwd=here, env=env, capture_output=True, text=True, timeout=300,
    )
    print(p.stdout[-6000:], p.stderr[-2000:])
    assert p.returncode == 0, f"pkcs11_cases.py / tpm_cases.py failed:\n{p.stdout}\n{p.stderr}"
    assert " passed" in p.stdout and "skipped" not in p.stdout, p.stdout
    for case in ("test_pkcs11_keys_register", "test_tpm_registers_with_the_ek_derived_id", "test_tpm_refusals"):
        assert f"PASSED tpm_cases.py::{case}" in p.stdout or f"PASSED pkcs11_cases.py::{case}" in p.stdout, f"{case} did not pass:\n{p.stdout}"
