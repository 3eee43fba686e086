using System.Text;
using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// CUDA C kernels that nvcc compiles to PTX during the run, executed by the engine over host memory and checked against
/// the same computation on the host, outputs poisoned first.
/// </summary>
public sealed class EngineKernelTests(Nvcc nvcc) : IClassFixture<Nvcc>
{
    private PtxModuleProgram Module(string arch = "sm_70")
        => PtxModuleProgram.Compile(Encoding.UTF8.GetString(nvcc.Build($"engine_kernels_{arch}.ptx", "engine_kernels.cu", "-ptx", $"-arch={arch}")));

    private static PtxLaunch Launch(HostMemory memory, uint grid, uint block, int parallelism = 2)
        => new(grid, 1, 1, block, 1, 1, 0, memory) { Parallelism = parallelism, Deadline = TimeSpan.FromSeconds(60) };

    [Theory]
    [InlineData("sm_52")]
    [InlineData("sm_70")]
    [InlineData("sm_80")]
    public void Vector_add_of_nvccs_PTX_adds_every_element_and_writes_nothing_past_n(string arch)
    {
        using var memory = new HostMemory();
        const int n = 1000;
        var a = Enumerable.Range(0, n).Select(i => i * 0.5f).ToArray();
        var b = Enumerable.Range(0, n).Select(i => 1000f - i).ToArray();
        var (pa, pb) = (memory.Upload(a), memory.Upload(b));
        var pc = memory.Upload(Enumerable.Repeat(-7f, n + 24).ToArray());

        Module(arch).Kernels["vector_add"].Launch(Launch(memory, 4, 256), new Params().Add(pa).Add(pb).Add(pc).Add(n).ToArray(), []);

        var c = memory.Download<float>(pc, n + 24);
        Assert.Equal(Enumerable.Range(0, n).Select(i => a[i] + b[i]), c.Take(n));
        Assert.All(c.Skip(n), v => Assert.Equal(-7f, v));
    }

    [Fact]
    public void Block_sum_with_shared_memory_barriers_and_warp_shuffles_sums_every_block()
    {
        using var memory = new HostMemory();
        var input = Enumerable.Range(0, 5000).Select(i => (i * 7919) % 1000 - 500).ToArray();
        var pin = memory.Upload(input);
        var pout = memory.Upload(new[] { 0 });

        Module().Kernels["block_sum"].Launch(Launch(memory, 20, 256), new Params().Add(pin).Add(pout).Add(input.Length).ToArray(), []);

        Assert.Equal(input.Sum(), memory.Download<int>(pout, 1)[0]);
    }

    [Fact]
    public void Histogram_with_shared_and_global_atomics_counts_every_byte_across_parallel_blocks()
    {
        using var memory = new HostMemory();
        var data = new byte[20000];
        new Random(5).NextBytes(data);
        var pdata = memory.Upload(data);
        var pbins = memory.Upload(new uint[16]);

        Module().Kernels["histogram"].Launch(Launch(memory, 8, 128), new Params().Add(pdata).Add(pbins).Add(data.Length).ToArray(), []);

        var expected = new uint[16];
        foreach (var d in data)
        {
            expected[d & 15]++;
        }

        Assert.Equal(expected, memory.Download<uint>(pbins, 16));
    }

    [Fact]
    public void Integer_and_float_instructions_match_the_host()
    {
        using var memory = new HostMemory();
        var input = Enumerable.Range(0, 32).Select(i => (i * 37 % 29) - 14).ToArray();
        var pin = memory.Upload(input);
        var (pf, pi) = (memory.Upload(Enumerable.Repeat(float.NaN, 32).ToArray()), memory.Upload(Enumerable.Repeat(-1, 32).ToArray()));

        Module().Kernels["mixed"].Launch(Launch(memory, 1, 32), new Params().Add(pin).Add(pf).Add(pi).ToArray(), []);

        var positives = input.Count(v => v > 0);
        Assert.Equal(input.Select(v => MathF.Sqrt(Math.Abs(v)) + (v / 3.0f)), memory.Download<float>(pf, 32));
        Assert.Equal(input.Select(v => (v / 7) + (v % 5 * 100) + (Math.Max(v, 3) * 10000) + (positives * 1000000) + Math.Min(v, -2)), memory.Download<int>(pi, 32));
    }

    [Fact]
    public void A_write_past_the_buffer_fails_the_launch_naming_the_kernel_the_thread_the_line_and_the_address()
    {
        using var memory = new HostMemory();
        const int n = 100;
        var pout = memory.Allocate(n * sizeof(int));

        var fault = Assert.Throws<PtxFault>(() => Module().Kernels["write_past"].Launch(Launch(memory, 1, 128), new Params().Add(pout).Add(n).ToArray(), []));

        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.Contains("kernel write_past, thread (100,0,0) of block (0,0,0), line ", fault.Message, StringComparison.Ordinal);
        Assert.Contains("st.global.u32", fault.Message, StringComparison.Ordinal);
        Assert.Contains($"4-byte global access at 0x{pout + (n * 4):x} is outside every allocation of the lease", fault.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Registers_live_across_barriers_keep_their_values_through_loops_and_guarded_writes()
    {
        // %r2 is written before the loop, conditionally rewritten (a guarded write keeps the old value live) and updated
        // between barriers; the threads hand over only the registers live at each barrier, so a wrong analysis loses it.
        const string ptx = """
            .version 7.0
            .target sm_70
            .address_size 64
            .visible .entry live(.param .u64 out)
            {
            .reg .pred %p<3>;
            .reg .b32 %r<6>;
            .reg .b64 %rd<4>;
            ld.param.u64 %rd1, [out];
            mov.u32 %r1, %tid.x;
            mov.u32 %r2, 100;
            mov.u32 %r3, 0;
            and.b32 %r4, %r1, 1;
            setp.eq.u32 %p1, %r4, 1;
            @%p1 mov.u32 %r2, 200;
            $LOOP:
            bar.sync 0;
            add.u32 %r3, %r3, 1;
            @%p1 mov.u32 %r2, %r3;
            mov.u32 %r5, %r3;
            bar.sync 0;
            setp.lt.u32 %p2, %r5, 4;
            @%p2 bra $LOOP;
            mul.wide.u32 %rd2, %r1, 4;
            add.s64 %rd3, %rd1, %rd2;
            st.global.u32 [%rd3], %r2;
            ret;
            }
            """;
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(-1, 64).ToArray());

        PtxModuleProgram.Compile(ptx).Kernels["live"].Launch(Launch(memory, 1, 64), new Params().Add(pout).ToArray(), []);

        Assert.Equal(Enumerable.Range(0, 64).Select(t => t % 2 == 1 ? 4 : 100), memory.Download<int>(pout, 64));
    }

    [Fact]
    public void A_launch_asking_more_shared_memory_than_the_device_has_is_refused_naming_both()
    {
        using var memory = new HostMemory();
        var kernel = PtxModuleProgram.Compile(".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry shared(.param .u64 p)\n{\nret;\n}\n").Kernels["shared"];
        var launch = new PtxLaunch(1, 1, 1, 32, 1, 1, 64 * 1024, memory) { SharedLimit = 48 * 1024 };

        var error = Assert.Throws<ArgumentException>(() => kernel.Launch(launch, new byte[8], []));

        Assert.Contains("65536 dynamic", error.Message, StringComparison.Ordinal);
        Assert.Contains("over the device's 49152 bytes per block", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Named_barriers_with_thread_counts_and_bar_arrive_let_warps_produce_and_consume_and_halves_sync_apart()
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(-1, 192).ToArray());

        Module().Kernels["named_barriers"].Launch(Launch(memory, 3, 128), new Params().Add(pout).ToArray(), []);

        var expected = Enumerable.Range(0, 64).Select(t => ((t * t) + 1) * 2)
            .Concat(Enumerable.Range(0, 64).Select(t => (63 - t) * 3))
            .Concat(Enumerable.Range(64, 64).Select(t => (64 + (127 - t)) * 3));
        Assert.Equal(expected, memory.Download<int>(pout, 192));
    }

    [Fact]
    public void Byte_dot_products_dp4a_and_dp2a_sum_as_the_host_does()
    {
        using var memory = new HostMemory();
        const int n = 500;
        var random = new Random(61);
        int[] Values() => Enumerable.Range(0, n).Select(k => k < 8 ? new[] { int.MinValue, int.MaxValue, -1, unchecked((int)0x80808080), 0x7F7F7F7F, 0, 1, 0x01FF80FF }[k] : random.Next(int.MinValue, int.MaxValue)).ToArray();
        var (a, b, c) = (Values(), Values(), Values());
        var pout = memory.Upload(Enumerable.Repeat(0, n * 4).ToArray());

        Module().Kernels["dot_products"].Launch(Launch(memory, 2, 256), new Params().Add(memory.Upload(a)).Add(memory.Upload(b)).Add(memory.Upload(c)).Add(pout).Add(n).ToArray(), []);

        static int S8(int x, int k) => (sbyte)(x >> (8 * k));
        static int U8(int x, int k) => (byte)(x >> (8 * k));
        var expected = Enumerable.Range(0, n).SelectMany(i => new[]
        {
            unchecked(c[i] + Enumerable.Range(0, 4).Sum(k => S8(a[i], k) * S8(b[i], k))),
            unchecked(c[i] + Enumerable.Range(0, 4).Sum(k => U8(a[i], k) * U8(b[i], k))),
            unchecked(c[i] + ((short)a[i] * S8(b[i], 0)) + ((short)(a[i] >> 16) * S8(b[i], 1))),
            unchecked(c[i] + ((short)a[i] * S8(b[i], 2)) + ((short)(a[i] >> 16) * S8(b[i], 3))),
        });
        Assert.Equal(expected, memory.Download<int>(pout, n * 4));
    }

    [Fact]
    public void A_kernel_that_never_ends_is_stopped_at_its_deadline()
    {
        using var memory = new HostMemory();
        var flag = memory.Upload(new[] { 0 });
        var launch = Launch(memory, 2, 32) with { Deadline = TimeSpan.FromMilliseconds(300) };

        var fault = Assert.Throws<PtxFault>(() => Module().Kernels["spin"].Launch(launch, new Params().Add(flag).ToArray(), []));

        Assert.Equal(PtxFaultKind.Timeout, fault.Kind);
    }

    [Fact]
    public void Threads_waiting_at_a_barrier_and_a_shuffle_that_need_each_other_end_the_launch_as_a_deadlock()
    {
        using var memory = new HostMemory();
        var pout = memory.Allocate(32 * sizeof(int));

        var fault = Assert.Throws<PtxFault>(() => Module().Kernels["split_barrier"].Launch(Launch(memory, 1, 32), new Params().Add(pout).ToArray(), []));

        Assert.Equal(PtxFaultKind.Deadlock, fault.Kind);
        Assert.Contains("16 at line", fault.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_module_with_an_instruction_the_engine_does_not_run_is_refused_at_load_naming_it_the_kernel_and_the_line()
    {
        const string ptx = ".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry k(.param .u64 p)\n{\n.reg .b32 %r<3>;\nmov.u32 %r1, 1;\nsuspend.unknown.b32 %r2, %r1;\nret;\n}\n";

        var error = Assert.Throws<PtxNotSupportedException>(() => PtxModuleProgram.Compile(ptx).CompileAll());

        Assert.Equal("kernel k, line 8: the cpu backend's PTX engine does not run the instruction suspend (`suspend.unknown.b32 %r2, %r1`)", error.Message);
    }
}
