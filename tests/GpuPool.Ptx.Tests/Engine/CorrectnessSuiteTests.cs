using System.Collections.Concurrent;
using System.Globalization;
using System.Numerics;
using System.Text;
using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Syntax;
using GpuPool.Ptx.Tests.Syntax;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// The engine's correctness suite: kernels of Cuda/correctness_kernels.cu compiled by nvcc (sm_70, sm_80) and by clang 14
/// (sm_70, libdevice linked in), run over seeded random inputs with poisoned outputs and compared with the host.
/// </summary>
public sealed class CorrectnessSuiteTests(Nvcc nvcc, ClangCuda clang) : IClassFixture<Nvcc>, IClassFixture<ClangCuda>
{
    private const string Source = "correctness_kernels.cu";
    private const string Libdevice = "/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc";
    private const int Poison = unchecked((int)0xCDCDCDCD);

    private static readonly ConcurrentDictionary<(string, string), Lazy<string>> Texts = new();

    public static TheoryData<string, string> Compilers => new() { { "nvcc", "sm_70" }, { "nvcc", "sm_80" }, { "clang", "sm_70" } };

    private PtxModuleProgram Module(string compiler, string arch)
        => PtxModuleProgram.Compile(Texts.GetOrAdd((compiler, arch), key => new Lazy<string>(() => key.Item1 == "nvcc"
            ? Encoding.UTF8.GetString(nvcc.Build($"correctness_kernels_{arch}.ptx", Source, "-ptx", $"-arch={arch}"))
            : clang.Build(Source, arch, "-O2", "-Xclang", "-mlink-builtin-bitcode", "-Xclang", Libdevice))).Value);

    private static ulong[] Symbols(string compiler, string arch, PtxModuleProgram module, HostMemory memory)
        => ModuleSymbols.Place(Texts[(compiler, arch)].Value, module, memory);

    private static PtxLaunch Launch(HostMemory memory, (uint X, uint Y, uint Z) grid, (uint X, uint Y, uint Z) block, ulong dynamicShared = 0)
        => new(grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, dynamicShared, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    private static void Run(PtxModuleProgram module, string kernel, PtxLaunch launch, Params parameters, ulong[]? symbols = null)
        => module.Kernels[kernel].Launch(launch, parameters.ToArray(), symbols ?? []);

    private static T[] Fill<T>(int n, T value) => Enumerable.Repeat(value, n).ToArray();

    private static void Close(float expected, float actual, float relative, string what)
        => Assert.True(Math.Abs(expected - actual) <= relative * Math.Abs(expected), $"{what}: expected {expected:R}, got {actual:R}");

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Float_elementwise_functions_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(11);
        float[] Values() => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 20) - 10)).ToArray();
        var (a, x, y) = (Values(), Values(), Values());
        var pout = memory.Upload(Fill(n * 6, float.NaN));

        Run(Module(compiler, arch), "ew_f32", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(a)).Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).Add(n));

        var o = memory.Download<float>(pout, n * 6);
        for (var i = 0; i < n; i++)
        {
            Assert.Equal(MathF.FusedMultiplyAdd(a[i], x[i], y[i]), o[(i * 6) + 0]);
            Assert.Equal(MathF.Min(x[i], y[i]) + MathF.Max(a[i], y[i]), o[(i * 6) + 1]);
            Assert.Equal(MathF.Abs(x[i]), o[(i * 6) + 2]);
            Close(1 / MathF.Sqrt(MathF.Abs(a[i]) + 1), o[(i * 6) + 3], 1e-6f, $"rsqrtf at {i}");
            Close(MathF.Exp(x[i] * 0.25f), o[(i * 6) + 4], 1e-6f, $"expf at {i}");
            Close(x[i] / (MathF.Abs(y[i]) + 1), o[(i * 6) + 5], 1e-6f, $"__fdividef at {i}");
        }
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Double_fma_square_root_and_division_are_correctly_rounded(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(12);
        var a = Enumerable.Range(0, n).Select(_ => (random.NextDouble() * 2000) - 1000).ToArray();
        var b = Enumerable.Range(0, n).Select(_ => (random.NextDouble() + 0.01) * (random.Next(2) == 0 ? -3 : 3)).ToArray();
        var c = Enumerable.Range(0, n).Select(_ => random.NextDouble() * 1e-3).ToArray();
        var pout = memory.Upload(Fill(n * 3, double.NaN));

        Run(Module(compiler, arch), "ew_f64", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(pout).Add(n));

        var expected = Enumerable.Range(0, n).SelectMany(i => new[] { Math.FusedMultiplyAdd(a[i], b[i], c[i]), Math.Sqrt(Math.Abs(a[i])), a[i] / b[i] });
        Assert.Equal(expected, memory.Download<double>(pout, n * 3));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Int32_and_uint32_division_remainder_shifts_min_max_and_bit_counts_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 400;
        var random = new Random(13);
        var a = Enumerable.Range(0, n).Select(i => i % 4 == 0 ? random.Next(-100, 100) : random.Next(int.MinValue, int.MaxValue)).ToArray();
        var b = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? random.Next(1, 40) * (i % 2 == 0 ? 1 : -1) : random.Next(int.MinValue, int.MaxValue) | 1).ToArray();
        a[0] = int.MinValue;
        b[0] = 7;
        var (pout, puout) = (memory.Upload(Fill(n * 6, Poison)), memory.Upload(Fill(n * 5, unchecked((uint)Poison))));

        Run(Module(compiler, arch), "ew_int32", Launch(memory, (4, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(pout).Add(puout).Add(n));

        var expected = Enumerable.Range(0, n).SelectMany(i => new[]
        {
            a[i] / b[i], a[i] % b[i], a[i] >> (b[i] & 31), (Math.Min(a[i], b[i]) * 3) + Math.Max(a[i], b[i]),
            BitOperations.PopCount((uint)a[i]) + (100 * BitOperations.LeadingZeroCount((uint)a[i])), (int)ReverseBits((uint)a[i]),
        });
        var expectedUnsigned = Enumerable.Range(0, n).Select(i => ((uint)a[i], (uint)b[i])).SelectMany(p => new[]
        {
            p.Item1 / p.Item2, p.Item1 % p.Item2, (p.Item1 >> (int)(p.Item2 & 31)) ^ (p.Item1 << (int)(p.Item2 & 7)), Math.Min(p.Item1, p.Item2), Math.Max(p.Item1, p.Item2),
        });
        Assert.Equal(expected, memory.Download<int>(pout, n * 6));
        Assert.Equal(expectedUnsigned, memory.Download<uint>(puout, n * 5));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Int64_multiplication_and_division_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(14);
        var a = Enumerable.Range(0, n).Select(i => i % 2 == 0 ? random.NextInt64(long.MinValue, long.MaxValue) : random.NextInt64(-1_000_000, 1_000_000)).ToArray();
        var b = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? random.NextInt64(long.MinValue, long.MaxValue) | 1 : random.NextInt64(1, 100_000) * (i % 2 == 0 ? 1 : -1)).ToArray();
        var pout = memory.Upload(Fill(n * 4, (long)Poison));

        Run(Module(compiler, arch), "ew_int64", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(pout).Add(n));

        var expected = Enumerable.Range(0, n).SelectMany(i => new[] { a[i] * b[i], a[i] / b[i], a[i] % b[i], (long)((ulong)a[i] / (ulong)b[i]) });
        Assert.Equal(expected, memory.Download<long>(pout, n * 4));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Byte_and_short_loads_and_stores_convert_as_c_does(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(15);
        var c = Enumerable.Range(0, n).Select(_ => (sbyte)random.Next(-128, 128)).ToArray();
        var s = Enumerable.Range(0, n).Select(_ => (short)random.Next(short.MinValue, short.MaxValue + 1)).ToArray();
        var uc = Enumerable.Range(0, n).Select(_ => (byte)random.Next(256)).ToArray();
        var pout = memory.Upload(Fill(n * 3, float.NaN));
        var (pc2, ps2) = (memory.Upload(Fill(n, (sbyte)-51)), memory.Upload(Fill(n, (short)-12851)));

        Run(Module(compiler, arch), "ew_small", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(c)).Add(memory.Upload(s)).Add(memory.Upload(uc)).Add(pout).Add(pc2).Add(ps2).Add(n));

        Assert.Equal(Enumerable.Range(0, n).SelectMany(i => new[] { (float)c[i], s[i] * 0.5f, (float)uc[i] }), memory.Download<float>(pout, n * 3));
        Assert.Equal(c.Select(v => unchecked((sbyte)((v * 3) + 1))), memory.Download<sbyte>(pc2, n));
        Assert.Equal(Enumerable.Range(0, n).Select(i => unchecked((short)(s[i] + (c[i] * 1000)))), memory.Download<short>(ps2, n));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Float_to_integer_conversions_round_as_asked_and_saturate_as_CUDA_documents(string compiler, string arch)
    {
        using var memory = new HostMemory();
        float[] special = [float.NaN, -1f, -0.5f, -1e10f, 1e10f, 3e9f, 2.5f, -2.5f, 0.5f, 1.5f, -1.5f, float.PositiveInfinity, float.NegativeInfinity, 2147483520f, -2147483648f, 4294967040f];
        var random = new Random(16);
        var f = special.Concat(Enumerable.Range(0, 200).Select(_ => (float)((random.NextDouble() * 2e4) - 1e4))).ToArray();
        var n = f.Length;
        var (pout, puout, pback) = (memory.Upload(Fill(n * 4, Poison)), memory.Upload(Fill(n * 2, unchecked((uint)Poison))), memory.Upload(Fill(n, float.NaN)));

        Run(Module(compiler, arch), "ew_convert", Launch(memory, (2, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(f)).Add(pout).Add(puout).Add(pback).Add(n));

        // cvt to an integer saturates to the type's range and turns NaN into 0 (PTX ISA, cvt).
        static int S(float v) => float.IsNaN(v) ? 0 : v >= 2147483648f ? int.MaxValue : v <= -2147483648f ? int.MinValue : (int)v;
        static uint U(float v) => float.IsNaN(v) || v <= 0 ? 0 : v >= 4294967296f ? uint.MaxValue : (uint)v;
        var expected = f.SelectMany(v => new[] { S(MathF.Round(v, MidpointRounding.ToEven)), S(MathF.Truncate(v)), S(MathF.Floor(v)), S(MathF.Ceiling(v)) });
        Assert.Equal(expected, memory.Download<int>(pout, n * 4));
        Assert.Equal(f.SelectMany(v => new[] { U(MathF.Truncate(v)), U(MathF.Round(v, MidpointRounding.ToEven)) }), memory.Download<uint>(puout, n * 2));
        Assert.Equal(Enumerable.Range(0, n).Select(i => S(MathF.Truncate(f[i])) + (float)(uint)i), memory.Download<float>(pback, n));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Tiled_shared_memory_matrix_product_of_64x48_by_48x80_matches_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int m = 64, k = 48, n = 80;
        var random = new Random(17);
        var a = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var b = Enumerable.Range(0, k * n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        var pc = memory.Upload(Fill(m * n, float.NaN));

        Run(Module(compiler, arch), "matmul_tiled", Launch(memory, (n / 16, m / 16, 1), (16, 16, 1)), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(pc).Add(m).Add(k).Add(n));

        var expected = new float[m * n];
        for (var r = 0; r < m; r++)
        {
            for (var col = 0; col < n; col++)
            {
                var sum = 0f;
                for (var j = 0; j < k; j++)
                {
                    sum = MathF.FusedMultiplyAdd(a[(r * k) + j], b[(j * n) + col], sum);
                }

                expected[(r * n) + col] = sum;
            }
        }

        Assert.Equal(expected, memory.Download<float>(pc, m * n));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Hillis_Steele_block_scan_gives_each_blocks_inclusive_prefix_sums(string compiler, string arch)
    {
        using var memory = new HostMemory();
        var random = new Random(18);
        var input = Enumerable.Range(0, 1024).Select(_ => random.Next(-1000, 1000)).ToArray();
        var pout = memory.Upload(Fill(1024, Poison));

        Run(Module(compiler, arch), "block_scan", Launch(memory, (4, 1, 1), (256, 1, 1)), new Params().Add(memory.Upload(input)).Add(pout));

        Assert.Equal(input.Chunk(256).SelectMany(InclusiveScan), memory.Download<int>(pout, 1024));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Warp_scan_with_shfl_up_gives_each_warps_inclusive_prefix_sums(string compiler, string arch)
    {
        using var memory = new HostMemory();
        var random = new Random(19);
        var input = Enumerable.Range(0, 256).Select(_ => random.Next(-1000, 1000)).ToArray();
        var pout = memory.Upload(Fill(256, Poison));

        Run(Module(compiler, arch), "warp_scan", Launch(memory, (2, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(input)).Add(pout));

        Assert.Equal(input.Chunk(32).SelectMany(InclusiveScan), memory.Download<int>(pout, 256));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Xor_shuffle_reduction_ballot_popc_any_and_all_agree_with_the_host_per_warp(string compiler, string arch)
    {
        using var memory = new HostMemory();
        var random = new Random(20);
        var input = Enumerable.Range(0, 96).Select(_ => random.Next(-99, 100)).ToArray();
        input[40] = -100;
        input[70] = 95;
        var pout = memory.Upload(Fill(96 * 5, Poison));

        Run(Module(compiler, arch), "warp_vote", Launch(memory, (1, 1, 1), (96, 1, 1)), new Params().Add(memory.Upload(input)).Add(pout));

        var expected = input.Chunk(32).SelectMany(w =>
        {
            var ballot = (int)Enumerable.Range(0, 32).Where(l => w[l] > 0).Aggregate(0u, (m, l) => m | (1u << l));
            int[] row = [w.Sum(), ballot, BitOperations.PopCount((uint)ballot), w.Any(v => v > 90) ? 1 : 0, w.All(v => v > -100) ? 1 : 0];
            return Enumerable.Repeat(row, 32).SelectMany(r => r);
        });
        Assert.Equal(expected, memory.Download<int>(pout, 96 * 5));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Bitonic_sort_of_1024_ints_in_one_block_sorts_them(string compiler, string arch)
    {
        using var memory = new HostMemory();
        var random = new Random(21);
        var input = Enumerable.Range(0, 1024).Select(_ => random.Next(-5000, 5000)).ToArray();
        var p = memory.Upload(input);

        Run(Module(compiler, arch), "bitonic_sort", Launch(memory, (1, 1, 1), (512, 1, 1)), new Params().Add(p));

        Assert.Equal(input.Order(), memory.Download<int>(p, 1024));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Divergent_collatz_loops_with_break_and_continue_count_each_threads_steps(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(22);
        var start = Enumerable.Range(0, n).Select(_ => (uint)random.Next(1, 100_000)).ToArray();
        var psteps = memory.Upload(Fill((n * 2) + 8, Poison));

        Run(Module(compiler, arch), "collatz", Launch(memory, (5, 1, 1), (64, 1, 1)), new Params().Add(memory.Upload(start)).Add(psteps).Add(n));

        var expected = start.SelectMany(s =>
        {
            var (x, count, odd) = ((ulong)s, 0, 0);
            while (x != 1)
            {
                count++;
                (x, odd) = (x & 1) == 0 ? (x >> 1, odd) : ((3 * x) + 1, odd + 1);
            }

            return new[] { count, odd };
        });
        Assert.Equal(expected.Concat(Fill(8, Poison)), memory.Download<int>(psteps, (n * 2) + 8));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void A_3D_launch_gives_every_thread_its_own_indices_and_linear_id(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int threads = 3 * 2 * 2 * 4 * 4 * 2;
        var pout = memory.Upload(Fill(threads * 2, unchecked((uint)Poison)));

        Run(Module(compiler, arch), "linear_id", Launch(memory, (3, 2, 2), (4, 4, 2)), new Params().Add(pout));

        var expected = new uint[threads * 2];
        for (uint bz = 0, id = 0; bz < 2; bz++)
        {
            for (uint by = 0; by < 2; by++)
            {
                for (uint bx = 0; bx < 3; bx++)
                {
                    for (uint tz = 0; tz < 2; tz++)
                    {
                        for (uint ty = 0; ty < 4; ty++)
                        {
                            for (uint tx = 0; tx < 4; tx++, id++)
                            {
                                expected[id * 2] = id;
                                expected[(id * 2) + 1] = (tz << 24) | (ty << 16) | (bz << 8) | (by << 4) | bx;
                            }
                        }
                    }
                }
            }
        }

        Assert.Equal(expected, memory.Download<uint>(pout, threads * 2));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Atomics_CAS_float_max_exchange_min_max_inc_dec_wrap_and_64_bit_add_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 1003;
        var random = new Random(23);
        var f = Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2000) - 1000)).ToArray();
        var v = Enumerable.Range(0, n).Select(_ => random.Next()).Select(x => x % 5 == 0 ? -x : x).ToArray();
        var (pfmax, pexch, pmin, pmax) = (memory.Upload(new[] { -1e30f }), memory.Upload(new[] { 0 }), memory.Upload(new[] { int.MaxValue }), memory.Upload(new[] { int.MinValue }));
        var (pinc, pdec, psum) = (memory.Upload(new[] { 0u }), memory.Upload(new[] { 0u }), memory.Upload(new[] { 5ul }));

        Run(Module(compiler, arch), "atomics", Launch(memory, (8, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(f)).Add(memory.Upload(v)).Add(n)
            .Add(pfmax).Add(pexch).Add(pmin).Add(pmax).Add(pinc).Add(pdec).Add(psum));

        var (inc, dec) = (0u, 0u);
        for (var i = 0; i < n; i++)
        {
            inc = inc >= 9 ? 0 : inc + 1;
            dec = dec == 0 || dec > 6 ? 6 : dec - 1;
        }

        Assert.Equal(f.Max(), memory.Download<float>(pfmax, 1)[0]);
        Assert.Equal(7, memory.Download<int>(pexch, 1)[0]);
        Assert.Equal(v.Min(), memory.Download<int>(pmin, 1)[0]);
        Assert.Equal(v.Max(), memory.Download<int>(pmax, 1)[0]);
        Assert.Equal(inc, memory.Download<uint>(pinc, 1)[0]);
        Assert.Equal(dec, memory.Download<uint>(pdec, 1)[0]);
        Assert.Equal(v.Aggregate(5ul, (s, x) => s + ((ulong)(uint)x << 20)), memory.Download<ulong>(psum, 1)[0]);
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Double_atomic_add_sums_every_value(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 1000;
        var random = new Random(24);

        // Multiples of 2^-10 below 2^20: every partial sum is exact, whatever order the adds land in.
        var v = Enumerable.Range(0, n).Select(_ => random.Next(-1 << 20, 1 << 20) / 1024.0).ToArray();
        var psum = memory.Upload(new[] { 0.5 });

        Run(Module(compiler, arch), "atomic_add_f64", Launch(memory, (8, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(v)).Add(psum).Add(n));

        Assert.Equal(v.Sum() + 0.5, memory.Download<double>(psum, 1)[0]);
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Dynamic_shared_memory_and_a_constant_table_given_by_the_launch_are_read_back(string compiler, string arch)
    {
        using var memory = new HostMemory();
        float[] weights = [0.5f, -1.0f, 2.0f, 0.25f, 3.0f, -0.75f, 1.5f, 4.0f];
        var random = new Random(25);
        var input = Enumerable.Range(0, 192).Select(_ => (float)(random.NextDouble() * 100)).ToArray();
        var pout = memory.Upload(Fill(192, float.NaN));
        var module = Module(compiler, arch);
        var symbols = Symbols(compiler, arch, module, memory);

        Run(module, "dynamic_shared", Launch(memory, (3, 1, 1), (64, 1, 1), dynamicShared: 64 * sizeof(float)), new Params().Add(memory.Upload(input)).Add(pout), symbols);

        var expected = Enumerable.Range(0, 192).Select(i => (i / 64 * 64, i % 64)).Select(p => (input[p.Item1 + 63 - p.Item2] * weights[(63 - p.Item2) & 7]) + weights[(p.Item2 + 3) & 7]);
        Assert.Equal(expected, memory.Download<float>(pout, 192));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Float_min_max_rounding_comparisons_and_64_bit_conversions_of_NaN_zeros_infinities_and_subnormals_match_CUDA(string compiler, string arch)
    {
        using var memory = new HostMemory();
        float[] special = [float.NaN, -0f, 0f, 1f, -1f, 2.5f, -2.5f, 0.5f, 1.5f, float.PositiveInfinity, float.NegativeInfinity, 1e-40f, -1e-40f, 1e20f, -1e20f, 3e9f];
        var random = new Random(26);
        var pairs = special.SelectMany(a => special.Select(b => (a, b))).Concat(Enumerable.Range(0, 100).Select(_ => ((float)((random.NextDouble() * 200) - 100), (float)((random.NextDouble() * 200) - 100)))).ToArray();
        var n = pairs.Length;
        var (x, y) = (pairs.Select(p => p.Item1).ToArray(), pairs.Select(p => p.Item2).ToArray());
        var (pout, pflags, pwide) = (memory.Upload(Fill(n * 7, float.NaN)), memory.Upload(Fill(n, Poison)), memory.Upload(Fill(n * 3, (long)Poison)));

        Run(Module(compiler, arch), "ew_float_edges", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).Add(pflags).Add(pwide).Add(n));

        // min and max return the operand that is not NaN (PTX ISA, min.f32); conversions to integers saturate, NaN to 0.
        static float Min(float a, float b) => float.IsNaN(a) ? b : float.IsNaN(b) ? a : MathF.Min(a, b);
        static float Max(float a, float b) => float.IsNaN(a) ? b : float.IsNaN(b) ? a : MathF.Max(a, b);
        static long S64(float v) => float.IsNaN(v) ? 0 : v >= 9.223372e18f ? long.MaxValue : v <= -9.223372e18f ? long.MinValue : (long)v;
        static ulong U64(float v) => float.IsNaN(v) || v <= 0 ? 0 : v >= 1.8446744e19f ? ulong.MaxValue : (ulong)v;
        var expected = pairs.SelectMany(p => new[]
        {
            Min(p.Item1, p.Item2), Max(p.Item1, p.Item2), MathF.CopySign(p.Item1, p.Item2), MathF.Truncate(p.Item1) + MathF.Floor(p.Item2),
            MathF.Ceiling(p.Item1) - MathF.Round(p.Item2, MidpointRounding.ToEven), MathF.Round(p.Item1, MidpointRounding.AwayFromZero), MathF.FusedMultiplyAdd(p.Item1, p.Item2, 1f),
        });
        var flags = pairs.Select(p => (p.Item1 < p.Item2 ? 1 : 0) | (!(p.Item1 < p.Item2) ? 2 : 0) | (p.Item1 != p.Item2 ? 4 : 0) | (p.Item1 == p.Item2 ? 8 : 0)
            | (p.Item1 >= p.Item2 ? 16 : 0) | (float.IsNaN(p.Item1) ? 32 : 0) | (float.IsInfinity(p.Item2) ? 64 : 0));
        var o = memory.Download<float>(pout, n * 7);
        Assert.All(expected.Zip(o).Select((e, i) => (e.First, e.Second, i)), t => Assert.True(BitConverter.SingleToInt32Bits(t.First) == BitConverter.SingleToInt32Bits(t.Second) || (float.IsNaN(t.First) && float.IsNaN(t.Second)), $"column {t.i % 7} of ({x[t.i / 7]:R}, {y[t.i / 7]:R}): expected {t.First:R}, got {t.Second:R}"));
        Assert.Equal(flags, memory.Download<int>(pflags, n));
        Assert.Equal(pairs.SelectMany(p => new[] { S64(p.Item1), (long)U64(p.Item2), S64(p.Item1) }), memory.Download<long>(pwide, n * 3));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Shifts_past_the_width_high_multiplies_bfind_and_sad_follow_the_PTX_ISA(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(27);
        var x = Enumerable.Range(0, n).Select(i => i % 7 == 0 ? (uint)i : (uint)random.NextInt64(0, 1L << 32)).ToArray();
        var y = Enumerable.Range(0, n).Select(_ => (uint)random.NextInt64(0, 1L << 32)).ToArray();
        var pout = memory.Upload(Fill(n * 10, unchecked((uint)Poison)));

        Run(Module(compiler, arch), "int_edges", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).Add(n));

        // Shift amounts past the register's width are clamped to it (PTX ISA, shl and shr).
        var expected = Enumerable.Range(0, n).SelectMany(i =>
        {
            var (a, c, b) = (x[i], y[i], y[i] & 63);
            var v = a >> (int)(b % 32);
            var wide = (ulong)((long)(int)a * (int)c);
            var w64 = b + 30 >= 64 ? 0 : ((ulong)a * 0x100000001ul) << (int)(b + 30);
            return new[]
            {
                b >= 32 ? 0 : a << (int)b, b >= 32 ? 0 : a >> (int)b, (uint)((int)a >> (int)Math.Min(b, 31)),
                (uint)(((long)(int)a * (int)c) >> 32), (uint)(((ulong)a * c) >> 32), v == 0 ? uint.MaxValue : (uint)(31 - BitOperations.LeadingZeroCount(v)),
                (uint)(wide >> 32) ^ (uint)wide, (uint)(w64 >> 32) ^ (uint)w64, (a > c ? a - c : c - a) + b, (uint)Math.Min((int)a, (int)c),
            };
        });
        Assert.Equal(expected, memory.Download<uint>(pout, n * 10));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Sixteen_bit_min_max_div_rem_high_multiplies_and_24_bit_multiplies_follow_the_PTX_ISA(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(28);
        var x = Enumerable.Range(0, n).Select(_ => (uint)random.NextInt64(0, 1L << 32)).ToArray();
        var y = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? (uint)random.Next(1, 9) : (uint)random.NextInt64(0, 1L << 32) | 1).ToArray();
        var pout = memory.Upload(Fill(n * 10, unchecked((uint)Poison)));

        Run(Module(compiler, arch), "narrow_and_24_bit", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).Add(n));

        var expected = Enumerable.Range(0, n).SelectMany(i =>
        {
            var (a, b) = (x[i], y[i]);
            var (sa, sb, ua, ub) = ((short)a, (short)b, (ushort)a, (ushort)b);
            static uint Bits(int v) => (ushort)v;
            static long S24(uint v) => (int)(v << 8) >> 8;
            return new[]
            {
                Bits(Math.Min(sa, sb)), Math.Max(ua, ub), Bits(sa / sb), (uint)(ua % ub), Bits((sa * sb) >> 16), (uint)(ushort)(((ua * ub) >> 16) + ua),
                (uint)(S24(a) * S24(b)), (uint)(((ulong)(a & 0xFFFFFF) * (b & 0xFFFFFF)) >> 16), (uint)((a & 0xFFFFFF) * (b & 0xFFFFFF)) + a,
                a + (uint)Math.Abs((long)(int)a - (int)b),
            };
        });
        Assert.Equal(expected, memory.Download<uint>(pout, n * 10));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Shuffles_of_sub_warp_widths_barrier_counts_match_any_and_a_local_array_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int block = 64;
        var random = new Random(29);
        var input = Enumerable.Range(0, block * 2).Select(_ => random.Next(-100, 100)).ToArray();
        input[block + 5] = 99;
        var pout = memory.Upload(Fill(block * 2 * 8, Poison));

        Run(Module(compiler, arch), "warp_widths", Launch(memory, (2, 1, 1), (block, 1, 1)), new Params().Add(memory.Upload(input)).Add(pout));

        // A shuffle of width w works within each group of w lanes; a source outside the group gives the lane's own value.
        var expected = Enumerable.Range(0, block * 2).SelectMany(g =>
        {
            var (lane, warp, b) = (g % 32, g / 32 * 32, g / block * block);
            int At(int l) => input[warp + l];
            var blockValues = input.Skip(b).Take(block).ToArray();
            var match = Enumerable.Range(0, 32).Where(l => (At(l) & 3) == (At(lane) & 3)).Aggregate(0u, (m, l) => m | (1u << l));
            return new[]
            {
                At((lane & ~15) + 3), lane % 8 + 2 < 8 ? At(lane + 2) : At(lane), lane % 4 >= 1 ? At(lane - 1) : At(lane), At(lane ^ 5),
                blockValues.Count(v => v > 0), (blockValues.All(v => v > -90) ? 1 : 0) + (2 * (blockValues.Any(v => v > 95) ? 1 : 0)),
                At(lane) * ((At(lane) & 0x7fffffff) % 16), (int)match,
            };
        });
        Assert.Equal(expected, memory.Download<int>(pout, block * 2 * 8));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Libdevice_math_functions_are_within_their_documented_error_of_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 256;
        var random = new Random(30);
        var x = Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 40) - 20)).ToArray();
        var d = Enumerable.Range(0, n).Select(_ => (random.NextDouble() * 200) - 100).ToArray();
        var (pout, pdout) = (memory.Upload(Fill(n * 6, float.NaN)), memory.Upload(Fill(n * 5, double.NaN)));

        var module = Module(compiler, arch);
        Run(module, "math_lib", Launch(memory, (2, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(x)).Add(memory.Upload(d)).Add(pout).Add(pdout).Add(n), Symbols(compiler, arch, module, memory));

        // CUDA's documented bounds (CUDA C Programming Guide, mathematical functions) are at most 4 ulp for these; an
        // absolute floor covers results near 0, where an ulp of the argument's size is what the bound means.
        var o = memory.Download<float>(pout, n * 6);
        var od = memory.Download<double>(pdout, n * 5);
        for (var i = 0; i < n; i++)
        {
            // The arguments are rounded to float as the kernel rounds them; the functions are then evaluated in double.
            var v = x[i];
            double[] exact = [Math.Sin(v), Math.Cos(v), Math.Log(MathF.Abs(v) + 0.5f), Math.Pow(MathF.Abs(v) + 0.1f, 1.7f), Math.Tanh(v * 0.3f), Erf(v * 0.2f)];
            for (var c = 0; c < 6; c++)
            {
                Assert.True(Math.Abs(exact[c] - o[(i * 6) + c]) <= Math.Max(Math.Abs(exact[c]), 1e-2) * 5e-7, $"float function {c} of {x[i]:R}: expected {exact[c]:R}, got {o[(i * 6) + c]:R}");
            }

            var w = d[i];
            double[] exactD = [Math.Tanh(w * 0.05), Math.Exp(w * 0.01), Math.Log(Math.Abs(w) + 0.25), Math.Cbrt(w)];
            for (var c = 0; c < 4; c++)
            {
                Assert.True(Math.Abs(exactD[c] - od[(i * 5) + c]) <= Math.Abs(exactD[c]) * 1e-15, $"double function {c} of {w:R}: expected {exactD[c]:R}, got {od[(i * 5) + c]:R}");
            }

            Assert.Equal((double)(float)w + (int)(w * 1e7) + (long)(w * 1e15), od[(i * 5) + 4]);
        }
    }

    private static double Erf(double x)
    {
        // Abramowitz and Stegun 7.1.26 is too coarse; the Taylor series converges fast for |x| <= 4.
        var (sum, term, k) = (x, x, 0);
        while (Math.Abs(term) > 1e-17 * Math.Abs(sum))
        {
            k++;
            term *= -x * x / k;
            sum += term / ((2 * k) + 1);
        }

        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Sine_of_a_double_is_within_2_ulp_even_where_libdevice_calls_its_slow_path_reduction(string compiler, string arch)
    {
        // Past about 2^31 libdevice's sin calls __internal_trig_reduction_slowpathd (a .func with a local array and the
        // module's 2/pi table): a call through PTX's ABI. CUDA documents 2 ulp for double sin over the whole range.
        using var memory = new HostMemory();
        var random = new Random(57);
        var d = Enumerable.Range(0, 128).Select(k => k switch
        {
            < 32 => (random.NextDouble() - 0.5) * 20,
            < 64 => (random.NextDouble() - 0.5) * 1e6,
            < 96 => Math.ScaleB(random.NextDouble() + 1, random.Next(32, 1000)) * (k % 2 == 0 ? 1 : -1),
            _ => new[] { 1e22, 1e300, double.MaxValue, -double.Epsilon, 0.0, -0.0, Math.PI, 1e-310 }[k % 8],
        }).ToArray();
        var pout = memory.Upload(Fill(d.Length, double.NaN));
        var module = Module(compiler, arch);

        Run(module, "sin_f64", Launch(memory, (1, 1, 1), ((uint)d.Length, 1, 1)), new Params().Add(memory.Upload(d)).Add(pout), Symbols(compiler, arch, module, memory));

        var actual = memory.Download<double>(pout, d.Length);
        for (var k = 0; k < d.Length; k++)
        {
            var expected = Math.Sin(d[k]);
            var ulps = Math.Abs(BitConverter.DoubleToInt64Bits(actual[k]) - BitConverter.DoubleToInt64Bits(expected));
            Assert.True(Math.Sign(actual[k]) == Math.Sign(expected) && ulps <= 2, $"sin({d[k]:R}) = {actual[k]:R}, the host's {expected:R} ({ulps} ulp apart)");
        }
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Carry_chains_add_subtract_and_multiply_across_words(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 200;
        var random = new Random(31);
        var x = Enumerable.Range(0, n * 4).Select(k => k % 9 == 0 ? uint.MaxValue : (uint)random.NextInt64(0, 1L << 32)).ToArray();
        var pout = memory.Upload(Fill(n * 12, unchecked((uint)Poison)));

        Run(Module(compiler, arch), "carry_chains", Launch(memory, (2, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(x)).Add(pout).Add(n));

        var expected = Enumerable.Range(0, n).SelectMany(i =>
        {
            var (a0, a1, b0, b1) = (x[i * 4], x[(i * 4) + 1], x[(i * 4) + 2], x[(i * 4) + 3]);
            var (a, b) = (((ulong)a1 << 32) | a0, ((ulong)b1 << 32) | b0);
            var sum = (UInt128)a + b;
            var difference = (UInt128)a - b;
            var product = ((ulong)a0 * b0) + (((ulong)a1 << 32) | b1);
            var wide = ((UInt128)b << 64) + a + ((UInt128)a << 64) + b;
            return new[]
            {
                (uint)sum, (uint)(sum >> 32), (uint)(sum >> 64), (uint)difference, (uint)(difference >> 32), (uint)(difference >> 64),
                (uint)product, (uint)(product >> 32), (uint)wide, (uint)(wide >> 32), (uint)(wide >> 64), (uint)(wide >> 96),
            };
        });
        Assert.Equal(expected, memory.Download<uint>(pout, n * 12));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Shared_memory_atomics_64_bit_CAS_and_min_a_struct_parameter_and_warp_reduction_match_the_host(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int blocks = 3, block = 96;
        var random = new Random(32);
        var v = Enumerable.Range(0, blocks * block).Select(_ => random.Next(-1_000_000, 1_000_000)).ToArray();
        var (pcas, pmin, pfsum) = (memory.Upload(new[] { 1000ul }), memory.Upload(new[] { long.MaxValue, 0 }), memory.Upload(new[] { 0f }));
        var (pout, preduced) = (memory.Upload(Fill(blocks * 3, unchecked((uint)Poison))), memory.Upload(Fill(blocks * block, Poison)));

        // struct Box { double scale; int offset; short tag; char flag; }: 16 bytes, 8-aligned.
        var parameters = new Params().Add(memory.Upload(v)).Add(-3.0).Add(7).Add((short)-2).Add((sbyte)5).Add((byte)0).Add(pcas).Add(pmin).Add(pfsum).Add(pout).Add(preduced);
        Run(Module(compiler, arch), "shared_atomics", Launch(memory, (blocks, 1, 1), (block, 1, 1)), parameters);

        var perBlock = v.Chunk(block).ToArray();
        var sums = perBlock.Select(b => b.Aggregate(0f, (s, x) => s + ((x & 255) * 0.5f))).ToArray();
        Assert.Equal(perBlock.SelectMany((b, k) => new[] { (uint)b.Max(), (uint)(block % 41), BitConverter.SingleToUInt32Bits(sums[k]) }), memory.Download<uint>(pout, blocks * 3));
        Assert.Equal(1000ul + (ulong)(7 * blocks * block), memory.Download<ulong>(pcas, 1)[0]);
        Assert.Equal(new[] { v.Min(x => x * -3L), 0x123456789abcdefL }, memory.Download<long>(pmin, 2));
        Assert.Equal(sums.Sum(), memory.Download<float>(pfsum, 1)[0]);
        Assert.Equal(v.Chunk(32).SelectMany(w => Enumerable.Repeat(w.Sum() - 2 + 5, 32)), memory.Download<int>(preduced, blocks * block));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Shuffles_and_ballots_of_half_a_warp_in_divergent_branches_see_only_their_lanes(string compiler, string arch)
    {
        using var memory = new HostMemory();
        var random = new Random(33);
        var input = Enumerable.Range(0, 128).Select(_ => random.Next(-100, 100)).ToArray();
        var pout = memory.Upload(Fill(128 * 5, Poison));

        Run(Module(compiler, arch), "partial_masks", Launch(memory, (2, 1, 1), (64, 1, 1)), new Params().Add(memory.Upload(input)).Add(pout));

        var expected = Enumerable.Range(0, 128).SelectMany(g =>
        {
            var (lane, warp) = (g % 32, g / 32 * 32);
            int At(int l) => input[warp + l];
            var lowBallot = Enumerable.Range(0, 16).Where(l => At(l) > 0).Aggregate(0, (m, l) => m | (1 << l));
            var lt = (int)((1u << lane) - 1);
            return new[]
            {
                lane < 16 ? At(lane ^ 1) : -1, lane < 16 ? lowBallot : -1, lane < 16 ? -1 : lane % 16 + 4 < 16 ? At(lane + 4) : At(lane), lt,
                Enumerable.Range(0, lane).Count(l => At(l) > 0),
            };
        });
        Assert.Equal(expected, memory.Download<int>(pout, 128 * 5));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Conversions_with_directed_rounding_round_toward_zero_down_up_and_to_nearest(string compiler, string arch)
    {
        using var memory = new HostMemory();
        const int n = 300;
        var random = new Random(34);
        var l = Enumerable.Range(0, n).Select(i => i % 3 == 0 ? random.NextInt64(-1L << 40, 1L << 40) : random.NextInt64(long.MinValue, long.MaxValue)).ToArray();
        var d = Enumerable.Range(0, n).Select(i => i % 4 == 0 ? double.NaN : (random.NextDouble() - 0.3) * Math.Pow(2, random.Next(-10, 40))).ToArray();
        d[0] = -0.5;
        d[4] = 3.5;
        var (pout, piout) = (memory.Upload(Fill(n * 8, float.NaN)), memory.Upload(Fill(n * 3, (long)Poison)));

        Run(Module(compiler, arch), "directed_conversions", Launch(memory, (3, 1, 1), (128, 1, 1)), new Params().Add(memory.Upload(l)).Add(memory.Upload(d)).Add(pout).Add(piout).Add(n));

        // The floats on either side of a double (exact), from the nearest one .NET's conversion gives.
        static float Directed(double exact, bool up)
        {
            var nearest = (float)exact;
            return (double)nearest == exact ? nearest : ((double)nearest < exact) == up ? (up ? MathF.BitIncrement(nearest) : MathF.BitDecrement(nearest)) : nearest;
        }

        static float Zero(double e) => Directed(e, up: e < 0);
        var o = memory.Download<float>(pout, n * 8);
        var io = memory.Download<long>(piout, n * 3);
        for (var i = 0; i < n; i++)
        {
            var (v, w) = (l[i], d[i]);
            // clang 14 writes cvt.rn.f32.s32 for __int2float_rz (LLVM turns libdevice's rounding intrinsic into a plain
            // conversion): the engine runs the PTX it is given.
            var ints = new[] { compiler == "clang" ? (float)(int)v : Zero((int)v), Directed((uint)v, up: false), UpLong(v), (float)(ulong)v };
            var fromDouble = double.IsNaN(w) ? Fill(4, float.NaN) : new[] { Directed(w, up: false), Directed(w, up: true), Zero(w), (float)w };
            Assert.Equal(ints.Concat(fromDouble), o.Skip(i * 8).Take(8));
            static long S64(double x) => double.IsNaN(x) ? 0 : x >= 9.2233720368547758e18 ? long.MaxValue : x <= -9.2233720368547758e18 ? long.MinValue : (long)x;
            var u32 = double.IsNaN(w) ? 0u : w <= 0 ? 0u : w >= 4294967295.0 ? uint.MaxValue : (uint)Math.Ceiling(w);
            Assert.Equal(new[] { S64(Math.Round(w * 1e12, MidpointRounding.ToEven)), (long)u32, S64(Math.Floor(w * 1e12)) }, io.Skip(i * 3).Take(3));
        }
    }

    private static float UpLong(long v)
    {
        // The least float at or above v, compared exactly as 128-bit integers (a long is not always exact as a double).
        var f = (float)v;
        return (Int128)(double)f >= v ? f : MathF.BitIncrement(f);
    }

    private static IEnumerable<int> InclusiveScan(IEnumerable<int> values)
    {
        var sum = 0;
        foreach (var v in values)
        {
            yield return sum += v;
        }
    }

    private static uint ReverseBits(uint v)
    {
        var r = 0u;
        for (var i = 0; i < 32; i++, v >>= 1)
        {
            r = (r << 1) | (v & 1);
        }

        return r;
    }
}
