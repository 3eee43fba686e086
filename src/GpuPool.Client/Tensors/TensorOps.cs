namespace GpuPool.Client.Tensors;

/// <summary>
/// The small tensor layer: each method launches one built-in kernel on the device (a session, or anything else
/// that is an <see cref="IDeviceOps"/>), fire-and-forget, so a whole training step is queued without a round trip.
/// Shapes are checked here, before anything is sent.
/// </summary>
public sealed class TensorOps
{
    private const uint BlockSize = 256;
    private readonly IDeviceOps _device;

    /// <summary>The functions, indexed by <see cref="Kernel"/>: a launch looks its kernel up by index, not by name.</summary>
    private readonly KernelFunction[] _kernels;

    private TensorOps(IDeviceOps device, KernelFunction[] kernels)
    {
        _device = device;
        _kernels = kernels;
    }

    /// <summary>The kernels, in the order of <see cref="KernelNames"/>.</summary>
    private enum Kernel
    {
        Fill, Axpy, Scale, Add, Mul, Relu, ReluBackward, BiasAdd, SumColumns, Sum, Gemm, SoftmaxRows, SoftmaxXentForward,
        SoftmaxXentBackward, ArgmaxRows, CountEqual, Sgd, Adam,
    }

    /// <summary>The kernels this layer launches; all are in the built-in module of every backend.</summary>
    public static IReadOnlyList<string> KernelNames { get; } =
    [
        "fill_f32", "axpy_f32", "scale_f32", "add_f32", "mul_f32", "relu_f32", "relu_backward_f32", "bias_add_f32",
        "sum_columns_f32", "sum_f32", "gemm_f32", "softmax_rows_f32", "softmax_xent_forward_f32", "softmax_xent_backward_f32",
        "argmax_rows_f32", "count_equal_i32", "sgd_f32", "adam_f32",
    ];

    public static async Task<TensorOps> CreateAsync(IDeviceOps device, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        var module = await device.LoadBuiltinModuleAsync(cancellationToken).ConfigureAwait(false);
        var kernels = new KernelFunction[KernelNames.Count];
        for (var i = 0; i < kernels.Length; i++)
        {
            kernels[i] = await device.GetFunctionAsync(module, KernelNames[i], cancellationToken).ConfigureAwait(false);
        }

        return new TensorOps(device, kernels);
    }

    /// <summary>c = alpha * op(a) * op(b) + beta * c.</summary>
    public ValueTask MatMulAsync(DeviceTensor a, bool transA, DeviceTensor b, bool transB, DeviceTensor c, float alpha = 1, float beta = 0)
    {
        var (m, k) = transA ? (a.Cols, a.RowCount) : (a.RowCount, a.Cols);
        var (kb, n) = transB ? (b.Cols, b.RowCount) : (b.RowCount, b.Cols);
        if (k != kb || c.RowCount != m || c.Cols != n)
        {
            throw new ArgumentException($"matmul shapes do not agree: op(a) is {m}x{k}, op(b) is {kb}x{n}, c is {c.RowCount}x{c.Cols}");
        }

        var args = new KernelArgs().I32(transA ? 1 : 0).I32(transB ? 1 : 0).I32(m).I32(n).I32(k).F32(alpha)
            .Ptr(a.Ptr).I32(a.Cols).Ptr(b.Ptr).I32(b.Cols).F32(beta).Ptr(c.Ptr).I32(c.Cols);
        return _device.LaunchAsync(_kernels[(int)Kernel.Gemm], new Dim3(Blocks(n, 16), Blocks(m, 16)), new Dim3(16, 16), args);
    }

    public ValueTask BiasAddAsync(DeviceTensor x, DeviceTensor bias, DeviceTensor y)
    {
        SameShape(x, y);
        if (bias.Length != x.Cols)
        {
            throw new ArgumentException($"bias of {bias.Length} values for {x.Cols} columns");
        }

        return Launch(Kernel.BiasAdd, x.Length, new KernelArgs().I32(x.RowCount).I32(x.Cols).Ptr(x.Ptr).Ptr(bias.Ptr).Ptr(y.Ptr));
    }

    public ValueTask ReluAsync(DeviceTensor x, DeviceTensor y)
    {
        SameShape(x, y);
        return Launch(Kernel.Relu, x.Length, new KernelArgs().U64((ulong)x.Length).Ptr(x.Ptr).Ptr(y.Ptr));
    }

    /// <summary>dx = x &gt; 0 ? dy : 0, where x is the relu's input.</summary>
    public ValueTask ReluBackwardAsync(DeviceTensor x, DeviceTensor dy, DeviceTensor dx)
    {
        SameShape(x, dy);
        SameShape(x, dx);
        return Launch(Kernel.ReluBackward, x.Length, new KernelArgs().U64((ulong)x.Length).Ptr(x.Ptr).Ptr(dy.Ptr).Ptr(dx.Ptr));
    }

    /// <summary>y[c] = sum over rows of x[r, c]: the gradient of a bias.</summary>
    public ValueTask SumColumnsAsync(DeviceTensor x, DeviceTensor y)
    {
        if (y.Length != x.Cols)
        {
            throw new ArgumentException($"column sums of {x.Cols} columns into {y.Length} values");
        }

        return Launch(Kernel.SumColumns, x.Cols, new KernelArgs().I32(x.RowCount).I32(x.Cols).Ptr(x.Ptr).Ptr(y.Ptr));
    }

    /// <summary>result[0] = sum of x.</summary>
    public ValueTask SumAsync(DeviceTensor x, DeviceTensor result)
        => Launch(Kernel.Sum, x.Length, new KernelArgs().U64((ulong)x.Length).Ptr(x.Ptr).Ptr(result.Ptr));

    /// <summary>y += alpha * x.</summary>
    public ValueTask AxpyAsync(float alpha, DeviceTensor x, DeviceTensor y)
    {
        SameShape(x, y);
        return Launch(Kernel.Axpy, x.Length, new KernelArgs().U64((ulong)x.Length).F32(alpha).Ptr(x.Ptr).Ptr(y.Ptr));
    }

    public ValueTask AddAsync(DeviceTensor a, DeviceTensor b, DeviceTensor c)
    {
        SameShape(a, b);
        SameShape(a, c);
        return Launch(Kernel.Add, a.Length, new KernelArgs().U64((ulong)a.Length).Ptr(a.Ptr).Ptr(b.Ptr).Ptr(c.Ptr));
    }

    public ValueTask MulAsync(DeviceTensor a, DeviceTensor b, DeviceTensor c)
    {
        SameShape(a, b);
        SameShape(a, c);
        return Launch(Kernel.Mul, a.Length, new KernelArgs().U64((ulong)a.Length).Ptr(a.Ptr).Ptr(b.Ptr).Ptr(c.Ptr));
    }

    public ValueTask ScaleAsync(float alpha, DeviceTensor x)
        => Launch(Kernel.Scale, x.Length, new KernelArgs().U64((ulong)x.Length).F32(alpha).Ptr(x.Ptr));

    public ValueTask FillAsync(DeviceTensor x, float value)
        => Launch(Kernel.Fill, x.Length, new KernelArgs().U64((ulong)x.Length).F32(value).Ptr(x.Ptr));

    public ValueTask SoftmaxAsync(DeviceTensor x, DeviceTensor y)
    {
        SameShape(x, y);
        return Launch(Kernel.SoftmaxRows, x.RowCount, new KernelArgs().I32(x.RowCount).I32(x.Cols).Ptr(x.Ptr).Ptr(y.Ptr));
    }

    /// <summary>probs = softmax(logits); loss[r] = -log probs[r, labels[r]].</summary>
    public ValueTask SoftmaxCrossEntropyAsync(DeviceTensor logits, DeviceTensor labels, DeviceTensor probs, DeviceTensor loss)
    {
        SameShape(logits, probs);
        if (!(labels.Length == logits.RowCount && loss.Length == logits.RowCount && labels.Type == ElementType.Int32))
        {
            throw new ArgumentException($"softmax cross-entropy needs {logits.RowCount} int32 labels and {logits.RowCount} loss values");
        }

        return Launch(Kernel.SoftmaxXentForward, logits.RowCount,
            new KernelArgs().I32(logits.RowCount).I32(logits.Cols).Ptr(logits.Ptr).Ptr(labels.Ptr).Ptr(probs.Ptr).Ptr(loss.Ptr));
    }

    /// <summary>dlogits = scale * (probs - onehot(labels)).</summary>
    public ValueTask SoftmaxCrossEntropyBackwardAsync(DeviceTensor probs, DeviceTensor labels, float scale, DeviceTensor dlogits)
    {
        SameShape(probs, dlogits);
        if (labels.Length != probs.RowCount)
        {
            throw new ArgumentException($"{probs.RowCount} labels expected, got {labels.Length}");
        }

        return Launch(Kernel.SoftmaxXentBackward, probs.Length,
            new KernelArgs().I32(probs.RowCount).I32(probs.Cols).F32(scale).Ptr(probs.Ptr).Ptr(labels.Ptr).Ptr(dlogits.Ptr));
    }

    public ValueTask ArgmaxRowsAsync(DeviceTensor x, DeviceTensor indices)
    {
        if (!(indices.Length == x.RowCount && indices.Type == ElementType.Int32))
        {
            throw new ArgumentException($"argmax of {x.RowCount} rows needs {x.RowCount} int32 outputs");
        }

        return Launch(Kernel.ArgmaxRows, x.RowCount, new KernelArgs().I32(x.RowCount).I32(x.Cols).Ptr(x.Ptr).Ptr(indices.Ptr));
    }

    /// <summary>result[0] (int32) = how many elements of a and b are equal.</summary>
    public ValueTask CountEqualAsync(DeviceTensor a, DeviceTensor b, DeviceTensor result)
    {
        SameShape(a, b);
        return Launch(Kernel.CountEqual, a.Length, new KernelArgs().U64((ulong)a.Length).Ptr(a.Ptr).Ptr(b.Ptr).Ptr(result.Ptr));
    }

    public ValueTask SgdAsync(DeviceTensor w, DeviceTensor g, float learningRate, float weightDecay = 0)
    {
        SameShape(w, g);
        return Launch(Kernel.Sgd, w.Length, new KernelArgs().U64((ulong)w.Length).F32(learningRate).F32(weightDecay).Ptr(w.Ptr).Ptr(g.Ptr));
    }

    public ValueTask AdamAsync(DeviceTensor w, DeviceTensor g, DeviceTensor m, DeviceTensor v, int step, float learningRate, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
    {
        SameShape(w, g);
        SameShape(w, m);
        SameShape(w, v);
        return Launch(Kernel.Adam, w.Length,
            new KernelArgs().U64((ulong)w.Length).F32(learningRate).F32(beta1).F32(beta2).F32(epsilon).I32(step).Ptr(w.Ptr).Ptr(g.Ptr).Ptr(m.Ptr).Ptr(v.Ptr));
    }

    private ValueTask Launch(Kernel kernel, long work, KernelArgs args)
        => _device.LaunchAsync(_kernels[(int)kernel], new Dim3(Blocks(work, BlockSize)), new Dim3(BlockSize), args);

    private static uint Blocks(long work, uint per) => (uint)Math.Clamp((work + per - 1) / per, 1, 65535);

    /// <remarks>Like every check here, builds its message only when it fails: the checks run on every launch.</remarks>
    private static void SameShape(DeviceTensor a, DeviceTensor b)
    {
        if (a.RowCount != b.RowCount || a.Cols != b.Cols)
        {
            throw new ArgumentException($"shapes differ: {a.RowCount}x{a.Cols} and {b.RowCount}x{b.Cols}");
        }
    }
}
