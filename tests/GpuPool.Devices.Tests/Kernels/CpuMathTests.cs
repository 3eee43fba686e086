using CsCheck;
using GpuPool.Devices.Cpu.Kernels;

namespace GpuPool.Devices.Tests.Kernels;

/// <summary>
/// Every <see cref="CpuMath"/> routine against a plain scalar reference computed in double, on random inputs
/// whose lengths straddle the vector width (and, for GEMM, the cache blocks and the parallel threshold).
/// </summary>
public sealed class CpuMathTests
{
    // Float32 keeps ~7 significant digits; 1e-6 of the operands' magnitude is ~16 ulps of slack,
    // far below what a wrong index, a dropped tail element or a missing term would produce.
    private const double Rel = 1e-6;

    public static TheoryData<int> Lengths => [0, 1, 3, 7, 8, 9, 16, 17, 33, 100, 257, 1000];

    public static TheoryData<int, int> Shapes => new()
    {
        { 1, 1 }, { 1, 17 }, { 3, 5 }, { 4, 8 }, { 7, 33 }, { 17, 3 }, { 33, 100 }, { 5, 257 }, { 64, 1 },
    };

    // ------------------------------------------------------------------ elementwise

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Fill_sets_every_element_to_the_value(int n)
    {
        float[] y = RandomFloats(new Random(n), n);
        CpuMath.Fill(y, -2.5f);
        Assert.All(y, v => Assert.Equal(-2.5f, v));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Copy_duplicates_the_source(int n)
    {
        var rng = new Random(100 + n);
        float[] x = RandomFloats(rng, n), y = RandomFloats(rng, n);
        CpuMath.Copy(x, y);
        Assert.Equal(x, y);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Axpy_adds_a_scaled_vector(int n)
    {
        var rng = new Random(200 + n);
        float[] x = RandomFloats(rng, n), y = RandomFloats(rng, n);
        const float alpha = -1.75f;
        double[] expected = Map(i => y[i] + ((double)alpha * x[i]), n);
        double[] magnitude = Map(i => Math.Abs(y[i]) + Math.Abs((double)alpha * x[i]), n);
        CpuMath.Axpy(alpha, x, y);
        AssertClose(expected, y, magnitude, Rel);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Scale_multiplies_every_element(int n)
    {
        float[] x = RandomFloats(new Random(300 + n), n);
        double[] expected = Map(i => 0.37 * x[i], n);
        CpuMath.Scale(0.37f, x);
        AssertClose(expected, x, Map(i => Math.Abs(expected[i]), n), Rel);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Add_matches_the_reference(int n) => CheckBinary(n, (a, b, c) => CpuMath.Add(a, b, c), (a, b) => a + b);

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Sub_matches_the_reference(int n) => CheckBinary(n, (a, b, c) => CpuMath.Sub(a, b, c), (a, b) => a - b);

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Mul_matches_the_reference(int n) => CheckBinary(n, (a, b, c) => CpuMath.Mul(a, b, c), (a, b) => a * b);

    [Fact]
    public void Add_and_Sub_may_write_into_either_input()
    {
        var rng = new Random(7);
        float[] a = RandomFloats(rng, 37), b = RandomFloats(rng, 37);
        double[] sum = Map(i => (double)a[i] + b[i], 37);
        float[] into = (float[])a.Clone();
        CpuMath.Add(into, b, into);
        AssertClose(sum, into, Map(i => Math.Abs(a[i]) + Math.Abs(b[i]), 37), Rel);

        double[] difference = Map(i => (double)a[i] - b[i], 37);
        into = (float[])b.Clone();
        CpuMath.Sub(a, into, into);
        AssertClose(difference, into, Map(i => Math.Abs(a[i]) + Math.Abs(b[i]), 37), Rel);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Relu_clamps_negatives_and_zeros_to_zero(int n)
    {
        float[] x = WithSomeZeros(new Random(400 + n), RandomFloats(new Random(401 + n), n));
        float[] y = new float[n];
        CpuMath.Relu(x, y);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(x[i] > 0 ? x[i] : 0f, y[i]);
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void ReluBackward_passes_the_gradient_only_where_the_input_was_positive(int n)
    {
        var rng = new Random(500 + n);
        float[] x = WithSomeZeros(rng, RandomFloats(rng, n)), dy = RandomFloats(rng, n), dx = RandomFloats(rng, n);
        CpuMath.ReluBackward(x, dy, dx);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(x[i] > 0 ? dy[i] : 0f, dx[i]);
        }
    }

    [Fact]
    public void Elementwise_ops_reject_spans_of_different_lengths()
    {
        float[] a = new float[9], b = new float[8];
        Assert.Throws<ArgumentException>(() => CpuMath.Add(a, b, a));
        Assert.Throws<ArgumentException>(() => CpuMath.Mul(a, a, b));
        Assert.Throws<ArgumentException>(() => CpuMath.Copy(a, b));
        Assert.Throws<ArgumentException>(() => CpuMath.Axpy(1f, a, b));
        Assert.Throws<ArgumentException>(() => CpuMath.ReluBackward(a, b, a));
    }

    // ------------------------------------------------------------------ broadcasts

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BiasAdd_adds_the_bias_to_every_row(int rows, int cols)
    {
        var rng = new Random((rows * 1000) + cols);
        float[] x = RandomFloats(rng, rows * cols), bias = RandomFloats(rng, cols), y = new float[rows * cols];
        double[] expected = Map(i => (double)x[i] + bias[i % cols], rows * cols);
        CpuMath.BiasAdd(rows, cols, x, bias, y);
        AssertClose(expected, y, Map(i => Math.Abs(x[i]) + Math.Abs(bias[i % cols]), rows * cols), Rel);

        // In place, as the forward pass of a linear layer uses it.
        CpuMath.BiasAdd(rows, cols, x, bias, x);
        AssertClose(expected, x, Map(i => Math.Abs(expected[i]) + 1, rows * cols), Rel);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SumColumns_sums_each_column_over_all_rows(int rows, int cols)
    {
        var rng = new Random((rows * 1000) + cols + 1);
        float[] x = RandomFloats(rng, rows * cols), y = RandomFloats(rng, cols);
        var expected = new double[cols];
        var magnitude = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                expected[c] += x[(r * cols) + c];
                magnitude[c] += Math.Abs(x[(r * cols) + c]);
            }
        }
        CpuMath.SumColumns(rows, cols, x, y);
        AssertClose(expected, y, magnitude, Rel * rows);
    }

    [Fact]
    public void Shaped_ops_reject_negative_sizes_and_short_spans()
    {
        float[] x = new float[12], bias = new float[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuMath.BiasAdd(-1, 4, x, bias, x));
        Assert.Throws<ArgumentException>(() => CpuMath.BiasAdd(4, 4, x, bias, x));
        Assert.Throws<ArgumentException>(() => CpuMath.BiasAdd(3, 4, x, new float[3], x));
        Assert.Throws<ArgumentException>(() => CpuMath.SumColumns(3, 4, x, new float[3]));
        Assert.Throws<ArgumentException>(() => CpuMath.SoftmaxRows(5, 3, x, new float[15]));
    }

    // ------------------------------------------------------------------ reductions

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Sum_adds_every_element(int n)
    {
        float[] x = RandomFloats(new Random(600 + n), n);
        double expected = 0, magnitude = 0;
        foreach (float v in x)
        {
            expected += v;
            magnitude += Math.Abs(v);
        }
        AssertClose(expected, CpuMath.Sum(x), magnitude, Rel, "sum");
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Max_finds_the_largest_element_wherever_it_is(int n)
    {
        if (n == 0)
        {
            return;
        }
        var rng = new Random(700 + n);
        // Put the maximum at the start, in the middle and in the scalar tail in turn.
        foreach (int at in new[] { 0, n / 2, n - 1 })
        {
            float[] x = RandomFloats(rng, n);
            x[at] = 5f;
            Assert.Equal(5f, CpuMath.Max(x));
            float[] negative = Array.ConvertAll(x, v => -10f - Math.Abs(v));
            negative[at] = -3f;
            Assert.Equal(-3f, CpuMath.Max(negative));
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(20)]
    public void Max_and_ArgmaxRows_treat_a_NaN_as_the_maximum(int at)
    {
        float[] x = RandomFloats(new Random(at), 21);
        x[at] = float.NaN;
        x[(at + 7) % 21] = float.NaN;
        Assert.True(float.IsNaN(CpuMath.Max(x)));
        int[] index = new int[1];
        CpuMath.ArgmaxRows(1, 21, x, index);
        Assert.Equal(Math.Min(at, (at + 7) % 21), index[0]);
    }

    [Fact]
    public void Max_of_an_empty_span_throws() =>
        Assert.Throws<ArgumentException>(() => CpuMath.Max(ReadOnlySpan<float>.Empty));

    // ------------------------------------------------------------------ softmax and classification

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SoftmaxRows_matches_the_reference(int rows, int cols)
    {
        float[] x = RandomFloats(new Random(800 + (rows * 31) + cols), rows * cols, 8f);
        float[] y = new float[rows * cols];
        CpuMath.SoftmaxRows(rows, cols, x, y);
        AssertClose(ReferenceSoftmax(rows, cols, x, out _), y, Ones(rows * cols), 2e-6);
    }

    [Fact]
    public void SoftmaxRows_stays_finite_for_huge_logits()
    {
        const int rows = 3, cols = 41;
        float[] x = RandomFloats(new Random(9), rows * cols, 30f);
        for (int i = 0; i < x.Length; i++)
        {
            x[i] += 1000f; // exp(1000) overflows float and double alike; only the max shift saves it.
        }
        float[] y = new float[rows * cols];
        CpuMath.SoftmaxRows(rows, cols, x, y);
        AssertClose(ReferenceSoftmax(rows, cols, x, out _), y, Ones(rows * cols), 2e-6);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SoftmaxCrossEntropyForward_matches_the_reference(int rows, int cols)
    {
        var rng = new Random(900 + (rows * 31) + cols);
        float[] logits = RandomFloats(rng, rows * cols, 6f);
        int[] labels = RandomInts(rng, rows, cols);
        float[] probs = new float[rows * cols], loss = new float[rows];
        CpuMath.SoftmaxCrossEntropyForward(rows, cols, logits, labels, probs, loss);

        double[] expectedProbs = ReferenceSoftmax(rows, cols, logits, out double[] logSumExp);
        double[] expectedLoss = Map(r => logSumExp[r] - logits[(r * cols) + labels[r]], rows);
        AssertClose(expectedProbs, probs, Ones(rows * cols), 2e-6);
        AssertClose(expectedLoss, loss, Map(r => Math.Abs(logSumExp[r]) + 1, rows), 2e-6);
    }

    [Fact]
    public void SoftmaxCrossEntropyForward_loss_stays_finite_when_the_label_probability_underflows()
    {
        // The label's probability is e^-300, zero in float; -log(prob) would be +inf, logsumexp gives 300.
        float[] logits = [300f, 0f, -5f];
        float[] probs = new float[3], loss = new float[1];
        CpuMath.SoftmaxCrossEntropyForward(1, 3, logits, [1], probs, loss);
        Assert.Equal(0f, probs[1]);
        Assert.Equal(300.0, loss[0], 1e-3);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SoftmaxCrossEntropyBackward_subtracts_the_one_hot_label_and_scales(int rows, int cols)
    {
        var rng = new Random(1000 + (rows * 31) + cols);
        float[] probs = Array.ConvertAll(RandomFloats(rng, rows * cols), v => Math.Abs(v));
        int[] labels = RandomInts(rng, rows, cols);
        float[] dlogits = RandomFloats(rng, rows * cols);
        const float scale = 0.125f;
        double[] expected = Map(i => scale * (probs[i] - (i % cols == labels[i / cols] ? 1.0 : 0.0)), rows * cols);
        CpuMath.SoftmaxCrossEntropyBackward(rows, cols, probs, labels, scale, dlogits);
        AssertClose(expected, dlogits, Map(_ => (double)scale, rows * cols), Rel);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    public void Cross_entropy_rejects_a_label_outside_the_classes_naming_row_and_label(int badLabel)
    {
        const int rows = 4, cols = 5;
        int[] labels = [0, 4, 2, badLabel];
        float[] logits = new float[rows * cols], probs = new float[rows * cols], loss = new float[rows];
        string expected = $"label {badLabel} of row 3 is outside [0, 5)";

        var forward = Assert.Throws<ArgumentOutOfRangeException>(
            () => CpuMath.SoftmaxCrossEntropyForward(rows, cols, logits, labels, probs, loss));
        Assert.Contains(expected, forward.Message, StringComparison.Ordinal);

        var backward = Assert.Throws<ArgumentOutOfRangeException>(
            () => CpuMath.SoftmaxCrossEntropyBackward(rows, cols, probs, labels, 1f, logits));
        Assert.Contains(expected, backward.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ArgmaxRows_returns_the_first_maximum_of_each_row(int rows, int cols)
    {
        var rng = new Random(1100 + (rows * 31) + cols);
        // Few distinct values, so ties (which the first occurrence must win) are frequent.
        float[] x = Array.ConvertAll(RandomInts(rng, rows * cols, 4), v => (float)v - 2f);
        int[] indices = new int[rows];
        CpuMath.ArgmaxRows(rows, cols, x, indices);
        for (int r = 0; r < rows; r++)
        {
            int best = 0;
            for (int c = 1; c < cols; c++)
            {
                if (x[(r * cols) + c] > x[(r * cols) + best])
                {
                    best = c;
                }
            }
            Assert.Equal(best, indices[r]);
        }
    }

    [Fact]
    public void ArgmaxRows_finds_a_unique_maximum_anywhere_in_a_long_row()
    {
        const int cols = 257;
        var rng = new Random(12);
        for (int at = 0; at < cols; at += 16)
        {
            float[] x = RandomFloats(rng, cols);
            x[at] = 2f;
            int[] index = new int[1];
            CpuMath.ArgmaxRows(1, cols, x, index);
            Assert.Equal(at, index[0]);
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void CountEqual_counts_matching_positions(int n)
    {
        var rng = new Random(1200 + n);
        int[] a = RandomInts(rng, n, 3), b = RandomInts(rng, n, 3);
        int expected = Enumerable.Range(0, n).Count(i => a[i] == b[i]);
        Assert.Equal(expected, CpuMath.CountEqual(a, b));
        Assert.Equal(n, CpuMath.CountEqual(a, a));
    }

    // ------------------------------------------------------------------ optimizers

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SgdUpdate_steps_against_the_gradient_plus_weight_decay(int n)
    {
        var rng = new Random(1300 + n);
        float[] w = RandomFloats(rng, n), g = RandomFloats(rng, n);
        const float lr = 0.05f, wd = 0.01f;
        double[] expected = Map(i => w[i] - (lr * (g[i] + ((double)wd * w[i]))), n);
        CpuMath.SgdUpdate(lr, wd, w, g);
        AssertClose(expected, w, Ones(n), Rel);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void SgdMomentumUpdate_accumulates_velocity_over_steps(int n)
    {
        var rng = new Random(1400 + n);
        float[] w = RandomFloats(rng, n), v = new float[n];
        double[] rw = Map(i => w[i], n), rv = new double[n];
        const float lr = 0.1f, momentum = 0.9f;
        for (int step = 0; step < 3; step++)
        {
            float[] g = RandomFloats(rng, n);
            for (int i = 0; i < n; i++)
            {
                rv[i] = (momentum * rv[i]) + g[i];
                rw[i] -= lr * rv[i];
            }
            CpuMath.SgdMomentumUpdate(lr, momentum, w, g, v);
        }
        AssertClose(rv, v, Ones(n), 4 * Rel);
        AssertClose(rw, w, Ones(n), 4 * Rel);
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void AdamUpdate_matches_the_reference_over_several_steps(int n)
    {
        var rng = new Random(1500 + n);
        float[] w = RandomFloats(rng, n), m = new float[n], v = new float[n];
        double[] rw = Map(i => w[i], n), rm = new double[n], rv = new double[n];
        const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
        for (int step = 1; step <= 4; step++)
        {
            float[] g = RandomFloats(rng, n);
            for (int i = 0; i < n; i++)
            {
                rm[i] = (b1 * rm[i]) + ((1 - (double)b1) * g[i]);
                rv[i] = (b2 * rv[i]) + ((1 - (double)b2) * g[i] * g[i]);
                double mHat = rm[i] / (1 - Math.Pow(b1, step));
                double vHat = rv[i] / (1 - Math.Pow(b2, step));
                rw[i] -= lr * mHat / (Math.Sqrt(vHat) + eps);
            }
            CpuMath.AdamUpdate(lr, b1, b2, eps, step, w, g, m, v);
        }
        AssertClose(rm, m, Ones(n), 1e-5);
        AssertClose(rv, v, Ones(n), 1e-5);
        // Each Adam step moves a weight by about lr, so the error scales with lr, not with |w|.
        AssertClose(rw, w, Ones(n), 1e-5);
    }

    [Fact]
    public void AdamUpdate_rejects_step_zero()
    {
        float[] x = new float[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuMath.AdamUpdate(0.1f, 0.9f, 0.999f, 1e-8f, 0, x, x, x, x));
    }

    // ------------------------------------------------------------------ embeddings

    [Theory]
    [InlineData(1, 1, 5)]
    [InlineData(3, 17, 40)]
    [InlineData(33, 9, 100)]
    [InlineData(257, 4, 3)]
    public void GatherRows_copies_the_indexed_rows(int cols, int tableRows, int count)
    {
        var rng = new Random(1600 + cols);
        float[] table = RandomFloats(rng, tableRows * cols);
        int[] indices = RandomInts(rng, count, tableRows);
        float[] output = new float[count * cols];
        CpuMath.GatherRows(cols, table, indices, output);
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(table.AsSpan(indices[i] * cols, cols), output.AsSpan(i * cols, cols));
        }
    }

    [Theory]
    [InlineData(1, 1, 5)]
    [InlineData(3, 17, 40)]
    [InlineData(33, 9, 100)]
    [InlineData(257, 4, 3)]
    public void ScatterAddRows_accumulates_every_occurrence_of_an_index(int cols, int tableRows, int count)
    {
        var rng = new Random(1700 + cols);
        float[] dTable = RandomFloats(rng, tableRows * cols), dOutput = RandomFloats(rng, count * cols);
        int[] indices = RandomInts(rng, count, tableRows); // more lookups than rows: duplicates guaranteed
        double[] expected = Map(i => dTable[i], dTable.Length);
        double[] magnitude = Map(i => Math.Abs(dTable[i]), dTable.Length);
        for (int i = 0; i < count; i++)
        {
            for (int c = 0; c < cols; c++)
            {
                expected[(indices[i] * cols) + c] += dOutput[(i * cols) + c];
                magnitude[(indices[i] * cols) + c] += Math.Abs(dOutput[(i * cols) + c]);
            }
        }
        CpuMath.ScatterAddRows(cols, dOutput, indices, dTable);
        AssertClose(expected, dTable, magnitude, Rel * 4);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(-2)]
    public void Embedding_ops_reject_an_index_outside_the_table_naming_position_and_index(int badIndex)
    {
        const int cols = 3, tableRows = 6;
        float[] table = RandomFloats(new Random(3), tableRows * cols);
        float[] before = (float[])table.Clone();
        int[] indices = [1, 5, badIndex, 0];
        string expected = $"index {badIndex} at position 2";

        var gather = Assert.Throws<ArgumentOutOfRangeException>(
            () => CpuMath.GatherRows(cols, table, indices, new float[indices.Length * cols]));
        Assert.Contains(expected, gather.Message, StringComparison.Ordinal);

        var scatter = Assert.Throws<ArgumentOutOfRangeException>(
            () => CpuMath.ScatterAddRows(cols, new float[indices.Length * cols], indices, table));
        Assert.Contains(expected, scatter.Message, StringComparison.Ordinal);
        Assert.Equal(before, table); // rejected before the first row was touched
    }

    // ------------------------------------------------------------------ GEMM

    public static TheoryData<int, int, int> GemmShapes => new()
    {
        { 1, 1, 1 },
        { 3, 5, 7 },
        { 6, 16, 1 },
        { 17, 33, 9 },
        { 1, 100, 257 },
        { 100, 1, 33 },
        { 100, 37, 257 },
        { CpuMath.Mc + 7, (2 * CpuMath.Nr) + 3, CpuMath.Kc + 45 }, // crosses the m, k and ragged-n edges
        { 5, CpuMath.Nc + 37, 3 },                                  // crosses the n block
    };

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Gemm_without_transposes_matches_the_reference(int m, int n, int k) =>
        CheckGemm(new Random(m + (7 * n) + (13 * k)), false, false, m, n, k, 1.5f, -0.75f, pad: 3);

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Gemm_with_A_transposed_matches_the_reference(int m, int n, int k) =>
        CheckGemm(new Random(m + (7 * n) + (13 * k) + 1), true, false, m, n, k, -0.5f, 2f, pad: 5);

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Gemm_with_B_transposed_matches_the_reference(int m, int n, int k) =>
        CheckGemm(new Random(m + (7 * n) + (13 * k) + 2), false, true, m, n, k, 0.25f, 1f, pad: 1);

    [Theory]
    [MemberData(nameof(GemmShapes))]
    public void Gemm_with_both_transposes_matches_the_reference(int m, int n, int k) =>
        CheckGemm(new Random(m + (7 * n) + (13 * k) + 3), true, true, m, n, k, 1f, 0.5f, pad: 17);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Gemm_with_beta_zero_overwrites_C_even_where_it_holds_NaN(bool transA, bool transB) =>
        CheckGemm(new Random(transA ? 1 : 2), transA, transB, 37, 29, 50, 1.25f, 0f, pad: 2, nanInC: true);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Gemm_large_enough_to_run_in_parallel_matches_the_reference(bool transA, bool transB)
    {
        const int m = 251, n = 190, k = 300;
        Assert.True((long)m * n * k > CpuMath.ParallelThreshold);
        CheckGemm(new Random(transB ? 3 : 4), transA, transB, m, n, k, 0.5f, -1f, pad: 4);
    }

    [Fact]
    public void Gemm_on_random_small_shapes_and_transposes_matches_the_reference()
    {
        Gen.Select(Gen.Bool, Gen.Bool, Gen.Int[1, 40], Gen.Int[1, 40], Gen.Int[1, 40], Gen.Int[0, 4], Gen.Int)
            .Sample((transA, transB, m, n, k, pad, seed) =>
                CheckGemm(new Random(seed), transA, transB, m, n, k, 0.75f, 0.5f, pad), iter: 200);
    }

    [Fact]
    public void Gemm_with_k_zero_or_alpha_zero_only_scales_C_by_beta()
    {
        float[] c = [1f, 2f, 3f, 4f];
        CpuMath.Gemm(false, false, 2, 2, 0, 1f, [], 0, [], 2, 3f, c, 2);
        Assert.Equal(new[] { 3f, 6f, 9f, 12f }, c);

        float[] nanA = [float.NaN, float.NaN, float.NaN, float.NaN];
        CpuMath.Gemm(false, false, 2, 2, 2, 0f, nanA, 2, nanA, 2, 0.5f, c, 2);
        Assert.Equal(new[] { 1.5f, 3f, 4.5f, 6f }, c);
    }

    [Fact]
    public void Gemm_rejects_short_spans_and_small_leading_dimensions()
    {
        float[] a = new float[12], b = new float[12], c = new float[9];
        Assert.Throws<ArgumentException>(() => CpuMath.Gemm(false, false, 3, 3, 5, 1f, a, 5, b, 3, 0f, c, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuMath.Gemm(false, false, 3, 3, 4, 1f, a, 3, b, 3, 0f, c, 3));
        Assert.Throws<ArgumentException>(() => CpuMath.Gemm(false, false, 3, 3, 4, 1f, a, 4, b, 3, 0f, c, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuMath.Gemm(false, false, -1, 3, 4, 1f, a, 4, b, 3, 0f, c, 3));
    }

    [Theory]
    [InlineData(1000, 2)]
    [InlineData(13, 2)]
    [InlineData(500, 16)]
    public void Parallel_row_blocks_are_whole_register_tiles_no_larger_than_a_cache_block(int m, int workers)
    {
        int block = CpuMath.BalancedRowBlock(m, workers);
        Assert.InRange(block, CpuMath.Mr, CpuMath.Mc);
        Assert.Equal(0, block % CpuMath.Mr);
    }

    // Runs one GEMM against the double reference. A and B padding holds NaN, so reading past a row's
    // valid columns poisons the result; C padding holds a sentinel that must survive untouched.
    private static void CheckGemm(
        Random rng, bool transA, bool transB, int m, int n, int k, float alpha, float beta, int pad, bool nanInC = false)
    {
        int aRows = transA ? k : m, aCols = transA ? m : k, lda = aCols + pad;
        int bRows = transB ? n : k, bCols = transB ? k : n, ldb = bCols + pad;
        int ldc = n + pad;
        float[] a = RandomPadded(rng, aRows, aCols, lda, float.NaN);
        float[] b = RandomPadded(rng, bRows, bCols, ldb, float.NaN);
        float[] c = RandomPadded(rng, m, n, ldc, 12345f);
        if (nanInC)
        {
            for (int i = 0; i < m; i++)
            {
                c.AsSpan(i * ldc, n).Fill(float.NaN);
            }
        }

        double[] expected = Map(i => c[i], c.Length);
        double[] magnitude = new double[c.Length];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0, abs = 0;
                for (int p = 0; p < k; p++)
                {
                    double term = (double)(transA ? a[(p * lda) + i] : a[(i * lda) + p])
                        * (transB ? b[(j * ldb) + p] : b[(p * ldb) + j]);
                    sum += term;
                    abs += Math.Abs(term);
                }
                double old = beta == 0f ? 0 : c[(i * ldc) + j];
                expected[(i * ldc) + j] = (alpha * sum) + (beta * old);
                magnitude[(i * ldc) + j] = (Math.Abs(alpha) * abs) + Math.Abs(beta * old);
            }
        }

        CpuMath.Gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);

        // Float accumulation of k terms errs by at most ~k ulps of the absolute sum (plus alpha and beta).
        AssertClose(expected, c, magnitude, 6e-8 * (k + 4));
    }

    // ------------------------------------------------------------------ helpers

    private static void CheckBinary(int n, Action<float[], float[], float[]> op, Func<double, double, double> reference)
    {
        var rng = new Random(n * 3);
        float[] a = RandomFloats(rng, n), b = RandomFloats(rng, n), c = RandomFloats(rng, n);
        double[] expected = Map(i => reference(a[i], b[i]), n);
        op(a, b, c);
        AssertClose(expected, c, Map(i => Math.Max(Math.Abs(a[i]) + Math.Abs(b[i]), Math.Abs(expected[i])), n), Rel);
    }

    private static double[] ReferenceSoftmax(int rows, int cols, float[] x, out double[] logSumExp)
    {
        var y = new double[rows * cols];
        logSumExp = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int c = 0; c < cols; c++)
            {
                max = Math.Max(max, x[(r * cols) + c]);
            }
            for (int c = 0; c < cols; c++)
            {
                sum += Math.Exp(x[(r * cols) + c] - max);
            }
            for (int c = 0; c < cols; c++)
            {
                y[(r * cols) + c] = Math.Exp(x[(r * cols) + c] - max) / sum;
            }
            logSumExp[r] = max + Math.Log(sum);
        }
        return y;
    }

    private static void AssertClose(double[] expected, ReadOnlySpan<float> actual, double[] magnitude, double rel)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            AssertClose(expected[i], actual[i], magnitude[i], rel, $"element {i}");
        }
    }

    private static void AssertClose(double expected, float actual, double magnitude, double rel, string where)
    {
        // The 1e-30 floor only matters when the magnitude is exactly zero (then the result must be exact too).
        double tolerance = (rel * magnitude) + 1e-30;
        if (!(Math.Abs(expected - actual) <= tolerance))
        {
            Assert.Fail($"{where}: expected {expected:R}, got {actual:R} (tolerance {tolerance:G3})");
        }
    }

    private static float[] RandomFloats(Random rng, int n, float scale = 1f)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = scale * ((2f * rng.NextSingle()) - 1f);
        }
        return x;
    }

    private static float[] RandomPadded(Random rng, int rows, int cols, int ld, float padding)
    {
        var x = new float[Math.Max(rows * ld, 1)];
        Array.Fill(x, padding);
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                x[(r * ld) + c] = (2f * rng.NextSingle()) - 1f;
            }
        }
        return x;
    }

    private static int[] RandomInts(Random rng, int n, int below)
    {
        var x = new int[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = rng.Next(below);
        }
        return x;
    }

    private static float[] WithSomeZeros(Random rng, float[] x)
    {
        for (int i = 0; i < x.Length; i += 1 + rng.Next(5))
        {
            x[i] = i % 2 == 0 ? 0f : -0f;
        }
        return x;
    }

    private static double[] Map(Func<int, double> f, int n)
    {
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            y[i] = f(i);
        }
        return y;
    }

    private static double[] Ones(int n) => Map(_ => 1, n);
}
