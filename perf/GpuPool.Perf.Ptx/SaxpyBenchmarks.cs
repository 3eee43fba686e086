using BenchmarkDotNet.Attributes;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Ptx.Engine;

namespace GpuPool.Perf.Ptx;

/// <summary>
/// y = αx + y over 4 Mi floats: nvcc's SAXPY (one element per thread, 256-thread blocks) on the PTX engine against the
/// built-in axpy_f32's body, <see cref="CpuMath.Axpy"/>, over the same buffers. Issue 15's target: a ratio of at most 4.
/// </summary>
[MemoryDiagnoser]
public class SaxpyBenchmarks
{
    private const int N = 4 << 20;
    private const int Block = 256;

    private readonly NativeBuffers _memory = new();
    private PtxKernel _kernel = null!;
    private PtxLaunch _launch = null!;
    private byte[] _params = [];
    private ulong _x;
    private ulong _y;

    [GlobalSetup]
    public void Setup()
    {
        _kernel = CudaPtx.Kernel("saxpy", "saxpy");
        _x = _memory.Allocate<float>(N);
        _y = _memory.Allocate<float>(N);
        var rng = new Random(42);
        var x = NativeBuffers.Span<float>(_x, N);
        var y = NativeBuffers.Span<float>(_y, N);
        for (var i = 0; i < N; i++)
        {
            x[i] = rng.NextSingle() - 0.5f;
            y[i] = rng.NextSingle() - 0.5f;
        }

        _launch = new PtxLaunch(N / Block, 1, 1, Block, 1, 1, 0, _memory) { Parallelism = Environment.ProcessorCount };
        _params = new ParamBlock().Add((uint)N).Add(1e-3f).Add(_x).Add(_y).ToArray();
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [Benchmark(Baseline = true)]
    public float BuiltinAxpy()
    {
        var y = NativeBuffers.Span<float>(_y, N);
        CpuMath.Axpy(1e-3f, NativeBuffers.Span<float>(_x, N), y);
        return y[0];
    }

    [Benchmark]
    public float EngineSaxpy()
    {
        _kernel.Launch(_launch, _params, []);
        return NativeBuffers.Span<float>(_y, 1)[0];
    }
}
