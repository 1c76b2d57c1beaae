"""Cost of one TPM registration (PROTOCOL.md 5.4) against swtpm, from the release build: wall
time, CPU of the client process, CPU of swtpm, TPM commands on the wire, and the peak heap
(valgrind massif) of one registration. The client is bench/c/register_tpm.c linked with
target/release-hw/libdps.a (--features pkcs11,tpm), one process per registration; the TPM is a
fresh swtpm (dps-swtpm) behind a counting TCP proxy; the DPS side is the release dps-emulator in
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


cpu, wall, tpm_cpu, ncmd = [], [], [], []
for i in range(N + 1):
    with lock:
        commands.clear()
    s0 = swtpm_cpu_ms(); t = time.monotonic()
    p = subprocess.Popen([str(exe)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    w = time.monotonic() - t
    time.sleep(0.05)  # the proxy's last frames
    assert status == 0 and b"bench-tpm" in out, (out, err)
    if i == 0:
        continue  # warm-up (the first one also replaces nothing at 0x81000100)
    wall.append(w * 1000); cpu.append((ru.ru_utime + ru.ru_stime) * 1000); tpm_cpu.append(swtpm_cpu_ms() - s0)
    with lock:
        ncmd.append(len(commands))

if os.environ.get("BENCH_PERF"):  # where the client's CPU goes (perf, one registration)
    pd = B / "perf.data"
    subprocess.run(["perf", "record", "-q", "-F", "20000", "-g", "-o", str(pd), str(exe)], env=env, check=True, capture_output=True)
    print(subprocess.run(["perf", "report", "-i", str(pd), "--stdio", "--no-children", "-g", "none", "--sort", "dso"], capture_output=True, text=True).stdout[:3000])
mo = B / "massif.out"
subprocess.run(["valgrind", "--tool=massif", "--pages-as-heap=no", f"--massif-out-file={mo}", str(exe)], env=env, check=True, capture_output=True)
peak = h = 0
for line in mo.read_text().splitlines():
    if line.startswith("mem_heap_B="):
        h = int(line.split("=")[1])
    if line.startswith("mem_heap_extra_B="):
        peak = max(peak, h + int(line.split("=")[1]))
ms = subprocess.run(["ms_print", str(mo)], capture_output=True, text=True).stdout
print(f"TPM registration (register_tpm.c, release-hw libdps.a, swtpm, one process per registration), n={N}:")
print(f"  TPM commands per registration (open included): {sorted(set(ncmd))} (median {statistics.median(ncmd):.0f})")
print(f"  median wall {statistics.median(wall):.1f} ms (min {min(wall):.1f}, max {max(wall):.1f})")
print(f"  median client CPU {statistics.median(cpu):.2f} ms (user+sys of the process, start-up included)")
print(f"  median swtpm CPU {statistics.median(tpm_cpu):.1f} ms (clock ticks of {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms)")
print(f"  peak heap {peak} B ({peak / 1024:.1f} KiB), valgrind massif (heap + overhead) of one registration")
if os.environ.get("BENCH_MASSIF"):
    print(ms)
emu.terminate(); emu.wait(10)
swtpm.stdin.close(); swtpm.wait(10)
import shutil  # noqa: E402
shutil.rmtree(B, ignore_errors=True)
