"""pytest fixtures: one dps-emulator process per session (127.0.0.1, ephemeral port).

Nothing is built here. Build first:  cargo build --release -p dps -p dps-emulator
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # older Pythons: the same parser as a package
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        pytest.exit("the tests read tests/fixtures/emulator.toml: use Python 3.11+ or `pip install tomli`", returncode=4)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "x509"
# The standard emulator (scope, hubs, enrollments) shared with the Rust tests, the demo and the
# bench; the test keys are read from it.
EMULATOR_CONFIG = REPO / "tests" / "fixtures" / "emulator.toml"
_STANDARD = tomllib.loads(EMULATOR_CONFIG.read_text())


def _enrollment_key(kind: str, name: str) -> str:
    for e in _STANDARD["enrollments"]:
        if e.get(kind) == name:
            return e["primary_key"]
    raise AssertionError(f"{kind} {name} is not in {EMULATOR_CONFIG}")


SCOPE = _STANDARD["id_scope"]
KEY = _enrollment_key("registration_id", "dev-sym")
OTHER_KEY = _enrollment_key("registration_id", "dev-other")
GROUP_KEY = _enrollment_key("group_id", "sym-group")
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


def start_emulator(config: Path, tmp: Path) -> Emu:
    """Starts ``dps-emulator --config config`` on an ephemeral port (its CA written into
    ``tmp``); fails the test run with the emulator's stderr if it does not come up."""
    exe = _find("DPS_EMULATOR", "dps-emulator", profiles=("release", "debug"))
    ca = tmp / "ca.pem"
    proc = subprocess.Popen(
        [str(exe), "--config", str(config), "--port", "0", "--ca-out", str(ca), "--quiet"],
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
    return Emu(port=port, ca=ca, endpoint=f"localhost:{port}", proc=proc)


def stop_emulator(emu: Emu) -> None:
    emu.proc.terminate()
    try:
        emu.proc.wait(10)
    except subprocess.TimeoutExpired:
        emu.proc.kill()
        emu.proc.wait()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory, library: Path) -> Iterator[Emu]:
    emu = start_emulator(EMULATOR_CONFIG, tmp_path_factory.mktemp("emulator"))
    try:
        yield emu
    finally:
        stop_emulator(emu)


@pytest.fixture
def emu(emulator: Emu) -> Emu:
    if emulator.proc.poll() is not None:
        pytest.fail(f"the emulator exited with {emulator.proc.returncode}")
    return emulator


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
