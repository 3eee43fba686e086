using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// The vector code, which runs eight threads of a block at once: threads that diverge go on alone and give the same
/// results, groups meet again as vectors after a barrier, accesses that are not consecutive go thread by thread, a
/// fault names the thread that made it, and a block that is not a multiple of eight runs on the scalar code.
/// </summary>
public sealed class VectorCodeTests
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n";

    private static PtxLaunch Launch(HostMemory memory, uint grid, uint block)
        => new(grid, 1, 1, block, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    /// <summary>
    /// out[i] = i * 3 computed by the eight together; then threads with an odd id add 1000 after a branch the others
    /// skip, and a guarded add only multiples of three make; then all store. Stride and offset come as parameters, so the
    /// accesses are consecutive (stride 1) or not (stride 3).
    /// </summary>
    private const string Diverge = Header + """
        .visible .entry diverge(.param .u64 out, .param .u32 stride, .param .u32 n)
        {
        .reg .pred %p<4>;
        .reg .b32 %r<12>;
        .reg .b64 %rd<5>;
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r9, [stride];
        ld.param.u32 %r10, [n];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        setp.ge.u32 %p3, %r4, %r10;
        @%p3 bra $DONE;
        mul.lo.s32 %r5, %r4, 3;
        and.b32 %r6, %r4, 1;
        setp.eq.u32 %p1, %r6, 1;
        @!%p1 bra $EVEN;
        add.s32 %r5, %r5, 1000;
        $EVEN:
        rem.u32 %r7, %r4, 3;
        setp.eq.u32 %p2, %r7, 0;
        @%p2 add.s32 %r5, %r5, 7;
        mul.lo.s32 %r8, %r4, %r9;
        mul.wide.u32 %rd2, %r8, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r5;
        $DONE:
        ret;
        }
        """;

    private static int Expected(int i) => (i * 3) + (i % 2 == 1 ? 1000 : 0) + (i % 3 == 0 ? 7 : 0);

    [Theory]
    [InlineData(1u, 64u)]
    [InlineData(3u, 64u)]
    [InlineData(1u, 12u)]
    public void Threads_that_diverge_go_on_alone_and_compute_what_the_scalar_code_does(uint stride, uint block)
    {
        using var memory = new HostMemory();
        const int n = 1000;
        var pout = memory.Upload(Enumerable.Repeat(-1, (int)(n * stride)).ToArray());
        var kernel = PtxModuleProgram.Compile(Diverge).Kernels["diverge"];

        kernel.Launch(Launch(memory, (n + block - 1) / block, block), new Params().Add(pout).Add(stride).Add((uint)n).ToArray(), []);

        Assert.False(kernel.Vectorised, "rem is not vectorised: this kernel checks the scalar code, which the vector code must match");
        var output = memory.Download<int>(pout, (int)(n * stride));
        Assert.Equal(Enumerable.Range(0, n).Select(Expected), Enumerable.Range(0, n).Select(i => output[i * stride]));
    }

    /// <summary>
    /// What every group of a block computes alike — the parameters, the block's id times a parameter, the output's
    /// global address even where it comes after a loop — the vector code computes once a block; a register with more
    /// than one writer (the loop's sum and counter) and one that reads %tid are computed by each group. Thread 17 of
    /// each block adds a million under a guard, so its group diverges and the group after it enters the code afresh.
    /// </summary>
    private const string BlockInvariant = Header + """
        .visible .entry invariant(.param .u64 out, .param .u32 scale, .param .u32 rounds)
        {
        .reg .pred %p<3>;
        .reg .b32 %r<12>;
        .reg .b64 %rd<5>;
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r1, [scale];
        ld.param.u32 %r2, [rounds];
        mov.u32 %r3, %ctaid.x;
        mov.u32 %r4, %ntid.x;
        mul.lo.s32 %r5, %r3, %r1;
        mov.u32 %r6, %tid.x;
        mad.lo.s32 %r7, %r3, %r4, %r6;
        mov.u32 %r8, 0;
        mov.u32 %r9, 0;
        $LOOP:
        add.s32 %r8, %r8, %r5;
        add.s32 %r9, %r9, 1;
        setp.lt.u32 %p1, %r9, %r2;
        @%p1 bra $LOOP;
        setp.eq.u32 %p2, %r6, 17;
        @%p2 add.s32 %r8, %r8, 1000000;
        add.s32 %r8, %r8, %r7;
        cvta.to.global.u64 %rd2, %rd1;
        mul.wide.u32 %rd3, %r7, 4;
        add.s64 %rd4, %rd2, %rd3;
        st.global.u32 [%rd4], %r8;
        ret;
        }
        """;

    [Theory]
    [InlineData(64u, 3u)]
    [InlineData(256u, 1u)]
    [InlineData(8u, 5u)]
    public void What_a_block_computes_alike_is_computed_once_and_every_group_still_gets_its_own_values(uint block, uint rounds)
    {
        using var memory = new HostMemory();
        const uint grid = 7;
        const int scale = 11;
        var n = (int)(grid * block);
        var pout = memory.Upload(Enumerable.Repeat(-1, n).ToArray());
        var kernel = PtxModuleProgram.Compile(BlockInvariant).Kernels["invariant"];

        kernel.Launch(Launch(memory, grid, block), new Params().Add(pout).Add(scale).Add(rounds).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var expected = Enumerable.Range(0, n).Select(i => ((int)rounds * (i / (int)block) * scale) + (i % (int)block == 17 ? 1_000_000 : 0) + i);
        Assert.Equal(expected, memory.Download<int>(pout, n));
    }

    /// <summary>As <see cref="Diverge"/>, with the guarded add's condition (i % 3 == 0) computed without rem, so the vector code takes it.</summary>
    private static readonly string DivergeVector = Diverge.Replace("rem.u32 %r7, %r4, 3;", "mul.lo.s32 %r11, %r4, -1431655765;\nsetp.lt.u32 %p2, %r11, 1431655766;\nselp.u32 %r7, 0, 1, %p2;", StringComparison.Ordinal);

    [Theory]
    [InlineData(1u, 64u)]
    [InlineData(3u, 64u)]
    [InlineData(1u, 12u)]
    [InlineData(1u, 8u)]
    public void The_vector_code_gives_what_the_scalar_code_gives_where_threads_diverge_and_accesses_are_not_consecutive(uint stride, uint block)
    {
        using var memory = new HostMemory();
        const int n = 1000;
        var pout = memory.Upload(Enumerable.Repeat(-1, (int)(n * stride)).ToArray());
        var kernel = PtxModuleProgram.Compile(DivergeVector).Kernels["diverge"];

        kernel.Launch(Launch(memory, (n + block - 1) / block, block), new Params().Add(pout).Add(stride).Add((uint)n).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var output = memory.Download<int>(pout, (int)(n * stride));
        Assert.Equal(Enumerable.Range(0, n).Select(Expected), Enumerable.Range(0, n).Select(i => output[i * stride]));
        Assert.All(Enumerable.Range(0, (int)(n * stride)).Where(k => k % stride != 0), k => Assert.Equal(-1, output[k]));
    }

    /// <summary>
    /// Each round: every thread writes its value to shared memory, barrier, reads its neighbour's (a rotation), barrier.
    /// Threads of odd id add the round number under a guard first, so each group diverges every round and meets again
    /// at the barriers.
    /// </summary>
    private const string Rotate = Header + """
        .visible .entry rotate(.param .u64 out, .param .u32 rounds)
        {
        .reg .pred %p<3>;
        .reg .b32 %r<12>;
        .reg .b64 %rd<4>;
        .shared .align 4 .b8 ring[1024];
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r9, [rounds];
        mov.u32 %r1, %tid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %r1;
        mov.u32 %r4, 0;
        and.b32 %r5, %r1, 1;
        setp.eq.u32 %p1, %r5, 1;
        mov.u32 %r10, ring;
        shl.b32 %r6, %r1, 2;
        add.s32 %r6, %r10, %r6;
        $ROUND:
        @%p1 add.s32 %r3, %r3, %r4;
        st.shared.u32 [%r6], %r3;
        bar.sync 0;
        add.s32 %r7, %r1, 1;
        setp.ge.u32 %p2, %r7, %r2;
        @%p2 sub.s32 %r7, %r7, %r2;
        shl.b32 %r8, %r7, 2;
        add.s32 %r8, %r10, %r8;
        ld.shared.u32 %r3, [%r8];
        bar.sync 0;
        add.s32 %r4, %r4, 1;
        setp.lt.u32 %p2, %r4, %r9;
        @%p2 bra $ROUND;
        mul.wide.u32 %rd2, %r1, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r3;
        ret;
        }
        """;

    [Theory]
    [InlineData(64u)]
    [InlineData(40u)]
    [InlineData(36u)]
    public void Groups_that_diverged_meet_again_at_barriers_and_the_block_computes_what_the_host_does(uint block)
    {
        using var memory = new HostMemory();
        const int rounds = 9;
        var pout = memory.Upload(Enumerable.Repeat(-1, (int)block).ToArray());
        var kernel = PtxModuleProgram.Compile(Rotate).Kernels["rotate"];

        kernel.Launch(Launch(memory, 3, block), new Params().Add(pout).Add((uint)rounds).ToArray(), []);

        var values = Enumerable.Range(0, (int)block).ToArray();
        for (var round = 0; round < rounds; round++)
        {
            var written = values.Select((v, t) => t % 2 == 1 ? v + round : v).ToArray();
            values = Enumerable.Range(0, (int)block).Select(t => written[(t + 1) % (int)block]).ToArray();
        }

        Assert.True(kernel.Vectorised);
        Assert.Equal(values, memory.Download<int>(pout, (int)block));
    }

    /// <summary>
    /// %r5 is written only with constants, so the vector code takes it as the same in all eight threads; but even and odd
    /// threads write different constants on the two sides of a divergent branch, then meet at a barrier and load
    /// through it. Each must load through its own value.
    /// </summary>
    private const string Paths = Header + """
        .visible .entry paths(.param .u64 out)
        {
        .reg .pred %p<3>;
        .reg .b32 %r<8>;
        .reg .b64 %rd<4>;
        .shared .align 4 .b8 table[8];
        ld.param.u64 %rd1, [out];
        mov.u32 %r1, %tid.x;
        and.b32 %r2, %r1, 1;
        setp.eq.u32 %p1, %r2, 1;
        @%p1 bra $ODD;
        mov.u32 %r5, table;
        bra $JOIN;
        $ODD:
        mov.u32 %r5, table;
        add.u32 %r5, %r5, 4;
        $JOIN:
        setp.lt.u32 %p2, %r1, 2;
        mad.lo.s32 %r3, %r1, 111, 111;
        @%p2 st.shared.u32 [%r5], %r3;
        bar.sync 0;
        ld.shared.u32 %r6, [%r5];
        mul.wide.u32 %rd2, %r1, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r6;
        ret;
        }
        """;

    [Fact]
    public void Threads_that_meet_at_a_barrier_after_writing_a_register_on_different_paths_keep_their_own_values()
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(-1, 64).ToArray());
        var kernel = PtxModuleProgram.Compile(Paths).Kernels["paths"];

        kernel.Launch(Launch(memory, 2, 64), new Params().Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        Assert.Equal(Enumerable.Range(0, 64).Select(t => t % 2 == 0 ? 111 : 222), memory.Download<int>(pout, 64));
    }

    /// <summary>out[i] = 2i, except that thread `odd` stores -1: one group of the launch diverges, the rest do not.</summary>
    private const string OneOdd = Header + """
        .visible .entry one_odd(.param .u64 out, .param .u32 odd)
        {
        .reg .pred %p<2>;
        .reg .b32 %r<8>;
        .reg .b64 %rd<4>;
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r7, [odd];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        shl.b32 %r5, %r4, 1;
        setp.eq.u32 %p1, %r4, %r7;
        @%p1 mov.u32 %r5, -1;
        mul.wide.u32 %rd2, %r4, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r5;
        ret;
        }
        """;

    [Theory]
    [InlineData(0u)]
    [InlineData(100u)]
    [InlineData(1023u)]
    public void Groups_before_and_after_one_that_diverges_run_as_vectors_and_every_thread_stores_its_own(uint odd)
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(int.MinValue, 1024).ToArray());
        var kernel = PtxModuleProgram.Compile(OneOdd).Kernels["one_odd"];

        kernel.Launch(Launch(memory, 4, 256), new Params().Add(pout).Add(odd).ToArray(), []);

        Assert.True(kernel.Vectorised);
        Assert.Equal(Enumerable.Range(0, 1024).Select(i => i == odd ? -1 : 2 * i), memory.Download<int>(pout, 1024));
    }

    /// <summary>Each thread: f32 div, sqrt, neg, abs, min, max of a[i], b[i]; s32/u32 min, max, neg, abs and not of x[i], y[i].</summary>
    private const string Ops = Header + """
        .visible .entry ops(.param .u64 a, .param .u64 b, .param .u64 x, .param .u64 y, .param .u64 out)
        {
        .reg .pred %p<3>;
        .reg .f32 %f<12>;
        .reg .b32 %r<16>;
        .reg .b64 %rd<16>;
        ld.param.u64 %rd1, [a];
        ld.param.u64 %rd2, [b];
        ld.param.u64 %rd3, [x];
        ld.param.u64 %rd4, [y];
        ld.param.u64 %rd5, [out];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        mul.wide.u32 %rd6, %r4, 4;
        add.s64 %rd7, %rd1, %rd6;
        ld.global.f32 %f1, [%rd7];
        add.s64 %rd7, %rd2, %rd6;
        ld.global.f32 %f2, [%rd7];
        add.s64 %rd7, %rd3, %rd6;
        ld.global.u32 %r5, [%rd7];
        add.s64 %rd7, %rd4, %rd6;
        ld.global.u32 %r6, [%rd7];
        div.rn.f32 %f3, %f1, %f2;
        sqrt.rn.f32 %f4, %f1;
        neg.f32 %f5, %f1;
        abs.f32 %f6, %f2;
        min.f32 %f7, %f1, %f2;
        max.f32 %f8, %f1, %f2;
        min.s32 %r7, %r5, %r6;
        max.s32 %r8, %r5, %r6;
        min.u32 %r9, %r5, %r6;
        max.u32 %r10, %r5, %r6;
        neg.s32 %r11, %r5;
        abs.s32 %r12, %r6;
        not.b32 %r13, %r5;
        setp.lt.s32 %p1, %r5, %r6;
        not.pred %p2, %p1;
        selp.b32 %r14, 1, 0, %p2;
        mul.wide.u32 %rd8, %r4, 64;
        add.s64 %rd9, %rd5, %rd8;
        st.global.f32 [%rd9], %f3;
        st.global.f32 [%rd9+4], %f4;
        st.global.f32 [%rd9+8], %f5;
        st.global.f32 [%rd9+12], %f6;
        st.global.f32 [%rd9+16], %f7;
        st.global.f32 [%rd9+20], %f8;
        st.global.u32 [%rd9+24], %r7;
        st.global.u32 [%rd9+28], %r8;
        st.global.u32 [%rd9+32], %r9;
        st.global.u32 [%rd9+36], %r10;
        st.global.u32 [%rd9+40], %r11;
        st.global.u32 [%rd9+44], %r12;
        st.global.u32 [%rd9+48], %r13;
        st.global.u32 [%rd9+52], %r14;
        ret;
        }
        """;

    [Fact]
    public void The_vector_code_computes_every_operation_it_takes_bit_for_bit_as_the_scalar_code()
    {
        // The same kernel over the same inputs, once as vectors (blocks of 64) and once on the scalar code alone (blocks
        // of 12, whose x is not a multiple of 8), with NaNs, zeros of both signs, infinities and extreme integers.
        const int n = 768;
        var random = new Random(88);
        var specials = new[] { float.NaN, -float.NaN, 0f, -0f, float.PositiveInfinity, float.NegativeInfinity, float.Epsilon, -1f, 1f, float.MaxValue };
        float F(int i) => i % 5 == 0 ? specials[random.Next(specials.Length)] : (random.NextSingle() - 0.5f) * MathF.Pow(10, random.Next(-5, 6));
        var specialInts = new[] { int.MinValue, int.MaxValue, 0, -1, 1 };
        int I(int i) => i % 4 == 0 ? specialInts[random.Next(specialInts.Length)] : random.Next(int.MinValue, int.MaxValue);
        var (a, b) = (Enumerable.Range(0, n).Select(F).ToArray(), Enumerable.Range(0, n).Select(F).ToArray());
        var (x, y) = (Enumerable.Range(0, n).Select(I).ToArray(), Enumerable.Range(0, n).Select(I).ToArray());

        uint[] Run(uint block)
        {
            using var memory = new HostMemory();
            var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, n * 16).ToArray());
            var kernel = PtxModuleProgram.Compile(Ops).Kernels["ops"];
            kernel.Launch(Launch(memory, (uint)n / block, block), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).ToArray(), []);
            Assert.True(kernel.Vectorised);
            return memory.Download<uint>(pout, n * 16);
        }

        var vector = Run(64);
        var scalar = Run(12);

        for (var k = 0; k < vector.Length; k++)
        {
            Assert.True(vector[k] == scalar[k], $"thread {k / 16}, output {k % 16}: the vector code gives 0x{vector[k]:x8}, the scalar code 0x{scalar[k]:x8} (a = {a[k / 16]}, b = {b[k / 16]}, x = {x[k / 16]}, y = {y[k / 16]})");
        }

        Assert.Equal(x.Zip(y, Math.Min).Select(v => (uint)v), Enumerable.Range(0, n).Select(i => scalar[(i * 16) + 6]));
    }

    /// <summary>
    /// Each thread: a = (x[2i+1] << 32) + x[2i] and b likewise from y, then the six comparisons of a and b as s64 and as
    /// u64 (as 0 or 1), and x[2i] converted to f32 as unsigned.
    /// </summary>
    private const string Wide = Header + """
        .visible .entry wide(.param .u64 x, .param .u64 y, .param .u64 out)
        {
        .reg .pred %p<13>;
        .reg .f32 %f<2>;
        .reg .b32 %r<24>;
        .reg .b64 %rd<16>;
        ld.param.u64 %rd1, [x];
        ld.param.u64 %rd2, [y];
        ld.param.u64 %rd3, [out];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        mul.wide.u32 %rd4, %r4, 8;
        add.s64 %rd5, %rd1, %rd4;
        ld.global.u32 %r5, [%rd5];
        ld.global.u32 %r6, [%rd5+4];
        add.s64 %rd6, %rd2, %rd4;
        ld.global.u32 %r7, [%rd6];
        ld.global.u32 %r8, [%rd6+4];
        cvt.u64.u32 %rd7, %r5;
        cvt.u64.u32 %rd8, %r6;
        shl.b64 %rd8, %rd8, 32;
        add.s64 %rd9, %rd8, %rd7;
        cvt.u64.u32 %rd7, %r7;
        cvt.u64.u32 %rd8, %r8;
        shl.b64 %rd8, %rd8, 32;
        add.s64 %rd10, %rd8, %rd7;
        setp.lt.s64 %p1, %rd9, %rd10;
        setp.le.s64 %p2, %rd9, %rd10;
        setp.gt.s64 %p3, %rd9, %rd10;
        setp.ge.s64 %p4, %rd9, %rd10;
        setp.eq.s64 %p5, %rd9, %rd10;
        setp.ne.s64 %p6, %rd9, %rd10;
        setp.lt.u64 %p7, %rd9, %rd10;
        setp.le.u64 %p8, %rd9, %rd10;
        setp.gt.u64 %p9, %rd9, %rd10;
        setp.ge.u64 %p10, %rd9, %rd10;
        setp.eq.b64 %p11, %rd9, %rd10;
        setp.ne.b64 %p12, %rd9, %rd10;
        cvt.rn.f32.u32 %f1, %r5;
        mul.wide.u32 %rd11, %r4, 52;
        add.s64 %rd12, %rd3, %rd11;
        selp.u32 %r10, 1, 0, %p1;
        st.global.u32 [%rd12], %r10;
        selp.u32 %r11, 1, 0, %p2;
        st.global.u32 [%rd12+4], %r11;
        selp.u32 %r12, 1, 0, %p3;
        st.global.u32 [%rd12+8], %r12;
        selp.u32 %r13, 1, 0, %p4;
        st.global.u32 [%rd12+12], %r13;
        selp.u32 %r14, 1, 0, %p5;
        st.global.u32 [%rd12+16], %r14;
        selp.u32 %r15, 1, 0, %p6;
        st.global.u32 [%rd12+20], %r15;
        selp.u32 %r16, 1, 0, %p7;
        st.global.u32 [%rd12+24], %r16;
        selp.u32 %r17, 1, 0, %p8;
        st.global.u32 [%rd12+28], %r17;
        selp.u32 %r18, 1, 0, %p9;
        st.global.u32 [%rd12+32], %r18;
        selp.u32 %r19, 1, 0, %p10;
        st.global.u32 [%rd12+36], %r19;
        selp.u32 %r20, 1, 0, %p11;
        st.global.u32 [%rd12+40], %r20;
        selp.u32 %r21, 1, 0, %p12;
        st.global.u32 [%rd12+44], %r21;
        st.global.f32 [%rd12+48], %f1;
        ret;
        }
        """;

    [Fact]
    public void Sixty_four_bit_comparisons_and_the_unsigned_conversion_to_f32_give_what_the_host_does()
    {
        const int n = 512;
        var random = new Random(64);
        var specials = new ulong[] { 0UL, 1UL, ulong.MaxValue, 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF, 0x1_0000_0000, 0x8000_0000, 0x8000_0080, 0xFFFF_FF80, 0x0100_0001, 0xFFFF_FFFF_0000_0000 };
        ulong Draw(int i) => i % 3 == 0 ? specials[random.Next(specials.Length)] : (ulong)random.NextInt64() ^ ((ulong)random.Next(2) << 63);
        var x = Enumerable.Range(0, n).Select(Draw).ToArray();
        var y = Enumerable.Range(0, n).Select(i => i % 7 == 0 ? x[i] : Draw(i)).ToArray();
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, n * 13).ToArray());
        var kernel = PtxModuleProgram.Compile(Wide).Kernels["wide"];

        kernel.Launch(Launch(memory, n / 64, 64), new Params().Add(memory.Upload(x)).Add(memory.Upload(y)).Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var output = memory.Download<uint>(pout, n * 13);
        for (var i = 0; i < n; i++)
        {
            var (a, b) = (x[i], y[i]);
            var (sa, sb) = ((long)a, (long)b);
            bool[] expected = [sa < sb, sa <= sb, sa > sb, sa >= sb, a == b, a != b, a < b, a <= b, a > b, a >= b, a == b, a != b];
            Assert.Equal(expected.Select(e => e ? 1u : 0u), output.Skip(i * 13).Take(12));
            Assert.Equal(BitConverter.SingleToUInt32Bits((float)(uint)a), output[(i * 13) + 12]);
        }
    }

    private static readonly (int Position, int Length)[] Fields = [(0, 1), (0, 8), (8, 8), (16, 8), (24, 8), (3, 5), (31, 1), (0, 32), (1, 31), (12, 20), (0, 16), (16, 16)];

    private static readonly string[] NarrowConversions = ["s32.s8", "u32.s8", "s32.u8", "u32.u8", "s32.s16", "u32.s16", "s32.u16", "u32.u16"];

    /// <summary>out[i × outputs + k]: bfe.u32 and bfe.s32 of x[i] for each field, then each conversion from 8 and 16 bits.</summary>
    private static string FieldsKernel()
    {
        var outputs = (2 * Fields.Length) + NarrowConversions.Length;
        var ptx = new System.Text.StringBuilder(Header + $$"""
            .visible .entry fields(.param .u64 x, .param .u64 out)
            {
            .reg .b32 %r<{{outputs + 8}}>;
            .reg .b64 %rd<8>;
            ld.param.u64 %rd1, [x];
            ld.param.u64 %rd2, [out];
            mov.u32 %r1, %ctaid.x;
            mov.u32 %r2, %ntid.x;
            mov.u32 %r3, %tid.x;
            mad.lo.s32 %r4, %r1, %r2, %r3;
            mul.wide.u32 %rd3, %r4, 4;
            add.s64 %rd4, %rd1, %rd3;
            ld.global.u32 %r5, [%rd4];
            mul.wide.u32 %rd5, %r4, {{outputs * 4}};
            add.s64 %rd6, %rd2, %rd5;

            """);
        var k = 0;
        foreach (var signed in new[] { false, true })
        {
            foreach (var (position, length) in Fields)
            {
                ptx.Append(System.Globalization.CultureInfo.InvariantCulture, $"bfe.{(signed ? "s32" : "u32")} %r{k + 8}, %r5, {position}, {length};\nst.global.u32 [%rd6+{k * 4}], %r{k + 8};\n");
                k++;
            }
        }

        foreach (var conversion in NarrowConversions)
        {
            ptx.Append(System.Globalization.CultureInfo.InvariantCulture, $"cvt.{conversion} %r{k + 8}, %r5;\nst.global.u32 [%rd6+{k * 4}], %r{k + 8};\n");
            k++;
        }

        return ptx.Append("ret;\n}\n").ToString();
    }

    [Fact]
    public void Bit_fields_at_constant_places_and_conversions_from_8_and_16_bits_give_what_the_host_does()
    {
        const int n = 256;
        var outputs = (2 * Fields.Length) + NarrowConversions.Length;
        var random = new Random(17);
        var x = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? new[] { 0u, uint.MaxValue, 0x8000_0000u, 0x7FFF_FFFFu, 0x0000_0080u, 0x0000_8000u }[i % 6] : (uint)random.NextInt64(0, 1L << 32)).ToArray();
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, n * outputs).ToArray());
        var kernel = PtxModuleProgram.Compile(FieldsKernel()).Kernels["fields"];

        kernel.Launch(Launch(memory, n / 64, 64), new Params().Add(memory.Upload(x)).Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var output = memory.Download<uint>(pout, n * outputs);
        static uint Field(uint v, int position, int length, bool signed)
        {
            var field = (ulong)v >> position & ((1UL << length) - 1);
            return signed && (field >> (length - 1) & 1) == 1 ? (uint)(field | (ulong.MaxValue << length)) : (uint)field;
        }

        for (var i = 0; i < n; i++)
        {
            var expected = new[] { false, true }.SelectMany(signed => Fields.Select(f => Field(x[i], f.Position, f.Length, signed)))
                .Concat(NarrowConversions.Select(c => Field(x[i], 0, c.EndsWith('8') ? 8 : 16, c[4] == 's')));
            Assert.Equal(expected, output.Skip(i * outputs).Take(outputs));
        }
    }

    [Fact]
    public void A_fault_in_the_vector_code_names_the_thread_that_made_it()
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(new int[45]);
        var kernel = PtxModuleProgram.Compile(DivergeVector).Kernels["diverge"];

        // n = 48 threads, but room for 45: thread 45 of block 0 (the sixth of its group of eight) writes past the end.
        var fault = Assert.Throws<PtxFault>(() => kernel.Launch(Launch(memory, 1, 48), new Params().Add(pout).Add(1u).Add(48u).ToArray(), []));

        Assert.True(kernel.Vectorised);
        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.Contains("kernel diverge, thread (45,0,0) of block (0,0,0), line ", fault.Message, StringComparison.Ordinal);
        Assert.Contains("st.global.u32", fault.Message, StringComparison.Ordinal);
    }
}
