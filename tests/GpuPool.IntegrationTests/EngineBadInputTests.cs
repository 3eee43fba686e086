using System.Text;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// A program's own kernels, run by the cpu backend's PTX engine through a real broker, doing what they must not: each
/// fails with a clear error at the next synchronize, naming the kernel, the thread and the instruction where it can, and
/// the broker goes on serving this lease and every other.
/// </summary>
public sealed class EngineBadInputTests(ShortKernelDeadlinePoolFixture pool) : IClassFixture<ShortKernelDeadlinePoolFixture>
{
    private const string Header = ".version 7.0\n.target sm_70\n.address_size 64\n";

    /// <summary>Thread t stores value at p[index + t].</summary>
    private const string StoreAt = Header + """
        .visible .entry store_at(.param .u64 p, .param .u32 index, .param .u32 value)
        {
        .reg .b32 %r<6>;
        .reg .b64 %rd<4>;
        ld.param.u64 %rd1, [p];
        ld.param.u32 %r1, [index];
        ld.param.u32 %r2, [value];
        mov.u32 %r3, %tid.x;
        add.u32 %r4, %r1, %r3;
        mul.wide.u32 %rd2, %r4, 4;
        add.s64 %rd3, %rd1, %rd2;
        st.global.u32 [%rd3], %r2;
        ret;
        }
        """;

    private const string Spin = Header + """
        .visible .entry spin()
        {
        $LOOP:
        bra $LOOP;
        }
        """;

    /// <summary>Threads 0–15 wait at a barrier, 16–31 at a shuffle of the whole warp: neither can go on.</summary>
    private const string Split = Header + """
        .visible .entry split()
        {
        .reg .pred %p<2>;
        .reg .b32 %r<4>;
        mov.u32 %r1, %tid.x;
        setp.lt.u32 %p1, %r1, 16;
        @%p1 bra $BARRIER;
        shfl.sync.idx.b32 %r2, %r1, 0, 31, -1;
        ret;
        $BARRIER:
        bar.sync 0;
        ret;
        }
        """;

    private const string UsesShared = Header + """
        .extern .shared .align 4 .b8 dynamic_shared[];
        .visible .entry uses_shared(.param .u64 p)
        {
        .reg .b32 %r<3>;
        mov.u32 %r1, dynamic_shared;
        st.shared.u32 [%r1], 1;
        ret;
        }
        """;

    private static async Task<KernelFunction> KernelAsync(GpuPool.Client.DeviceSession session, string ptx, string name)
        => await session.GetFunctionAsync(await session.LoadModuleAsync(Encoding.UTF8.GetBytes(ptx)), name);

    private static async Task<GpuPoolException> FailsAtSyncAsync(GpuPool.Client.DeviceSession session, ErrorCode code)
    {
        var seq = session.LastSeq;
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal((code, seq, "launch"), (error.Code, error.FailedSeq, error.FailedOp));

        // The error was reported once; the lease goes on.
        await session.SynchronizeAsync();
        return error;
    }

    private static void Has(GpuPoolException error, string text)
        => Assert.True(error.Message.Contains(text, StringComparison.Ordinal), $"the error says \"{error.Message}\", not \"{text}\"");

    [Fact]
    public async Task A_kernel_that_writes_past_its_buffer_fails_with_InvalidAddress_naming_the_thread_the_instruction_and_the_address()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var buffer = await session.AllocAsync(64 * sizeof(int));
        var kernel = await KernelAsync(session, StoreAt, "store_at");

        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(32), new KernelArgs().Ptr(buffer).I32(40).I32(7));

        var error = await FailsAtSyncAsync(session, ErrorCode.InvalidAddress);
        Has(error, "kernel store_at, thread (24,0,0) of block (0,0,0), line 15 (st.global.u32 [%rd3], %r2)");
        Has(error, $"4-byte global access at 0x{buffer.Address + (64 * 4):x} is outside every allocation of the lease");
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_kernel_that_writes_into_another_leases_memory_fails_and_that_memory_keeps_its_bytes()
    {
        await using var victim = await pool.LeaseAsync();
        await using var victimSession = await victim.OpenSessionAsync();
        var theirs = await victimSession.AllocAsync(32 * sizeof(int));
        var bytes = Enumerable.Range(0, 32).ToArray();
        await victimSession.CopyToDeviceAsync(theirs, bytes);
        await victimSession.SynchronizeAsync();

        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync(32 * sizeof(int));
        var kernel = await KernelAsync(session, StoreAt, "store_at");
        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(32), new KernelArgs().Ptr(theirs).I32(0).I32(-1));

        var error = await FailsAtSyncAsync(session, ErrorCode.InvalidAddress);
        Has(error, $"4-byte global access at 0x{theirs.Address:x} is outside every allocation of the lease");
        Assert.Equal(bytes, await victimSession.CopyToHostAsync<int>(theirs, 32));
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_kernel_that_writes_through_a_null_pointer_fails_with_InvalidAddress()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var kernel = await KernelAsync(session, StoreAt, "store_at");

        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(1), new KernelArgs().U64(0).I32(0).I32(1));

        var error = await FailsAtSyncAsync(session, ErrorCode.InvalidAddress);
        Has(error, "kernel store_at, thread (0,0,0) of block (0,0,0)");
        Has(error, "4-byte global access at 0x0 is outside every allocation of the lease");
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_barrier_only_some_threads_reach_ends_the_launch_with_LaunchFailed_instead_of_hanging()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var kernel = await KernelAsync(session, Split, "split");

        await session.LaunchAsync(kernel, new Dim3(2), new Dim3(32), new KernelArgs());

        var error = await FailsAtSyncAsync(session, ErrorCode.LaunchFailed);
        Has(error, "kernel split, block (");
        Has(error, "its threads wait at barriers or warp-wide instructions that the rest never reach (16 at line");
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_kernel_that_never_ends_is_stopped_at_the_brokers_deadline_with_LaunchTimeout()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var kernel = await KernelAsync(session, Spin, "spin");
        var started = DateTime.UtcNow;

        await session.LaunchAsync(kernel, new Dim3(4), new Dim3(64), new KernelArgs());

        var error = await FailsAtSyncAsync(session, ErrorCode.LaunchTimeout);
        Has(error, $"kernel spin: the launch ran past its deadline of {ShortKernelDeadlinePoolFixture.Deadline.TotalSeconds:0} s and was stopped");
        Assert.InRange(DateTime.UtcNow - started, ShortKernelDeadlinePoolFixture.Deadline, TimeSpan.FromSeconds(60));
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_launch_asking_more_shared_memory_than_the_device_has_fails_with_InvalidArgument()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var kernel = await KernelAsync(session, UsesShared, "uses_shared");

        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(32), new KernelArgs().U64(0), sharedMemBytes: 64 * 1024);

        var error = await FailsAtSyncAsync(session, ErrorCode.InvalidArgument);
        Has(error, "launch of uses_shared: 65536 bytes of dynamic shared memory is more than the 49152 the device allows per block");

        // Within the limit the same kernel runs.
        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(32), new KernelArgs().U64(0), sharedMemBytes: 48 * 1024);
        await session.SynchronizeAsync();
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_launch_whose_parameter_bytes_do_not_match_the_entry_fails_with_InvalidArgument_naming_both_sizes()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var kernel = await KernelAsync(session, StoreAt, "store_at");

        await session.LaunchAsync(kernel, new Dim3(1), new Dim3(1), new KernelArgs().U64(0).I32(0));

        var error = await FailsAtSyncAsync(session, ErrorCode.InvalidArgument);
        Has(error, "16");
        Has(error, "12");
        await pool.AssertServesAnotherLeaseAsync();
    }
}
