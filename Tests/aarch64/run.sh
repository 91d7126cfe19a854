#!/usr/bin/env bash
# Cross-builds the C kernels and Tests/aarch64/driver.c for aarch64-linux-gnu and runs the driver
# under qemu-user on CPU models with and without the dot-product and int8-matrix extensions.
# Installs what it needs (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user).
# Ends with "N passed, N failed" summed over the runs; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need+=(libc6-dev-arm64-cross)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v file >/dev/null || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
CC=${CC:-}
if [ -z "$CC" ]; then
    # clang, as the Swift toolchain and Xcode build the kernels; gcc when no clang is around.
    if command -v clang >/dev/null && clang --target=aarch64-linux-gnu -x c -c /dev/null -o /dev/null 2>/dev/null; then
        CC="clang --target=aarch64-linux-gnu"
    else
        CC=aarch64-linux-gnu-gcc
    fi
fi
out=${CONDENSE_AARCH64_BUILD:-/tmp/condense-aarch64}
rm -rf "$out" && mkdir -p "$out"
flags=(-O2 -fno-math-errno -Wall -Werror -IKernels/common -IKernels/include)
srcs=$(find Kernels -name '*.c' | sort)
for f in $srcs; do
    $CC "${flags[@]}" -c "$f" -o "$out/$(echo "$f" | tr / _).o" &
done
wait
$CC "${flags[@]}" Tests/aarch64/driver.c "$out"/*.o -lpthread -lm -o "$out/driver"
# Nothing x86 may leak into the ARM build: every object is AArch64, no x86 kernel symbol is
# defined, and no x86 register appears in the disassembly.
# (Captured first, then searched: `cmd | grep -q` under pipefail fails when grep stops early.)
formats=$(file -b "$out"/*.o)
other=$(grep -v 'ARM aarch64' <<< "$formats" || true)
if [ -n "$other" ]; then echo "$other"; echo "a kernel object is not AArch64"; exit 1; fi
syms=$(aarch64-linux-gnu-nm --defined-only "$out"/*.o)
if grep -E '__(avx2|avxvnni|avx512)' <<< "$syms"; then echo "x86 kernels in the aarch64 build"; exit 1; fi
grep -q 'condense_f32_gemm_ukernel_6x16__neon' <<< "$syms" || { echo "the NEON kernels are missing"; exit 1; }
disasm=$(aarch64-linux-gnu-objdump -d "$out"/*.o)
x86=$(grep -iE '%(xmm|ymm|zmm)|vfmadd|vpdpbusd' <<< "$disasm" || true)
if [ -n "$x86" ]; then head -3 <<< "$x86"; echo "x86 code found in the aarch64 objects"; exit 1; fi
# The Apple branch (sysctlbyname detection, no OpenMP) at least compiles: a syntax check for
# arm64-apple-macos, with the Debian cross libc standing in for the SDK this machine lacks and a
# two-line <sys/sysctl.h>. Not a build: Apple's own headers are not here.
stub=$out/apple-stub; mkdir -p "$stub/sys"
printf '#include <stddef.h>\nint sysctlbyname(const char *, void *, size_t *, void *, size_t);\n' > "$stub/sys/sysctl.h"
if [[ "$CC" == clang* ]]; then
    for f in $srcs; do
        clang --target=arm64-apple-macos13 -fsyntax-only -Wall -Werror -Wno-macro-redefined -D'__nonnull(x)=' \
            -I"$stub" -isystem /usr/aarch64-linux-gnu/include -IKernels/common -IKernels/include "$f" ||
            { echo "$f does not compile for arm64-apple-macos"; exit 1; }
    done
    echo "arm64-apple-macos: every kernel file compiles (syntax check)"
fi
total_pass=0; total_fail=0
# cortex-a53: Advanced SIMD only; neoverse-n1: + dot product; max: + i8mm, bf16, fp16. Each runs
# every level it has; CONDENSE_ISA lowers max to each level below, and asking a53 for dotprod
# must be refused.
runs=("cortex-a53:" "neoverse-n1:" "max:" "max:dotprod" "max:neon" "max:scalar" "cortex-a53:dotprod" "max:avx2")
for r in "${runs[@]}"; do
    cpu=${r%%:*}; isa=${r#*:}
    probe=; [ "$r" = "max:" ] && probe=1
    log=$(QEMU_LD_PREFIX=/usr/aarch64-linux-gnu CONDENSE_ISA=$isa CONDENSE_DRIVER_FMA_PROBE=$probe \
          qemu-aarch64 -cpu "$cpu" "$out/driver" 2>&1) || true
    summary=$(echo "$log" | tail -1)
    if [[ "$summary" =~ ^unavailable ]] && { [ "$isa" = dotprod ] && [ "$cpu" = cortex-a53 ] || [ "$isa" = avx2 ]; }; then
        echo "cpu $cpu CONDENSE_ISA=$isa: refused, as it should be"; total_pass=$((total_pass + 1)); continue
    fi
    if ! [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        echo "$log" | tail -20; echo "cpu $cpu CONDENSE_ISA=$isa: the driver did not finish"; total_fail=$((total_fail + 1)); continue
    fi
    echo "$log" | grep '^FAIL' | head -20 || true
    echo "cpu $cpu CONDENSE_ISA=${isa:-(unset)}: $(echo "$log" | head -1) — $summary"
    total_pass=$((total_pass + BASH_REMATCH[1])); total_fail=$((total_fail + BASH_REMATCH[2]))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
