"""PKCS#11 keys generated inside a SoftHSM2 token by ``pkcs11-tool`` (``pkcs11_uri``,
``pkcs11_hmac_uri``, ``pkcs11_module``, ``pkcs11_pin``). Not collected by a plain pytest run
(the session's library is the default build, without the ``pkcs11`` feature):
test_hardware_keys.py runs this file (with tpm_cases.py) in its own pytest process with
``DPS_LIBRARY=target/release-hw/libdps.so`` (built with ``--features pkcs11,tpm``)."""

from __future__ import annotations

import base64
import datetime
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import dps
from conftest import EMULATOR_CONFIG, KEY, SCOPE, Emu, start_emulator, stop_emulator

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ModuleNotFoundError:  # reported, never a silent pass
    pytest.fail("these tests need the `cryptography` package (pip install cryptography; .ci/run does)", pytrace=False)

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "py-pin-31415-canary"


# ---------------------------------------------------------------------------------------------
# PKCS#11 (SoftHSM2)


def _run(*args: str) -> str:
    p = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy())
    assert p.returncode == 0, f"{args}: {p.stdout}{p.stderr}"
    return p.stdout


class Token:
    """A SoftHSM2 token in a temp dir with keys generated inside it by pkcs11-tool, and an
    emulator enrolling certificates a software CA issued for them."""

    def __init__(self, tmp: Path) -> None:
        for tool, pkg in (("softhsm2-util", "softhsm2"), ("pkcs11-tool", "opensc")):
            assert shutil.which(tool), f"prerequisite missing: {tool} (apt-get install {pkg}; .ci/run does)"
        assert Path(SOFTHSM_MODULE).exists(), "prerequisite missing: softhsm2"
        (tmp / "tokens").mkdir()
        conf = tmp / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tmp / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
        # SoftHSM reads it at C_Initialize, once per process: set before the library loads it.
        os.environ["SOFTHSM2_CONF"] = str(conf)
        self.label = "py-token"
        _run("softhsm2-util", "--init-token", "--free", "--label", self.label, "--pin", PIN, "--so-pin", "5678")
        tool = ["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.label, "--login", "--pin", PIN]
        _run(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec")
        _run(*tool, "--keypairgen", "--key-type", "rsa:2048", "--id", "02", "--label", "rsa")
        # A generic secret generated in the token for SAS (pkcs11-tool cannot import a raw HMAC
        # key); extractable only so that this test can enroll its value in the emulator.
        _run(*tool, "--keygen", "--key-type", "GENERIC:32", "--id", "03", "--label", "sas", "--extractable")
        _run(*tool, "--read-object", "--type", "secrkey", "--id", "03", "-o", str(tmp / "sas.bin"))
        self.sas_key = base64.b64encode((tmp / "sas.bin").read_bytes()).decode()
        assert len((tmp / "sas.bin").read_bytes()) == 32
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "py hsm test root")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
        self.chains = {}
        for label, obj_id, cn in (("ec", "01", "py-hsm-ec"), ("rsa", "02", "py-hsm-rsa")):
            pub = tmp / f"{label}.pub.der"
            _run("pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", self.label, "--read-object", "--type", "pubkey", "--id", obj_id, "-o", str(pub))
            leaf = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
                .issuer_name(ca_name)
                .public_key(serialization.load_der_public_key(pub.read_bytes()))
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            self.chains[label] = leaf.public_bytes(serialization.Encoding.PEM).decode() + self.ca_pem
            der = tmp / f"{label}.cert.der"
            der.write_bytes(leaf.public_bytes(serialization.Encoding.DER))
            if label == "ec":  # the EC certificate is also stored in the token, beside the key
                _run(*tool, "--write-object", str(der), "--type", "cert", "--id", obj_id, "--label", label)

    def uri(self, label: str) -> str:
        return f"pkcs11:token={self.label};object={label}"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    return Token(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(scope="module")
def hsm_emu(tmp_path_factory: pytest.TempPathFactory, token: Token, library: Path) -> Iterator[Emu]:
    """An emulator with the standard enrollments and a group on the token keys' CA."""
    tmp = tmp_path_factory.mktemp("hsm-emulator")
    config = tmp / "emulator.toml"
    config.write_text(
        # Relative paths in the standard config are relative to its directory.
        EMULATOR_CONFIG.read_text().replace('_file = "', f'_file = "{EMULATOR_CONFIG.parent}/')
        + f'\n[[enrollments]]\ngroup_id = "py-hsm-group"\nattestation = "x509"\nca_pem = """{token.ca_pem}"""\n'
        + f'\n[[enrollments]]\nregistration_id = "py-hsm-sas"\nattestation = "symmetric_key"\nprimary_key = "{token.sas_key}"\n'
    )
    emu = start_emulator(config, tmp)
    try:
        yield emu
    finally:
        stop_emulator(emu)


def test_pkcs11_keys_register(token: Token, hsm_emu: Emu) -> None:
    # EC key, the chain (leaf + CA) given as PEM text; module and PIN as keywords.
    reg = dps.register(SCOPE, pkcs11_uri=token.uri("ec"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, cert=token.chains["ec"], **hsm_emu.opts())
    assert reg.device_id == "py-hsm-ec"
    assert reg.enrollment_group_id == "py-hsm-group"
    # RSA key, the chain as PEM text; module and PIN in the URI.
    uri = f"{token.uri('rsa')}?module-path={SOFTHSM_MODULE}&pin-value={PIN}"
    reg = dps.register(SCOPE, pkcs11_uri=uri, cert=token.chains["rsa"], **hsm_emu.opts())
    assert reg.device_id == "py-hsm-rsa"


def test_pkcs11_certificate_from_the_token(token: Token, hsm_emu: Emu) -> None:
    # No cert: the certificate stored in the token beside the key (the leaf alone; the
    # group's root CA is known to the emulator).
    with dps.Client(SCOPE, pkcs11_uri=token.uri("ec"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, **hsm_emu.opts()) as c:
        assert c.register().device_id == "py-hsm-ec"


def test_pkcs11_hmac_key_registers(token: Token, hsm_emu: Emu) -> None:
    reg = dps.register(SCOPE, "py-hsm-sas", pkcs11_hmac_uri=token.uri("sas"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, **hsm_emu.opts())
    assert reg.device_id == "py-hsm-sas"
    assert reg.connection_string is None, "a key not in memory cannot be put in a connection string"


def test_pkcs11_errors_never_show_the_pin(token: Token, hsm_emu: Emu) -> None:
    wrong = "wrong-py-pin-2236"
    with pytest.raises(dps.DpsError) as ei:
        dps.Client(SCOPE, pkcs11_uri=token.uri("rsa"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=wrong, cert=token.chains["rsa"], **hsm_emu.opts())
    assert ei.value.status == dps.Status.PKCS11_PIN, ei.value
    assert wrong not in str(ei.value) and wrong not in repr(ei.value)
    with pytest.raises(dps.DpsError) as ei:
        dps.Client(SCOPE, pkcs11_uri=token.uri("nothing"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, **hsm_emu.opts())
    assert ei.value.status == dps.Status.PKCS11_OBJECT, ei.value
    assert PIN not in str(ei.value)
    with pytest.raises(dps.DpsError) as ei:
        dps.Client(SCOPE, pkcs11_uri=token.uri("rsa"), pkcs11_module="/nonexistent/p11.so", pkcs11_pin=PIN, **hsm_emu.opts())
    assert ei.value.status == dps.Status.PKCS11_MODULE, ei.value
    # No certificate stored for the RSA key and none given.
    with pytest.raises(dps.DpsError) as ei:
        dps.Client(SCOPE, pkcs11_uri=token.uri("rsa"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, **hsm_emu.opts())
    assert ei.value.status == dps.Status.PKCS11_OBJECT, ei.value


def test_pkcs11_csr_signed_in_the_token(token: Token, hsm_emu: Emu) -> None:
    """csr='pkcs11:...': the CSR for the token's RSA key is signed inside the token; the issued
    leaf certifies that key and no key is handed out."""
    reg = dps.register(
        SCOPE, "dev-sym", symmetric_key=KEY, csr=token.uri("rsa"),
        pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=PIN, **hsm_emu.opts(),
    )
    leaf = x509.load_pem_x509_certificates((reg.issued_chain_pem or "").encode())[0]
    token_key = x509.load_pem_x509_certificates(token.chains["rsa"].encode())[0].public_key()
    spki = lambda k: k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # noqa: E731
    assert spki(leaf.public_key()) == spki(token_key)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-sym"
    assert reg.issued_key_pem is None
    wrong = "wrong-py-pin-5772"
    with pytest.raises(dps.DpsError) as ei:
        dps.Client(SCOPE, "dev-sym", symmetric_key=KEY, csr=token.uri("nothing"), pkcs11_module=SOFTHSM_MODULE, pkcs11_pin=wrong, **hsm_emu.opts())
    assert wrong not in str(ei.value)
