using BenchmarkDotNet.Attributes;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Perf.Kernels;

/// <summary>
/// Square single-precision GEMM, C = A·B: the blocked SIMD <see cref="CpuMath.Gemm"/> against a textbook
/// triple loop, which anchors the ratio column.
/// </summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    private float[] _a = [];
    private float[] _b = [];
    private float[] _c = [];

    [Params(64, 256, 512)]
    public int N { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        _a = new float[N * N];
        _b = new float[N * N];
        _c = new float[N * N];
        for (int i = 0; i < _a.Length; i++)
        {
            _a[i] = rng.NextSingle() - 0.5f;
            _b[i] = rng.NextSingle() - 0.5f;
        }
    }

    [Benchmark(Baseline = true)]
    public float Naive()
    {
        int n = N;
        float[] a = _a, b = _b, c = _c;
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0f;
                for (int p = 0; p < n; p++)
                {
                    sum += a[(i * n) + p] * b[(p * n) + j];
                }
                c[(i * n) + j] = sum;
            }
        }
        return c[0];
    }

    [Benchmark]
    public float Blocked()
    {
        CpuMath.Gemm(false, false, N, N, N, 1f, _a, N, _b, N, 0f, _c, N);
        return _c[0];
    }
}
