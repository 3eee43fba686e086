// Kernels the PTX engine's tests run: nvcc compiles them to PTX during the test run.
extern "C" __global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i < n) {
        c[i] = a[i] + b[i];
    }
}

// A block sum: shared memory and barriers down to one warp, then shuffles.
extern "C" __global__ void block_sum(const int *in, int *out, int n)
{
    __shared__ int partial[256];
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? in[i] : 0;
    __syncthreads();
    for (int s = blockDim.x / 2; s >= 32; s >>= 1) {
        if (t < s) {
            partial[t] += partial[t + s];
        }
        __syncthreads();
    }
    if (t < 32) {
        int v = partial[t];
        for (int d = 16; d > 0; d >>= 1) {
            v += __shfl_down_sync(0xffffffff, v, d);
        }
        if (t == 0) {
            atomicAdd(out, v);
        }
    }
}

// A histogram with shared atomics, then global ones.
extern "C" __global__ void histogram(const unsigned char *data, unsigned int *bins, int n)
{
    __shared__ unsigned int local[16];
    if (threadIdx.x < 16) {
        local[threadIdx.x] = 0;
    }
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
        atomicAdd(&local[data[i] & 15], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 16) {
        atomicAdd(&bins[threadIdx.x], local[threadIdx.x]);
    }
}

// Writes one element past the end of its buffer from its last thread.
extern "C" __global__ void write_past(int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) {
        out[i] = i;
    }
}

// Never ends.
extern "C" __global__ void spin(volatile int *flag)
{
    while (*flag == 0) {
    }
}

// Half the block waits at a barrier, the other half at a warp shuffle that needs the first half.
extern "C" __global__ void split_barrier(int *out)
{
    int t = threadIdx.x;
    if (t < 16) {
        __syncthreads();
        out[t] = t;
    } else {
        out[t] = __shfl_sync(0xffffffff, t, 0);
    }
}

// Integer and float odds and ends: division, min/max, conversions, ballot, popc.
extern "C" __global__ void mixed(const int *in, float *fout, int *iout)
{
    int t = threadIdx.x;
    int v = in[t];
    fout[t] = sqrtf((float)(v < 0 ? -v : v)) + (float)v / 3.0f;
    unsigned ballot = __ballot_sync(0xffffffff, v > 0);
    iout[t] = (v / 7) + (v % 5) * 100 + max(v, 3) * 10000 + __popc(ballot) * 1000000 + min(v, -2);
}

// simpleStreams' kernel: each thread adds a factor to its element, several times.
extern "C" __global__ void init_array(int *g_data, int *factor, int num_iterations)
{
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    for (int i = 0; i < num_iterations; i++) {
        g_data[idx] += *factor;
    }
}

// Warp specialisation with named barriers: in a block of 128, warps 0-1 produce into shared memory and pass barrier 1
// with bar.arrive; warps 2-3 wait at it with bar.sync 1, 128, then consume. Then each half of the block exchanges
// values within itself on a barrier of its own (2 and 3, 64 threads each), which the other half never reaches.
extern "C" __global__ void named_barriers(int *out)
{
    __shared__ int produced[64];
    __shared__ int halves[128];
    unsigned int t = threadIdx.x;
    if (t < 64) {
        produced[t] = (int)(t * t + 1);
        asm volatile("bar.arrive 1, 128;" ::: "memory");
    } else {
        asm volatile("bar.sync 1, 128;" ::: "memory");
        out[t - 64] = produced[t - 64] * 2;
    }

    halves[t] = (int)t * 3;
    if (t < 64) {
        asm volatile("bar.sync 2, 64;" ::: "memory");
        out[64 + t] = halves[63 - t];
    } else {
        asm volatile("bar.sync 3, 64;" ::: "memory");
        out[64 + t] = halves[64 + (127 - t)];
    }
}

// Byte dot products (sm_61 on): dp4a signed and unsigned, dp2a low and high.
extern "C" __global__ void dot_products(const int *a, const int *b, const int *c, int *out, int n)
{
#if __CUDA_ARCH__ >= 610
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i * 4 + 0] = __dp4a(a[i], b[i], c[i]);
        out[i * 4 + 1] = (int)__dp4a((unsigned int)a[i], (unsigned int)b[i], (unsigned int)c[i]);
        out[i * 4 + 2] = __dp2a_lo(a[i], b[i], c[i]);
        out[i * 4 + 3] = __dp2a_hi(a[i], b[i], c[i]);
    }
#endif
}
