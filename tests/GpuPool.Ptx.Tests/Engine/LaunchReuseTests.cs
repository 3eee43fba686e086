using GpuPool.Ptx.Engine;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// A kernel's next launch runs on the block state its last one left (its arrays, shared and local memory): it must see
/// only its own grid, parameters and memory, and nothing the last launch learned about allocations.
/// </summary>
public sealed class LaunchReuseTests
{
    /// <summary>out[global id] = %nctaid.x * 1000 + v, through consecutive stores (the vector code's, which remember their allocation).</summary>
    private const string Stamp = """
        .version 7.0
        .target sm_70
        .address_size 64
        .visible .entry stamp(.param .u64 out, .param .u32 v)
        {
        .reg .b32 %r<8>;
        .reg .b64 %rd<4>;
        ld.param.u64 %rd1, [out];
        ld.param.u32 %r1, [v];
        mov.u32 %r2, %nctaid.x;
        mad.lo.s32 %r3, %r2, 1000, %r1;
        mov.u32 %r4, %ctaid.x;
        mov.u32 %r5, %ntid.x;
        mov.u32 %r6, %tid.x;
        mad.lo.s32 %r7, %r4, %r5, %r6;
        mul.wide.u32 %rd2, %r7, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r3;
        ret;
        }
        """;

    private static PtxLaunch Launch(HostMemory memory, uint grid, uint block)
        => new(grid, 1, 1, block, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    [Fact]
    public void A_kernel_launched_again_sees_its_own_grid_parameters_and_memory()
    {
        using var memory = new HostMemory();
        var kernel = PtxModuleProgram.Compile(Stamp).Kernels["stamp"];
        var first = memory.Upload(Enumerable.Repeat(-1, 3 * 64).ToArray());
        var second = memory.Upload(Enumerable.Repeat(-1, 5 * 64).ToArray());
        var third = memory.Upload(Enumerable.Repeat(-1, 7 * 32).ToArray());

        kernel.Launch(Launch(memory, 3, 64), new Params().Add(first).Add(5).ToArray(), []);
        kernel.Launch(Launch(memory, 5, 64), new Params().Add(second).Add(7).ToArray(), []);
        kernel.Launch(Launch(memory, 7, 32), new Params().Add(third).Add(9).ToArray(), []);

        Assert.True(kernel.Vectorised);
        Assert.All(memory.Download<int>(first, 3 * 64), v => Assert.Equal(3005, v));
        Assert.All(memory.Download<int>(second, 5 * 64), v => Assert.Equal(5007, v));
        Assert.All(memory.Download<int>(third, 7 * 32), v => Assert.Equal(7009, v));
    }

    [Fact]
    public void An_allocation_freed_between_launches_is_not_reached_through_what_the_last_launch_learned()
    {
        using var memory = new HostMemory();
        var kernel = PtxModuleProgram.Compile(Stamp).Kernels["stamp"];
        var buffer = memory.Upload(Enumerable.Repeat(-1, 4 * 64).ToArray());
        kernel.Launch(Launch(memory, 4, 64), new Params().Add(buffer).Add(1).ToArray(), []);
        memory.Forget(buffer);

        var fault = Assert.Throws<PtxFault>(() => kernel.Launch(Launch(memory, 4, 64), new Params().Add(buffer).Add(2).ToArray(), []));

        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.All(memory.Download<int>(buffer, 4 * 64), v => Assert.Equal(4001, v));
    }

    [Fact]
    public void Launches_of_one_kernel_from_two_threads_in_two_shapes_each_get_a_state_of_their_own_shape()
    {
        // Each launch takes kept states (up to four, of either shape) and leaves its own: every round's output must be
        // its own launch's, whichever states the two threads happened to take. Each thread has its own memory (the test's
        // table is not shared between threads; the broker's is).
        var kernel = PtxModuleProgram.Compile(Stamp).Kernels["stamp"];
        void Rounds(uint grid, uint block, int v)
        {
            using var memory = new HostMemory();
            var n = (int)(grid * block);
            for (var round = 0; round < 40; round++)
            {
                var buffer = memory.Upload(Enumerable.Repeat(-1, n).ToArray());
                kernel.Launch(Launch(memory, grid, block), new Params().Add(buffer).Add(v + round).ToArray(), []);
                Assert.All(memory.Download<int>(buffer, n), x => Assert.Equal(((int)grid * 1000) + v + round, x));
            }
        }

        Parallel.Invoke(() => Rounds(6, 64, 100), () => Rounds(9, 40, 500));

        Assert.True(kernel.Vectorised);
    }
}
