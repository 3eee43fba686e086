// Kernels whose parameter lists cover what a launch packs: pointers, scalars of every size, structs that force
// padding before and after them, vector types aligned to 16, tail padding, no parameters, a template, and a block of
// 4000 bytes (which needs the high bits of EIATTR_KPARAM_INFO's size field).

struct Float3 { float x, y, z; };           // 12 bytes, aligned to 4
struct Tagged { double value; char tag; };  // 16 bytes, aligned to 8
struct Block4000 { int v[1000]; };

extern "C" __global__ void pointers(float* a, const int* b, unsigned long long* out) { out[0] = a[0] + b[0]; }

extern "C" __global__ void scalars(char c, double d, int i, short s, float f, float* out) { out[0] = c + d + i + s + f; }

extern "C" __global__ void by_struct(char c, Float3 v, Tagged t, float* out) { out[0] = c + v.x + v.z + t.value + t.tag; }

extern "C" __global__ void vectors(int4 v, char c, float2 f, float* out) { out[0] = v.x + v.w + c + f.y; }

extern "C" __global__ void tail_padding(double d, char c) { if (d > c) { asm volatile("trap;"); } }

extern "C" __global__ void no_params() {}

extern "C" __global__ void big(Block4000 b, char c, int* out) { out[0] = b.v[0] + b.v[999] + c; }

template <typename T> __global__ void templated(T* out, T v) { out[0] = v; }
template __global__ void templated<float>(float*, float);
