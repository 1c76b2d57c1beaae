"""TPM attestation through the Python package against the emulator, on a fresh software TPM
(``dps-swtpm``: swtpm in a temporary state directory, so a fresh EK, on ephemeral loopback
ports, started by the Rust helper every Rust TPM test uses). Not collected by a plain pytest
run (the session's library is the default build, without the ``tpm`` feature):
test_hardware_keys.py runs this file in its own pytest process with
``DPS_LIBRARY=target/release-hw/libdps.so`` (built with ``--features pkcs11,tpm``)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

import dps
from conftest import EMULATOR_CONFIG, SCOPE, Emu, _find, start_emulator, stop_emulator

# A real device's EK (PROTOCOL.md V8): "another TPM" (the same value tests/tpm.rs uses).
OTHER_EK = (
    "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAopqgkUBwtpr1sCgVJcEZxsJtpmtO"
    "At9K7SjGFe4hsp6DJ/dd2E5UFzBC+Jp8Fzqf5ukRBkqrAgIuAvHRsruIedk1uarJSLhbDpFLHxFd7iDNcYfrvdgVNT2T9zrvkh2y04WuRQg2"
    "D5qf0tZF82jeTjR/YJK7uWhaRwWOwZ3b1XD9l6wFOrwK/Ic0PEsjneFXQzL0n9uKyuHmHNz+wHppmOiMAabvnXXEin9ou7/iowY/+YhFm3j7"
    "atsVvxMI5HEM3Mq+W4imUuzPxVX7fZH+oWPKP5ofpWBTf+MdttGby1AjGnv8JE69JriOYoZG2/4qbsfv9M7a7NFrBlaW7Rt36w=="
)
HUB_KEY = "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A="


class SoftwareTpm:
    """``dps-swtpm`` behind a pipe: it prints the TCTI and stops swtpm when stdin closes."""

    def __init__(self) -> None:
        assert shutil.which("swtpm"), "prerequisite missing: swtpm (apt-get install swtpm swtpm-tools; .ci/run does)"
        exe = _find("DPS_SWTPM", "dps-swtpm", profiles=("release", "debug"))
        self.proc = subprocess.Popen(
            [str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        box: list = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(30)
        line = box[0].strip() if box else ""
        if not line.startswith("tcti "):
            self.proc.kill()
            pytest.fail(f"dps-swtpm did not start (first line {line!r}): {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.tcti = line.split(" ", 1)[1]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def swtpm() -> Iterator[SoftwareTpm]:
    t = SoftwareTpm()
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(scope="module")
def identity(swtpm: SoftwareTpm, library: Path) -> tuple:
    """The fresh TPM's EK-derived registration ID and EK (the EK and SRK created on request)."""
    with pytest.raises(dps.DpsError) as ei:
        dps.tpm_info(swtpm.tcti)  # a fresh TPM has no EK yet, and none is made unasked
    assert ei.value.status == dps.Status.TPM, ei.value
    rid, ek = dps.tpm_info(swtpm.tcti, create_missing=True)
    assert dps.tpm_info(swtpm.tcti) == (rid, ek)
    return rid, ek


@pytest.fixture(scope="module")
def tpm_emu(tmp_path_factory: pytest.TempPathFactory, identity: tuple) -> Iterator[Emu]:
    """An emulator with the standard enrollments and TPM enrollments for this TPM's EK."""
    rid, ek = identity
    tmp = tmp_path_factory.mktemp("tpm-emulator")
    config = tmp / "emulator.toml"
    config.write_text(
        EMULATOR_CONFIG.read_text().replace('_file = "', f'_file = "{EMULATOR_CONFIG.parent}/')
        + f'\n[[enrollments]]\nregistration_id = "{rid}"\nattestation = "tpm"\nendorsement_key = "{ek}"\n'
        + f'hub_key = "{HUB_KEY}"\ndevice_id = "py-tpm-device"\n'
        + f'\n[[enrollments]]\nregistration_id = "py-tpm-other-ek"\nattestation = "tpm"\nendorsement_key = "{OTHER_EK}"\n'
        + f'\n[[enrollments]]\nregistration_id = "py-tpm-bad-blob"\nattestation = "tpm"\nendorsement_key = "{ek}"\ncorrupt_blob = "challenge"\n'
        + f'\n[[enrollments]]\nregistration_id = "py-tpm-bad-hub"\nattestation = "tpm"\nendorsement_key = "{ek}"\ncorrupt_blob = "hub"\n'
    )
    emu = start_emulator(config, tmp)
    try:
        yield emu
    finally:
        stop_emulator(emu)


def _regid_of(ek: str) -> str:
    """PROTOCOL.md 5.4: lowercase unpadded base32 of SHA-256(TPM2B_PUBLIC(EK))."""
    return base64.b32encode(hashlib.sha256(base64.b64decode(ek)).digest()).decode().rstrip("=").lower()


def test_tpm_registers_with_the_ek_derived_id(swtpm: SoftwareTpm, identity: tuple, tpm_emu: Emu) -> None:
    rid, ek = identity
    assert rid == _regid_of(ek) and len(rid) == 52
    # No registration ID: the EK-derived one; the TPM by its TCTI string.
    reg = dps.register(SCOPE, tpm=swtpm.tcti, **tpm_emu.opts())
    assert reg.registration_id == rid
    assert reg.device_id == "py-tpm-device"
    assert reg.assigned_hub
    assert reg.connection_string is None, "the hub key stays in the TPM"
    # Again through a Client: a new challenge, the persisted key replaced.
    with dps.Client(SCOPE, rid, tpm=swtpm.tcti, **tpm_emu.opts()) as c:
        assert c.register().device_id == "py-tpm-device"


def test_tpm_refusals(swtpm: SoftwareTpm, tpm_emu: Emu) -> None:
    # A blob the TPM cannot activate (the emulator corrupts it): its own status.
    for rid in ("py-tpm-bad-blob", "py-tpm-bad-hub"):
        with pytest.raises(dps.DpsError) as ei:
            dps.register(SCOPE, rid, tpm=swtpm.tcti, **tpm_emu.opts())
        assert ei.value.status == dps.Status.TPM_ACTIVATION_FAILED, ei.value
        assert "TPM_RC 0x" in str(ei.value) or "TSS2_RC 0x" in str(ei.value), ei.value
    # The enrollment holds another TPM's EK: DPS refuses before any challenge.
    with pytest.raises(dps.UnauthorizedError) as ui:
        dps.register(SCOPE, "py-tpm-other-ek", tpm=swtpm.tcti, **tpm_emu.opts())
    assert ui.value.http_status == 401, ui.value
    # No TPM at that address: the TPM status, at once.
    with pytest.raises(dps.DpsError) as ei:
        dps.register(SCOPE, "py-tpm-none", tpm="swtpm:host=127.0.0.1,port=1", **tpm_emu.opts())
    assert ei.value.status == dps.Status.TPM, ei.value
    # The TPM still registers after the refusals.
    assert dps.register(SCOPE, tpm=swtpm.tcti, **tpm_emu.opts()).device_id == "py-tpm-device"
