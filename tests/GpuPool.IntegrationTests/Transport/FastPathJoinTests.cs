using System.Buffers;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Data connections join an open session with the lease token and the session's id: a join that does not prove
/// both — a forged token, another lease's token, another lease's session, a session that is not open — gets an
/// error frame that says which, and is closed; the session it named, and the broker, go on.
/// </summary>
public sealed class FastPathJoinTests(FastPathPoolFixture pool) : IClassFixture<FastPathPoolFixture>
{
    [Fact]
    public async Task Join_with_the_leases_token_and_its_open_session_gets_the_connections_index()
    {
        await using var lease = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await first.HelloAsync(lease.Id, lease.Token);
        using var data = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);

        await data.SendAsync(Join(info.FastPathSession, lease.Id, lease.Token));
        var reply = await data.ReadFrameAsync();

        Assert.True(reply is { Type: FrameType.Reply, Seq: 0 }, $"expected the join's Reply, got {reply}");
        Assert.Equal(1UL, BitConverter.ToUInt64(reply.Fixed, 0));
        Assert.Equal(7u, info.MaxDataConnections);
    }

    [Fact]
    public async Task Join_with_a_forged_token_gets_Unauthenticated_and_is_closed()
    {
        await using var lease = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await first.HelloAsync(lease.Id, lease.Token);
        using var forger = LeaseToken.CreateKey();
        var r = lease.Record;
        var forged = LeaseToken.Sign(new LeaseClaims(r.LeaseId, r.Tenant, r.BrokerId, r.DeviceIndex, r.MemoryBytes, r.ComputeShare, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds()), forger);

        var error = await JoinAsync(info.FastPathSession, lease.Id, forged);

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Equal("join refused: lease token signature does not verify: it was not issued by this pool's scheduler", error.Message);
        await AssertSessionWorksAsync(first);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Join_of_another_leases_session_gets_PermissionDenied_and_is_closed()
    {
        await using var mine = await pool.LeaseAsync();
        await using var theirs = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await first.HelloAsync(theirs.Id, theirs.Token);

        // A valid token, of a lease that is live on this broker, naming a session that is not that lease's.
        var error = await JoinAsync(info.FastPathSession, mine.Id, mine.Token);

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal($"join refused: session {info.FastPathSession:x16} belongs to another lease; a data connection may join only a session of the lease its token was issued for ({mine.Id})", error.Message);
        await AssertSessionWorksAsync(first);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Join_naming_one_lease_with_another_leases_token_gets_PermissionDenied()
    {
        await using var mine = await pool.LeaseAsync();
        await using var theirs = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await first.HelloAsync(theirs.Id, theirs.Token);

        var error = await JoinAsync(info.FastPathSession, theirs.Id, mine.Token);

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Equal($"join refused: the token was issued for lease {mine.Id}, not for lease {theirs.Id}", error.Message);
        await AssertSessionWorksAsync(first);
    }

    [Fact]
    public async Task Join_of_a_session_that_is_not_open_gets_NotFound_and_is_closed()
    {
        await using var lease = await pool.LeaseAsync();
        ulong closedSession;
        using (var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp))
        {
            closedSession = (await first.HelloAsync(lease.Id, lease.Token)).FastPathSession;
        }

        foreach (var session in new[] { 0x0123456789abcdefUL, closedSession })
        {
            var error = await PollJoinAsync(session, lease.Id, lease.Token, ErrorCode.NotFound);
            Assert.Equal($"join refused: no fast-path session {session:x16} is open on this broker (it has ended, or never existed); open a session with a hello first", error.Message);
        }

        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Data_connection_that_sends_an_op_gets_a_protocol_error_and_only_it_is_closed()
    {
        await using var lease = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await first.HelloAsync(lease.Id, lease.Token);
        using var data = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await data.SendAsync(Join(info.FastPathSession, lease.Id, lease.Token));
        Assert.Equal(FrameType.Reply, (await data.ReadFrameAsync())?.Type);

        await data.SendAsync(new OpRequest { Seq = 2, MemAlloc = new MemAlloc { Bytes = 64 } });
        var error = await data.ReadErrorThenCloseAsync();

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("protocol error: frame #2 is a MemAlloc frame; a data connection carries only StripeChunk frames", error.Message);
        await AssertSessionWorksAsync(first);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Session_whose_data_connections_were_refused_still_copies_on_its_own_connection()
    {
        // Through a proxy that cuts every data connection at once, a session cannot join any: its large copies go unstriped.
        await using var lease = await pool.LeaseAsync(memoryBytes: 64UL << 20);
        using var proxy = new CuttingProxy(pool.Broker.FastPath.Tcp, cutAfterBytes: 0, cutConnection: 2, andLater: true);
        var record = lease.Record.Clone();
        record.BrokerFastPathTcp = proxy.Endpoint;
        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token, new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = 2 });
        var ptr = await session.AllocAsync(16 << 20);
        var bytes = new byte[16 << 20];
        new Random(5).NextBytes(bytes);

        await session.CopyToDeviceAsync(ptr, bytes);
        var back = new byte[bytes.Length];
        await session.CopyToHostAsync(ptr, back);

        Assert.Equal(0, session.DataConnections);
        Assert.Equal(-1, bytes.AsSpan().IndexOfAnyExcept(back));
    }

    private static byte[] Join(ulong session, string leaseId, string token)
    {
        var writer = new ArrayBufferWriter<byte>();
        StripeFrames.WriteJoin(writer, session, leaseId, token);
        return writer.WrittenSpan.ToArray();
    }

    private async Task<GpuPoolException> JoinAsync(ulong session, string leaseId, string token)
    {
        using var data = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await data.SendAsync(Join(session, leaseId, token));
        var error = await data.ReadErrorThenCloseAsync();
        Assert.Equal(0UL, error.FailedSeq);
        return error;
    }

    /// <summary>A session that has just closed leaves the table a moment later: joins are retried until they get <paramref name="code"/>.</summary>
    private async Task<GpuPoolException> PollJoinAsync(ulong session, string leaseId, string token, ErrorCode code)
    {
        GpuPoolException? last = null;
        await Poll.UntilAsync(async () => (last = await JoinAsync(session, leaseId, token)).Code == code, TimeSpan.FromSeconds(5), $"a join of session {session:x16} gets {code}");
        return last!;
    }

    private static async Task AssertSessionWorksAsync(FrameSocket first)
    {
        var info = await first.CallAsync(new OpRequest { Seq = 50, MemGetInfo = new MemGetInfo() });
        Assert.Equal(FrameType.Reply, info.Type);
    }
}
