"""Cost of one TPM registration (PROTOCOL.md 5.4) against swtpm, from the release build: wall
time, CPU of the client process, CPU of swtpm, TPM commands on the wire, and the peak heap
(valgrind massif) of one registration. The client is bench/c/register_tpm.c linked with
target/release-hw/libdps.a (--features pkcs11,tpm), one process per registration and N in one
process; the TPM is a fresh swtpm (dps-swtpm), reached through a counting TCP proxy for the
command counts only (timings go to swtpm directly); the DPS side is the release dps-emulator in
its own process (its CPU is not counted). Needs .ci/build-release first, cc, swtpm, libtss2-dev
and valgrind. Usage: python3 bench/tpm.py [N] (default 20)."""
import os, socket, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

WT = Path(__file__).resolve().parents[1]
T = Path(os.environ.get("CARGO_TARGET_DIR", WT / "target"))
HW = T / "release-hw"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
B = Path(tempfile.mkdtemp(prefix="dps-bench-tpm-"))
for need in (HW / "libdps.a", HW / "libdps.so", T / "release/dps-emulator", T / "release/dps-swtpm"):
    assert need.exists(), f"{need} is missing: run .ci/build-release first"

# The client: the C ABI, statically linked as C users do (libs from rustc's native-static-libs).
libs = (HW / "native-static-libs.txt").read_text().split("native-static-libs:")[1].splitlines()[0].split()
exe = B / "register_tpm"
subprocess.run(["cc", "-O2", "-ffunction-sections", "-fdata-sections", f"-I{WT / 'include'}", str(WT / "bench/c/register_tpm.c"),
                str(HW / "libdps.a"), *libs, "-Wl,--gc-sections", "-o", str(exe)], check=True)

# The TPM, and a proxy in front of its command port counting TPM commands (10-byte header:
# tag, size, command code), forwarding the control port (port + 1) untouched.
swtpm = subprocess.Popen([str(T / "release/dps-swtpm")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
tcti = swtpm.stdout.readline().split(" ", 1)[1].strip()
tpm_port = int(tcti.rsplit("port=", 1)[1])
swtpm_pid = int(subprocess.run(["pgrep", "-P", str(swtpm.pid), "swtpm"], capture_output=True, text=True).stdout.split()[0])
commands = []
lock = threading.Lock()


def pipe(src, dst, count):
    try:
        buf = b""
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if count:
                buf += data
                while len(buf) >= 10 and len(buf) >= int.from_bytes(buf[2:6], "big"):
                    with lock:
                        commands.append(int.from_bytes(buf[6:10], "big"))
                    buf = buf[int.from_bytes(buf[2:6], "big"):]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def listen_pair():
    while True:
        a = socket.socket(); a.bind(("127.0.0.1", 0)); p = a.getsockname()[1]
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", p + 1))
            return a, b, p
        except OSError:
            a.close(); b.close()


def serve(listener, target, count):
    listener.listen(8)
    while True:
        c, _ = listener.accept()
        u = socket.create_connection(("127.0.0.1", target))
        threading.Thread(target=pipe, args=(c, u, count), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c, False), daemon=True).start()


cmd_l, ctl_l, proxy_port = listen_pair()
threading.Thread(target=serve, args=(cmd_l, tpm_port, True), daemon=True).start()
threading.Thread(target=serve, args=(ctl_l, tpm_port + 1, False), daemon=True).start()
proxied = f"swtpm:host=127.0.0.1,port={proxy_port}"

# The enrollment: the EK (created on this fresh TPM) read through the Python package.
sys.path.insert(0, str(WT / "python"))
import dps  # noqa: E402

dps.load_library(HW / "libdps.so")
rid, ek = dps.tpm_info(tcti, create_missing=True)
cfg = (WT / "tests/fixtures/emulator.toml").read_text().replace('_file = "', f'_file = "{WT}/tests/fixtures/')
(B / "emu.toml").write_text(cfg + f'\n[[enrollments]]\nregistration_id = "{rid}"\nattestation = "tpm"\nendorsement_key = "{ek}"\ndevice_id = "bench-tpm"\n')
emu = subprocess.Popen([str(T / "release/dps-emulator"), "--config", str(B / "emu.toml"), "--port", "0", "--ca-out", str(B / "ca.pem"), "--quiet"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = int(emu.stdout.readline().strip().rsplit(":", 1)[1])
env = {"PATH": os.environ["PATH"], "DPS_ID_SCOPE": "0ne00000001", "DPS_ENDPOINT": f"localhost:{port}", "DPS_CA_FILE": str(B / "ca.pem"),
       "DPS_TPM_TCTI": proxied, "TSS2_LOG": "all+none"}


def swtpm_cpu_ms():
    f = open(f"/proc/{swtpm_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def run(tcti_used, args=()):
    e = dict(env, DPS_TPM_TCTI=tcti_used)
    with lock:
        commands.clear()
    s0 = swtpm_cpu_ms(); t = time.monotonic()
    p = subprocess.Popen([str(exe), *args], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    w = time.monotonic() - t
    time.sleep(0.05)  # the proxy's last frames
    assert status == 0 and b"bench-tpm" in out, (out, err)
    with lock:
        n = len(commands)
    inner = [tuple(int(x) / 1e6 for x in l.split()) for l in err.decode().splitlines() if l and l[0].isdigit()]
    return w * 1000, (ru.ru_utime + ru.ru_stime) * 1000, swtpm_cpu_ms() - s0, n, inner


run(tcti)  # warm-up
# TPM commands on the wire (through the counting proxy): one process = open + 1 registration;
# one process with 5 registrations gives the cost of each further registration.
n1 = run(proxied)[3]
n5 = run(proxied, ("5",))[3]
# Timing without the proxy: one process per registration (start-up, TPM open, TLS, all of it) ...
cpu, wall, tpm_cpu = [], [], []
for i in range(N):
    w, c, tc, _, _ = run(tcti)
    wall.append(w); cpu.append(c); tpm_cpu.append(tc)
# ... and N registrations in one process (one TPM connection, one client): each one alone.
_, _, tc_loop, _, inner = run(tcti, (str(N),))
loop_cpu = [c for c, _ in inner[1:]]
loop_wall = [w for _, w in inner[1:]]
if os.environ.get("BENCH_PERF"):  # where the client's CPU goes (perf, one registration)
    pd = B / "perf.data"
    subprocess.run(["perf", "record", "-q", "-F", "20000", "-g", "-o", str(pd), str(exe), "10"], env=dict(env, DPS_TPM_TCTI=tcti), check=True, capture_output=True)
    print(subprocess.run(["perf", "report", "-i", str(pd), "--stdio", "--no-children", "-g", "none", "--sort", "dso"], capture_output=True, text=True).stdout[:3000])
mo = B / "massif.out"
subprocess.run(["valgrind", "--tool=massif", "--pages-as-heap=no", "--detailed-freq=1", "--max-snapshots=1000", "--threshold=0",
                f"--massif-out-file={mo}", str(exe)], env=dict(env, DPS_TPM_TCTI=tcti), check=True, capture_output=True)
# Every snapshot is detailed, with the whole tree (threshold 0). Per snapshot: the total (heap +
# overhead, the whole process: libtss2, the libcrypto it loads, libc), and the bytes whose
# allocating function is in the executable, i.e. Rust code: dps and its crates (tss-esapi's
# wrapper included), not the C libraries. "During registration": snapshots holding a block
# allocated under dps_client_register (the TPM was opened before, in dps_config_set_tpm).
snaps = mo.read_text().split("#-----------\nsnapshot=")[1:]
peak = reg_peak = rust_peak = rust_reg_peak = 0
for snap in snaps:
    lines = snap.splitlines()
    total = sum(int(l.split("=")[1]) for l in lines if l.startswith(("mem_heap_B=", "mem_heap_extra_B=")))
    rust = sum(int(l.split()[1]) for l in lines if l.startswith(" n") and not l.startswith("  ") and f"(in {exe})" in l)
    during = "dps_client_register" in snap
    peak, rust_peak = max(peak, total), max(rust_peak, rust)
    if during:
        reg_peak, rust_reg_peak = max(reg_peak, total), max(rust_reg_peak, rust)
ms = subprocess.run(["ms_print", str(mo)], capture_output=True, text=True).stdout
clk = 1000 / os.sysconf("SC_CLK_TCK")
print(f"TPM registration (register_tpm.c, release-hw libdps.a, swtpm, release dps-emulator in its own process), n={N}:")
print(f"  TPM commands: {n1} for a process that opens the TPM and registers once; "
      f"{(n5 - n1) / 4:.1f} per further registration on the same connection")
print(f"  one process per registration: median wall {statistics.median(wall):.1f} ms (min {min(wall):.1f}, max {max(wall):.1f}), "
      f"median client CPU {statistics.median(cpu):.2f} ms (user+sys, start-up included), median swtpm CPU {statistics.median(tpm_cpu):.0f} ms "
      f"(clock ticks of {clk:.0f} ms)")
print(f"  {N} in one process (first excluded): median wall {statistics.median(loop_wall):.1f} ms (min {min(loop_wall):.1f}), "
      f"median client CPU {statistics.median(loop_cpu):.2f} ms per registration, swtpm CPU {tc_loop / N:.1f} ms per registration")
print(f"  peak heap, valgrind massif, one registration: whole process {peak} B ({peak / 1024:.1f} KiB), "
      f"{reg_peak} B ({reg_peak / 1024:.1f} KiB) while dps_client_register runs")
print(f"    allocated by Rust code (dps and its crates; not libtss2/libcrypto/libc): {rust_peak} B ({rust_peak / 1024:.1f} KiB) "
      f"at most, {rust_reg_peak} B ({rust_reg_peak / 1024:.1f} KiB) while dps_client_register runs")
if os.environ.get("BENCH_MASSIF"):
    print(ms)
emu.terminate(); emu.wait(10)
swtpm.stdin.close(); swtpm.wait(10)
import shutil  # noqa: E402
shutil.rmtree(B, ignore_errors=True) if not os.environ.get("BENCH_KEEP") else print(B)
