// The built-in kernel library as one translation unit, compiled by build-ptx.sh into ptx/gpupool_kernels.ptx.
// Names, parameter lists and semantics are those of the cpu backend's BuiltinKernels
// (src/GpuPool.Devices/Cpu/Kernels); see native/README.md.
#include "elementwise.cu"
#include "reduce.cu"
#include "gemm.cu"
#include "nn.cu"
#include "optim.cu"
