using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// The vector code keeps a register that steps by a constant from thread to thread (an index from %tid.x, an address
/// from it) as one scalar, and one the eight share as one scalar: what it computes that way must be what each thread
/// computes alone, where a 32-bit index wraps inside a group, where a store of eight threads goes to one place, where an
/// access past a buffer comes from a consecutive one, and where threads of a group part and meet again.
/// </summary>
public sealed class AffineCodeTests
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n";

    private static PtxLaunch Launch(HostMemory memory, uint grid, uint block)
        => new(grid, 1, 1, block, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    /// <summary>
    /// Index k = base + %tid.x in 32 bits, then widened four ways: out[4t..4t+3] = high words of k × 16 (u32 to u64) and of
    /// k × 16 (s32 to s64), and of k widened by cvt.u64.u32 and cvt.s64.s32 shifted right by 31 and 32.
    /// </summary>
    private const string Wrap = Header + """
        .visible .entry wrap(.param .u64 out, .param .u32 base)
        {
        .reg .b32 %r<12>;
        .reg .b64 %rd<16>;
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r1, [base];
        mov.u32 %r2, %tid.x;
        add.s32 %r3, %r1, %r2;
        mul.wide.u32 %rd2, %r3, 16;
        shr.u64 %rd3, %rd2, 32;
        cvt.u32.u64 %r4, %rd3;
        mul.wide.s32 %rd4, %r3, 16;
        shr.s64 %rd5, %rd4, 32;
        cvt.u32.u64 %r5, %rd5;
        cvt.u64.u32 %rd6, %r3;
        shr.u64 %rd7, %rd6, 31;
        cvt.u32.u64 %r6, %rd7;
        cvt.s64.s32 %rd8, %r3;
        shr.s64 %rd9, %rd8, 32;
        cvt.u32.u64 %r7, %rd9;
        mul.wide.u32 %rd10, %r2, 16;
        add.s64 %rd11, %rd1, %rd10;
        st.global.u32 [%rd11], %r4;
        st.global.u32 [%rd11+4], %r5;
        st.global.u32 [%rd11+8], %r6;
        st.global.u32 [%rd11+12], %r7;
        ret;
        }
        """;

    [Theory]
    [InlineData(0xFFFF_FFFCu)]
    [InlineData(0x7FFF_FFFAu)]
    [InlineData(0xFFFF_FFC0u)]
    [InlineData(12345u)]
    public void An_index_that_wraps_inside_a_group_of_eight_widens_in_each_thread_as_alone(uint start)
    {
        using var memory = new HostMemory();
        const int block = 64;
        var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, block * 4).ToArray());
        var kernel = PtxModuleProgram.Compile(Wrap).Kernels["wrap"];

        kernel.Launch(Launch(memory, 1, block), new Params().Add(pout).Add(start).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var expected = Enumerable.Range(0, block).SelectMany(t =>
        {
            var k = unchecked(start + (uint)t);
            return new[]
            {
                (uint)(((ulong)k * 16) >> 32),
                unchecked((uint)(((long)(int)k * 16) >> 32)),
                (uint)((ulong)k >> 31),
                unchecked((uint)((long)(int)k >> 32)),
            };
        });
        Assert.Equal(expected, memory.Download<uint>(pout, block * 4));
    }

    /// <summary>
    /// Every thread loads the same two words (one load for the eight), stores the first to out[0] (eight threads, one
    /// place), its own id to out[1] (which id stays is not defined, as on a GPU), and in[0] + in[1] × %tid.x to its own word.
    /// </summary>
    private const string Shared = Header + """
        .visible .entry same_place(.param .u64 in, .param .u64 out)
        {
        .reg .b32 %r<12>;
        .reg .b64 %rd<8>;
        ld.param.u64 %rd1, [in];
        ld.param.u64 %rd2, [out];
        cvta.to.global.u64 %rd3, %rd1;
        ld.global.u32 %r1, [%rd3];
        ld.global.u32 %r2, [%rd3+4];
        mov.u32 %r3, %ctaid.x;
        mov.u32 %r4, %ntid.x;
        mov.u32 %r5, %tid.x;
        mad.lo.s32 %r6, %r3, %r4, %r5;
        st.global.u32 [%rd2], %r1;
        st.global.u32 [%rd2+4], %r6;
        mad.lo.s32 %r7, %r2, %r6, %r1;
        mul.wide.u32 %rd4, %r6, 4;
        add.s64 %rd5, %rd2, %rd4;
        st.global.u32 [%rd5+8], %r7;
        ret;
        }
        """;

    [Fact]
    public void Eight_threads_that_share_an_address_load_the_same_word_and_one_of_their_stores_stays()
    {
        using var memory = new HostMemory();
        const int n = 256;
        var pin = memory.Upload(new[] { 1000, 7 });
        var pout = memory.Upload(Enumerable.Repeat(-1, n + 2).ToArray());
        var kernel = PtxModuleProgram.Compile(Shared).Kernels["same_place"];

        kernel.Launch(Launch(memory, 4, 64), new Params().Add(pin).Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        var output = memory.Download<int>(pout, n + 2);
        Assert.Equal(1000, output[0]);
        Assert.InRange(output[1], 0, n - 1);
        Assert.Equal(Enumerable.Range(0, n).Select(t => 1000 + (7 * t)), output.Skip(2));
    }

    /// <summary>out[i] = i for i = %ctaid.x × %ntid.x + %tid.x, through consecutive stores of eight.</summary>
    private const string Iota = Header + """
        .visible .entry iota(.param .u64 out)
        {
        .reg .b32 %r<8>;
        .reg .b64 %rd<4>;
        ld.param.u64 %rd1, [out];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        mul.wide.u32 %rd2, %r4, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r4;
        ret;
        }
        """;

    [Theory]
    [InlineData(45, 1u, 48u, "thread (45,0,0) of block (0,0,0)")]
    [InlineData(100, 2u, 64u, "thread (36,0,0) of block (1,0,0)")]
    public void A_consecutive_store_past_a_buffer_faults_naming_the_first_thread_past_it(int words, uint grid, uint block, string thread)
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(new int[words]);
        var kernel = PtxModuleProgram.Compile(Iota).Kernels["iota"];

        var fault = Assert.Throws<PtxFault>(() => kernel.Launch(Launch(memory, grid, block) with { Parallelism = 1 }, new Params().Add(pout).ToArray(), []));

        Assert.True(kernel.Vectorised);
        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.Contains($"kernel iota, {thread}, line ", fault.Message, StringComparison.Ordinal);
        Assert.Contains("st.global.u32", fault.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Consecutive_stores_that_fit_write_every_word_once()
    {
        using var memory = new HostMemory();
        const int n = 4096;
        var pout = memory.Upload(Enumerable.Repeat(-1, n).ToArray());
        var kernel = PtxModuleProgram.Compile(Iota).Kernels["iota"];

        kernel.Launch(Launch(memory, n / 128, 128), new Params().Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        Assert.Equal(Enumerable.Range(0, n), memory.Download<int>(pout, n));
    }

    /// <summary>out[i] = in[i] + in[i + 64]: two consecutive loads through one base, whose checks are made as one.</summary>
    private const string Pair = Header + """
        .visible .entry pair(.param .u64 in, .param .u64 out)
        {
        .reg .b32 %r<8>;
        .reg .b64 %rd<8>;
        ld.param.u64 %rd1, [in];
        ld.param.u64 %rd2, [out];
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        mul.wide.u32 %rd3, %r4, 4;
        add.s64 %rd4, %rd1, %rd3;
        ld.global.u32 %r5, [%rd4];
        ld.global.u32 %r6, [%rd4+256];
        add.s32 %r7, %r5, %r6;
        add.s64 %rd5, %rd2, %rd3;
        st.global.u32 [%rd5], %r7;
        ret;
        }
        """;

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Where_one_check_covers_two_loads_the_load_past_the_buffer_faults_and_the_one_before_it_does_not(int missing)
    {
        // in has room for every thread's first load and for all but the last `missing` threads' second: with none
        // missing the launch runs; with one, the last thread faults at the second load (line 17 of the kernel's text).
        using var memory = new HostMemory();
        const int n = 128;
        var input = Enumerable.Range(0, n + 64 - missing).ToArray();
        var pin = memory.Upload(input);
        var pout = memory.Upload(Enumerable.Repeat(-1, n).ToArray());
        var kernel = PtxModuleProgram.Compile(Pair).Kernels["pair"];
        var launch = Launch(memory, 2, 64) with { Parallelism = 1 };
        var parameters = new Params().Add(pin).Add(pout).ToArray();

        if (missing == 0)
        {
            kernel.Launch(launch, parameters, []);
            Assert.True(kernel.Vectorised);
            Assert.Equal(Enumerable.Range(0, n).Select(i => i + i + 64), memory.Download<int>(pout, n));
            return;
        }

        var fault = Assert.Throws<PtxFault>(() => kernel.Launch(launch, parameters, []));

        Assert.True(kernel.Vectorised);
        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.Contains("kernel pair, thread (63,0,0) of block (1,0,0), line 17 ", fault.Message, StringComparison.Ordinal);
        Assert.Contains("ld.global.u32 %r6, [%rd4+256]", fault.Message, StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(0, 120).Select(i => i + i + 64), memory.Download<int>(pout, 120));
    }

    /// <summary>
    /// Thread t writes t × 10 + r to shared word 2t (even t, r = 0) or 2t + 1 (odd t, r from a loop of its own length),
    /// through a register that steps by 8 on each path but not across them; after a barrier it reads both of its words and
    /// stores their sum plus its slot's byte offset at out[t], through an address computed before the paths parted.
    /// </summary>
    private const string Rejoin = Header + """
        .visible .entry rejoin(.param .u64 out)
        {
        .reg .pred %p<3>;
        .reg .b32 %r<16>;
        .reg .b64 %rd<4>;
        .shared .align 4 .b8 slots[512];
        ld.param.u64 %rd1, [out];
        mov.u32 %r1, %tid.x;
        mul.wide.u32 %rd2, %r1, 4;
        add.s64 %rd3, %rd1, %rd2;
        mov.u32 %r10, slots;
        shl.b32 %r2, %r1, 3;
        add.s32 %r5, %r10, %r2;
        mov.u32 %r11, 0;
        st.shared.u32 [%r5], %r11;
        st.shared.u32 [%r5+4], %r11;
        mov.u32 %r6, 0;
        and.b32 %r3, %r1, 1;
        setp.eq.u32 %p1, %r3, 1;
        bar.sync 0;
        @!%p1 bra $WRITE;
        add.s32 %r5, %r5, 4;
        $LOOP:
        add.s32 %r6, %r6, 3;
        setp.lt.u32 %p2, %r6, %r1;
        @%p2 bra $LOOP;
        $WRITE:
        mad.lo.s32 %r7, %r1, 10, %r6;
        st.shared.u32 [%r5], %r7;
        bar.sync 0;
        add.s32 %r12, %r10, %r2;
        ld.shared.u32 %r8, [%r12];
        ld.shared.u32 %r9, [%r12+4];
        add.s32 %r13, %r8, %r9;
        sub.s32 %r14, %r5, %r10;
        add.s32 %r13, %r13, %r14;
        st.global.u32 [%rd3], %r13;
        ret;
        }
        """;

    [Theory]
    [InlineData(64u)]
    [InlineData(16u)]
    public void Threads_that_part_and_meet_at_a_barrier_keep_addresses_from_before_and_their_own_from_each_path(uint block)
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(-1, (int)block * 3).ToArray());
        var kernel = PtxModuleProgram.Compile(Rejoin).Kernels["rejoin"];

        kernel.Launch(Launch(memory, 3, block), new Params().Add(pout).ToArray(), []);

        Assert.True(kernel.Vectorised);
        static int Expected(int t)
        {
            var r = t % 2 == 1 ? 3 * Math.Max(1, (t + 2) / 3) : 0;
            return (t * 10) + r + (8 * t) + (t % 2 == 1 ? 4 : 0);
        }

        Assert.Equal(Enumerable.Range(0, (int)block).Select(Expected), memory.Download<int>(pout, (int)block));
    }

    /// <summary>
    /// Thread i: a float4 from in[i] (through shared memory, as a v4 store and a v4 load), the pair (scale, bias) loaded
    /// as one v2 by all eight from the same place, out[i] = in[i] × scale + bias as a v4 store; `shift` words past the
    /// start of in (a multiple of 4 keeps the vectors aligned).
    /// </summary>
    private const string Float4 = Header + """
        .visible .entry float4(.param .u64 in, .param .u64 coefficients, .param .u64 out, .param .u32 shift)
        {
        .reg .b32 %r<9>;
        .reg .f32 %f<16>;
        .reg .b64 %rd<12>;
        .shared .align 16 .b8 staging[1024];
        ld.param.u64 %rd1, [in];
        ld.param.u64 %rd2, [coefficients];
        ld.param.u64 %rd3, [out];
        ld.param.u32 %r7, [shift];
        mul.wide.u32 %rd9, %r7, 4;
        add.s64 %rd1, %rd1, %rd9;
        mov.u32 %r1, %ctaid.x;
        mov.u32 %r2, %ntid.x;
        mov.u32 %r3, %tid.x;
        mad.lo.s32 %r4, %r1, %r2, %r3;
        mul.wide.u32 %rd4, %r4, 16;
        add.s64 %rd5, %rd1, %rd4;
        ld.global.v4.f32 {%f1, %f2, %f3, %f4}, [%rd5];
        mov.u32 %r5, staging;
        shl.b32 %r6, %r3, 4;
        add.s32 %r8, %r5, %r6;
        st.shared.v4.f32 [%r8], {%f1, %f2, %f3, %f4};
        ld.shared.v4.f32 {%f5, %f6, %f7, %f8}, [%r8];
        ld.global.nc.v2.f32 {%f9, %f10}, [%rd2];
        fma.rn.f32 %f11, %f5, %f9, %f10;
        fma.rn.f32 %f12, %f6, %f9, %f10;
        fma.rn.f32 %f13, %f7, %f9, %f10;
        fma.rn.f32 %f14, %f8, %f9, %f10;
        add.s64 %rd6, %rd3, %rd4;
        st.global.v4.f32 [%rd6], {%f11, %f12, %f13, %f14};
        ret;
        }
        """;

    [Fact]
    public void Vector_loads_and_stores_of_consecutive_float4s_and_a_shared_pair_compute_what_the_host_does()
    {
        using var memory = new HostMemory();
        const int n = 128;
        var input = Enumerable.Range(0, 4 * n).Select(k => (k * 0.25f) - 7f).ToArray();
        var pin = memory.Upload(input);
        var pout = memory.Upload(Enumerable.Repeat(-1f, 4 * n).ToArray());
        var kernel = PtxModuleProgram.Compile(Float4).Kernels["float4"];

        kernel.Launch(Launch(memory, 2, 64), new Params().Add(pin).Add(memory.Upload(new[] { 3f, 0.5f })).Add(pout).Add(0u).ToArray(), []);

        Assert.True(kernel.Vectorised);
        Assert.Equal(input.Select(v => MathF.FusedMultiplyAdd(v, 3f, 0.5f)), memory.Download<float>(pout, 4 * n));
    }

    [Fact]
    public void A_vector_load_that_is_not_aligned_to_its_size_faults_in_the_first_thread_as_the_scalar_code_says()
    {
        using var memory = new HostMemory();
        const int n = 64;
        var pin = memory.Upload(new float[(4 * n) + 4]);
        var pout = memory.Upload(new float[4 * n]);
        var kernel = PtxModuleProgram.Compile(Float4).Kernels["float4"];

        // One word past the start: every thread's float4 is 4 bytes off its 16-byte alignment.
        var fault = Assert.Throws<PtxFault>(() => kernel.Launch(Launch(memory, 1, 64) with { Parallelism = 1 }, new Params().Add(pin).Add(memory.Upload(new[] { 1f, 0f })).Add(pout).Add(1u).ToArray(), []));

        Assert.True(kernel.Vectorised);
        Assert.Contains("kernel float4, thread (0,0,0) of block (0,0,0)", fault.Message, StringComparison.Ordinal);
        Assert.Contains("ld.global.v4.f32", fault.Message, StringComparison.Ordinal);
    }

    private static IReadOnlyList<PtxStatement> Body(string ptx) => PtxParser.Parse(ptx).Functions.Single().Body!;

    [Fact]
    public void The_analysis_finds_strides_through_ring_operations_and_loses_them_elsewhere()
    {
        var shapes = ShapeAnalysis.Analyze(Body(Wrap));

        Assert.Equal(Shape.Uniform, shapes["%rd1"]);
        Assert.Equal(Shape.Uniform, shapes["%r1"]);
        Assert.Equal(Shape.Affine(1), shapes["%r3"]);
        Assert.Equal(Shape.Affine(16), shapes["%rd2"]);
        Assert.Equal(Shape.Varying, shapes["%rd3"]);
        Assert.Equal(Shape.Affine(1), shapes["%rd6"]);
        Assert.Equal(Shape.Affine(16), shapes["%rd10"]);
        Assert.Equal(Shape.Affine(16), shapes["%rd11"]);
    }

    [Fact]
    public void Shapes_hold_while_the_eight_run_together_and_the_regroup_checks_them_where_they_parted()
    {
        // %r5 steps by 8 on both paths and %r6 counts alike in all threads that run the loop as a group: so they are in
        // the vector code, which the eight leave at the branches; where they meet at the barrier their values are
        // checked before they run as a group again (the test above runs this kernel).
        var shapes = ShapeAnalysis.Analyze(Body(Rejoin));

        Assert.Equal(Shape.Affine(8), shapes["%r2"]);
        Assert.Equal(Shape.Affine(8), shapes["%r5"]);
        Assert.Equal(Shape.Affine(4), shapes["%rd3"]);
        Assert.Equal(Shape.Uniform, shapes["%r6"]);
        Assert.Equal(Shape.Affine(10), shapes["%r7"]);
        Assert.Equal(Shape.Varying, shapes["%r8"]);
        Assert.Equal(Shape.Uniform, shapes["%r10"]);
        Assert.Equal(Shape.Uniform, shapes["%r11"]);
    }

    [Fact]
    public void Thirty_two_bit_strides_wrap_as_the_register_does()
    {
        var shapes = ShapeAnalysis.Analyze(Body(Header + """
            .visible .entry k()
            {
            .reg .b32 %r<4>;
            .reg .f32 %f<2>;
            mov.u32 %r1, %tid.x;
            shl.b32 %r2, %r1, 31;
            shl.b32 %r3, %r2, 1;
            cvt.rn.f32.u32 %f1, %r1;
            ret;
            }
            """));

        Assert.Equal(Shape.Affine(int.MinValue), shapes["%r2"]);
        Assert.Equal(Shape.Uniform with { Stride = 0 }, shapes["%r3"] with { Varies = false });
        Assert.Equal(Shape.Varying, shapes["%f1"]);
    }
}
