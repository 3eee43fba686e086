using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.GpuTests;

/// <summary>
/// Runs a built-in kernel with the same random arguments on the cuda backend and on the cpu backend and compares
/// every buffer afterwards. Outputs are poisoned before the launch (NaN, or -999 for integers), so an element the
/// GPU did not write fails; in-out buffers start from the same random values on both.
/// </summary>
internal static class KernelComparison
{
    private const int PoisonInt = -999;
    private static readonly float Poison = BitConverter.Int32BitsToSingle(0x7fc0dead);
    private static readonly LaunchDims Dims = new(8, 1, 1, 256, 1, 1, 0);

    /// <summary>Kernels that agree with the cpu backend only within float rounding (native/README.md says which and why).</summary>
    private static readonly Dictionary<string, double> Tolerances = new(StringComparer.Ordinal)
    {
        ["sum_f32"] = 1e-4,
        ["gemm_f32"] = 1e-5,
        ["softmax_rows_f32"] = 1e-5,
        ["softmax_xent_forward_f32"] = 1e-5,
        ["adam_f32"] = 1e-5,
    };

    public sealed record Outcome(string Kernel, long Compared, double MaxAbsDiff, string? Failure);

    public sealed class Case(string kernel)
    {
        public string Kernel { get; } = kernel;

        public Dictionary<string, double> Scalars { get; } = [];

        public Dictionary<string, Array> Buffers { get; } = [];

        public Case S(string name, double value)
        {
            Scalars[name] = value;
            return this;
        }

        public Case In(string name, Array values)
        {
            Buffers[name] = values;
            return this;
        }

        /// <summary>An output the kernel overwrites: it starts poisoned.</summary>
        public Case Out(string name, int length, bool ints = false)
        {
            Buffers[name] = ints ? Enumerable.Repeat(PoisonInt, length).ToArray() : Enumerable.Repeat(Poison, length).ToArray();
            return this;
        }
    }

    /// <summary>A seed per kernel that is the same in every run (string hashes are not).</summary>
    public static int Seed(string kernel) => kernel.Aggregate(17, (h, c) => unchecked((h * 31) + c)) & 0xfffff;

    public static IEnumerable<string> Kernels => BuiltinKernels.All.Keys.Order(StringComparer.Ordinal);

    /// <summary>Random arguments for a kernel, from <paramref name="rng"/>.</summary>
    public static Case Make(string kernel, Random rng)
    {
        int n = rng.Next(3000, 9000), rows = rng.Next(17, 70), cols = rng.Next(5, 300);
        return kernel switch
        {
            "noop" => new Case(kernel),
            "fill_f32" => new Case(kernel).S("n", n).S("value", -3.25).Out("y", n),
            "copy_f32" or "relu_f32" => new Case(kernel).S("n", n).In("x", Floats(rng, n)).Out("y", n),
            "axpy_f32" => new Case(kernel).S("n", n).S("alpha", 1.75).In("x", Floats(rng, n)).In("y", Floats(rng, n)),
            "scale_f32" => new Case(kernel).S("n", n).S("alpha", -0.5).In("x", Floats(rng, n)),
            "add_f32" or "sub_f32" or "mul_f32" => new Case(kernel).S("n", n).In("a", Floats(rng, n)).In("b", Floats(rng, n)).Out("c", n),
            "relu_backward_f32" => new Case(kernel).S("n", n).In("x", Floats(rng, n)).In("dy", Floats(rng, n)).Out("dx", n),
            "bias_add_f32" => new Case(kernel).S("rows", rows).S("cols", cols).In("x", Floats(rng, rows * cols)).In("bias", Floats(rng, cols)).Out("y", rows * cols),
            "sum_columns_f32" => new Case(kernel).S("rows", rows).S("cols", cols).In("x", Floats(rng, rows * cols)).Out("y", cols),
            "sum_f32" or "max_f32" => new Case(kernel).S("n", n).In("x", Floats(rng, n)).Out("out", 1),
            "gemm_f32" => Gemm(rng),
            "softmax_rows_f32" => new Case(kernel).S("rows", rows).S("cols", cols).In("x", Floats(rng, rows * cols, -8, 8)).Out("y", rows * cols),
            "softmax_xent_forward_f32" => new Case(kernel).S("rows", rows).S("cols", cols).In("logits", Floats(rng, rows * cols, -8, 8))
                .In("labels", Ints(rng, rows, cols)).Out("probs", rows * cols).Out("loss", rows),
            "softmax_xent_backward_f32" => new Case(kernel).S("rows", rows).S("cols", cols).S("scale", 0.25).In("probs", Floats(rng, rows * cols, 0, 1))
                .In("labels", Ints(rng, rows, cols)).Out("dlogits", rows * cols),
            "argmax_rows_f32" => new Case(kernel).S("rows", rows).S("cols", cols).In("x", Floats(rng, rows * cols)).Out("out", rows, ints: true),
            "count_equal_i32" => new Case(kernel).S("n", n).In("a", Ints(rng, n, 3)).In("b", Ints(rng, n, 3)).Out("out", 1, ints: true),
            "sgd_f32" => new Case(kernel).S("n", n).S("lr", 0.1).S("weight_decay", 0.01).In("w", Floats(rng, n)).In("g", Floats(rng, n)),
            "sgd_momentum_f32" => new Case(kernel).S("n", n).S("lr", 0.1).S("momentum", 0.9).In("w", Floats(rng, n)).In("g", Floats(rng, n)).In("v", Floats(rng, n)),
            "adam_f32" => new Case(kernel).S("n", n).S("lr", 0.01).S("beta1", 0.9).S("beta2", 0.999).S("eps", 1e-8).S("step", rng.Next(1, 50))
                .In("w", Floats(rng, n)).In("g", Floats(rng, n)).In("m", Floats(rng, n)).In("v", Floats(rng, n, 0, 1)),
            "gather_rows_f32" => new Case(kernel).S("count", rows).S("cols", cols).S("table_rows", 40).In("table", Floats(rng, 40 * cols))
                .In("indices", Ints(rng, rows, 40)).Out("out", rows * cols),
            "scatter_add_rows_f32" => new Case(kernel).S("count", rows).S("cols", cols).S("table_rows", 40).In("dout", Floats(rng, rows * cols))
                .In("indices", Ints(rng, rows, 40)).In("dtable", Floats(rng, 40 * cols)),
            _ => throw new ArgumentException($"no GPU comparison case for built-in kernel {kernel}; add one", nameof(kernel)),
        };
    }

    /// <summary>Runs the case on both backends (one fresh context on each) and compares every buffer.</summary>
    public static async Task<Outcome> CompareAsync(IDevice cuda, Case kase)
    {
        var cpu = new CpuBackend(1, 1UL << 30);
        var onCpu = await RunAsync(cpu.Devices[0], kase);
        var onGpu = await RunAsync(cuda, kase);
        if (onGpu.Error is not null || onCpu.Error is not null)
        {
            return new Outcome(kase.Kernel, 0, 0, $"launch failed: cuda: {onGpu.Error?.Error.Message ?? "ok"}; cpu: {onCpu.Error?.Error.Message ?? "ok"}");
        }

        var tolerance = Tolerances.GetValueOrDefault(kase.Kernel, 0);
        long compared = 0;
        double maxDiff = 0;
        foreach (var (name, expected) in onCpu.Buffers)
        {
            var actual = onGpu.Buffers[name];
            for (var i = 0; i < expected.Length; i++)
            {
                compared++;
                switch (expected, actual)
                {
                    case (float[] e, float[] a):
                        if (float.IsNaN(e[i]) && float.IsNaN(a[i]))
                        {
                            continue;
                        }

                        var diff = Math.Abs((double)a[i] - e[i]);
                        maxDiff = Math.Max(maxDiff, float.IsNaN(a[i]) ? double.PositiveInfinity : diff);
                        if (!(diff <= tolerance * Math.Max(1, Math.Abs(e[i]))))
                        {
                            return new Outcome(kase.Kernel, compared, maxDiff, $"{name}[{i}] = {a[i]:R} on the GPU, {e[i]:R} on the cpu backend (tolerance {tolerance})");
                        }

                        break;
                    case (int[] e, int[] a):
                        if (e[i] != a[i])
                        {
                            return new Outcome(kase.Kernel, compared, maxDiff, $"{name}[{i}] = {a[i]} on the GPU, {e[i]} on the cpu backend");
                        }

                        break;
                }
            }
        }

        return new Outcome(kase.Kernel, compared, maxDiff, null);
    }

    private static async Task<(Dictionary<string, Array> Buffers, StickyError? Error)> RunAsync(IDevice device, Case kase)
    {
        await using var context = device.CreateContext(new ContextOptions($"gpu-test-{kase.Kernel}", 256UL << 20, 1000));
        var def = BuiltinKernels.All[kase.Kernel];
        var block = new byte[def.ParamBytes];
        var pointers = new Dictionary<string, ulong>();
        ulong seq = 0;
        for (var i = 0; i < def.Params.Length; i++)
        {
            var p = def.Params[i];
            var at = block.AsSpan(def.Offsets[i]);
            switch (p.Kind)
            {
                case ParamKind.I32:
                    BinaryPrimitives.WriteInt32LittleEndian(at, (int)kase.Scalars[p.Name]);
                    break;
                case ParamKind.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(at, (float)kase.Scalars[p.Name]);
                    break;
                case ParamKind.U64:
                    BinaryPrimitives.WriteUInt64LittleEndian(at, (ulong)kase.Scalars[p.Name]);
                    break;
                default:
                    var bytes = Bytes(kase.Buffers[p.Name]);
                    var pointer = context.Allocate((ulong)Math.Max(4, bytes.Length));
                    context.EnqueueCopyToDevice(0, pointer, bytes, new OpTag(++seq, "memcpy_htod"));
                    pointers[p.Name] = pointer;
                    BinaryPrimitives.WriteUInt64LittleEndian(at, pointer);
                    break;
            }
        }

        var module = context.LoadBuiltinModule();
        context.EnqueueLaunch(0, context.GetFunction(module, kase.Kernel), Dims, block, new OpTag(++seq, "launch"));
        await context.SynchronizeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));
        if (context.TakeError() is { } error)
        {
            return ([], error);
        }

        var results = new Dictionary<string, Array>();
        foreach (var (name, pointer) in pointers)
        {
            var original = kase.Buffers[name];
            var sink = new Sink();
            context.EnqueueCopyToHost(0, pointer, (ulong)Bytes(original).Length, sink, new OpTag(++seq, "memcpy_dtoh"));
            var (data, failure) = await sink.Result.WaitAsync(TimeSpan.FromSeconds(60));
            if (failure is not null)
            {
                return ([], failure);
            }

            results[name] = original is int[] ? MemoryMarshal.Cast<byte, int>(data).ToArray() : MemoryMarshal.Cast<byte, float>(data).ToArray();
        }

        return (results, null);
    }

    private static Case Gemm(Random rng)
    {
        bool transA = rng.Next(2) == 1, transB = rng.Next(2) == 1;
        int m = rng.Next(1, 150), n = rng.Next(1, 150), k = rng.Next(1, 200);
        var (aRows, aCols) = transA ? (k, m) : (m, k);
        var (bRows, bCols) = transB ? (n, k) : (k, n);
        int lda = aCols + rng.Next(0, 4), ldb = bCols + rng.Next(0, 4), ldc = n + rng.Next(0, 4);
        return new Case("gemm_f32").S("trans_a", transA ? 1 : 0).S("trans_b", transB ? 1 : 0).S("m", m).S("n", n).S("k", k).S("alpha", 1.5).S("beta", -0.5)
            .S("lda", lda).S("ldb", ldb).S("ldc", ldc)
            .In("a", Floats(rng, ((aRows - 1) * lda) + aCols, -1, 1)).In("b", Floats(rng, ((bRows - 1) * ldb) + bCols, -1, 1)).In("c", Floats(rng, ((m - 1) * ldc) + n, -1, 1));
    }

    private static byte[] Bytes(Array values) => values switch
    {
        float[] f => MemoryMarshal.AsBytes(f.AsSpan()).ToArray(),
        int[] i => MemoryMarshal.AsBytes(i.AsSpan()).ToArray(),
        _ => throw new ArgumentException($"unexpected buffer type {values.GetType()}", nameof(values)),
    };

    private static float[] Floats(Random rng, int n, double lo = -2, double hi = 2) => [.. Enumerable.Range(0, n).Select(_ => (float)(lo + ((hi - lo) * rng.NextDouble())))];

    private static int[] Ints(Random rng, int n, int below) => [.. Enumerable.Range(0, n).Select(_ => rng.Next(below))];

    private sealed class Sink : ICopyToHostSink
    {
        private readonly TaskCompletionSource<(byte[] Data, StickyError? Error)> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<(byte[] Data, StickyError? Error)> Result => _done.Task;

        public void OnData(ReadOnlySpan<byte> data) => _done.TrySetResult((data.ToArray(), null));

        public void OnError(StickyError error) => _done.TrySetResult(([], error));
    }
}
