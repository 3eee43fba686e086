#!/usr/bin/env bash
# Compiles the built-in kernel library (gpupool_kernels.cu, which includes the other .cu files) into one PTX
# module for sm_70; drivers JIT-compile it for whatever GPU they run.
#
#   native/kernels/build-ptx.sh [--compiler auto|clang|nvcc] [OUTPUT]
#
# OUTPUT defaults to native/kernels/ptx/gpupool_kernels.ptx, the checked-in module. --compiler auto (the
# default) uses nvcc when it is on PATH and clang-14 otherwise. The checked-in module is the clang-14 build
# (`--compiler clang`, Debian's clang-14 package, no CUDA SDK needed), because that is what the tests can
# reproduce on any machine: tests/GpuPool.Devices.Tests checks that it is byte for byte what this script
# makes with --compiler clang.
#
# Multiply-adds are fused only where the source asks for it (gp_fma: GEMM, exp, log), so the elementwise and
# optimizer kernels round exactly as the cpu backend does.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
compiler=auto
output="$here/ptx/gpupool_kernels.ptx"
while [ $# -gt 0 ]; do
    case "$1" in
        --compiler) compiler="${2:?--compiler needs auto, clang or nvcc}"; shift 2 ;;
        --compiler=*) compiler="${1#--compiler=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "build-ptx.sh: unknown option $1" >&2; exit 2 ;;
        *) output="$1"; shift ;;
    esac
done

if [ "$compiler" = auto ]; then
    if command -v nvcc >/dev/null 2>&1; then compiler=nvcc; else compiler=clang; fi
fi

case "$output" in /*) ;; *) output="$PWD/$output" ;; esac
mkdir -p "$(dirname "$output")"
# Compile from the source folder with a relative file name, so nothing about this checkout ends up in the PTX.
cd "$here"
case "$compiler" in
    clang)
        if ! command -v clang-14 >/dev/null 2>&1; then
            echo "build-ptx.sh: clang-14 is not installed; install it with: apt-get update && apt-get install -y clang-14" >&2
            exit 1
        fi
        # -Wno-unknown-cuda-version: clang 14 knows CUDA up to 11.5 and warns about a newer toolkit it finds
        # installed, which it does not use here (-nocudainc -nocudalib).
        clang-14 -x cuda --cuda-device-only -nocudainc -nocudalib --cuda-gpu-arch=sm_70 -O3 -ffp-contract=off \
            -Wall -Wextra -Werror -Wno-unknown-cuda-version -S gpupool_kernels.cu -o "$output"
        ;;
    nvcc)
        nvcc -ptx -arch=sm_70 -fmad=false gpupool_kernels.cu -o "$output"
        ;;
    *)
        echo "build-ptx.sh: --compiler must be auto, clang or nvcc, not '$compiler'" >&2
        exit 2
        ;;
esac
echo "wrote $output ($compiler)"
