"""Build hook: bundles libdps into the package.

``pip install ./python`` (from the repository root) runs
``cargo build --release -p dps`` in the repository and copies
``target/release/libdps.so`` next to ``dps/__init__.py``. Environment:

- ``DPS_LIBRARY=/path/to/libdps.so``: bundle this file instead (no cargo run);
- ``DPS_SKIP_CARGO=1``: do not run cargo, bundle the existing build output;
- ``CARGO_TARGET_DIR``: where cargo puts its output (honoured as cargo does).

The wheel is tagged ``py3-none-<platform>``: pure Python, with a native library.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIB_NAME = {"darwin": "libdps.dylib", "win32": "dps.dll"}.get(sys.platform, "libdps.so")


def _built_library() -> Path:
    explicit = os.environ.get("DPS_LIBRARY")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            sys.exit(f"DPS_LIBRARY={p} does not exist")
        return p
    if not (REPO / "Cargo.toml").is_file():
        sys.exit(
            "cannot find the dps Cargo workspace next to python/; "
            "set DPS_LIBRARY=/path/to/libdps.so to bundle a prebuilt library"
        )
    if not os.environ.get("DPS_SKIP_CARGO"):
        cmd = ["cargo", "build", "--release", "-p", "dps"]
        print("running", " ".join(cmd), "in", REPO, flush=True)
        try:
            subprocess.run(cmd, cwd=REPO, check=True)
        except FileNotFoundError:
            sys.exit("cargo not found: install Rust (https://rustup.rs) or set DPS_LIBRARY")
        except subprocess.CalledProcessError as e:
            sys.exit(f"`{' '.join(cmd)}` failed with exit code {e.returncode}")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    lib = target / "release" / LIB_NAME
    if not lib.is_file():
        sys.exit(f"{lib} was not produced; run `cargo build --release -p dps`")
    return lib


class BuildPyWithLibrary(build_py):
    """build_py that also builds (or finds) libdps and puts it into the package."""

    def run(self) -> None:
        super().run()
        lib = _built_library()
        dest = Path(self.build_lib) / "dps" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest)
        print(f"bundled {lib} as {dest}", flush=True)


cmdclass = {"build_py": BuildPyWithLibrary}

try:
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:  # setuptools < 70
        from wheel.bdist_wheel import bdist_wheel

    class PlatformWheel(bdist_wheel):
        """Not pure (it carries libdps) but independent of the Python ABI."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel
except ImportError:
    pass

setup(cmdclass=cmdclass)
