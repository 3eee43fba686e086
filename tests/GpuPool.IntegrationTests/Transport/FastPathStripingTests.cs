using System.Runtime.InteropServices;
using System.Security.Cryptography;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Large copies striped over several fast-path connections of one session: every byte arrives both ways, the copy
/// keeps its place in its stream's order, and a connection cut in the middle of one fails that copy — with an error
/// naming it — without hanging, while the session, the broker and other sessions go on.
/// </summary>
public sealed class FastPathStripingTests(FastPathPoolFixture pool) : IClassFixture<FastPathPoolFixture>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    public static TheoryData<SessionTransportKind, int, int> Stripings => new()
    {
        { SessionTransportKind.Tcp, 2, 1 << 20 },
        { SessionTransportKind.Tcp, 4, 192 << 10 },
        { SessionTransportKind.Unix, 3, 1 << 20 },
    };

    [Theory]
    [MemberData(nameof(Stripings))]
    public async Task Striped_copies_of_random_data_arrive_byte_for_byte_both_ways(SessionTransportKind kind, int stripes, int chunk)
    {
        // Not a multiple of the chunk size: the last chunk is short, and it lands too.
        const int size = (37 << 20) + 12345;
        await using var lease = await LongLeaseAsync(128UL << 20);
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = kind, Stripes = stripes, StripeChunkBytes = chunk });
        var ptr = await session.AllocAsync(size);
        var data = RandomBytes(size, seed: stripes);
        var back = new byte[size];

        await session.CopyToDeviceAsync(ptr, data).AsTask().WaitAsync(Bound);
        await session.SynchronizeAsync().AsTask().WaitAsync(Bound);
        await session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound);

        Assert.Equal(stripes - 1, session.DataConnections);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(data)), Convert.ToHexString(SHA256.HashData(back)));
        Assert.Equal(-1, data.AsSpan().IndexOfAnyExcept(back)); // the same check, naming the first wrong byte if any
    }

    /// <summary>
    /// Striped copies one right after another: a data connection often reads a chunk of the next copy before the
    /// session's first connection has announced it. That chunk must wait for its copy and never count as its
    /// connection having moved past the copy just announced (a race that once failed a whole copy, "went on to other
    /// frames", with every chunk on its way).
    /// </summary>
    [Theory]
    [InlineData(SessionTransportKind.Tcp)]
    [InlineData(SessionTransportKind.Unix)]
    public async Task Hundreds_of_striped_copies_back_to_back_all_land_whole(SessionTransportKind kind)
    {
        const int copies = 400;
        const int chunk = 64 << 10;
        const int size = (4 * chunk) + 4321; // five chunks, the last one short
        await using var lease = await LongLeaseAsync(128UL << 20);
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = kind, Stripes = 3, StripeChunkBytes = chunk, StripeThresholdBytes = chunk });
        var region = await session.AllocAsync((ulong)copies * size);
        var data = RandomBytes(copies * size, seed: 21);

        for (var i = 0; i < copies; i++)
        {
            await session.CopyToDeviceAsync(region + (ulong)(i * size), data.AsMemory(i * size, size)).AsTask().WaitAsync(Bound);
        }

        await session.SynchronizeAsync().AsTask().WaitAsync(Bound);
        var back = new byte[data.Length];
        await session.CopyToHostAsync(region, back).AsTask().WaitAsync(Bound);

        Assert.Equal(2, session.DataConnections);
        var wrong = data.AsSpan().IndexOfAnyExcept(back);
        Assert.True(wrong < 0, $"byte {wrong} (copy {wrong / size}) differs");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Striped_copy_keeps_its_place_in_its_stream_the_op_after_it_sees_every_chunk(bool streamBusy)
    {
        const int n = (9 << 20) / sizeof(float) + 1000;
        await using var lease = await LongLeaseAsync(256UL << 20);
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = 3, StripeChunkBytes = 256 << 10 });
        var module = await session.LoadBuiltinModuleAsync();
        var scale = await session.GetFunctionAsync(module, "scale_f32");
        var stream = await session.CreateStreamAsync();
        var x = await session.AllocAsync(n * sizeof(float));
        var values = Enumerable.Range(0, n).Select(i => (float)((i * 7919) % 1000)).ToArray();
        if (streamBusy)
        {
            // Long device work ahead on the stream: the chunks arrive while it runs, so they are staged and queued.
            var scratch = await session.AllocAsync(128 << 20);
            for (var i = 0; i < 8; i++)
            {
                await session.MemsetAsync(scratch, (uint)i, 128 << 20, stream: stream);
            }
        }

        await session.CopyToDeviceAsync(x, values, stream);
        await session.LaunchAsync(scale, new Dim3(64), new Dim3(256), new KernelArgs().U64((ulong)n).F32(2).Ptr(x), stream);
        var back = await session.CopyToHostAsync<float>(x, n, stream).WaitAsync(Bound);

        Assert.Equal(2, session.DataConnections);
        for (var i = 0; i < n; i++)
        {
            if (back[i] != 2 * values[i])
            {
                Assert.Fail($"element {i} (byte {i * sizeof(float)}) is {back[i]}, not {2 * values[i]}: the kernel after the copy ran before that chunk landed");
            }
        }
    }

    [Theory]
    [InlineData(SessionTransportKind.Tcp)]
    [InlineData(SessionTransportKind.Unix)]
    public async Task Data_connection_cut_in_the_middle_of_a_striped_copy_to_the_device_fails_that_copy_by_name_and_the_session_goes_on(SessionTransportKind kind)
    {
        const int size = 64 << 20;
        await using var lease = await LongLeaseAsync(128UL << 20);

        // Connection 1 is the session's own, connection 2 its first data connection: cut 5 MiB into its share (32 MiB).
        using var proxy = kind == SessionTransportKind.Tcp
            ? new CuttingProxy(pool.Broker.FastPath.Tcp, cutAfterBytes: 5 << 20, cutConnection: 2)
            : CuttingProxy.ForUnix(pool.Broker.FastPath.Unix, cutAfterBytes: 5 << 20, cutConnection: 2);
        var record = lease.Record.Clone();
        record.BrokerFastPathTcp = kind == SessionTransportKind.Tcp ? proxy.Endpoint : "";
        record.BrokerFastPathUnix = kind == SessionTransportKind.Unix ? proxy.Endpoint : "";
        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token, new SessionOptions { Transport = kind, Stripes = 2 });
        var ptr = await session.AllocAsync(size);
        var marker = await session.AllocAsync(4096);
        await session.SynchronizeAsync();

        await session.CopyToDeviceAsync(ptr, RandomBytes(size, seed: 11)).AsTask().WaitAsync(Bound);
        var copySeq = session.LastSeq;
        await session.MemsetAsync(marker, 0x77, 4096);
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask().WaitAsync(Bound));

        Assert.True(error.Code == ErrorCode.Unavailable, error.ToString());
        Assert.Equal(copySeq, error.FailedSeq);
        Assert.Equal("memcpy_htod", error.FailedOp);
        Assert.StartsWith($"operation #{copySeq} (memcpy_htod) failed: striped copy of {size} bytes to the device at 0x{ptr.Address:x} did not complete: data connection 1 closed", error.Message, StringComparison.Ordinal);
        Assert.Contains($" of {size} bytes arrived and landed, the rest did not", error.Message, StringComparison.Ordinal);
        Assert.Equal(5L << 20, await proxy.Cut.WaitAsync(Bound));

        // The op after the failed copy on its stream did not run either (sticky, as any failure), and the session goes on.
        Assert.Equal(new byte[4096], await session.CopyToHostAsync<byte>(marker, 4096).WaitAsync(Bound));
        var data = RandomBytes(size, seed: 12);
        await session.CopyToDeviceAsync(ptr, data).AsTask().WaitAsync(Bound);
        await session.SynchronizeAsync().AsTask().WaitAsync(Bound);
        var back = new byte[size];
        await session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound);
        Assert.Equal(-1, data.AsSpan().IndexOfAnyExcept(back));
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Data_connection_cut_in_the_middle_of_a_striped_copy_to_the_host_fails_that_copy_by_name_and_the_session_goes_on()
    {
        const int size = 64 << 20;
        await using var lease = await LongLeaseAsync(128UL << 20);
        using var proxy = new CuttingProxy(pool.Broker.FastPath.Tcp, cutAfterBytes: 5 << 20, cutConnection: 2, direction: CutDirection.ToClient);
        var record = lease.Record.Clone();
        record.BrokerFastPathTcp = proxy.Endpoint;
        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token, new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = 2 });
        var ptr = await session.AllocAsync(size);
        var data = RandomBytes(size, seed: 13);
        await session.CopyToDeviceAsync(ptr, data);
        await session.SynchronizeAsync().AsTask().WaitAsync(Bound);

        // The copy to the device above opened the data connection and sent on it; the cut counts what the broker sends back.
        var back = new byte[size];
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound));
        var copySeq = session.LastSeq;

        Assert.True(error.Code == ErrorCode.Unavailable, error.ToString());
        Assert.Equal(copySeq, error.FailedSeq);
        Assert.Equal("memcpy_dtoh", error.FailedOp);
        Assert.Matches($"^copy #{copySeq} of {size} bytes (from the device at 0x{ptr.Address:x} )?to the host failed: ", error.Message);
        await proxy.Cut.WaitAsync(Bound);

        // The session goes on: once the client has seen the cut connection close, it stripes over a new one.
        await Poll.UntilAsync(() => Task.FromResult(session.DataConnections == 0), Bound, "the client has left the cut connection out");
        await session.CopyToHostAsync(ptr, back).AsTask().WaitAsync(Bound);
        Assert.Equal(-1, data.AsSpan().IndexOfAnyExcept(back));
        Assert.Equal(1, session.DataConnections);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Copies_below_the_threshold_and_sessions_with_striping_off_use_one_connection()
    {
        await using var lease = await LongLeaseAsync(64UL << 20);
        await using (var session = await lease.OpenSessionAsync(new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = 4, StripeThresholdBytes = 16 << 20 }))
        {
            var ptr = await session.AllocAsync(8 << 20);
            await session.CopyToDeviceAsync(ptr, RandomBytes(8 << 20, seed: 1));
            await session.CopyToHostAsync(ptr, new byte[8 << 20]);
            Assert.Equal(0, session.DataConnections);
        }

        // By default a session stripes over TCP and not over the Unix socket, where the benchmark measured no gain.
        foreach (var (kind, stripes) in new[] { (SessionTransportKind.Tcp, SessionOptions.DefaultTcpStripes), (SessionTransportKind.Unix, SessionOptions.DefaultUnixStripes) })
        {
            await using var session = await Sessions.OpenWhenDetachedAsync(lease, kind);
            Assert.Equal((uint)7, session.Info.MaxDataConnections);
            Assert.NotEqual(0UL, session.Info.FastPathSession);
            var ptr = await session.AllocAsync(8 << 20);
            await session.CopyToDeviceAsync(ptr, RandomBytes(8 << 20, seed: 2));
            await session.SynchronizeAsync();
            Assert.Equal(stripes - 1, session.DataConnections);
        }
    }

    /// <summary>
    /// A lease that outlives the fixture's TTL by far: these copies keep both cores busy for seconds, and a late
    /// keepalive must not end the lease under the test.
    /// </summary>
    private Task<Lease> LongLeaseAsync(ulong memoryBytes)
        => pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = memoryBytes, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(30) });

    private static byte[] RandomBytes(int size, int seed)
    {
        var bytes = GC.AllocateUninitializedArray<byte>(size);
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
