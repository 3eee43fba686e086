using GpuPool.Devices.Cpu;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// The glue between a launch and <see cref="CpuMath"/>: parameter decoding, pointer resolution and argument order, for
/// every built-in kernel, through a real context. The math itself is covered by CpuMathTests.
/// </summary>
public sealed class BuiltinKernelTests
{
    private static readonly float Poison = BitConverter.Int32BitsToSingle(0x7fc00000);
    private const int PoisonInt = -999;

    public static TheoryData<string> Kernels => [.. BuiltinKernels.All.Keys.Order(StringComparer.Ordinal)];

    private static readonly Dictionary<string, Func<Random, KernelCase>> Cases = new()
    {
        ["noop"] = _ => new KernelCase("noop"),
        ["fill_f32"] = rng =>
        {
            var n = Length(rng);
            return new KernelCase("fill_f32").U64("n", n).F32("value", -3.25f).Out("y", Poisoned(n), Map(n, _ => -3.25));
        },
        ["copy_f32"] = rng =>
        {
            var n = Length(rng);
            var x = Floats(rng, n);
            return new KernelCase("copy_f32").U64("n", n).In("x", x).Out("y", Poisoned(n), Map(n, i => x[i]));
        },
        ["axpy_f32"] = rng =>
        {
            var n = Length(rng);
            float[] x = Floats(rng, n), y = Floats(rng, n);
            return new KernelCase("axpy_f32").U64("n", n).F32("alpha", 1.75f).In("x", x).Out("y", y, Map(n, i => y[i] + (1.75 * x[i])));
        },
        ["scale_f32"] = rng =>
        {
            var n = Length(rng);
            var x = Floats(rng, n);
            return new KernelCase("scale_f32").U64("n", n).F32("alpha", -0.5f).Out("x", x, Map(n, i => -0.5 * x[i]));
        },
        ["add_f32"] = rng => Elementwise(rng, "add_f32", (a, b) => a + b),
        ["sub_f32"] = rng => Elementwise(rng, "sub_f32", (a, b) => a - b),
        ["mul_f32"] = rng => Elementwise(rng, "mul_f32", (a, b) => a * b),
        ["relu_f32"] = rng =>
        {
            var n = Length(rng);
            var x = Floats(rng, n);
            return new KernelCase("relu_f32").U64("n", n).In("x", x).Out("y", Poisoned(n), Map(n, i => Math.Max(x[i], 0.0)));
        },
        ["relu_backward_f32"] = rng =>
        {
            var n = Length(rng);
            float[] x = Floats(rng, n), dy = Floats(rng, n);
            return new KernelCase("relu_backward_f32").U64("n", n).In("x", x).In("dy", dy).Out("dx", Poisoned(n), Map(n, i => x[i] > 0 ? dy[i] : 0.0));
        },
        ["bias_add_f32"] = rng =>
        {
            const int rows = 9, cols = 37;
            float[] x = Floats(rng, rows * cols), bias = Floats(rng, cols);
            return new KernelCase("bias_add_f32").I32("rows", rows).I32("cols", cols).In("x", x).In("bias", bias)
                .Out("y", Poisoned(rows * cols), Map(rows * cols, i => x[i] + (double)bias[i % cols]));
        },
        ["sum_columns_f32"] = rng =>
        {
            const int rows = 23, cols = 37;
            var x = Floats(rng, rows * cols);
            return new KernelCase("sum_columns_f32").I32("rows", rows).I32("cols", cols).In("x", x)
                .Out("y", Poisoned(cols), Map(cols, c => Enumerable.Range(0, rows).Sum(r => (double)x[(r * cols) + c])));
        },
        ["sum_f32"] = rng =>
        {
            var n = Length(rng);
            var x = Floats(rng, n);
            return new KernelCase("sum_f32", tolerance: 1e-4).U64("n", n).In("x", x).Out("out", Poisoned(1), [x.Sum(v => (double)v)]);
        },
        ["max_f32"] = rng =>
        {
            var n = Length(rng);
            var x = Floats(rng, n);
            return new KernelCase("max_f32").U64("n", n).In("x", x).Out("out", Poisoned(1), [x.Max()]);
        },
        ["gemm_f32"] = rng => Gemm(rng, transA: true, transB: true),
        ["softmax_rows_f32"] = rng =>
        {
            const int rows = 5, cols = 37;
            var x = Floats(rng, rows * cols);
            return new KernelCase("softmax_rows_f32").I32("rows", rows).I32("cols", cols).In("x", x)
                .Out("y", Poisoned(rows * cols), Softmax(x, rows, cols));
        },
        ["softmax_xent_forward_f32"] = rng =>
        {
            const int rows = 6, cols = 29;
            var logits = Floats(rng, rows * cols);
            var labels = Ints(rng, rows, cols);
            var loss = Map(rows, r =>
            {
                var row = logits.Skip(r * cols).Take(cols).Select(v => (double)v).ToArray();
                var max = row.Max();
                return max + Math.Log(row.Sum(v => Math.Exp(v - max))) - row[labels[r]];
            });
            return new KernelCase("softmax_xent_forward_f32").I32("rows", rows).I32("cols", cols).In("logits", logits).In("labels", labels)
                .Out("probs", Poisoned(rows * cols), Softmax(logits, rows, cols)).Out("loss", Poisoned(rows), loss);
        },
        ["softmax_xent_backward_f32"] = rng =>
        {
            const int rows = 6, cols = 29;
            const float scale = 0.25f;
            var probs = Floats(rng, rows * cols, 0, 1);
            var labels = Ints(rng, rows, cols);
            return new KernelCase("softmax_xent_backward_f32").I32("rows", rows).I32("cols", cols).F32("scale", scale).In("probs", probs).In("labels", labels)
                .Out("dlogits", Poisoned(rows * cols), Map(rows * cols, i => scale * (probs[i] - (labels[i / cols] == i % cols ? 1.0 : 0.0))));
        },
        ["argmax_rows_f32"] = rng =>
        {
            const int rows = 7, cols = 41;
            var x = Floats(rng, rows * cols);
            var expected = Enumerable.Range(0, rows).Select(r => Array.IndexOf(x, x.Skip(r * cols).Take(cols).Max(), r * cols) - (r * cols)).ToArray();
            return new KernelCase("argmax_rows_f32").I32("rows", rows).I32("cols", cols).In("x", x).Out("out", PoisonedInts(rows), expected);
        },
        ["count_equal_i32"] = rng =>
        {
            var n = Length(rng);
            int[] a = Ints(rng, n, 3), b = Ints(rng, n, 3);
            return new KernelCase("count_equal_i32").U64("n", n).In("a", a).In("b", b).Out("out", PoisonedInts(1), [a.Zip(b).Count(p => p.First == p.Second)]);
        },
        ["sgd_f32"] = rng =>
        {
            var n = Length(rng);
            const float lr = 0.1f, wd = 0.01f;
            float[] w = Floats(rng, n), g = Floats(rng, n);
            return new KernelCase("sgd_f32").U64("n", n).F32("lr", lr).F32("weight_decay", wd).In("g", g)
                .Out("w", w, Map(n, i => w[i] - ((double)lr * (g[i] + ((double)wd * w[i])))));
        },
        ["sgd_momentum_f32"] = rng =>
        {
            var n = Length(rng);
            const float lr = 0.1f, momentum = 0.9f;
            float[] w = Floats(rng, n), g = Floats(rng, n), v = Floats(rng, n);
            var v1 = Map(n, i => ((double)momentum * v[i]) + g[i]);
            return new KernelCase("sgd_momentum_f32").U64("n", n).F32("lr", lr).F32("momentum", momentum).In("g", g)
                .Out("w", w, Map(n, i => w[i] - ((double)lr * v1[i]))).Out("v", v, v1);
        },
        ["adam_f32"] = rng =>
        {
            var n = Length(rng);
            const float lr = 0.01f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
            const int step = 3;
            float[] w = Floats(rng, n), g = Floats(rng, n), m = Floats(rng, n), v = Floats(rng, n, 0, 1);
            var m1 = Map(n, i => ((double)beta1 * m[i]) + ((1 - (double)beta1) * g[i]));
            var v1 = Map(n, i => ((double)beta2 * v[i]) + ((1 - (double)beta2) * g[i] * g[i]));
            double c1 = 1 / (1 - Math.Pow(beta1, step)), c2 = 1 / (1 - Math.Pow(beta2, step));
            return new KernelCase("adam_f32").U64("n", n).F32("lr", lr).F32("beta1", beta1).F32("beta2", beta2).F32("eps", eps).I32("step", step).In("g", g)
                .Out("w", w, Map(n, i => w[i] - (lr * m1[i] * c1 / (Math.Sqrt(v1[i] * c2) + eps))))
                .Out("m", m, m1)
                .Out("v", v, v1);
        },
        ["gather_rows_f32"] = rng =>
        {
            const int count = 37, cols = 19, tableRows = 11;
            var table = Floats(rng, tableRows * cols);
            var indices = Ints(rng, count, tableRows);
            return new KernelCase("gather_rows_f32").I32("count", count).I32("cols", cols).I32("table_rows", tableRows).In("table", table).In("indices", indices)
                .Out("out", Poisoned(count * cols), Map(count * cols, i => table[(indices[i / cols] * cols) + (i % cols)]));
        },
        ["scatter_add_rows_f32"] = rng =>
        {
            const int count = 37, cols = 19, tableRows = 11;
            float[] dout = Floats(rng, count * cols), dtable = Floats(rng, tableRows * cols);
            var indices = Ints(rng, count, tableRows);
            var expected = Map(tableRows * cols, i => dtable[i]);
            for (var i = 0; i < count * cols; i++)
            {
                expected[(indices[i / cols] * cols) + (i % cols)] += dout[i];
            }

            return new KernelCase("scatter_add_rows_f32").I32("count", count).I32("cols", cols).I32("table_rows", tableRows).In("dout", dout).In("indices", indices)
                .Out("dtable", dtable, expected);
        },
    };

    [Theory]
    [MemberData(nameof(Kernels))]
    public async Task Every_builtin_kernel_computes_its_reference_result_through_a_launch(string kernel)
    {
        Assert.True(Cases.ContainsKey(kernel), $"no test case for built-in kernel {kernel}");
        await RunAndCheck(Cases[kernel](new Random(Seed(kernel))));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Gemm_reads_its_operands_with_every_transpose_combination(bool transA, bool transB)
        => await RunAndCheck(Gemm(new Random(11 + (transA ? 1 : 0) + (transB ? 2 : 0)), transA, transB));

    [Theory]
    [MemberData(nameof(Kernels))]
    public async Task Every_pointer_parameter_past_its_allocation_fails_with_InvalidAddress_naming_kernel_and_parameter(string kernel)
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var def = BuiltinKernels.All[kernel];
        var kase = Cases[kernel](new Random(Seed(kernel)));

        foreach (var param in def.Params.Where(p => p.Kind == ParamKind.Ptr))
        {
            // Every buffer is exactly as large as the launch needs, so one element further runs past its end.
            Launch(context, kase, shifted: param.Name);
            await context.SynchronizeAsync();

            var error = context.TakeError();
            Assert.NotNull(error);
            Assert.Equal(DeviceErrorCode.InvalidAddress, error.Error.Code);
            Assert.Contains($"kernel {kernel} parameter {param.Name}", error.Error.Message);
        }
    }

    [Fact]
    public async Task A_range_past_the_allocation_says_by_how_many_bytes()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = Dev.Upload(context, new float[100]);
        var y = context.Allocate(99 * 4);

        Dev.Axpy(context, 0, 1f, x, y, 100);
        await context.SynchronizeAsync();

        var error = context.TakeError()!.Error;
        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Contains("kernel axpy_f32 parameter y", error.Message);
        Assert.Contains("by 4 bytes", error.Message);
    }

    [Fact]
    public async Task A_failure_inside_the_math_is_reported_as_LaunchFailed_naming_the_kernel()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var table = Dev.Upload(context, new float[4 * 3]);
        var indices = Dev.Upload(context, new[] { 0, 7 });
        var output = context.Allocate(2 * 3 * 4);

        Dev.Launch(context, 0, "gather_rows_f32", new ParamPacker().I32(2).I32(3).I32(4).Ptr(table).Ptr(indices).Ptr(output));
        await context.SynchronizeAsync();

        var error = context.TakeError()!.Error;
        Assert.Equal(DeviceErrorCode.LaunchFailed, error.Code);
        Assert.Contains("gather_rows_f32", error.Message);
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Every_kernels_parameter_layout_matches_cuLaunchKernel_packing(string kernel)
    {
        var def = BuiltinKernels.All[kernel];
        var packer = new ParamPacker();
        foreach (var p in def.Params)
        {
            _ = p.Kind switch
            {
                ParamKind.I32 => packer.I32(1),
                ParamKind.F32 => packer.F32(1),
                _ => packer.U64(1),
            };
        }

        Assert.Equal(packer.Length, def.ParamBytes);
        Assert.Equal(packer.Offsets.ToArray(), def.Offsets);
    }

    [Theory]
    [InlineData("gemm_f32", 68, "b", 40)]
    [InlineData("gemm_f32", 68, "c", 56)]
    [InlineData("adam_f32", 64, "w", 32)]
    [InlineData("softmax_xent_backward_f32", 40, "probs", 16)]
    [InlineData("fill_f32", 24, "y", 16)]
    [InlineData("gather_rows_f32", 40, "table", 16)]
    public void Pointers_after_4_byte_parameters_are_padded_to_8(string kernel, int paramBytes, string param, int offset)
    {
        var def = BuiltinKernels.All[kernel];

        Assert.Equal(paramBytes, def.ParamBytes);
        Assert.Equal(offset, def.Offsets[Array.FindIndex(def.Params, p => p.Name == param)]);
    }

    // ------------------------------------------------------------------ cases

    private static KernelCase Elementwise(Random rng, string kernel, Func<double, double, double> op)
    {
        var n = Length(rng);
        float[] a = Floats(rng, n), b = Floats(rng, n);
        return new KernelCase(kernel).U64("n", n).In("a", a).In("b", b).Out("c", Poisoned(n), Map(n, i => op(a[i], b[i])));
    }

    private static KernelCase Gemm(Random rng, bool transA, bool transB)
    {
        // Larger than one micro-kernel tile in every direction, with padded leading dimensions.
        const int m = 13, n = 21, k = 17;
        const float alpha = 1.5f, beta = -0.5f;
        var (aRows, aCols) = transA ? (k, m) : (m, k);
        var (bRows, bCols) = transB ? (n, k) : (k, n);
        int lda = aCols + 2, ldb = bCols + 3, ldc = n + 5;
        float[] a = Floats(rng, ((aRows - 1) * lda) + aCols, -1, 1), b = Floats(rng, ((bRows - 1) * ldb) + bCols, -1, 1);
        var c = Floats(rng, ((m - 1) * ldc) + n, -1, 1);
        double A(int i, int p) => transA ? a[(p * lda) + i] : a[(i * lda) + p];
        double B(int p, int j) => transB ? b[(j * ldb) + p] : b[(p * ldb) + j];
        var expected = Map(c.Length, at =>
        {
            int i = at / ldc, j = at % ldc;
            return j >= n ? c[at] : (alpha * Enumerable.Range(0, k).Sum(p => A(i, p) * B(p, j))) + (beta * c[at]);
        });
        return new KernelCase("gemm_f32", tolerance: 1e-4)
            .I32("trans_a", transA ? 1 : 0).I32("trans_b", transB ? 1 : 0).I32("m", m).I32("n", n).I32("k", k).F32("alpha", alpha)
            .In("a", a).I32("lda", lda).In("b", b).I32("ldb", ldb).F32("beta", beta).Out("c", c, expected).I32("ldc", ldc);
    }

    private static double[] Softmax(float[] x, int rows, int cols) => Map(rows * cols, i =>
    {
        var row = x.Skip(i / cols * cols).Take(cols).Select(v => (double)v).ToArray();
        var max = row.Max();
        return Math.Exp(row[i % cols] - max) / row.Sum(v => Math.Exp(v - max));
    });

    // ------------------------------------------------------------------ running a case

    private static async Task RunAndCheck(KernelCase kase)
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var pointers = Launch(context, kase, shifted: null);

        foreach (var (name, initial) in kase.Buffers)
        {
            switch (kase.Expected.GetValueOrDefault(name, initial))
            {
                case double[] expected:
                    var actual = await Dev.DownloadAsync<float>(context, pointers[name], expected.Length);
                    for (var i = 0; i < expected.Length; i++)
                    {
                        Assert.True(Math.Abs(actual[i] - expected[i]) <= kase.Tolerance * Math.Max(1, Math.Abs(expected[i])),
                            $"{kase.Kernel} {name}[{i}] = {actual[i]}, expected {expected[i]}");
                    }

                    break;
                case float[] unchanged:
                    Assert.Equal(unchanged, await Dev.DownloadAsync<float>(context, pointers[name], unchanged.Length));
                    break;
                case int[] exact:
                    Assert.Equal(exact, await Dev.DownloadAsync<int>(context, pointers[name], exact.Length));
                    break;
            }
        }

        Assert.Null(context.TakeError());
    }

    /// <summary>Uploads the case's buffers and enqueues its launch; <paramref name="shifted"/> names a pointer passed one element too far.</summary>
    private static Dictionary<string, ulong> Launch(IDeviceContext context, KernelCase kase, string? shifted)
    {
        var def = BuiltinKernels.All[kase.Kernel];
        Assert.Equal(def.Params.Select(p => p.Name).Order(), kase.Scalars.Keys.Concat(kase.Buffers.Keys).Order());

        var args = new ParamPacker();
        var pointers = new Dictionary<string, ulong>();
        foreach (var p in def.Params)
        {
            _ = p.Kind switch
            {
                ParamKind.I32 => args.I32((int)kase.Scalars[p.Name]),
                ParamKind.F32 => args.F32((float)kase.Scalars[p.Name]),
                ParamKind.U64 => args.U64((ulong)kase.Scalars[p.Name]),
                _ => args.Ptr((pointers[p.Name] = Upload(context, kase.Buffers[p.Name])) + (p.Name == shifted ? 4UL : 0UL)),
            };
        }

        context.EnqueueLaunch(0, Dev.Function(context, kase.Kernel), Dev.Dims, args.ToArray(), Dev.Tag("launch"));
        return pointers;
    }

    private static ulong Upload(IDeviceContext context, Array buffer) => buffer switch
    {
        float[] f => Dev.Upload(context, f),
        int[] i => Dev.Upload(context, i),
        _ => throw new ArgumentException($"unexpected buffer type {buffer.GetType()}", nameof(buffer)),
    };

    private static int Seed(string kernel) => kernel.Aggregate(17, (h, ch) => (h * 31) + ch);

    private static int Length(Random rng) => rng.Next(200, 700);

    private static float[] Floats(Random rng, int n, double lo = -2, double hi = 2)
        => [.. Enumerable.Range(0, n).Select(_ => (float)(lo + ((hi - lo) * rng.NextDouble())))];

    private static int[] Ints(Random rng, int n, int below) => [.. Enumerable.Range(0, n).Select(_ => rng.Next(below))];

    private static float[] Poisoned(int n) => Enumerable.Repeat(Poison, n).ToArray();

    private static int[] PoisonedInts(int n) => Enumerable.Repeat(PoisonInt, n).ToArray();

    private static double[] Map(int n, Func<int, double> f) => [.. Enumerable.Range(0, n).Select(f)];

    /// <summary>One launch of a kernel: scalar arguments, buffers with their contents before, and what outputs must hold after.</summary>
    private sealed class KernelCase(string kernel, double tolerance = 1e-5)
    {
        public string Kernel { get; } = kernel;

        public double Tolerance { get; } = tolerance;

        public Dictionary<string, object> Scalars { get; } = [];

        /// <summary>Initial contents: float[] or int[]. A buffer with no expectation must come back unchanged.</summary>
        public Dictionary<string, Array> Buffers { get; } = [];

        /// <summary>double[] (compared with the tolerance) or int[] (exact).</summary>
        public Dictionary<string, Array> Expected { get; } = [];

        public KernelCase I32(string name, int value) => Scalar(name, value);

        public KernelCase F32(string name, float value) => Scalar(name, value);

        public KernelCase U64(string name, int value) => Scalar(name, (ulong)value);

        public KernelCase In(string name, Array contents)
        {
            Buffers.Add(name, contents);
            return this;
        }

        public KernelCase Out(string name, float[] initial, double[] expected)
        {
            Assert.Equal(initial.Length, expected.Length);
            Buffers.Add(name, initial);
            Expected.Add(name, expected);
            return this;
        }

        public KernelCase Out(string name, int[] initial, int[] expected)
        {
            Assert.Equal(initial.Length, expected.Length);
            Buffers.Add(name, initial);
            Expected.Add(name, expected);
            return this;
        }

        private KernelCase Scalar(string name, object value)
        {
            Scalars.Add(name, value);
            return this;
        }
    }
}
