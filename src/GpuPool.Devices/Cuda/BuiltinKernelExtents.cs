using System.Buffers.Binary;
using System.Collections.Frozen;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// How many elements each pointer parameter of a built-in kernel reaches, computed from the launch's scalar
/// parameters: a GPU kernel trusts its pointers, so the cuda backend checks them against the lease's allocations
/// before the launch, over the same ranges the cpu backend's kernel bodies resolve (a test holds the two equal).
/// Every pointer of the library is to 4-byte elements (f32 or i32).
/// </summary>
internal static class BuiltinKernelExtents
{
    public const int ElementSize = 4;

    /// <summary>Sets <c>counts[i]</c> to the element count of pointer parameter <c>i</c>; other entries stay as they are.</summary>
    public delegate void Extents(ParamReader p, Span<long> counts);

    public static FrozenDictionary<string, Extents> All { get; } = new Dictionary<string, Extents>
    {
        ["noop"] = static (_, _) => { },
        ["fill_f32"] = static (p, c) => c[2] = p.Count(0),
        ["copy_f32"] = static (p, c) => c[1] = c[2] = p.Count(0),
        ["axpy_f32"] = static (p, c) => c[2] = c[3] = p.Count(0),
        ["scale_f32"] = static (p, c) => c[2] = p.Count(0),
        ["add_f32"] = Elementwise3,
        ["sub_f32"] = Elementwise3,
        ["mul_f32"] = Elementwise3,
        ["relu_f32"] = static (p, c) => c[1] = c[2] = p.Count(0),
        ["relu_backward_f32"] = static (p, c) => c[1] = c[2] = c[3] = p.Count(0),
        ["bias_add_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[2] = c[4] = (long)rows * cols;
            c[3] = cols;
        },
        ["sum_columns_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[2] = (long)rows * cols;
            c[3] = cols;
        },
        ["sum_f32"] = CountAndOne,
        ["max_f32"] = CountAndOne,
        ["gemm_f32"] = Gemm,
        ["softmax_rows_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[2] = c[3] = (long)rows * cols;
        },
        ["softmax_xent_forward_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[2] = c[4] = (long)rows * cols;
            c[3] = c[5] = rows;
        },
        ["softmax_xent_backward_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[3] = c[5] = (long)rows * cols;
            c[4] = rows;
        },
        ["argmax_rows_f32"] = static (p, c) =>
        {
            int rows = p.Dim(0), cols = p.Dim(1);
            c[2] = (long)rows * cols;
            c[3] = rows;
        },
        ["count_equal_i32"] = static (p, c) =>
        {
            c[1] = c[2] = p.Count(0);
            c[3] = 1;
        },
        ["sgd_f32"] = static (p, c) => c[3] = c[4] = p.Count(0),
        ["sgd_momentum_f32"] = static (p, c) => c[3] = c[4] = c[5] = p.Count(0),
        ["adam_f32"] = static (p, c) => c[6] = c[7] = c[8] = c[9] = p.Count(0),
        ["gather_rows_f32"] = static (p, c) =>
        {
            int count = p.Dim(0), cols = p.Dim(1), tableRows = p.Dim(2);
            c[3] = (long)tableRows * cols;
            c[4] = count;
            c[5] = (long)count * cols;
        },
        ["scatter_add_rows_f32"] = static (p, c) =>
        {
            int count = p.Dim(0), cols = p.Dim(1), tableRows = p.Dim(2);
            c[3] = (long)count * cols;
            c[4] = count;
            c[5] = (long)tableRows * cols;
        },
    }.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>
    /// Throws (InvalidAddress naming the kernel and parameter, or InvalidArgument for a scalar that makes no range)
    /// unless every pointer parameter's range lies inside one allocation of <paramref name="memory"/>.
    /// </summary>
    public static void Check(KernelDef kernel, ReadOnlySpan<byte> parameters, AllocationTable memory)
    {
        if (!All.TryGetValue(kernel.Name, out var extents))
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, $"kernel {kernel.Name} has no bounds description in the cuda backend");
        }

        Span<long> counts = stackalloc long[Math.Max(1, kernel.Params.Length)];
        counts.Fill(-1);
        extents(new ParamReader(kernel, parameters), counts);
        for (var i = 0; i < kernel.Params.Length; i++)
        {
            if (kernel.Params[i].Kind == ParamKind.Ptr)
            {
                var pointer = BinaryPrimitives.ReadUInt64LittleEndian(parameters[kernel.Offsets[i]..]);
                _ = memory.CheckElements(pointer, counts[i], ElementSize, RangeName.KernelParameter(kernel.Name, kernel.Params[i].Name));
            }
        }
    }

    /// <summary>(n, x, out): n elements in, one out.</summary>
    private static void CountAndOne(ParamReader p, Span<long> c)
    {
        c[1] = p.Count(0);
        c[2] = 1;
    }

    private static void Elementwise3(ParamReader p, Span<long> c) => c[1] = c[2] = c[3] = p.Count(0);

    private static void Gemm(ParamReader p, Span<long> c)
    {
        bool transA = p.Dim(0) != 0, transB = p.Dim(1) != 0;
        int m = p.Dim(2), n = p.Dim(3), k = p.Dim(4), lda = p.Dim(7), ldb = p.Dim(9), ldc = p.Dim(12);

        // Stored shapes: A is m×k (k×m when transposed), B is k×n (n×k when transposed), row-major with leading dimensions.
        var (aRows, aCols) = transA ? (k, m) : (m, k);
        var (bRows, bCols) = transB ? (n, k) : (k, n);
        CheckLeading("lda", lda, aCols);
        CheckLeading("ldb", ldb, bCols);
        CheckLeading("ldc", ldc, n);
        c[6] = Extent(aRows, aCols, lda);
        c[8] = Extent(bRows, bCols, ldb);
        c[11] = Extent(m, n, ldc);
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

/// <summary>Reads a launch's scalar parameters by index, with the cpu backend's checks on dimensions and counts.</summary>
internal readonly ref struct ParamReader
{
    private readonly KernelDef _kernel;
    private readonly ReadOnlySpan<byte> _params;

    public ParamReader(KernelDef kernel, ReadOnlySpan<byte> parameters)
    {
        _kernel = kernel;
        _params = parameters;
    }

    /// <summary>A dimension (i32), which must not be negative.</summary>
    public int Dim(int index)
    {
        var value = BinaryPrimitives.ReadInt32LittleEndian(_params[_kernel.Offsets[index]..]);
        if (value < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"kernel {_kernel.Name} parameter {_kernel.Params[index].Name}: {value} is negative");
        }

        return value;
    }

    /// <summary>An element count (u64).</summary>
    public long Count(int index)
    {
        var value = BinaryPrimitives.ReadUInt64LittleEndian(_params[_kernel.Offsets[index]..]);
        if (value > long.MaxValue)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, $"kernel {_kernel.Name} parameter {_kernel.Params[index].Name}: {value} elements is more than any memory holds");
        }

        return (long)value;
    }
}
