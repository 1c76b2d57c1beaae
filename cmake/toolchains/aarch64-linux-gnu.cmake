# CMake toolchain file for aarch64 Linux (glibc) with Debian/Ubuntu's cross gcc
# (gcc-aarch64-linux-gnu). dps derives the Rust target from the compiler
# (aarch64-linux-gnu -> aarch64-unknown-linux-gnu); set
# -DDPS_CARGO=/usr/bin/cargo -DDPS_RUSTC=/usr/bin/rustc for Debian's rustc-web
# with libstd-rust-web-dev for this architecture (README, "Cross-compiling").
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Packages (find_package(dps) of an unpacked archive) may live anywhere.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
