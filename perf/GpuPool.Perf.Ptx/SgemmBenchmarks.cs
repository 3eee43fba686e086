using BenchmarkDotNet.Attributes;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Ptx.Engine;

namespace GpuPool.Perf.Ptx;

/// <summary>
/// C = A·B for 512×512 floats: nvcc's 16×16 shared-memory tiled SGEMM on the PTX engine (blocks over every core) against
/// the built-in gemm_f32's body, the blocked SIMD <see cref="CpuMath.Gemm"/>. Issue 15's target for the engine: 5 GFLOP/s
/// (2·512³ flops, so at most 53.7 ms a run).
/// </summary>
[MemoryDiagnoser]
public class SgemmBenchmarks
{
    private const int N = 512;
    private const int Tile = 16;

    private readonly NativeBuffers _memory = new();
    private PtxKernel _kernel = null!;
    private PtxLaunch _launch = null!;
    private byte[] _params = [];
    private ulong _a;
    private ulong _b;
    private ulong _c;

    [GlobalSetup]
    public void Setup()
    {
        _kernel = CudaPtx.Kernel("sgemm", "sgemm_tiled");
        _a = _memory.Allocate<float>(N * N);
        _b = _memory.Allocate<float>(N * N);
        _c = _memory.Allocate<float>(N * N);
        var rng = new Random(42);
        var a = NativeBuffers.Span<float>(_a, N * N);
        var b = NativeBuffers.Span<float>(_b, N * N);
        for (var i = 0; i < N * N; i++)
        {
            a[i] = rng.NextSingle() - 0.5f;
            b[i] = rng.NextSingle() - 0.5f;
        }

        _launch = new PtxLaunch(N / Tile, N / Tile, 1, Tile, Tile, 1, 0, _memory) { Parallelism = Environment.ProcessorCount };
        _params = new ParamBlock().Add(N).Add(_a).Add(_b).Add(_c).ToArray();
        CheckAgreement();
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [Benchmark(Baseline = true)]
    public float BuiltinGemm()
    {
        var c = NativeBuffers.Span<float>(_c, N * N);
        CpuMath.Gemm(false, false, N, N, N, 1f, NativeBuffers.Span<float>(_a, N * N), N, NativeBuffers.Span<float>(_b, N * N), N, 0f, c, N);
        return c[0];
    }

    [Benchmark]
    public float EngineSgemm()
    {
        _kernel.Launch(_launch, _params, []);
        return NativeBuffers.Span<float>(_c, 1)[0];
    }

    /// <summary>A benchmark of a wrong answer measures nothing: the two must agree before either is timed.</summary>
    private void CheckAgreement()
    {
        BuiltinGemm();
        var expected = NativeBuffers.Span<float>(_c, N * N).ToArray();
        EngineSgemm();
        var actual = NativeBuffers.Span<float>(_c, N * N);
        for (var i = 0; i < expected.Length; i++)
        {
            if (Math.Abs(expected[i] - actual[i]) > 1e-3f * (1 + Math.Abs(expected[i])))
            {
                throw new InvalidOperationException($"the engine's SGEMM gives C[{i}] = {actual[i]}, the built-in {expected[i]}");
            }
        }
    }
}
