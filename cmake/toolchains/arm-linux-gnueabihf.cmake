# CMake toolchain file for armv7 Linux (glibc) with Debian/Ubuntu's cross gcc
# (gcc-arm-linux-gnueabihf). dps derives the Rust target from the compiler
# (arm-linux-gnueabihf -> armv7-unknown-linux-gnueabihf); set
# -DDPS_CARGO=/usr/bin/cargo -DDPS_RUSTC=/usr/bin/rustc for Debian's rustc-web
# with libstd-rust-web-dev for this architecture (README, "Cross-compiling").
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Packages (find_package(dps) of an unpacked archive) may live anywhere.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
