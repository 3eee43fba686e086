// Runs the built-in kernels' CUDA source on the host, so that machines without a GPU can test what the
// kernels compute (tests/GpuPool.Devices.Tests/Kernels/CudaKernelSourceTests.cs builds this file into a
// shared library with clang++-14 and compares every kernel with the cpu backend).
//
// Each thread of a block is a fiber (ucontext) on one OS thread; blocks run one after another. A barrier
// switches back to the scheduler, which resumes the block's fibers once all of them have reached it, in
// forward or reverse thread order, so a missing barrier shows up as results that depend on the order.
// __shared__ variables become function statics, which is right while only one block runs at a time; they are
// filled with 0xff bytes before each block.
// A block in which some threads leave while others wait at a barrier (a hang or undefined behaviour on a
// GPU) is reported as an error instead of hanging.
//
// This checks the algorithms, not the compiled PTX. The arithmetic is the GPU's: IEEE single precision with
// no flush to zero, and, like build-ptx.sh, no multiply-add fusion except the explicit gp_fma
// (build with -ffp-contract=off, as the tests do).

#include <ucontext.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

struct gp_dim3
{
    unsigned x, y, z;
};

gp_dim3 threadIdx, blockIdx, blockDim, gridDim;

void __syncthreads();
int gp_syncthreads_or(int predicate);

// The spellings of gpupool_cuda.h, for the host; defining its guard keeps the CUDA version out.
#define GPUPOOL_CUDA_H
#define __global__
#define __device__
// Shared variables live in their own section, which is poisoned before every block as a GPU's shared memory
// holds leftovers: a kernel that reads shared memory it did not write this block gets NaNs or -1s.
#define __shared__ static __attribute__((section("gp_shared")))
#define GP_DEVICE inline

inline float gp_fma(float a, float b, float c) { return std::fma(a, b, c); }
inline float gp_sqrt(float x) { return std::sqrt(x); }
inline float gp_rint(float x) { return std::nearbyint(x); }

inline unsigned gp_float_bits(float x)
{
    unsigned u;
    std::memcpy(&u, &x, sizeof u);
    return u;
}

inline float gp_bits_float(unsigned u)
{
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
}

#include "../gpupool_kernels.cu"

#define GP_EXPORT extern "C" __attribute__((visibility("default")))

namespace
{
enum class FiberState
{
    Ready,
    AtBarrier,
    Done,
};

struct Fiber
{
    ucontext_t context;
    FiberState state;
    int predicate;
    gp_dim3 index;
};

constexpr size_t StackBytes = 64 * 1024;

extern "C" char __start_gp_shared[], __stop_gp_shared[];

ucontext_t scheduler;
std::vector<Fiber> fibers;
std::vector<std::unique_ptr<char[]>> stacks;
Fiber* current;
int barrier_result;
std::function<void()> kernel_call;

int barrier(int predicate)
{
    current->state = FiberState::AtBarrier;
    current->predicate = predicate;
    swapcontext(&current->context, &scheduler);
    return barrier_result;
}

void fiber_main()
{
    kernel_call();
    current->state = FiberState::Done;
    // Returning resumes uc_link, the scheduler.
}

// Runs one block to completion; false when its threads split at a barrier.
bool run_block(unsigned threads, bool reverse)
{
    std::memset(__start_gp_shared, 0xff, (size_t)(__stop_gp_shared - __start_gp_shared));
    fibers.resize(threads);
    while (stacks.size() < threads)
    {
        stacks.emplace_back(new char[StackBytes]);
    }
    for (unsigned t = 0; t < threads; ++t)
    {
        Fiber& f = fibers[t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = stacks[t].get();
        f.context.uc_stack.ss_size = StackBytes;
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_main, 0);
        f.state = FiberState::Ready;
        f.predicate = 0;
        f.index = {t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
    }
    for (;;)
    {
        for (unsigned k = 0; k < threads; ++k)
        {
            Fiber& f = fibers[reverse ? threads - 1 - k : k];
            if (f.state != FiberState::Ready)
            {
                continue;
            }
            current = &f;
            threadIdx = f.index;
            swapcontext(&scheduler, &f.context);
        }
        unsigned waiting = 0, any = 0;
        for (Fiber& f : fibers)
        {
            if (f.state == FiberState::AtBarrier)
            {
                ++waiting;
                any |= f.predicate != 0;
            }
        }
        if (waiting == 0)
        {
            return true;
        }
        if (waiting != threads)
        {
            return false;
        }
        barrier_result = any;
        for (Fiber& f : fibers)
        {
            f.state = FiberState::Ready;
        }
    }
}

template <typename T>
T read_param(const unsigned char* at)
{
    T value;
    std::memcpy(&value, at, sizeof(T));
    return value;
}

struct Kernel
{
    const char* name;
    // Binds a packed parameter block (cuLaunchKernel layout) to a call; false when its size is wrong.
    std::function<bool(const unsigned char* params, size_t size, std::function<void()>& call)> bind;
};

template <typename... Args, size_t... I>
void call_with(void (*f)(Args...), const std::vector<unsigned char>& params, const std::array<size_t, sizeof...(Args) + 1>& offsets, std::index_sequence<I...>)
{
    f(read_param<Args>(params.data() + offsets[I])...);
}

// Each parameter sits at the next offset aligned to its own size, as cuLaunchKernel packs them.
template <typename... Args>
Kernel kernel(const char* name, void (*f)(Args...))
{
    return {name, [f](const unsigned char* params, size_t size, std::function<void()>& call) {
                std::array<size_t, sizeof...(Args) + 1> offsets{};
                size_t end = 0, i = 0;
                ((end = (end + sizeof(Args) - 1) / sizeof(Args) * sizeof(Args), offsets[i++] = end, end += sizeof(Args)), ...);
                (void)i;
                if (end != size)
                {
                    return false;
                }
                std::vector<unsigned char> copy(params, params + size);
                call = [f, copy, offsets] { call_with(f, copy, offsets, std::index_sequence_for<Args...>()); };
                return true;
            }};
}

#define GP_KERNEL(name) kernel(#name, name)

const std::vector<Kernel>& kernels()
{
    static const std::vector<Kernel> all = {
        GP_KERNEL(noop), GP_KERNEL(fill_f32), GP_KERNEL(copy_f32), GP_KERNEL(axpy_f32), GP_KERNEL(scale_f32),
        GP_KERNEL(add_f32), GP_KERNEL(sub_f32), GP_KERNEL(mul_f32), GP_KERNEL(relu_f32), GP_KERNEL(relu_backward_f32),
        GP_KERNEL(sum_f32), GP_KERNEL(max_f32), GP_KERNEL(count_equal_i32), GP_KERNEL(gemm_f32), GP_KERNEL(bias_add_f32),
        GP_KERNEL(sum_columns_f32), GP_KERNEL(softmax_rows_f32), GP_KERNEL(softmax_xent_forward_f32),
        GP_KERNEL(softmax_xent_backward_f32), GP_KERNEL(argmax_rows_f32), GP_KERNEL(gather_rows_f32),
        GP_KERNEL(scatter_add_rows_f32), GP_KERNEL(sgd_f32), GP_KERNEL(sgd_momentum_f32), GP_KERNEL(adam_f32),
    };
    return all;
}

void set_error(char* error, size_t size, const char* text)
{
    if (size > 0)
    {
        std::snprintf(error, size, "%s", text);
    }
}
} // namespace

void __syncthreads() { barrier(0); }

int gp_syncthreads_or(int predicate) { return barrier(predicate != 0); }

GP_EXPORT int gp_emu_kernel_count() { return (int)kernels().size(); }

GP_EXPORT const char* gp_emu_kernel_name(int index) { return index >= 0 && index < (int)kernels().size() ? kernels()[index].name : nullptr; }

// Launches kernel `name` over grid × block with the packed parameters; pointer parameters are host
// addresses. Returns 0, or non-zero with a sentence in `error`.
GP_EXPORT int gp_emu_launch(const char* name, const unsigned* grid, const unsigned* block, const unsigned char* params, size_t size,
                            int reverse, char* error, size_t error_size)
{
    const Kernel* found = nullptr;
    for (const Kernel& k : kernels())
    {
        if (std::strcmp(k.name, name) == 0)
        {
            found = &k;
        }
    }
    if (found == nullptr)
    {
        set_error(error, error_size, "no such kernel");
        return 1;
    }
    if (!found->bind(params, size, kernel_call))
    {
        set_error(error, error_size, "the parameter block does not have the kernel's size");
        return 2;
    }
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    const unsigned threads = block[0] * block[1] * block[2];
    const unsigned long long blocks = (unsigned long long)grid[0] * grid[1] * grid[2];
    if (threads == 0 || threads > 1024 || blocks == 0)
    {
        set_error(error, error_size, "the launch has no threads, or more than 1024 in a block");
        return 3;
    }
    for (unsigned long long k = 0; k < blocks; ++k)
    {
        unsigned long long b = reverse != 0 ? blocks - 1 - k : k;
        blockIdx = {(unsigned)(b % grid[0]), (unsigned)(b / grid[0] % grid[1]), (unsigned)(b / grid[0] / grid[1])};
        if (!run_block(threads, reverse != 0))
        {
            set_error(error, error_size, "some threads of a block left while others waited at a barrier");
            return 4;
        }
    }
    return 0;
}

// The kernels' own exp and log, for accuracy tests.
GP_EXPORT float gp_emu_exp(float x) { return gp_exp(x); }

GP_EXPORT float gp_emu_log(float x) { return gp_log(x); }
