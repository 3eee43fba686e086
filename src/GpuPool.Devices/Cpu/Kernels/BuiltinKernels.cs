using System.Collections.Frozen;
using static GpuPool.Devices.Cpu.Kernels.ParamKind;

namespace GpuPool.Devices.Cpu.Kernels;

/// <summary>
/// The built-in kernel library as the cpu backend runs it. Names and parameter lists match the PTX
/// entries of native/kernels, so a program written against the PTX runs unchanged on the cpu backend.
/// Every kernel has grid-stride semantics: the result does not depend on the launch geometry.
/// Conventions: element counts are u64, matrix dimensions i32, matrices row-major.
/// </summary>
internal static class BuiltinKernels
{
    public static FrozenDictionary<string, KernelDef> All { get; } = Build().ToFrozenDictionary(d => d.Name, StringComparer.Ordinal);

    private static KernelParam P(string name, ParamKind kind) => new(name, kind);

    private static IEnumerable<KernelDef> Build()
    {
        // Does nothing: the cost of a launch itself, for launch-rate benchmarks and smoke tests.
        yield return new("noop", [], static (ref _) => { });
        yield return new("fill_f32", [P("n", U64), P("value", F32), P("y", Ptr)],
            static (ref c) => CpuMath.Fill(c.Ptr<float>(2, c.Count(0)), c.F32(1)));
        yield return new("copy_f32", [P("n", U64), P("x", Ptr), P("y", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.Copy(c.Ptr<float>(1, n), c.Ptr<float>(2, n)); });
        yield return new("axpy_f32", [P("n", U64), P("alpha", F32), P("x", Ptr), P("y", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.Axpy(c.F32(1), c.Ptr<float>(2, n), c.Ptr<float>(3, n)); });
        yield return new("scale_f32", [P("n", U64), P("alpha", F32), P("x", Ptr)],
            static (ref c) => CpuMath.Scale(c.F32(1), c.Ptr<float>(2, c.Count(0))));
        yield return Elementwise3("add_f32", static (a, b, r) => CpuMath.Add(a, b, r));
        yield return Elementwise3("sub_f32", static (a, b, r) => CpuMath.Sub(a, b, r));
        yield return Elementwise3("mul_f32", static (a, b, r) => CpuMath.Mul(a, b, r));
        yield return new("relu_f32", [P("n", U64), P("x", Ptr), P("y", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.Relu(c.Ptr<float>(1, n), c.Ptr<float>(2, n)); });
        yield return new("relu_backward_f32", [P("n", U64), P("x", Ptr), P("dy", Ptr), P("dx", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.ReluBackward(c.Ptr<float>(1, n), c.Ptr<float>(2, n), c.Ptr<float>(3, n)); });
        yield return new("bias_add_f32", [P("rows", I32), P("cols", I32), P("x", Ptr), P("bias", Ptr), P("y", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                CpuMath.BiasAdd(rows, cols, c.Ptr<float>(2, (long)rows * cols), c.Ptr<float>(3, cols), c.Ptr<float>(4, (long)rows * cols));
            });
        yield return new("sum_columns_f32", [P("rows", I32), P("cols", I32), P("x", Ptr), P("y", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                CpuMath.SumColumns(rows, cols, c.Ptr<float>(2, (long)rows * cols), c.Ptr<float>(3, cols));
            });
        yield return new("sum_f32", [P("n", U64), P("x", Ptr), P("out", Ptr)],
            static (ref c) => c.Ptr<float>(2, 1)[0] = CpuMath.Sum(c.Ptr<float>(1, c.Count(0))));
        yield return new("max_f32", [P("n", U64), P("x", Ptr), P("out", Ptr)],
            static (ref c) =>
            {
                var n = c.Count(0);
                if (n == 0)
                {
                    throw new DeviceException(DeviceErrorCode.InvalidArgument, "kernel max_f32: n must be at least 1");
                }

                c.Ptr<float>(2, 1)[0] = CpuMath.Max(c.Ptr<float>(1, n));
            });
        yield return new("gemm_f32",
            [P("trans_a", I32), P("trans_b", I32), P("m", I32), P("n", I32), P("k", I32), P("alpha", F32), P("a", Ptr), P("lda", I32),
             P("b", Ptr), P("ldb", I32), P("beta", F32), P("c", Ptr), P("ldc", I32)],
            static (ref c) => Gemm(ref c));
        yield return new("softmax_rows_f32", [P("rows", I32), P("cols", I32), P("x", Ptr), P("y", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                CpuMath.SoftmaxRows(rows, cols, c.Ptr<float>(2, (long)rows * cols), c.Ptr<float>(3, (long)rows * cols));
            });
        yield return new("softmax_xent_forward_f32", [P("rows", I32), P("cols", I32), P("logits", Ptr), P("labels", Ptr), P("probs", Ptr), P("loss", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                long size = (long)rows * cols;
                CpuMath.SoftmaxCrossEntropyForward(rows, cols, c.Ptr<float>(2, size), c.Ptr<int>(3, rows), c.Ptr<float>(4, size), c.Ptr<float>(5, rows));
            });
        yield return new("softmax_xent_backward_f32", [P("rows", I32), P("cols", I32), P("scale", F32), P("probs", Ptr), P("labels", Ptr), P("dlogits", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                long size = (long)rows * cols;
                CpuMath.SoftmaxCrossEntropyBackward(rows, cols, c.Ptr<float>(3, size), c.Ptr<int>(4, rows), c.F32(2), c.Ptr<float>(5, size));
            });
        yield return new("argmax_rows_f32", [P("rows", I32), P("cols", I32), P("x", Ptr), P("out", Ptr)],
            static (ref c) =>
            {
                int rows = c.Dim(0), cols = c.Dim(1);
                CpuMath.ArgmaxRows(rows, cols, c.Ptr<float>(2, (long)rows * cols), c.Ptr<int>(3, rows));
            });
        yield return new("count_equal_i32", [P("n", U64), P("a", Ptr), P("b", Ptr), P("out", Ptr)],
            static (ref c) => { var n = c.Count(0); c.Ptr<int>(3, 1)[0] = CpuMath.CountEqual(c.Ptr<int>(1, n), c.Ptr<int>(2, n)); });
        yield return new("sgd_f32", [P("n", U64), P("lr", F32), P("weight_decay", F32), P("w", Ptr), P("g", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.SgdUpdate(c.F32(1), c.F32(2), c.Ptr<float>(3, n), c.Ptr<float>(4, n)); });
        yield return new("sgd_momentum_f32", [P("n", U64), P("lr", F32), P("momentum", F32), P("w", Ptr), P("g", Ptr), P("v", Ptr)],
            static (ref c) => { var n = c.Count(0); CpuMath.SgdMomentumUpdate(c.F32(1), c.F32(2), c.Ptr<float>(3, n), c.Ptr<float>(4, n), c.Ptr<float>(5, n)); });
        yield return new("adam_f32",
            [P("n", U64), P("lr", F32), P("beta1", F32), P("beta2", F32), P("eps", F32), P("step", I32), P("w", Ptr), P("g", Ptr), P("m", Ptr), P("v", Ptr)],
            static (ref c) =>
            {
                var n = c.Count(0);
                CpuMath.AdamUpdate(c.F32(1), c.F32(2), c.F32(3), c.F32(4), c.Dim(5), c.Ptr<float>(6, n), c.Ptr<float>(7, n), c.Ptr<float>(8, n), c.Ptr<float>(9, n));
            });
        yield return new("gather_rows_f32", [P("count", I32), P("cols", I32), P("table_rows", I32), P("table", Ptr), P("indices", Ptr), P("out", Ptr)],
            static (ref c) =>
            {
                int count = c.Dim(0), cols = c.Dim(1), tableRows = c.Dim(2);
                CpuMath.GatherRows(cols, c.Ptr<float>(3, (long)tableRows * cols), c.Ptr<int>(4, count), c.Ptr<float>(5, (long)count * cols));
            });
        yield return new("scatter_add_rows_f32", [P("count", I32), P("cols", I32), P("table_rows", I32), P("dout", Ptr), P("indices", Ptr), P("dtable", Ptr)],
            static (ref c) =>
            {
                int count = c.Dim(0), cols = c.Dim(1), tableRows = c.Dim(2);
                CpuMath.ScatterAddRows(cols, c.Ptr<float>(3, (long)count * cols), c.Ptr<int>(4, count), c.Ptr<float>(5, (long)tableRows * cols));
            });
    }

    private delegate void Binary(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> result);

    private static KernelDef Elementwise3(string name, Binary op)
        => new(name, [P("n", U64), P("a", Ptr), P("b", Ptr), P("c", Ptr)],
            (ref c) => { var n = c.Count(0); op(c.Ptr<float>(1, n), c.Ptr<float>(2, n), c.Ptr<float>(3, n)); });

    private static void Gemm(ref KernelCall c)
    {
        bool transA = c.Dim(0) != 0, transB = c.Dim(1) != 0;
        int m = c.Dim(2), n = c.Dim(3), k = c.Dim(4), lda = c.Dim(7), ldb = c.Dim(9), ldc = c.Dim(12);
        var alpha = c.F32(5);
        var beta = c.F32(10);

        // Stored shapes: A is m×k (k×m when transposed), B is k×n (n×k when transposed).
        var (aRows, aCols) = transA ? (k, m) : (m, k);
        var (bRows, bCols) = transB ? (n, k) : (k, n);
        CheckLeading("lda", lda, aCols);
        CheckLeading("ldb", ldb, bCols);
        CheckLeading("ldc", ldc, n);
        var a = c.Ptr<float>(6, Extent(aRows, aCols, lda));
        var b = c.Ptr<float>(8, Extent(bRows, bCols, ldb));
        var cm = c.Ptr<float>(11, Extent(m, n, ldc));
        if (m == 0 || n == 0)
        {
            return;
        }

        CpuMath.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
    }

    private static void CheckLeading(string name, int ld, int cols)
    {
        if (ld < Math.Max(1, cols))
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"kernel gemm_f32 parameter {name}: {ld} is smaller than the row length {cols}");
        }
    }

    private static long Extent(int rows, int cols, int ld) => rows == 0 || cols == 0 ? 0 : ((long)(rows - 1) * ld) + cols;
}
