using System.Security.Cryptography;
using System.Text;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// The core behaviours of a device session, over each transport the SDK can be asked for: the gRPC op
/// stream, the raw fast path on TCP and on the Unix socket. The same ops must mean the same thing on all three.
/// </summary>
public sealed class TransportMatrixTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    public static TheoryData<SessionTransportKind> Transports => new() { SessionTransportKind.Grpc, SessionTransportKind.Tcp, SessionTransportKind.Unix };

    private static readonly TimeSpan Deadline = PoolFixture.LeaseTtl + TimeSpan.FromSeconds(4);

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Open_reports_the_transport_that_was_asked_for(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);

        var name = kind.ToString().ToLowerInvariant();
        Assert.Equal(name, session.Transport);
        Assert.Equal(name, session.Info.Transport);
        Assert.Equal(lease.Id, session.Info.LeaseId);
        Assert.Equal(PoolFixture.DefaultLeaseMemory, session.Info.MemoryLimitBytes);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Large_copy_of_random_bytes_round_trips_byte_for_byte(SessionTransportKind kind)
    {
        // Several chunks on every transport (1 MiB on gRPC, 4 MiB on the fast path), and a tail that is not a whole chunk.
        const int size = (40 << 20) + 4321;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var data = new byte[size];
        new Random(40 + (int)kind).NextBytes(data);
        var ptr = await session.AllocAsync(size);

        await session.CopyToDeviceAsync(ptr, data);
        var back = new byte[size];
        await session.CopyToHostAsync(ptr, back);

        var mismatch = data.AsSpan().CommonPrefixLength(back);
        Assert.True(mismatch == size, $"the bytes read back differ from those written, first at offset {mismatch}");
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Sticky_error_of_a_fire_and_forget_launch_surfaces_at_synchronize_then_the_session_works_again(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");
        var ptr = await session.AllocAsync(64 * sizeof(float));

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(64), new KernelArgs().U64(64).F32(1).Ptr(new DevicePtr(0x10)));
        var failed = session.LastSeq;
        await session.LaunchAsync(fill, new Dim3(1), new Dim3(64), new KernelArgs().U64(64).F32(2).Ptr(ptr));

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.Equal("launch", error.FailedOp);

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(64), new KernelArgs().U64(64).F32(3).Ptr(ptr));
        await session.SynchronizeAsync();
        Assert.All(await session.CopyToHostAsync<float>(ptr, 64), v => Assert.Equal(3f, v));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Large_copy_after_a_failed_op_is_skipped_until_the_sync_reports_the_failure(SessionTransportKind kind)
    {
        // Large enough that the fast path would put it on the device straight from its read buffer.
        const int size = 1 << 20;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var ptr = await session.AllocAsync(size);
        await session.MemsetAsync(ptr, 0x11, size);
        await session.SynchronizeAsync();

        await session.MemsetAsync(ptr, 0, size + 1);
        var failed = session.LastSeq;
        await session.CopyToDeviceAsync(ptr, Enumerable.Repeat((byte)0x33, size).ToArray());

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(failed, error.FailedSeq);
        Assert.Equal(-1, (await session.CopyToHostAsync<byte>(ptr, size)).AsSpan().IndexOfAnyExcept((byte)0x11));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Copies_past_the_end_of_an_allocation_fail_with_InvalidAddress(SessionTransportKind kind)
    {
        const int size = 4096;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var ptr = await session.AllocAsync(size);

        await session.CopyToDeviceAsync(ptr + 4000, new byte[200]);
        var seq = session.LastSeq;
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("memcpy_htod", error.FailedOp);
        Assert.Contains($"0x{ptr.Address + 4000:x} + 200 bytes runs past the end of its allocation (0x{ptr.Address:x}, 4096 bytes) by 104 bytes", error.Message, StringComparison.Ordinal);

        // A copy to the host reports its own failure, and the session goes on.
        var own = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(ptr + 4000, new byte[200]).AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, own.Code);
        await session.MemsetAsync(ptr, 7, size);
        Assert.All(await session.CopyToHostAsync<byte>(ptr, size), b => Assert.Equal(7, b));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Allocation_past_the_lease_limit_fails_with_OutOfMemory_and_the_session_goes_on(SessionTransportKind kind)
    {
        const ulong limit = 1 << 20;
        await using var lease = await pool.LeaseAsync(limit);
        await using var session = await lease.OpenSessionAsync(kind);
        await session.AllocAsync(limit / 4);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.AllocAsync(limit));

        Assert.Equal(ErrorCode.OutOfMemory, error.Code);
        Assert.Equal("cannot allocate 1048576 bytes: the lease's memory limit is 1048576 bytes and 262144 are in use (786432 free)", error.Message);
        await session.AllocAsync(limit * 3 / 4);
        Assert.Equal((0UL, limit), await session.MemGetInfoAsync());
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Events_record_synchronize_and_time_the_work_between_them(SessionTransportKind kind)
    {
        const ulong size = 32UL << 20;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var ptr = await session.AllocAsync(size);
        var start = await session.CreateEventAsync();
        var end = await session.CreateEventAsync();

        await session.RecordEventAsync(start);
        for (var i = 0; i < 4; i++)
        {
            await session.MemsetAsync(ptr, (uint)i, size);
        }

        await session.RecordEventAsync(end);
        await session.SynchronizeEventAsync(end);

        Assert.True(await session.QueryEventAsync(start));
        Assert.True(await session.QueryEventAsync(end));
        Assert.InRange(await session.ElapsedMillisecondsAsync(start, end), 0.001f, 30_000f);
        Assert.All(await session.CopyToHostAsync<byte>(ptr + (size - 4096), 4096), b => Assert.Equal(3, b));
        await session.DestroyEventAsync(start);
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.QueryEventAsync(start));
        Assert.Equal(ErrorCode.NotFound, error.Code);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task The_default_stream_and_a_blocking_stream_wait_for_each_others_earlier_work(SessionTransportKind kind)
    {
        const ulong big = 48UL << 20;
        const int size = 4096;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var blocking = await session.CreateStreamAsync();
        var scratch = await session.AllocAsync(big);
        var result = await session.AllocAsync(size);
        var first = await session.AllocAsync(size);
        var second = await session.AllocAsync(size);
        await session.MemsetAsync(result, 0x11, size);
        await session.SynchronizeAsync();

        // No event between the streams: the legacy default stream's order alone makes each copy see the 48 MiB
        // memset and the result written before it on the other stream.
        await session.MemsetAsync(scratch, 0xFF, big, stream: blocking);
        await session.MemsetAsync(result, 0x5A, size, stream: blocking);
        await session.CopyDeviceToDeviceAsync(first, result, size);
        await session.MemsetAsync(scratch, 0x00, big);
        await session.MemsetAsync(result, 0x6B, size);
        await session.CopyDeviceToDeviceAsync(second, result, size, blocking);

        Assert.Equal(Enumerable.Repeat((byte)0x6B, size).ToArray(), await session.CopyToHostAsync<byte>(second, size, blocking));
        Assert.Equal(Enumerable.Repeat((byte)0x5A, size).ToArray(), await session.CopyToHostAsync<byte>(first, size));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Stream_flags_that_CUDA_does_not_have_are_refused_and_the_session_goes_on(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CreateStreamAsync((StreamFlags)6));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("0x6 is not a set of stream flags (0: blocking, 1: non-blocking)", error.Message);
        var free = await session.CreateStreamAsync(StreamFlags.NonBlocking);
        var ptr = await session.AllocAsync(64);
        await session.MemsetAsync(ptr, 0x22, 64, stream: free);
        Assert.Equal(Enumerable.Repeat((byte)0x22, 64).ToArray(), await session.CopyToHostAsync<byte>(ptr, 64, free));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Work_on_a_stream_waits_for_an_event_recorded_on_another_stream(SessionTransportKind kind)
    {
        const ulong big = 48UL << 20;
        const int size = 4096;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var producer = await session.CreateStreamAsync();
        var consumer = await session.CreateStreamAsync();
        var produced = await session.CreateEventAsync();
        var scratch = await session.AllocAsync(big);
        var result = await session.AllocAsync(size);
        var copy = await session.AllocAsync(size);
        await session.MemsetAsync(result, 0x11, size);
        await session.SynchronizeAsync();

        // The producer first touches 48 MiB, then writes the result; the consumer, whose stream is
        // otherwise free, may copy the result only once the event says it is there.
        await session.MemsetAsync(scratch, 0xFF, big, stream: producer);
        await session.MemsetAsync(result, 0x5A, size, stream: producer);
        await session.RecordEventAsync(produced, producer);
        await session.StreamWaitEventAsync(consumer, produced);
        await session.CopyDeviceToDeviceAsync(copy, result, size, consumer);
        await session.SynchronizeStreamAsync(consumer);

        Assert.Equal(Enumerable.Repeat((byte)0x5A, size).ToArray(), await session.CopyToHostAsync<byte>(copy, size, consumer));
        Assert.True(await session.QueryEventAsync(produced));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Memset_and_device_to_device_copy_move_exactly_the_bytes_asked_for(SessionTransportKind kind)
    {
        const int size = 8192;
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var src = await session.AllocAsync(size);
        var dst = await session.AllocAsync(size);
        await session.MemsetAsync(src, 0, size);
        await session.MemsetAsync(dst, 0xCC, size);

        await session.MemsetAsync(src + 100, 0xDEADBEEF, 50, elementSize: 4);
        await session.CopyDeviceToDeviceAsync(dst + 1000, src + 100, 200);
        var back = await session.CopyToHostAsync<byte>(dst, size);

        var expected = Enumerable.Repeat((byte)0xCC, size).ToArray();
        for (var i = 0; i < 200; i++)
        {
            expected[1000 + i] = (byte)(0xDEADBEEF >> (8 * (i % 4)));
        }

        Assert.Equal(expected, back);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task PTX_with_an_instruction_the_engine_does_not_run_fails_its_load_with_NotSupported_naming_it(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n\n.visible .entry my_kernel(\n\t.param .u64 p0\n)\n{\n\twgmma.fence.sync.aligned;\n\tret;\n}\n");

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(ptx));

        Assert.Equal(ErrorCode.NotSupported, error.Code);
        Assert.EndsWith("kernel my_kernel, line 9: the cpu backend's PTX engine does not run the instruction wgmma (`wgmma.fence.sync.aligned`)", error.Message, StringComparison.Ordinal);
        await session.SynchronizeAsync();
        Assert.NotEqual(0UL, (await session.LoadBuiltinModuleAsync()).Id);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task Releasing_the_lease_under_an_open_session_fails_its_next_call_with_LeaseEnded(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        await session.AllocAsync(4096);

        await lease.ReleaseAsync();

        await Sessions.AssertEndsWithLeaseEndedAsync(session, lease, Deadline);

        // And every later call says the same, rather than hanging or naming a closed connection.
        var later = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.LeaseEnded, later.Code);
    }
}
