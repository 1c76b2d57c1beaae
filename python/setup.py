"""Build hook: bundles libdps into the package.

``pip install ./python`` (from the repository root) runs, in the repository,
the README's build command (the one ``.ci/build-release`` and CMake run)::

    cargo rustc --release -p dps --lib --crate-type staticlib --crate-type cdylib \
        -- --print native-static-libs

and copies ``target/release/libdps.so`` next to ``dps/__init__.py``. Not
``cargo build``: with ``rlib`` among the crate types cargo skips LTO and the
library comes out ~27 % larger. Environment:

- ``DPS_LIBRARY=/path/to/libdps.so``: bundle this file instead (no cargo run);
- ``DPS_SKIP_CARGO=1``: do not run cargo, bundle the existing build output;
- ``CARGO_TARGET_DIR``: where cargo puts its output (honoured as cargo does);
- ``DPS_CARGO``: the cargo to run (default ``cargo``), ``DPS_RUSTC``: the rustc
  it uses (exported as ``RUSTC``), e.g. Debian's ``/usr/bin/cargo`` and
  ``/usr/bin/rustc`` for a cross build;
- ``DPS_RUST_TARGET``: build for this Rust target (``--target``; the library
  is taken from ``target/<triple>/release``) and tag the wheel for it
  (``aarch64-unknown-linux-gnu`` -> ``linux_aarch64``,
  ``armv7-unknown-linux-gnueabihf`` -> ``linux_armv7l``). The cross linker
  comes from cargo's usual ``CARGO_TARGET_<TRIPLE>_LINKER``.

The wheel is tagged ``py3-none-<platform>``: pure Python, with a native library.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
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
    triple = os.environ.get("DPS_RUST_TARGET", "")
    target_args = ["--target", triple] if triple else []
    cmd = (
        [os.environ.get("DPS_CARGO") or "cargo", "rustc", "--release", "-p", "dps", "--lib"]
        + target_args
        + ["--crate-type", "staticlib", "--crate-type", "cdylib"]
        + ["--", "--print", "native-static-libs"]
    )
    if not os.environ.get("DPS_SKIP_CARGO"):
        env = dict(os.environ)
        if os.environ.get("DPS_RUSTC"):
            env["RUSTC"] = os.environ["DPS_RUSTC"]
        print("running", " ".join(cmd), "in", REPO, flush=True)
        try:
            subprocess.run(cmd, cwd=REPO, check=True, env=env)
        except FileNotFoundError:
            sys.exit(f"{cmd[0]} not found: install Rust (https://rustup.rs) or set DPS_LIBRARY")
        except subprocess.CalledProcessError as e:
            sys.exit(f"`{' '.join(cmd)}` failed with exit code {e.returncode}")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    lib = target / triple / "release" / LIB_NAME if triple else target / "release" / LIB_NAME
    if not lib.is_file():
        sys.exit(f"{lib} was not produced; run `{' '.join(cmd)}`")
    return lib


# Wheel platform tags of the Rust targets a cross build may name.
PLATFORMS = {
    "x86_64-unknown-linux-gnu": "linux_x86_64",
    "aarch64-unknown-linux-gnu": "linux_aarch64",
    "armv7-unknown-linux-gnueabihf": "linux_armv7l",
    "i686-unknown-linux-gnu": "linux_i686",
}


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
            triple = os.environ.get("DPS_RUST_TARGET")
            if triple and not self.plat_name_supplied:
                if triple not in PLATFORMS:
                    sys.exit(f"no wheel platform tag known for DPS_RUST_TARGET={triple}; pass --plat-name")
                plat = PLATFORMS[triple]
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = PlatformWheel
except ImportError:
    pass

class BinaryDistribution(Distribution):
    """Carries a native library: files go to platlib (what auditwheel requires), not purelib."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass=cmdclass, distclass=BinaryDistribution)
