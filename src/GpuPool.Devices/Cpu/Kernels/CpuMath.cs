using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace GpuPool.Devices.Cpu.Kernels;

/// <summary>
/// Float32 SIMD math behind the cpu device's kernel library. Matrices are row-major; a leading
/// dimension is the distance in elements between consecutive rows.
/// </summary>
/// <remarks>
/// Callers resolve spans from device memory, so lengths are normally right; every entry point still
/// checks shapes against span lengths up front, because the vector loops below read through
/// unchecked references and a caller bug must surface as an exception, never as a stray write.
/// </remarks>
public static class CpuMath
{
    // ---------------------------------------------------------------- elementwise

    /// <summary>Sets every element of <paramref name="y"/> to <paramref name="value"/>.</summary>
    // Span.Fill and CopyTo are already vectorized by the runtime; re-implementing them would only add risk.
    public static void Fill(Span<float> y, float value) => y.Fill(value);

    /// <summary>y = x; both spans have the same length.</summary>
    public static void Copy(ReadOnlySpan<float> x, Span<float> y)
    {
        RequireSameLength(x.Length, y.Length, nameof(y));
        x.CopyTo(y);
    }

    /// <summary>y += alpha * x.</summary>
    public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y) => Binary(new AxpyOp(alpha), x, y, y);

    /// <summary>x *= alpha.</summary>
    public static void Scale(float alpha, Span<float> x) => Unary(new ScaleOp(alpha), x, x);

    /// <summary>Elementwise c = a + b, c = a - b, c = a * b; c may be a or b itself.</summary>
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c) => Binary(default(AddOp), a, b, c);

    /// <inheritdoc cref="Add"/>
    public static void Sub(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c) => Binary(default(SubOp), a, b, c);

    /// <inheritdoc cref="Add"/>
    public static void Mul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c) => Binary(default(MulOp), a, b, c);

    /// <summary>ReLU and its gradient: y = max(x, 0); dx = x &gt; 0 ? dy : 0.</summary>
    public static void Relu(ReadOnlySpan<float> x, Span<float> y) => Unary(default(ReluOp), x, y);

    /// <inheritdoc cref="Relu"/>
    public static void ReluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) =>
        Binary(default(ReluBackwardOp), x, dy, dx);

    // ---------------------------------------------------------------- row/column broadcasts

    /// <summary>Bias broadcast and its gradient: y[r,c] = x[r,c] + bias[c]; y[c] = Σ_r x[r,c].</summary>
    public static void BiasAdd(int rows, int cols, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, Span<float> y)
    {
        int size = RequireMatrix(rows, cols);
        RequireAtLeast(size, x.Length, nameof(x));
        RequireAtLeast(cols, bias.Length, nameof(bias));
        RequireAtLeast(size, y.Length, nameof(y));
        ReadOnlySpan<float> b = bias[..cols];
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            Add(x.Slice(o, cols), b, y.Slice(o, cols));
        }
    }

    /// <inheritdoc cref="BiasAdd"/>
    public static void SumColumns(int rows, int cols, ReadOnlySpan<float> x, Span<float> y)
    {
        int size = RequireMatrix(rows, cols);
        RequireAtLeast(size, x.Length, nameof(x));
        RequireAtLeast(cols, y.Length, nameof(y));
        Span<float> sum = y[..cols];
        sum.Clear();
        // Row by row keeps both the reads and the accumulator contiguous, so it vectorizes across columns.
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            Add(sum, x.Slice(o, cols), sum);
        }
    }

    // ---------------------------------------------------------------- reductions

    /// <summary>Sum and maximum of all elements; <see cref="Max"/> needs a non-empty span and propagates NaN.</summary>
    public static float Sum(ReadOnlySpan<float> x)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        float total = 0f;
        if (Vector.IsHardwareAccelerated && n >= w)
        {
            // Four independent accumulators hide the add latency and also shorten the rounding chains.
            Vector<float> s0 = Vector<float>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (; i <= n - 4 * w; i += 4 * w)
            {
                s0 += Vector.LoadUnsafe(ref xr, (nuint)i);
                s1 += Vector.LoadUnsafe(ref xr, (nuint)(i + w));
                s2 += Vector.LoadUnsafe(ref xr, (nuint)(i + 2 * w));
                s3 += Vector.LoadUnsafe(ref xr, (nuint)(i + 3 * w));
            }
            for (; i <= n - w; i += w)
            {
                s0 += Vector.LoadUnsafe(ref xr, (nuint)i);
            }
            total = Vector.Sum((s0 + s1) + (s2 + s3));
        }
        for (; i < n; i++)
        {
            total += x[i];
        }
        return total;
    }

    /// <inheritdoc cref="Sum"/>
    public static float Max(ReadOnlySpan<float> x)
    {
        if (x.IsEmpty)
        {
            throw new ArgumentException("The maximum of an empty span is undefined.", nameof(x));
        }
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        float best = x[0];
        if (Vector.IsHardwareAccelerated && n >= w)
        {
            Vector<float> m0 = Vector.LoadUnsafe(ref xr), m1 = m0;
            for (i = w; i <= n - 2 * w; i += 2 * w)
            {
                m0 = Vector.Max(m0, Vector.LoadUnsafe(ref xr, (nuint)i));
                m1 = Vector.Max(m1, Vector.LoadUnsafe(ref xr, (nuint)(i + w)));
            }
            for (; i <= n - w; i += w)
            {
                m0 = Vector.Max(m0, Vector.LoadUnsafe(ref xr, (nuint)i));
            }
            m0 = Vector.Max(m0, m1);
            for (int lane = 0; lane < w; lane++)
            {
                best = MathF.Max(best, m0[lane]);
            }
        }
        for (; i < n; i++)
        {
            best = MathF.Max(best, x[i]);
        }
        return best;
    }

    // ---------------------------------------------------------------- softmax and classification

    /// <summary>Row-wise softmax, made numerically stable by subtracting each row's maximum.</summary>
    public static void SoftmaxRows(int rows, int cols, ReadOnlySpan<float> x, Span<float> y)
    {
        int size = RequireMatrix(rows, cols);
        RequireAtLeast(size, x.Length, nameof(x));
        RequireAtLeast(size, y.Length, nameof(y));
        if (cols == 0)
        {
            return;
        }
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            Span<float> yRow = y.Slice(o, cols);
            float sum = ExpShifted(x.Slice(o, cols), yRow, out _);
            Scale(1f / sum, yRow);
        }
    }

    /// <summary>
    /// Fused softmax + cross-entropy: probs = softmax(logits) per row and
    /// loss[r] = logsumexp(row) - logits[r, labels[r]], which stays finite where -log(probs) would not.
    /// </summary>
    public static void SoftmaxCrossEntropyForward(
        int rows, int cols, ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, Span<float> probs, Span<float> loss)
    {
        int size = RequireMatrix(rows, cols);
        RequireAtLeast(size, logits.Length, nameof(logits));
        RequireAtLeast(size, probs.Length, nameof(probs));
        RequireAtLeast(rows, loss.Length, nameof(loss));
        RequireLabels(rows, cols, labels);
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            ReadOnlySpan<float> row = logits.Slice(o, cols);
            Span<float> pRow = probs.Slice(o, cols);
            float sum = ExpShifted(row, pRow, out float max);
            loss[r] = max + MathF.Log(sum) - row[labels[r]];
            Scale(1f / sum, pRow);
        }
    }

    /// <summary>Gradient of the fused loss: dlogits[r,c] = scale * (probs[r,c] - onehot(labels[r])[c]).</summary>
    public static void SoftmaxCrossEntropyBackward(
        int rows, int cols, ReadOnlySpan<float> probs, ReadOnlySpan<int> labels, float scale, Span<float> dlogits)
    {
        int size = RequireMatrix(rows, cols);
        RequireAtLeast(size, probs.Length, nameof(probs));
        RequireAtLeast(size, dlogits.Length, nameof(dlogits));
        RequireLabels(rows, cols, labels);
        Unary(new ScaleOp(scale), probs[..size], dlogits[..size]);
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            int at = o + labels[r];
            dlogits[at] = scale * (probs[at] - 1f);
        }
    }

    /// <summary>Index of each row's maximum; the first one wins on ties, and a NaN counts as the maximum.</summary>
    public static void ArgmaxRows(int rows, int cols, ReadOnlySpan<float> x, Span<int> indices)
    {
        int size = RequireMatrix(rows, cols);
        if (cols == 0 && rows > 0)
        {
            throw new ArgumentException("A row with no columns has no maximum.", nameof(cols));
        }
        RequireAtLeast(size, x.Length, nameof(x));
        RequireAtLeast(rows, indices.Length, nameof(indices));
        for (int r = 0, o = 0; r < rows; r++, o += cols)
        {
            ReadOnlySpan<float> row = x.Slice(o, cols);
            float max = Max(row);
            // Two vector passes (max, then first match) beat one scalar pass tracking value and index.
            int at = float.IsNaN(max) ? FirstNaN(row) : FirstEqual(row, max);
            indices[r] = at;
        }
    }

    /// <summary>Number of positions where the two spans hold the same value (accuracy counting).</summary>
    public static int CountEqual(ReadOnlySpan<int> a, ReadOnlySpan<int> b)
    {
        RequireSameLength(a.Length, b.Length, nameof(b));
        ref int ar = ref MemoryMarshal.GetReference(a);
        ref int br = ref MemoryMarshal.GetReference(b);
        int n = a.Length, w = Vector<int>.Count, i = 0, count = 0;
        if (Vector.IsHardwareAccelerated)
        {
            // Equal lanes are all-ones, i.e. -1, so subtracting the mask counts matches lane-wise.
            Vector<int> acc = Vector<int>.Zero;
            for (; i <= n - w; i += w)
            {
                acc -= Vector.Equals(Vector.LoadUnsafe(ref ar, (nuint)i), Vector.LoadUnsafe(ref br, (nuint)i));
            }
            count = Vector.Sum(acc);
        }
        for (; i < n; i++)
        {
            if (a[i] == b[i])
            {
                count++;
            }
        }
        return count;
    }

    // ---------------------------------------------------------------- optimizers

    /// <summary>Plain SGD with L2 weight decay: w -= lr * (g + wd * w).</summary>
    public static void SgdUpdate(float learningRate, float weightDecay, Span<float> w, ReadOnlySpan<float> g)
    {
        RequireSameLength(w.Length, g.Length, nameof(g));
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        int n = w.Length, width = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var lr = new Vector<float>(learningRate);
            var wd = new Vector<float>(weightDecay);
            for (; i <= n - width; i += width)
            {
                Vector<float> wv = Vector.LoadUnsafe(ref wr, (nuint)i);
                Vector<float> gv = Vector.LoadUnsafe(ref gr, (nuint)i);
                (wv - lr * (gv + wd * wv)).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            w[i] -= learningRate * (g[i] + weightDecay * w[i]);
        }
    }

    /// <summary>SGD with heavy-ball momentum: v = momentum * v + g; w -= lr * v.</summary>
    public static void SgdMomentumUpdate(float learningRate, float momentum, Span<float> w, ReadOnlySpan<float> g, Span<float> velocity)
    {
        RequireSameLength(w.Length, g.Length, nameof(g));
        RequireSameLength(w.Length, velocity.Length, nameof(velocity));
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float vr = ref MemoryMarshal.GetReference(velocity);
        int n = w.Length, width = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var lr = new Vector<float>(learningRate);
            var mu = new Vector<float>(momentum);
            for (; i <= n - width; i += width)
            {
                Vector<float> v = mu * Vector.LoadUnsafe(ref vr, (nuint)i) + Vector.LoadUnsafe(ref gr, (nuint)i);
                v.StoreUnsafe(ref vr, (nuint)i);
                (Vector.LoadUnsafe(ref wr, (nuint)i) - lr * v).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float v = momentum * velocity[i] + g[i];
            velocity[i] = v;
            w[i] -= learningRate * v;
        }
    }

    /// <summary>Adam with bias correction; <paramref name="step"/> counts from 1.</summary>
    public static void AdamUpdate(
        float learningRate, float beta1, float beta2, float epsilon, int step,
        Span<float> w, ReadOnlySpan<float> g, Span<float> m, Span<float> v)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        RequireSameLength(w.Length, g.Length, nameof(g));
        RequireSameLength(w.Length, m.Length, nameof(m));
        RequireSameLength(w.Length, v.Length, nameof(v));
        // The corrections are per call, not per element, so compute them once and in double:
        // 1 - beta^step loses most of its digits in float when beta is close to 1.
        float c1 = (float)(1.0 / (1.0 - Math.Pow(beta1, step)));
        float c2 = (float)(1.0 / (1.0 - Math.Pow(beta2, step)));
        float oneMinusB1 = 1f - beta1, oneMinusB2 = 1f - beta2;
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float mr = ref MemoryMarshal.GetReference(m);
        ref float vr = ref MemoryMarshal.GetReference(v);
        int n = w.Length, width = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Vector<float> b1 = new(beta1), b2 = new(beta2), k1 = new(oneMinusB1), k2 = new(oneMinusB2);
            Vector<float> vc1 = new(c1), vc2 = new(c2), lr = new(learningRate), eps = new(epsilon);
            for (; i <= n - width; i += width)
            {
                Vector<float> gv = Vector.LoadUnsafe(ref gr, (nuint)i);
                Vector<float> mv = b1 * Vector.LoadUnsafe(ref mr, (nuint)i) + k1 * gv;
                Vector<float> vv = b2 * Vector.LoadUnsafe(ref vr, (nuint)i) + k2 * (gv * gv);
                mv.StoreUnsafe(ref mr, (nuint)i);
                vv.StoreUnsafe(ref vr, (nuint)i);
                Vector<float> update = lr * (mv * vc1) / (Vector.SquareRoot(vv * vc2) + eps);
                (Vector.LoadUnsafe(ref wr, (nuint)i) - update).StoreUnsafe(ref wr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            float gi = g[i];
            float mi = beta1 * m[i] + oneMinusB1 * gi;
            float vi = beta2 * v[i] + oneMinusB2 * (gi * gi);
            m[i] = mi;
            v[i] = vi;
            w[i] -= learningRate * (mi * c1) / (MathF.Sqrt(vi * c2) + epsilon);
        }
    }

    // ---------------------------------------------------------------- embeddings

    /// <summary>Embedding lookup and its gradient: output[i,:] = table[indices[i],:]; dTable[indices[i],:] += dOutput[i,:].</summary>
    public static void GatherRows(int cols, ReadOnlySpan<float> table, ReadOnlySpan<int> indices, Span<float> output)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        int tableRows = table.Length / cols;
        RequireAtLeast((long)indices.Length * cols, output.Length, nameof(output));
        RequireIndices(tableRows, indices);
        for (int i = 0, o = 0; i < indices.Length; i++, o += cols)
        {
            table.Slice(indices[i] * cols, cols).CopyTo(output.Slice(o, cols));
        }
    }

    /// <inheritdoc cref="GatherRows"/>
    public static void ScatterAddRows(int cols, ReadOnlySpan<float> dOutput, ReadOnlySpan<int> indices, Span<float> dTable)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        int tableRows = dTable.Length / cols;
        RequireAtLeast((long)indices.Length * cols, dOutput.Length, nameof(dOutput));
        // All indices are checked before the first write, so a bad batch leaves the gradient untouched.
        RequireIndices(tableRows, indices);
        for (int i = 0, o = 0; i < indices.Length; i++, o += cols)
        {
            Span<float> row = dTable.Slice(indices[i] * cols, cols);
            Add(row, dOutput.Slice(o, cols), row);
        }
    }

    // ---------------------------------------------------------------- GEMM

    // Register tile of the micro-kernel: Mr rows by two vectors of columns. 6 × 2 accumulators plus two
    // B vectors and one broadcast A value fit the 16 vector registers of AVX2 without spilling.
    internal const int Mr = 6;

    // Cache blocks (Goto/BLIS layout): a packed Kc-deep A block (Mc × Kc ≈ 120 KiB) stays in L2 while it
    // meets every packed B sliver (Kc × Nr = 16 KiB, L1); the packed B panel (Kc × Nc ≈ 2 MiB) lives in L3.
    internal const int Kc = 256;
    internal const int Mc = 120;
    internal const int Nc = 2048;

    // Below about 2M multiply-adds, waking thread-pool workers costs more than it saves.
    internal const long ParallelThreshold = 1L << 21;

    internal static int Nr => 2 * Vector<float>.Count;

    /// <summary>
    /// C(m×n) = alpha · op(A)(m×k) · op(B)(k×n) + beta · C. op(A) is A (stored m×k) or Aᵀ (A stored k×m),
    /// likewise for B. beta = 0 overwrites C without reading it, so stale NaNs cannot leak through.
    /// </summary>
    public static unsafe void Gemm(
        bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        RequireStrided(transA ? k : m, transA ? m : k, a.Length, lda, nameof(a), nameof(lda));
        RequireStrided(transB ? n : k, transB ? k : n, b.Length, ldb, nameof(b), nameof(ldb));
        RequireStrided(m, n, c.Length, ldc, nameof(c), nameof(ldc));
        if (m == 0 || n == 0)
        {
            return;
        }

        // Applying beta once up front lets every micro-kernel simply accumulate into C.
        for (int i = 0, o = 0; i < m; i++, o += ldc)
        {
            Span<float> row = c.Slice(o, n);
            if (beta == 0f)
            {
                row.Clear();
            }
            else if (beta != 1f)
            {
                Scale(beta, row);
            }
        }
        if (k == 0 || alpha == 0f)
        {
            return;
        }

        fixed (float* pa = a, pb = b, pc = c)
        {
            var g = new GemmOperands(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, pc, ldc);
            GemmBlocked(g);
        }
    }

    private readonly unsafe struct GemmOperands(
        bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float* c, int ldc)
    {
        public readonly bool TransA = transA, TransB = transB;
        public readonly int M = m, N = n, K = k;
        public readonly float Alpha = alpha;
        public readonly float* A = a, B = b, C = c;
        public readonly int Lda = lda, Ldb = ldb, Ldc = ldc;
    }

    private static unsafe void GemmBlocked(GemmOperands g)
    {
        int m = g.M;
        bool parallel = (long)g.M * g.N * g.K > ParallelThreshold && Environment.ProcessorCount > 1 && m > Mr;
        int mc = parallel ? BalancedRowBlock(m, Environment.ProcessorCount) : Mc;
        int rowBlocks = (m + mc - 1) / mc;

        // +16 floats of slack lets the packed panels start on a 64-byte boundary inside the rented array.
        float[] bBuffer = ArrayPool<float>.Shared.Rent(Kc * Nc + 16);
        float[]? aBuffer = parallel ? null : ArrayPool<float>.Shared.Rent(Mc * Kc + 16);
        try
        {
            fixed (float* bRaw = bBuffer, aRaw = aBuffer)
            {
                float* bPack = Align64(bRaw);
                float* aPack = parallel ? null : Align64(aRaw);
                for (int jc = 0; jc < g.N; jc += Nc)
                {
                    int nc = Math.Min(Nc, g.N - jc);
                    for (int pc = 0; pc < g.K; pc += Kc)
                    {
                        int kc = Math.Min(Kc, g.K - pc);
                        PackB(g, bPack, pc, kc, jc, nc);
                        if (parallel)
                        {
                            GemmRowBlocksParallel(g, bPack, mc, rowBlocks, pc, kc, jc, nc);
                        }
                        else
                        {
                            for (int ic = 0; ic < m; ic += mc)
                            {
                                int mcb = Math.Min(mc, m - ic);
                                PackA(g, aPack, ic, mcb, pc, kc);
                                MacroKernel(g, aPack, bPack, ic, mcb, jc, nc, kc);
                            }
                        }
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(bBuffer);
            if (aBuffer is not null)
            {
                ArrayPool<float>.Shared.Return(aBuffer);
            }
        }
    }

    private static unsafe void GemmRowBlocksParallel(GemmOperands g, float* bPack, int mc, int rowBlocks, int pc, int kc, int jc, int nc)
    {
        // Each worker rents its own A panel once (localInit) and reuses it for all the row blocks it takes.
        Parallel.For(
            0,
            rowBlocks,
            () => ArrayPool<float>.Shared.Rent(Mc * Kc + 16),
            (block, _, aBuffer) =>
            {
                int ic = block * mc;
                int mcb = Math.Min(mc, g.M - ic);
                fixed (float* aRaw = aBuffer)
                {
                    float* aPack = Align64(aRaw);
                    PackA(g, aPack, ic, mcb, pc, kc);
                    MacroKernel(g, aPack, bPack, ic, mcb, jc, nc, kc);
                }
                return aBuffer;
            },
            aBuffer => ArrayPool<float>.Shared.Return(aBuffer));
    }

    // Splits m into a multiple of `workers` equal row blocks (each a multiple of Mr, at most Mc) so that
    // no worker is left with a lone trailing block while the others idle.
    internal static int BalancedRowBlock(int m, int workers)
    {
        int blocks = (m + Mc - 1) / Mc;
        blocks = (blocks + workers - 1) / workers * workers;
        int rows = (m + blocks - 1) / blocks;
        return Math.Min(Mc, (rows + Mr - 1) / Mr * Mr);
    }

    // Copies op(A)[ic.., pc..] (mc × kc) into Mr-row slivers laid out k-major, folding alpha in, so the
    // micro-kernel reads A strictly sequentially whatever the transpose. Rows past mc are zero padding.
    private static unsafe void PackA(in GemmOperands g, float* dst, int ic, int mc, int pc, int kc)
    {
        float alpha = g.Alpha;
        int lda = g.Lda;
        for (int ir = 0; ir < mc; ir += Mr)
        {
            int mr = Math.Min(Mr, mc - ir);
            float* sliver = dst + (ir * kc);
            if (mr < Mr)
            {
                new Span<float>(sliver, kc * Mr).Clear();
            }
            if (g.TransA)
            {
                // A is stored k × m: the Mr values of one k step are adjacent in memory.
                float* src = g.A + ((long)pc * lda) + ic + ir;
                for (int p = 0; p < kc; p++, src += lda)
                {
                    float* d = sliver + (p * Mr);
                    for (int r = 0; r < mr; r++)
                    {
                        d[r] = alpha * src[r];
                    }
                }
            }
            else
            {
                for (int r = 0; r < mr; r++)
                {
                    float* src = g.A + ((long)(ic + ir + r) * lda) + pc;
                    for (int p = 0; p < kc; p++)
                    {
                        sliver[(p * Mr) + r] = alpha * src[p];
                    }
                }
            }
        }
    }

    // Copies op(B)[pc.., jc..] (kc × nc) into Nr-column slivers laid out k-major; columns past nc are zero.
    private static unsafe void PackB(in GemmOperands g, float* dst, int pc, int kc, int jc, int nc)
    {
        int nrFull = Nr, w = Vector<float>.Count, ldb = g.Ldb;
        for (int jr = 0; jr < nc; jr += nrFull)
        {
            int nr = Math.Min(nrFull, nc - jr);
            float* sliver = dst + (jr * kc);
            if (nr < nrFull)
            {
                new Span<float>(sliver, kc * nrFull).Clear();
            }
            if (g.TransB)
            {
                // B is stored n × k: walk each stored row contiguously and scatter it down the sliver.
                for (int j = 0; j < nr; j++)
                {
                    float* src = g.B + ((long)(jc + jr + j) * ldb) + pc;
                    float* d = sliver + j;
                    for (int p = 0; p < kc; p++)
                    {
                        d[p * nrFull] = src[p];
                    }
                }
            }
            else
            {
                float* src = g.B + ((long)pc * ldb) + jc + jr;
                if (nr == nrFull)
                {
                    for (int p = 0; p < kc; p++, src += ldb)
                    {
                        float* d = sliver + (p * nrFull);
                        Vector.Store(Vector.Load(src), d);
                        Vector.Store(Vector.Load(src + w), d + w);
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++, src += ldb)
                    {
                        new ReadOnlySpan<float>(src, nr).CopyTo(new Span<float>(sliver + (p * nrFull), nr));
                    }
                }
            }
        }
    }

    // Runs the micro-kernel over every Mr × Nr tile of the C block; ragged edge tiles go through a
    // scratch tile so the kernel itself never needs bounds logic.
    private static unsafe void MacroKernel(in GemmOperands g, float* aPack, float* bPack, int ic, int mc, int jc, int nc, int kc)
    {
        int nrFull = Nr;
        long ldc = g.Ldc;
        float* scratch = stackalloc float[Mr * nrFull];
        for (int jr = 0; jr < nc; jr += nrFull)
        {
            int nr = Math.Min(nrFull, nc - jr);
            float* bSliver = bPack + (jr * kc);
            for (int ir = 0; ir < mc; ir += Mr)
            {
                int mr = Math.Min(Mr, mc - ir);
                float* aSliver = aPack + (ir * kc);
                float* cTile = g.C + ((ic + ir) * ldc) + jc + jr;
                if (mr == Mr && nr == nrFull)
                {
                    MicroKernel(kc, aSliver, bSliver, cTile, ldc);
                    continue;
                }
                new Span<float>(scratch, Mr * nrFull).Clear();
                MicroKernel(kc, aSliver, bSliver, scratch, nrFull);
                for (int r = 0; r < mr; r++)
                {
                    float* cRow = cTile + (r * ldc);
                    float* sRow = scratch + (r * nrFull);
                    for (int j = 0; j < nr; j++)
                    {
                        cRow[j] += sRow[j];
                    }
                }
            }
        }
    }

    // C[0..Mr, 0..Nr] += Apack-sliver · Bpack-sliver. All twelve accumulators are locals so the JIT keeps
    // them in registers for the whole k loop; C is touched once, at the end.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void MicroKernel(int kc, float* a, float* b, float* c, long ldc)
    {
        int w = Vector<float>.Count;
        Vector<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector<float> b0 = Vector.Load(b);
            Vector<float> b1 = Vector.Load(b + w);
            Vector<float> ai = new(a[0]);
            c00 = Vector.MultiplyAddEstimate(ai, b0, c00);
            c01 = Vector.MultiplyAddEstimate(ai, b1, c01);
            ai = new(a[1]);
            c10 = Vector.MultiplyAddEstimate(ai, b0, c10);
            c11 = Vector.MultiplyAddEstimate(ai, b1, c11);
            ai = new(a[2]);
            c20 = Vector.MultiplyAddEstimate(ai, b0, c20);
            c21 = Vector.MultiplyAddEstimate(ai, b1, c21);
            ai = new(a[3]);
            c30 = Vector.MultiplyAddEstimate(ai, b0, c30);
            c31 = Vector.MultiplyAddEstimate(ai, b1, c31);
            ai = new(a[4]);
            c40 = Vector.MultiplyAddEstimate(ai, b0, c40);
            c41 = Vector.MultiplyAddEstimate(ai, b1, c41);
            ai = new(a[5]);
            c50 = Vector.MultiplyAddEstimate(ai, b0, c50);
            c51 = Vector.MultiplyAddEstimate(ai, b1, c51);
            a += Mr;
            b += 2 * w;
        }
        AccumulateRow(c, w, c00, c01);
        AccumulateRow(c + ldc, w, c10, c11);
        AccumulateRow(c + (2 * ldc), w, c20, c21);
        AccumulateRow(c + (3 * ldc), w, c30, c31);
        AccumulateRow(c + (4 * ldc), w, c40, c41);
        AccumulateRow(c + (5 * ldc), w, c50, c51);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AccumulateRow(float* c, int w, Vector<float> lo, Vector<float> hi)
    {
        Vector.Store(Vector.Load(c) + lo, c);
        Vector.Store(Vector.Load(c + w) + hi, c + w);
    }

    private static unsafe float* Align64(float* p) => (float*)(((nint)p + 63) & ~(nint)63);

    // ---------------------------------------------------------------- shared helpers

    // y[i] = exp(x[i] - max(x)); returns Σ y. Shifting by the max keeps every exponent ≤ 0, so nothing overflows.
    private static float ExpShifted(ReadOnlySpan<float> x, Span<float> y, out float max)
    {
        max = Max(x);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var shift = new Vector<float>(max);
            for (; i <= n - w; i += w)
            {
                Vector.Exp(Vector.LoadUnsafe(ref xr, (nuint)i) - shift).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            y[i] = MathF.Exp(x[i] - max);
        }
        return Sum(y[..n]);
    }

    private static int FirstEqual(ReadOnlySpan<float> x, float value)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var target = new Vector<float>(value);
            for (; i <= n - w; i += w)
            {
                Vector<int> hit = Vector.Equals(Vector.LoadUnsafe(ref xr, (nuint)i), target);
                if (hit != Vector<int>.Zero)
                {
                    break;
                }
            }
        }
        for (; i < n; i++)
        {
            if (x[i] == value)
            {
                return i;
            }
        }
        return -1;
    }

    private static int FirstNaN(ReadOnlySpan<float> x)
    {
        for (int i = 0; i < x.Length; i++)
        {
            if (float.IsNaN(x[i]))
            {
                return i;
            }
        }
        return -1;
    }

    private static void RequireLabels(int rows, int cols, ReadOnlySpan<int> labels)
    {
        RequireAtLeast(rows, labels.Length, nameof(labels));
        for (int r = 0; r < rows; r++)
        {
            int label = labels[r];
            if ((uint)label >= (uint)cols)
            {
                throw new ArgumentOutOfRangeException(nameof(labels), $"label {label} of row {r} is outside [0, {cols}).");
            }
        }
    }

    private static void RequireIndices(int tableRows, ReadOnlySpan<int> indices)
    {
        for (int i = 0; i < indices.Length; i++)
        {
            int index = indices[i];
            if ((uint)index >= (uint)tableRows)
            {
                throw new ArgumentOutOfRangeException(nameof(indices), $"index {index} at position {i} is outside [0, {tableRows}).");
            }
        }
    }

    private static int RequireMatrix(int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        long size = (long)rows * cols;
        if (size > int.MaxValue)
        {
            throw new ArgumentException($"A {rows} × {cols} matrix does not fit in a span.", nameof(rows));
        }
        return (int)size;
    }

    private static void RequireStrided(int rows, int cols, int length, int ld, string name, string ldName)
    {
        if (ld < cols || ld < 0)
        {
            throw new ArgumentOutOfRangeException(ldName, $"{ldName} = {ld} is less than the {cols} columns of {name}.");
        }
        if (rows > 0 && cols > 0)
        {
            RequireAtLeast(((long)(rows - 1) * ld) + cols, length, name);
        }
    }

    private static void RequireAtLeast(long needed, int actual, string name)
    {
        if (actual < needed)
        {
            throw new ArgumentException($"{name} has {actual} elements but the shape needs {needed}.", name);
        }
    }

    private static void RequireSameLength(int expected, int actual, string name)
    {
        if (actual != expected)
        {
            throw new ArgumentException($"{name} has {actual} elements but must have {expected}.", name);
        }
    }

    // ---------------------------------------------------------------- elementwise drivers

    // Struct operators make the generic drivers specialize per operation, so each op compiles to its own
    // tight vector loop with the lambda body inlined, while the loop/tail logic exists only once.
    private interface IUnaryOp
    {
        float Apply(float x);

        Vector<float> Apply(Vector<float> x);
    }

    private interface IBinaryOp
    {
        float Apply(float a, float b);

        Vector<float> Apply(Vector<float> a, Vector<float> b);
    }

    private static void Unary<TOp>(TOp op, ReadOnlySpan<float> x, Span<float> y)
        where TOp : struct, IUnaryOp
    {
        RequireSameLength(x.Length, y.Length, nameof(y));
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= n - w; i += w)
            {
                op.Apply(Vector.LoadUnsafe(ref xr, (nuint)i)).StoreUnsafe(ref yr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            y[i] = op.Apply(x[i]);
        }
    }

    private static void Binary<TOp>(TOp op, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c)
        where TOp : struct, IBinaryOp
    {
        RequireSameLength(a.Length, b.Length, nameof(b));
        RequireSameLength(a.Length, c.Length, nameof(c));
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float br = ref MemoryMarshal.GetReference(b);
        ref float cr = ref MemoryMarshal.GetReference(c);
        int n = a.Length, w = Vector<float>.Count, i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= n - w; i += w)
            {
                op.Apply(Vector.LoadUnsafe(ref ar, (nuint)i), Vector.LoadUnsafe(ref br, (nuint)i)).StoreUnsafe(ref cr, (nuint)i);
            }
        }
        for (; i < n; i++)
        {
            c[i] = op.Apply(a[i], b[i]);
        }
    }

    private readonly struct ScaleOp(float alpha) : IUnaryOp
    {
        private readonly float _scalar = alpha;
        private readonly Vector<float> _alpha = new(alpha);

        public float Apply(float x) => _scalar * x;

        public Vector<float> Apply(Vector<float> x) => _alpha * x;
    }

    private readonly struct ReluOp : IUnaryOp
    {
        public float Apply(float x) => x > 0f ? x : 0f;

        // ConditionalSelect on x > 0 (not Max) so NaN maps to 0 exactly as the scalar tail does.
        public Vector<float> Apply(Vector<float> x) => Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<float>.Zero), x, Vector<float>.Zero);
    }

    // y += alpha * x is a binary op with (x, y) as inputs and y as output.
    private readonly struct AxpyOp(float alpha) : IBinaryOp
    {
        private readonly float _scalar = alpha;
        private readonly Vector<float> _alpha = new(alpha);

        public float Apply(float x, float y) => y + (_scalar * x);

        public Vector<float> Apply(Vector<float> x, Vector<float> y) => y + (_alpha * x);
    }

    private readonly struct AddOp : IBinaryOp
    {
        public float Apply(float a, float b) => a + b;

        public Vector<float> Apply(Vector<float> a, Vector<float> b) => a + b;
    }

    private readonly struct SubOp : IBinaryOp
    {
        public float Apply(float a, float b) => a - b;

        public Vector<float> Apply(Vector<float> a, Vector<float> b) => a - b;
    }

    private readonly struct MulOp : IBinaryOp
    {
        public float Apply(float a, float b) => a * b;

        public Vector<float> Apply(Vector<float> a, Vector<float> b) => a * b;
    }

    private readonly struct ReluBackwardOp : IBinaryOp
    {
        public float Apply(float x, float dy) => x > 0f ? dy : 0f;

        public Vector<float> Apply(Vector<float> x, Vector<float> dy) => Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<float>.Zero), dy, Vector<float>.Zero);
    }
}
