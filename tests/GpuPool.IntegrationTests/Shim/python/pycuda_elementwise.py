"""pycuda through the libcuda shim: a kernel compiled at run time (SourceModule, which runs nvcc) and a gpuarray
reduction, both checked against numpy. Prints `PASS pycuda_elementwise: ...` and exits 0, or `FAIL ...` and exits 1.
Run it as `gpupool run -- python3 pycuda_elementwise.py`."""

import shutil
import sys

import numpy as np
import pycuda.autoinit  # noqa: F401  (creates the context on device 0)
import pycuda.driver as drv
import pycuda.gpuarray as gpuarray
from pycuda.compiler import SourceModule

N = 10_000

# CUDA 11.8's nvcc supports no g++ of Debian 12, and SourceModule runs nvcc: give it clang-14 where there is one.
NVCC_OPTIONS = ["-ccbin", "clang-14"] if shutil.which("clang-14") else None

module = SourceModule("""
__global__ void scaled_add(float *out, const float *a, const float *b, float scale, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = scale * a[i] + b[i];
    }
}
""", options=NVCC_OPTIONS)
scaled_add = module.get_function("scaled_add")

rng = np.random.default_rng(7)
a = rng.random(N, dtype=np.float32)
b = rng.random(N, dtype=np.float32)
out = np.zeros_like(a)
scaled_add(drv.Out(out), drv.In(a), drv.In(b), np.float32(3.0), np.int32(N), block=(256, 1, 1), grid=((N + 255) // 256, 1))
wrong = int(np.count_nonzero(np.abs(out - (3.0 * a + b)) > 1e-5))

values = gpuarray.to_gpu(a)
total = float(gpuarray.sum(values).get())
expected = float(np.sum(a, dtype=np.float64))
sum_ok = abs(total - expected) <= 1e-3 * abs(expected)

if wrong == 0 and sum_ok:
    print(f"PASS pycuda_elementwise: scaled_add over {N} elements, gpuarray.sum {total:.3f} (numpy {expected:.3f})")
    sys.exit(0)

print(f"FAIL pycuda_elementwise: {wrong} wrong values of scaled_add, gpuarray.sum {total:.3f} against numpy's {expected:.3f}")
sys.exit(1)
