using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Tests.Cpu;

namespace GpuPool.Devices.Tests.Kernels;

/// <summary>
/// The CUDA source of the built-in kernels (native/kernels/*.cu) against the cpu backend, without a GPU: the source
/// runs on the host through <see cref="KernelEmulator"/>, each case under several launch geometries and both thread
/// orders. Every run must give the same bits (results do not depend on the geometry), those results must match the
/// cpu backend within float tolerance, nothing past a buffer's end may be written, and where the cpu backend fails a
/// launch for its arguments, the CUDA kernel must write nothing at all.
/// </summary>
public sealed class CudaKernelSourceTests
{
    private static readonly float Guard = BitConverter.Int32BitsToSingle(0x7fc0dead);
    private const int GuardInt = -77777;

    // One thread; one warp; a 2-D block that is no multiple of a warp; a 3-D grid of 3-D blocks; many blocks; the
    // largest block. The second element says whether the block's threads also run in reverse order.
    private static readonly (Geometry Shape, bool AlsoReversed)[] Geometries =
    [
        (new(1, 1, 1, 1, 1, 1), false),
        (new(1, 1, 1, 32, 1, 1), false),
        (new(3, 1, 1, 7, 3, 1), true),
        (new(2, 3, 1, 16, 2, 2), false),
        (new(5, 1, 1, 256, 1, 1), true),
        (new(1, 1, 1, 1024, 1, 1), false),
    ];

    private static readonly float[] Specials = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f, -0f, 1e-40f, -1e-40f, 3e38f, -3e38f];

    public static TheoryData<string> ValidCases => [.. Cases.Where(c => !c.Value.Invalid).Select(c => c.Key)];

    public static TheoryData<string> InvalidCases => [.. Cases.Where(c => c.Value.Invalid).Select(c => c.Key)];

    private static readonly Dictionary<string, Case> Cases = BuildCases().ToDictionary(c => c.Name, StringComparer.Ordinal);

    [Fact]
    public void The_emulator_runs_exactly_the_builtin_kernels()
        => Assert.Equal(BuiltinKernels.All.Keys.Order(StringComparer.Ordinal), KernelEmulator.Instance.KernelNames.Order(StringComparer.Ordinal));

    [Fact]
    public void Every_builtin_kernel_has_a_valid_case()
        => Assert.Empty(BuiltinKernels.All.Keys.Except(Cases.Values.Where(c => !c.Invalid).Select(c => c.Kernel)));

    [Theory]
    [MemberData(nameof(ValidCases))]
    public async Task The_CUDA_source_computes_what_the_cpu_backend_computes_with_the_same_bits_for_every_launch_geometry(string name)
    {
        var kase = Cases[name];
        var emulator = KernelEmulator.Instance;
        var (cpu, error) = await RunOnCpuBackend(kase);
        Assert.True(error is null, $"{name}: the cpu backend failed the launch: {error?.Error.Message}");

        Dictionary<string, Array>? first = null;
        foreach (var (geometry, reverse) in Runs())
        {
            var run = RunEmulated(emulator, kase, geometry, reverse);
            CheckGuards(kase, run, geometry);
            if (first is null)
            {
                first = run;
                CompareWithCpu(kase, cpu, run);
            }
            else
            {
                foreach (var (buffer, values) in run)
                {
                    Assert.True(SameBits(first[buffer], values),
                        $"{name}: buffer {buffer} differs between {Runs().First().Geometry} and {geometry}{(reverse ? " in reverse thread order" : "")}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public async Task Arguments_the_cpu_backend_rejects_make_the_CUDA_kernel_write_nothing(string name)
    {
        var kase = Cases[name];
        var emulator = KernelEmulator.Instance;
        var (_, error) = await RunOnCpuBackend(kase);
        Assert.True(error is not null, $"{name}: the cpu backend accepted the launch, so this is no invalid case");

        foreach (var (geometry, reverse) in Runs())
        {
            var run = RunEmulated(emulator, kase, geometry, reverse);
            foreach (var (buffer, initial) in kase.Buffers)
            {
                Assert.True(SameBits(WithGuard(initial), run[buffer]), $"{name}: the CUDA kernel wrote to {buffer} with {geometry}");
            }
        }
    }

    [Fact]
    public void The_kernels_exp_and_log_are_within_2_ulp_and_get_the_special_values_right()
    {
        var emulator = KernelEmulator.Instance;
        var rng = new Random(5);
        for (var i = 0; i < 100_000; i++)
        {
            var x = (float)((rng.NextDouble() * 194) - 105);
            AssertUlps(MathF.Exp(x), emulator.Exp(x), 2, $"exp({x:R})");
            var y = MathF.Exp((float)((rng.NextDouble() * 190) - 102));
            if (y > 0 && float.IsFinite(y))
            {
                AssertUlps(MathF.Log(y), emulator.Log(y), 2, $"log({y:R})");
            }
        }

        Assert.Equal(float.PositiveInfinity, emulator.Exp(88.72284f));
        Assert.Equal(MathF.Exp(88.72283f), emulator.Exp(88.72283f));
        Assert.Equal(0f, emulator.Exp(-104f));
        Assert.Equal(float.Epsilon, emulator.Exp(-103.9f));
        Assert.Equal((1f, float.PositiveInfinity, 0f), (emulator.Exp(0f), emulator.Exp(float.PositiveInfinity), emulator.Exp(float.NegativeInfinity)));
        Assert.True(float.IsNaN(emulator.Exp(float.NaN)));
        Assert.Equal((0f, float.NegativeInfinity, float.PositiveInfinity), (emulator.Log(1f), emulator.Log(0f), emulator.Log(float.PositiveInfinity)));
        Assert.Equal(MathF.Log(float.Epsilon), emulator.Log(float.Epsilon));
        Assert.True(float.IsNaN(emulator.Log(-1f)) && float.IsNaN(emulator.Log(float.NaN)));
    }

    // ------------------------------------------------------------------ the cases

    private static IEnumerable<Case> BuildCases()
    {
        var rng = new Random(20251123);

        yield return new Case("noop", "noop");

        foreach (var n in new[] { 0, 1, 1500 })
        {
            yield return new Case($"fill_f32 n={n}", "fill_f32").Exact().U64("n", n).F32("value", -3.25f).Buf("y", Floats(rng, n));
        }

        yield return new Case("copy_f32", "copy_f32").Exact().U64("n", 1500).Buf("x", Floats(rng, 1500)).Buf("y", Floats(rng, 1500));
        yield return new Case("axpy_f32", "axpy_f32").Exact().U64("n", 777).F32("alpha", 1.75f).Buf("x", Floats(rng, 777)).Buf("y", Floats(rng, 777));
        yield return new Case("scale_f32", "scale_f32").Exact().U64("n", 777).F32("alpha", -0.5f).Buf("x", WithSpecials(Floats(rng, 777)));
        foreach (var op in new[] { "add_f32", "sub_f32", "mul_f32" })
        {
            yield return new Case(op, op).Exact().U64("n", 1025).Buf("a", WithSpecials(Floats(rng, 1025))).Buf("b", Floats(rng, 1025)).Buf("c", Floats(rng, 1025));
        }

        yield return new Case("add_f32 into a", "add_f32").Exact().U64("n", 300).Buf("a", Floats(rng, 300)).Buf("b", Floats(rng, 300)).Alias("c", "a");
        yield return new Case("relu_f32", "relu_f32").Exact().U64("n", 1000).Buf("x", WithSpecials(Floats(rng, 1000))).Buf("y", Floats(rng, 1000));
        yield return new Case("relu_f32 in place", "relu_f32").Exact().U64("n", 1000).Buf("x", Floats(rng, 1000)).Alias("y", "x");
        yield return new Case("relu_backward_f32", "relu_backward_f32").Exact().U64("n", 1000).Buf("x", WithSpecials(Floats(rng, 1000)))
            .Buf("dy", Floats(rng, 1000)).Buf("dx", Floats(rng, 1000));

        foreach (var (rows, cols) in new[] { (9, 37), (0, 5), (70, 1) })
        {
            yield return new Case($"bias_add_f32 {rows}x{cols}", "bias_add_f32").Exact().I32("rows", rows).I32("cols", cols)
                .Buf("x", Floats(rng, rows * cols)).Buf("bias", Floats(rng, cols)).Buf("y", Floats(rng, rows * cols));
        }

        foreach (var (rows, cols) in new[] { (23, 37), (0, 4), (1, 1500), (300, 3) })
        {
            yield return new Case($"sum_columns_f32 {rows}x{cols}", "sum_columns_f32").Exact().I32("rows", rows).I32("cols", cols)
                .Buf("x", Floats(rng, rows * cols)).Buf("y", Floats(rng, cols));
        }

        foreach (var n in new[] { 0, 1, 3000 })
        {
            // Non-negative terms: the cpu backend and the kernels add in different orders, and without cancellation
            // the difference stays within float rounding of the result.
            yield return new Case($"sum_f32 n={n}", "sum_f32").U64("n", n).Buf("x", Floats(rng, n, 0, 1)).Buf("out", [Guard]);
        }

        yield return new Case("max_f32 n=1", "max_f32").Exact().U64("n", 1).Buf("x", [-5f]).Buf("out", [0f]);
        yield return new Case("max_f32 n=3000", "max_f32").Exact().U64("n", 3000).Buf("x", Floats(rng, 3000)).Buf("out", [0f]);
        yield return new Case("max_f32 with a NaN", "max_f32").Exact().U64("n", 2000).Buf("x", Set(Floats(rng, 2000), 1234, float.NaN)).Buf("out", [0f]);
        yield return new Case("max_f32 of infinities and signed zeros", "max_f32").Exact().U64("n", 5)
            .Buf("x", [float.NegativeInfinity, -0f, 0f, -0f, float.NegativeInfinity]).Buf("out", [1f]);
        yield return new Case("max_f32 of -infinity", "max_f32").Exact().U64("n", 3).Buf("x", [float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity])
            .Buf("out", [1f]);

        foreach (var n in new[] { 0, 2500 })
        {
            yield return new Case($"count_equal_i32 n={n}", "count_equal_i32").Exact().U64("n", n).Buf("a", Ints(rng, n, 3)).Buf("b", Ints(rng, n, 3)).Buf("out", [GuardInt]);
        }

        foreach (var transA in new[] { false, true })
        {
            foreach (var transB in new[] { false, true })
            {
                yield return Gemm(rng, $"gemm_f32 ta={transA} tb={transB}", transA, transB, 70, 65, 33, 1.5f, -0.5f);
            }
        }

        yield return Gemm(rng, "gemm_f32 1x1x1", false, false, 1, 1, 1, 2f, 0.25f);
        yield return Gemm(rng, "gemm_f32 k=0", true, false, 5, 7, 0, 2f, 3f);
        yield return Gemm(rng, "gemm_f32 beta=1", false, true, 17, 9, 40, 1f, 1f);
        yield return Gemm(rng, "gemm_f32 m=0", false, false, 0, 7, 3, 1f, 1f);
        yield return Gemm(rng, "gemm_f32 beta=0 ignores NaN in C", false, false, 20, 18, 5, 1f, 0f, fillC: float.NaN);
        yield return Gemm(rng, "gemm_f32 alpha=0 ignores NaN in A and B", true, true, 20, 18, 5, 0f, 2f, fillAB: float.NaN);
        yield return Gemm(rng, "gemm_f32 alpha=0 beta=0 zeroes C", false, false, 6, 6, 6, 0f, 0f, fillC: float.NaN);

        foreach (var (rows, cols) in new[] { (5, 37), (3, 300), (2, 1), (0, 4) })
        {
            yield return new Case($"softmax_rows_f32 {rows}x{cols}", "softmax_rows_f32").I32("rows", rows).I32("cols", cols)
                .Buf("x", Floats(rng, rows * cols, -5, 5)).Buf("y", Floats(rng, rows * cols));
        }

        yield return new Case("softmax_rows_f32 in place", "softmax_rows_f32").I32("rows", 4).I32("cols", 270).Buf("x", Floats(rng, 4 * 270, -5, 5)).Alias("y", "x");
        yield return new Case("softmax_rows_f32 huge and infinite logits", "softmax_rows_f32").I32("rows", 3).I32("cols", 3)
            .Buf("x", [1e30f, 1e30f, -1e30f, float.NegativeInfinity, 0f, 1f, 88f, -100f, 0f]).Buf("y", Floats(rng, 9));

        foreach (var (rows, cols) in new[] { (6, 29), (3, 300), (4, 1) })
        {
            yield return new Case($"softmax_xent_forward_f32 {rows}x{cols}", "softmax_xent_forward_f32").I32("rows", rows).I32("cols", cols)
                .Buf("logits", Floats(rng, rows * cols, -5, 5)).Buf("labels", Ints(rng, rows, cols)).Buf("probs", Floats(rng, rows * cols)).Buf("loss", Floats(rng, rows));
        }

        yield return new Case("softmax_xent_forward_f32 underflowing label probability", "softmax_xent_forward_f32").I32("rows", 2).I32("cols", 3)
            .Buf("logits", [0f, 200f, -200f, 5f, 5f, 5f]).Buf("labels", new[] { 2, 1 }).Buf("probs", Floats(rng, 6)).Buf("loss", Floats(rng, 2));

        foreach (var (rows, cols) in new[] { (6, 29), (2, 300) })
        {
            yield return new Case($"softmax_xent_backward_f32 {rows}x{cols}", "softmax_xent_backward_f32").Exact().I32("rows", rows).I32("cols", cols).F32("scale", 0.25f)
                .Buf("probs", Floats(rng, rows * cols, 0, 1)).Buf("labels", Ints(rng, rows, cols)).Buf("dlogits", Floats(rng, rows * cols));
        }

        foreach (var (rows, cols) in new[] { (7, 41), (3, 600), (0, 0) })
        {
            yield return new Case($"argmax_rows_f32 {rows}x{cols}", "argmax_rows_f32").Exact().I32("rows", rows).I32("cols", cols)
                .Buf("x", Floats(rng, rows * cols)).Buf("out", Ints(rng, rows, 5));
        }

        // Row 0 ties everywhere, row 1 has two NaNs, row 2 ties -0 with +0 and a later +0, row 3's maximum is in its last column.
        float[] ties =
        [
            2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f, 2f,
        ];
        var special = new float[4 * 300];
        for (var i = 0; i < special.Length; i++)
        {
            special[i] = -1f - (float)rng.NextDouble();
        }

        Array.Fill(special, 2f, 0, 300);
        special[300 + 280] = float.NaN;
        special[300 + 290] = float.NaN;
        special[600 + 270] = -0f;
        special[600 + 10] = 0f;
        special[600 + 299] = 0f;
        special[900 + 299] = 5f;
        yield return new Case("argmax_rows_f32 ties NaNs and signed zeros", "argmax_rows_f32").Exact().I32("rows", 4).I32("cols", 300).Buf("x", special).Buf("out", Ints(rng, 4, 5));
        yield return new Case("argmax_rows_f32 one tied row", "argmax_rows_f32").Exact().I32("rows", 1).I32("cols", ties.Length).Buf("x", ties).Buf("out", new[] { 9 });

        foreach (var (count, cols, tableRows) in new[] { (37, 19, 11), (0, 4, 3), (300, 2, 1) })
        {
            yield return new Case($"gather_rows_f32 {count}x{cols} of {tableRows}", "gather_rows_f32").Exact().I32("count", count).I32("cols", cols).I32("table_rows", tableRows)
                .Buf("table", Floats(rng, tableRows * cols)).Buf("indices", Ints(rng, count, tableRows)).Buf("out", Floats(rng, count * cols));
            yield return new Case($"scatter_add_rows_f32 {count}x{cols} into {tableRows}", "scatter_add_rows_f32").Exact().I32("count", count).I32("cols", cols).I32("table_rows", tableRows)
                .Buf("dout", Floats(rng, count * cols)).Buf("indices", Ints(rng, count, tableRows)).Buf("dtable", Floats(rng, tableRows * cols));
        }

        yield return new Case("sgd_f32", "sgd_f32").Exact().U64("n", 999).F32("lr", 0.1f).F32("weight_decay", 0.01f).Buf("w", Floats(rng, 999)).Buf("g", Floats(rng, 999));
        yield return new Case("sgd_momentum_f32", "sgd_momentum_f32").Exact().U64("n", 999).F32("lr", 0.1f).F32("momentum", 0.9f)
            .Buf("w", Floats(rng, 999)).Buf("g", Floats(rng, 999)).Buf("v", Floats(rng, 999));
        foreach (var (step, beta2) in new[] { (1, 0.999f), (3, 0.999f), (1000, 0.9999f) })
        {
            yield return new Case($"adam_f32 step={step}", "adam_f32").U64("n", 999).F32("lr", 0.01f).F32("beta1", 0.9f).F32("beta2", beta2).F32("eps", 1e-8f)
                .I32("step", step).Buf("w", Floats(rng, 999)).Buf("g", Floats(rng, 999)).Buf("m", Floats(rng, 999)).Buf("v", Floats(rng, 999, 0, 1));
        }

        // ------------------------------------------------------------------ arguments the cpu backend rejects

        yield return new Case("max_f32 n=0", "max_f32", invalid: true).U64("n", 0).Buf("x", Array.Empty<float>()).Buf("out", [4f]);
        yield return Gemm(rng, "gemm_f32 lda shorter than a row", false, false, 8, 8, 8, 1f, 0f, lda: 7, invalid: true);
        yield return Gemm(rng, "gemm_f32 ldb shorter than a row of B transposed", false, true, 8, 8, 8, 1f, 0f, ldb: 7, invalid: true);
        yield return Gemm(rng, "gemm_f32 ldc shorter than n", false, false, 8, 8, 8, 1f, 0f, ldc: 7, invalid: true);
        yield return new Case("gemm_f32 negative m", "gemm_f32", invalid: true).I32("trans_a", 0).I32("trans_b", 0).I32("m", -1).I32("n", 2).I32("k", 2).F32("alpha", 1f)
            .Buf("a", Floats(rng, 4)).I32("lda", 2).Buf("b", Floats(rng, 4)).I32("ldb", 2).F32("beta", 0f).Buf("c", Floats(rng, 4)).I32("ldc", 2);
        yield return new Case("bias_add_f32 negative cols", "bias_add_f32", invalid: true).I32("rows", 2).I32("cols", -3)
            .Buf("x", Floats(rng, 6)).Buf("bias", Floats(rng, 3)).Buf("y", Floats(rng, 6));
        yield return new Case("sum_columns_f32 negative rows", "sum_columns_f32", invalid: true).I32("rows", -2).I32("cols", 3).Buf("x", Floats(rng, 6)).Buf("y", Floats(rng, 3));
        yield return new Case("softmax_rows_f32 negative rows", "softmax_rows_f32", invalid: true).I32("rows", -1).I32("cols", 3).Buf("x", Floats(rng, 3)).Buf("y", Floats(rng, 3));
        foreach (var bad in new[] { 29, -1 })
        {
            yield return new Case($"softmax_xent_forward_f32 label {bad}", "softmax_xent_forward_f32", invalid: true).I32("rows", 6).I32("cols", 29)
                .Buf("logits", Floats(rng, 6 * 29)).Buf("labels", Set(Ints(rng, 6, 29), 4, bad)).Buf("probs", Floats(rng, 6 * 29)).Buf("loss", Floats(rng, 6));
            yield return new Case($"softmax_xent_backward_f32 label {bad}", "softmax_xent_backward_f32", invalid: true).I32("rows", 6).I32("cols", 29).F32("scale", 1f)
                .Buf("probs", Floats(rng, 6 * 29)).Buf("labels", Set(Ints(rng, 6, 29), 5, bad)).Buf("dlogits", Floats(rng, 6 * 29));
        }

        yield return new Case("softmax_xent_forward_f32 no classes", "softmax_xent_forward_f32", invalid: true).I32("rows", 2).I32("cols", 0)
            .Buf("logits", Array.Empty<float>()).Buf("labels", new[] { 0, 0 }).Buf("probs", Array.Empty<float>()).Buf("loss", Floats(rng, 2));
        yield return new Case("argmax_rows_f32 rows without columns", "argmax_rows_f32", invalid: true).I32("rows", 2).I32("cols", 0).Buf("x", Array.Empty<float>()).Buf("out", new[] { 7, 7 });
        yield return new Case("gather_rows_f32 index past the table", "gather_rows_f32", invalid: true).I32("count", 37).I32("cols", 19).I32("table_rows", 11)
            .Buf("table", Floats(rng, 11 * 19)).Buf("indices", Set(Ints(rng, 37, 11), 36, 11)).Buf("out", Floats(rng, 37 * 19));
        yield return new Case("gather_rows_f32 negative index", "gather_rows_f32", invalid: true).I32("count", 5).I32("cols", 2).I32("table_rows", 3)
            .Buf("table", Floats(rng, 6)).Buf("indices", new[] { 0, 1, -1, 2, 0 }).Buf("out", Floats(rng, 10));
        yield return new Case("gather_rows_f32 no columns", "gather_rows_f32", invalid: true).I32("count", 3).I32("cols", 0).I32("table_rows", 3)
            .Buf("table", Array.Empty<float>()).Buf("indices", new[] { 0, 1, 2 }).Buf("out", Array.Empty<float>());
        yield return new Case("scatter_add_rows_f32 index past the table", "scatter_add_rows_f32", invalid: true).I32("count", 37).I32("cols", 19).I32("table_rows", 11)
            .Buf("dout", Floats(rng, 37 * 19)).Buf("indices", Set(Ints(rng, 37, 11), 0, 11)).Buf("dtable", Floats(rng, 11 * 19));
        yield return new Case("adam_f32 step=0", "adam_f32", invalid: true).U64("n", 99).F32("lr", 0.01f).F32("beta1", 0.9f).F32("beta2", 0.999f).F32("eps", 1e-8f)
            .I32("step", 0).Buf("w", Floats(rng, 99)).Buf("g", Floats(rng, 99)).Buf("m", Floats(rng, 99)).Buf("v", Floats(rng, 99, 0, 1));
    }

    private static Case Gemm(Random rng, string name, bool transA, bool transB, int m, int n, int k, float alpha, float beta,
        float? fillC = null, float? fillAB = null, int? lda = null, int? ldb = null, int? ldc = null, bool invalid = false)
    {
        var (aRows, aCols) = transA ? (k, m) : (m, k);
        var (bRows, bCols) = transB ? (n, k) : (k, n);
        int la = lda ?? aCols + 2, lb = ldb ?? bCols + 3, lc = ldc ?? n + 1;
        float[] a = Floats(rng, Extent(aRows, aCols, la), -1, 1), b = Floats(rng, Extent(bRows, bCols, lb), -1, 1), c = Floats(rng, Extent(m, n, lc), -1, 1);
        if (fillC is { } cv)
        {
            Array.Fill(c, cv);
        }

        if (fillAB is { } abv)
        {
            Array.Fill(a, abv);
            Array.Fill(b, abv);
        }

        return new Case(name, "gemm_f32", invalid, tolerance: 1e-4)
            .I32("trans_a", transA ? 1 : 0).I32("trans_b", transB ? 1 : 0).I32("m", m).I32("n", n).I32("k", k).F32("alpha", alpha)
            .Buf("a", a).I32("lda", la).Buf("b", b).I32("ldb", lb).F32("beta", beta).Buf("c", c).I32("ldc", lc);
    }

    private static int Extent(int rows, int cols, int ld) => rows == 0 || cols == 0 ? 0 : ((rows - 1) * ld) + cols;

    // ------------------------------------------------------------------ running a case

    private static IEnumerable<(Geometry Geometry, bool Reverse)> Runs()
    {
        foreach (var (shape, alsoReversed) in Geometries)
        {
            yield return (shape, false);
            if (alsoReversed)
            {
                yield return (shape, true);
            }
        }
    }

    /// <summary>Every buffer with one guard element past its end, as a fresh copy.</summary>
    private static Array WithGuard(Array initial) => initial switch
    {
        float[] f => (float[])[.. f, Guard],
        int[] i => (int[])[.. i, GuardInt],
        _ => throw new ArgumentException($"unexpected buffer type {initial.GetType()}", nameof(initial)),
    };

    private static async Task<(Dictionary<string, Array> Buffers, StickyError? Error)> RunOnCpuBackend(Case kase)
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var pointers = kase.Buffers.ToDictionary(b => b.Key, b => WithGuard(b.Value) switch
        {
            float[] f => Dev.Upload(context, f),
            int[] i => Dev.Upload(context, i),
            _ => throw new InvalidOperationException(),
        });

        context.EnqueueLaunch(0, Dev.Function(context, kase.Kernel), Dev.Dims, Pack(kase, name => pointers[name]), Dev.Tag("launch"));
        await context.SynchronizeAsync();
        var error = context.TakeError();
        var results = new Dictionary<string, Array>();
        foreach (var (name, initial) in kase.Buffers)
        {
            results[name] = initial is int[]
                ? await Dev.DownloadAsync<int>(context, pointers[name], initial.Length + 1)
                : await Dev.DownloadAsync<float>(context, pointers[name], initial.Length + 1);
        }

        return (results, error);
    }

    private static Dictionary<string, Array> RunEmulated(KernelEmulator emulator, Case kase, Geometry geometry, bool reverse)
    {
        var memory = new Dictionary<string, (IntPtr Address, Array Contents)>();
        try
        {
            foreach (var (name, initial) in kase.Buffers)
            {
                var contents = WithGuard(initial);
                var address = Marshal.AllocHGlobal(contents.Length * 4);
                memory[name] = (address, contents);
                if (contents is float[] f)
                {
                    Marshal.Copy(f, 0, address, f.Length);
                }
                else
                {
                    Marshal.Copy((int[])contents, 0, address, contents.Length);
                }
            }

            emulator.Launch(kase.Kernel, geometry, Pack(kase, name => (ulong)memory[name].Address), reverse);

            foreach (var (address, contents) in memory.Values)
            {
                if (contents is float[] f)
                {
                    Marshal.Copy(address, f, 0, f.Length);
                }
                else
                {
                    Marshal.Copy(address, (int[])contents, 0, contents.Length);
                }
            }

            return memory.ToDictionary(m => m.Key, m => m.Value.Contents);
        }
        finally
        {
            foreach (var (address, _) in memory.Values)
            {
                Marshal.FreeHGlobal(address);
            }
        }
    }

    /// <summary>Packs the case's arguments in the kernel's parameter order, the way cuLaunchKernel lays them out.</summary>
    private static byte[] Pack(Case kase, Func<string, ulong> address)
    {
        var def = BuiltinKernels.All[kase.Kernel];
        var named = kase.Scalars.Keys.Concat(kase.Buffers.Keys).Concat(kase.Aliases.Keys).Order(StringComparer.Ordinal);
        Assert.Equal(def.Params.Select(p => p.Name).Order(StringComparer.Ordinal), named);
        var args = new ParamPacker();
        foreach (var p in def.Params)
        {
            _ = p.Kind switch
            {
                ParamKind.I32 => args.I32((int)kase.Scalars[p.Name]),
                ParamKind.F32 => args.F32((float)kase.Scalars[p.Name]),
                ParamKind.U64 => args.U64((ulong)kase.Scalars[p.Name]),
                _ => args.Ptr(address(kase.Aliases.GetValueOrDefault(p.Name, p.Name))),
            };
        }

        return args.ToArray();
    }

    private static void CheckGuards(Case kase, Dictionary<string, Array> run, Geometry geometry)
    {
        foreach (var (name, values) in run)
        {
            var last = values.Length - 1;
            var intact = values is float[] f ? BitConverter.SingleToInt32Bits(f[last]) == BitConverter.SingleToInt32Bits(Guard) : ((int[])values)[last] == GuardInt;
            Assert.True(intact, $"{kase.Name}: the CUDA kernel wrote past the end of {name} with {geometry}");
        }
    }

    private static void CompareWithCpu(Case kase, Dictionary<string, Array> cpu, Dictionary<string, Array> gpu)
    {
        foreach (var (name, expected) in cpu)
        {
            for (var i = 0; i < expected.Length - 1; i++)
            {
                if (expected is int[] ei)
                {
                    var gi = ((int[])gpu[name])[i];
                    Assert.True(ei[i] == gi, $"{kase.Name}: {name}[{i}] = {gi}, the cpu backend has {ei[i]}");
                    continue;
                }

                float e = ((float[])expected)[i], g = ((float[])gpu[name])[i];
                var close = float.IsNaN(e) ? float.IsNaN(g)
                    : kase.IsExact ? BitConverter.SingleToInt32Bits(e) == BitConverter.SingleToInt32Bits(g)
                    : float.IsInfinity(e) || float.IsInfinity(g) ? e == g
                    : Math.Abs((double)e - g) <= kase.Tolerance * Math.Max(1, Math.Abs((double)e));
                Assert.True(close, $"{kase.Name}: {name}[{i}] = {g:R}, the cpu backend has {e:R}");
            }
        }
    }

    private static bool SameBits(Array a, Array b) => a.Length == b.Length && a switch
    {
        float[] f => MemoryMarshal.AsBytes(f.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(((float[])b).AsSpan())),
        int[] i => i.AsSpan().SequenceEqual((int[])b),
        _ => false,
    };

    private static void AssertUlps(float expected, float actual, int ulps, string what)
    {
        var distance = Math.Abs((long)BitConverter.SingleToInt32Bits(expected) - BitConverter.SingleToInt32Bits(actual));
        Assert.True(distance <= ulps, $"{what} = {actual:R}, expected {expected:R} ({distance} ulp apart)");
    }

    private static float[] Floats(Random rng, int n, double lo = -2, double hi = 2)
        => [.. Enumerable.Range(0, n).Select(_ => (float)(lo + ((hi - lo) * rng.NextDouble())))];

    private static int[] Ints(Random rng, int n, int below) => [.. Enumerable.Range(0, n).Select(_ => rng.Next(below))];

    private static float[] WithSpecials(float[] values)
    {
        for (var i = 0; i < Specials.Length && i * 7 < values.Length; i++)
        {
            values[i * 7] = Specials[i];
        }

        return values;
    }

    private static T[] Set<T>(T[] values, int at, T value)
    {
        values[at] = value;
        return values;
    }

    /// <summary>One launch: the kernel, its scalar arguments, its buffers (float[] or int[]) and pointer parameters that alias another buffer.</summary>
    private sealed class Case(string name, string kernel, bool invalid = false, double tolerance = 1e-5)
    {
        public string Name { get; } = name;

        public string Kernel { get; } = kernel;

        public bool Invalid { get; } = invalid;

        public double Tolerance { get; } = tolerance;

        /// <summary>The kernel performs the cpu backend's float operations in the same order, so the bits must agree (any NaN matches any NaN).</summary>
        public bool IsExact { get; private set; }

        public Dictionary<string, object> Scalars { get; } = [];

        public Dictionary<string, Array> Buffers { get; } = [];

        public Dictionary<string, string> Aliases { get; } = [];

        public Case Exact()
        {
            IsExact = true;
            return this;
        }

        public Case I32(string name, int value) => Scalar(name, value);

        public Case F32(string name, float value) => Scalar(name, value);

        public Case U64(string name, int value) => Scalar(name, (ulong)value);

        public Case Buf(string name, float[] contents) => Buffer(name, contents);

        public Case Buf(string name, int[] contents) => Buffer(name, contents);

        /// <summary>Pointer parameter <paramref name="name"/> gets the address of buffer <paramref name="buffer"/>.</summary>
        public Case Alias(string name, string buffer)
        {
            Aliases.Add(name, buffer);
            return this;
        }

        private Case Buffer(string name, Array contents)
        {
            Buffers.Add(name, contents);
            return this;
        }

        private Case Scalar(string name, object value)
        {
            Scalars.Add(name, value);
            return this;
        }
    }
}
