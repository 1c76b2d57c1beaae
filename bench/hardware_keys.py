"""CPU per registration and peak heap (valgrind massif) of one X.509 registration with the
in-memory key, the signing callback (c-examples/register_signer.c, openssl pkeyutl per
signature) and SoftHSM2 (c-examples/register_pkcs11.c), against the release dps-emulator.
Needs the C examples built by tests/c_examples.rs and tests/c_examples_pkcs11.rs
(target/c-tests/build-signer, and build-pkcs11 against target/release-hw), softhsm2, opensc, valgrind, openssl and the
`cryptography` package. Usage: python3 bench/hardware_keys.py [N]"""
import os, subprocess, sys, datetime, statistics, threading, time, re
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
WT = Path(__file__).resolve().parents[1]; T = Path(os.environ.get("CARGO_TARGET_DIR", WT / "target"))
import tempfile; B = Path(tempfile.mkdtemp(prefix="dps-hwkeys-")); M = "/usr/lib/softhsm/libsofthsm2.so"; PIN = "1234"
subprocess.run(["rm", "-rf", str(B / "tokens")]); (B / "tokens").mkdir()
(B / "conf").write_text(f"directories.tokendir = {B/'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
os.environ["SOFTHSM2_CONF"] = str(B / "conf")
run = lambda *a: subprocess.run(a, check=True, capture_output=True)
run("softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN, "--so-pin", "5678")
tool = ["pkcs11-tool", "--module", M, "--token-label", "bench", "--login", "--pin", PIN]
run(*tool, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "ec")
run("pkcs11-tool", "--module", M, "--token-label", "bench", "--read-object", "--type", "pubkey", "--id", "01", "-o", str(B / "pub.der"))
cak = ec.generate_private_key(ec.SECP256R1()); now = datetime.datetime.now(datetime.timezone.utc)
n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench root")])
ca = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(cak.public_key()).serial_number(1)
      .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True).sign(cak, hashes.SHA256()))
leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-hsm")])).issuer_name(n)
        .public_key(serialization.load_der_public_key((B / "pub.der").read_bytes())).serial_number(2)
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False).sign(cak, hashes.SHA256()))
(B / "leaf.der").write_bytes(leaf.public_bytes(serialization.Encoding.DER))
run(*tool, "--write-object", str(B / "leaf.der"), "--type", "cert", "--id", "01", "--label", "ec")
cfgsrc = (WT / "tests/fixtures/emulator.toml").read_text().replace('_file = "', f'_file = "{WT}/tests/fixtures/')
(B / "emu.toml").write_text(cfgsrc + f'\n[[enrollments]]\ngroup_id = "bench-hsm"\nattestation = "x509"\nca_pem = """{ca.public_bytes(serialization.Encoding.PEM).decode()}"""\n')
emu = subprocess.Popen([str(T / "release/dps-emulator"), "--config", str(B / "emu.toml"), "--port", "0", "--ca-out", str(B / "ca.pem"), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(emu.stdout.readline().strip().rsplit(":", 1)[1])
fx = WT / "tests/fixtures/x509"
common = {"PATH": os.environ["PATH"], "DPS_ID_SCOPE": "0ne00000001", "DPS_ENDPOINT": f"localhost:{port}", "DPS_CA_FILE": str(B / "ca.pem"), "SOFTHSM2_CONF": str(B / "conf")}
cases = {
  "in-memory key (register_x509.c, PEM files)": (T / "c-tests/build-signer/c-examples/register_x509", {"DPS_CERT_FILE": str(fx / "p256.cert.pem"), "DPS_KEY_FILE": str(fx / "p256.key.pem")}),
  "signer callback (register_signer.c; openssl pkeyutl per signature)": (T / "c-tests/build-signer/c-examples/register_signer", {"DPS_CERT_FILE": str(fx / "p256.cert.pem"), "DPS_SIGNER_KEY_FILE": str(fx / "p256.key.pem")}),
  "SoftHSM2 (register_pkcs11.c, certificate from the token)": (T / "c-tests/build-pkcs11/c-examples/register_pkcs11", {"DPS_PKCS11_URI": "pkcs11:token=bench;object=ec", "DPS_PKCS11_MODULE": M, "DPS_PKCS11_PIN": PIN}),
}
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
for name, (exe, env) in cases.items():
    e = dict(common, **env); cpu = []; wall = []
    for i in range(N):
        t = time.monotonic(); p = subprocess.Popen([str(exe)], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = p.stdout.read(), p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0); wall.append(time.monotonic() - t)
        assert status == 0, (name, out, err)
        cpu.append((ru.ru_utime + ru.ru_stime) * 1000)
    mo = B / "massif.out"
    subprocess.run(["valgrind", "--tool=massif", "--pages-as-heap=no", f"--massif-out-file={mo}", str(exe)], env=e, check=True, capture_output=True)
    peak = 0; h = 0
    for line in mo.read_text().splitlines():
        if line.startswith("mem_heap_B="): h = int(line.split("=")[1])
        if line.startswith("mem_heap_extra_B="): peak = max(peak, h + int(line.split("=")[1]))
    print(f"{name}: n={N} median CPU {statistics.median(cpu):.2f} ms/registration (process + children, incl. start-up), median wall {statistics.median(wall)*1000:.1f} ms, peak heap {peak} B ({peak/1024:.1f} KiB)")
emu.terminate(); emu.wait(10)
import shutil; shutil.rmtree(B, ignore_errors=True)
