using System.Security.Cryptography;
using Google.Protobuf;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Bulk copies on the gRPC op stream, which the client and the broker bind with their own marshallers: every
/// byte arrives at any size, copies wait their turn behind earlier work without the broker staging them
/// without bound, a connection cut in the middle of a copy fails that copy by name, and a message that is
/// not an op ends only its own call, with a reason.
/// </summary>
public sealed class GrpcOpStreamTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(1)]
    [InlineData(4097)]
    [InlineData((1 << 20) - 1)]
    [InlineData((1 << 20) + 1)]
    [InlineData((9 << 20) + 777)] // more chunks than the broker stages for one session
    [InlineData((17 << 20) + 3)] // more reply chunks than the broker stages for one session
    public async Task Copies_of_random_bytes_round_trip_byte_for_byte_at_sizes_that_are_not_whole_chunks(int size)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Grpc);
        var data = new byte[size];
        new Random(size).NextBytes(data);

        // At an odd offset into the allocation, so that chunk boundaries fall on odd device addresses too.
        var ptr = await session.AllocAsync((ulong)size + 13);
        await session.CopyToDeviceAsync(ptr + 13, data);
        var back = new byte[size];
        await session.CopyToHostAsync(ptr + 13, back);

        var same = data.AsSpan().CommonPrefixLength(back);
        Assert.True(same == size, $"the bytes read back differ from those written, first at offset {same}");
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
    }

    [Fact]
    public async Task Copies_behind_long_work_on_their_stream_wait_for_it_and_land_whole_and_in_order()
    {
        // 64 MiB copied behind 1 GiB of memsets on the same stream: far more chunks than the broker stages, so the
        // session must stop reading while they wait, and let go of each staged chunk once it is on the device.
        const int region = 256 << 20;
        const int size = 64 << 20;
        // Seconds of memsets on two loaded cores: a TTL that a keepalive delayed by the load cannot miss (the
        // fixture's 2 s is for the tests of expiry; this one is about copies).
        await using var lease = await pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = region, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(30) });
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Grpc);
        var stream = await session.CreateStreamAsync();
        var ptr = await session.AllocAsync(region);
        var first = new byte[size];
        var second = new byte[size];
        new Random(1).NextBytes(first);
        new Random(2).NextBytes(second);

        for (var i = 0; i < 4; i++)
        {
            await session.MemsetAsync(ptr, (uint)(0x10 + i), region, stream: stream);
        }

        await session.CopyToDeviceAsync(ptr, first, stream).AsTask().WaitAsync(Bound);
        await session.MemsetAsync(ptr + size, 0x77, size, stream: stream);
        await session.CopyToDeviceAsync(ptr + (2 * size), second, stream).AsTask().WaitAsync(Bound);
        await session.SynchronizeStreamAsync(stream).AsTask().WaitAsync(Bound);

        var back = new byte[4 * size];
        await session.CopyToHostAsync(ptr, back, stream).AsTask().WaitAsync(Bound);
        Assert.Equal(SHA256.HashData(first), SHA256.HashData(back.AsSpan(0, size)));
        Assert.Equal(-1, back.AsSpan(size, size).IndexOfAnyExcept((byte)0x77));
        Assert.Equal(SHA256.HashData(second), SHA256.HashData(back.AsSpan(2 * size, size)));
        Assert.Equal(-1, back.AsSpan(3 * size, size).IndexOfAnyExcept((byte)0x13));
    }

    [Fact]
    public async Task Client_whose_connection_dies_in_the_middle_of_a_copy_gets_Unavailable_naming_the_copy()
    {
        const int size = 40 << 20;
        await using var lease = await pool.LeaseAsync();
        var direct = lease.Record.BrokerEndpoint;
        using var proxy = new CuttingProxy(direct["http://".Length..], cutAfterBytes: 6 << 20);
        lease.Record.BrokerEndpoint = $"http://{proxy.Endpoint}";
        await using var session = await lease.OpenSessionAsync(SessionTransportKind.Grpc);
        var ptr = await session.AllocAsync(size);
        var data = new byte[size];
        new Random(6).NextBytes(data);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToDeviceAsync(ptr, data).AsTask().WaitAsync(Bound));

        Assert.True(error.Code == ErrorCode.Unavailable, error.ToString());
        Assert.Equal("memcpy_htod", error.FailedOp);
        Assert.StartsWith($"copy of {size} bytes to the device at 0x{ptr.Address:x} failed after ", error.Message, StringComparison.Ordinal);
        // Whichever side of the stream saw the cut first: the reader ("the connection to broker … was closed", or, when
        // the response ended between two messages, "cannot reach broker … at …") or the writer ("sending to broker …
        // at … failed"); each names the broker.
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(error.Message, "connection|sending to broker .+ failed|cannot reach broker it-broker at http://"), error.Message);
        Assert.InRange(await proxy.Cut.WaitAsync(Bound), 6 << 20, 6 << 20);
        var later = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask().WaitAsync(Bound));
        Assert.Equal(ErrorCode.Unavailable, later.Code);

        // The broker stays up, and the lease outlives its connection: a new session on it works.
        lease.Record.BrokerEndpoint = direct;
        await using var next = await Sessions.OpenWhenDetachedAsync(lease, SessionTransportKind.Grpc);
        await next.MemsetAsync(ptr, 1, 16);
        Assert.Equal(Enumerable.Repeat((byte)1, 16).ToArray(), await next.CopyToHostAsync<byte>(ptr, 16));
        await pool.AssertServesAnotherLeaseAsync(SessionTransportKind.Grpc);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Message_that_is_not_an_op_ends_its_call_with_InvalidArgument_and_the_broker_goes_on(bool first)
    {
        await using var lease = await pool.LeaseAsync();
        using var channel = GrpcChannel.ForAddress(pool.Broker.Endpoint);
        var method = new Method<byte[], byte[]>(MethodType.DuplexStreaming, "gpupool.v1.DeviceSession", "Open", Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));
        using var call = channel.CreateCallInvoker().AsyncDuplexStreamingCall(method, null, new CallOptions(cancellationToken: new CancellationTokenSource(Bound).Token));
        if (!first)
        {
            await call.RequestStream.WriteAsync(new OpRequest { Seq = 1, Open = new SessionOpen { LeaseId = lease.Id, Token = lease.Token } }.ToByteArray());
            Assert.True(await call.ResponseStream.MoveNext());
            Assert.NotNull(OpReply.Parser.ParseFrom(call.ResponseStream.Current).Session);
        }

        // A length-delimited field whose length runs past the end of the message.
        await call.RequestStream.WriteAsync([0x08, 0x02, 0x2A, 0x7F, 0x01]);
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext())
            {
            }
        });

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.StartsWith("the op stream carried a message that is not a valid OpRequest (", error.Status.Detail, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync(SessionTransportKind.Grpc);
    }
}
