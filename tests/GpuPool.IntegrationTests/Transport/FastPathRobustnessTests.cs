using System.Diagnostics;
using System.Text;
using Google.Protobuf;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Bad input on the raw fast path, from a plain socket: the broker answers each bad connection with a
/// clear error frame and closes that connection only; the lease it named can open again; other leases'
/// sessions keep working.
/// </summary>
public sealed class FastPathRobustnessTests(FastPathPoolFixture pool) : IClassFixture<FastPathPoolFixture>
{
    private static readonly byte[] Garbage = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: not-a-gpupool-peer\r\n\r\n");

    public static TheoryData<string> BadFirstFrames => new() { "garbage", "op before hello", "hello lengths do not add up" };

    [Theory]
    [MemberData(nameof(BadFirstFrames))]
    public async Task Connection_that_does_not_start_with_a_hello_gets_Unauthenticated_and_is_closed(string what)
    {
        await using var lease = await pool.LeaseAsync();
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var hello = FrameSocket.Hello(lease.Id, lease.Token);
        hello[18] ^= 1; // the low byte of the lease id length (after the u16 version)
        await socket.SendAsync(what switch
        {
            "garbage" => Garbage,
            "op before hello" => FrameSocket.Encode(new OpRequest { Seq = 1, MemAlloc = new MemAlloc { Bytes = 64 } }),
            _ => hello,
        });

        var error = await socket.ReadErrorThenCloseAsync();

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Equal(0UL, error.FailedSeq);
        Assert.Equal("a fast-path connection must start with a hello frame carrying the lease token", error.Message);
        await AssertLeaseOpensAgainAsync(lease);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Hello_with_a_token_signed_by_another_key_gets_Unauthenticated_and_is_closed()
    {
        await using var lease = await pool.LeaseAsync();
        using var forger = LeaseToken.CreateKey();
        var r = lease.Record;
        var forged = LeaseToken.Sign(new LeaseClaims(r.LeaseId, r.Tenant, r.BrokerId, r.DeviceIndex, r.MemoryBytes, r.ComputeShare, DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds()), forger);
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);

        await socket.SendAsync(FrameSocket.Hello(lease.Id, forged, seq: 7));
        var error = await socket.ReadErrorThenCloseAsync();

        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Equal("lease token signature does not verify: it was not issued by this pool's scheduler", error.Message);
        await AssertLeaseOpensAgainAsync(lease);
        await pool.AssertBrokerHealthyAsync();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public async Task Hello_of_another_fast_path_version_gets_NotSupported_naming_both_versions_and_is_closed(int version)
    {
        await using var lease = await pool.LeaseAsync();
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var id = Encoding.UTF8.GetBytes(lease.Id);
        var token = Encoding.UTF8.GetBytes(lease.Token);

        // Version 1's hello was frame type 2 with {u16 lease id length, u16 token length}; later ones name their version.
        byte[] fields = version == 1
            ? [.. BitConverter.GetBytes((ushort)id.Length), .. BitConverter.GetBytes((ushort)token.Length)]
            : [.. BitConverter.GetBytes((ushort)version), .. BitConverter.GetBytes((ushort)id.Length), .. BitConverter.GetBytes((ushort)token.Length), 0, 0];
        await socket.SendAsync(FrameSocket.Encode(FrameCodec.Magic, version == 1 ? (ushort)2 : (ushort)1, (uint)(id.Length + token.Length), 1, [.. fields, .. id, .. token]));
        var error = await socket.ReadErrorThenCloseAsync();

        Assert.Equal(ErrorCode.NotSupported, error.Code);
        Assert.Equal($"the client speaks fast-path version {version} and this broker speaks version {OpFrames.Version}: use a client of the broker's version (or the gRPC transport)", error.Message);
        await AssertLeaseOpensAgainAsync(lease);
    }

    [Fact]
    public async Task Second_connection_on_a_lease_with_an_open_session_gets_FailedPrecondition_and_the_first_keeps_working()
    {
        await using var lease = await pool.LeaseAsync();
        using var first = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await first.HelloAsync(lease.Id, lease.Token);
        using var second = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);

        await second.SendAsync(FrameSocket.Hello(lease.Id, lease.Token, seq: 5));
        var frames = await second.ReadToCloseAsync();

        var refusal = Assert.Single(frames);
        Assert.Equal(5UL, refusal.Seq);
        Assert.Equal(ErrorCode.FailedPrecondition, refusal.Error().Code);
        Assert.Equal($"lease {lease.Id} already has an open session; close it before opening another", refusal.Error().Message);
        var info = await first.CallAsync(new OpRequest { Seq = 2, MemGetInfo = new MemGetInfo() });
        Assert.Equal(FrameType.Reply, info.Type);
        await pool.AssertBrokerHealthyAsync();
    }

    public static TheoryData<string> BadFramesAfterHello => new()
    {
        "garbage", "bad magic", "unknown type", "launch params of 5000 bytes", "mem free with a payload", "a reply frame", "a second hello",
    };

    [Theory]
    [MemberData(nameof(BadFramesAfterHello))]
    public async Task Bad_frame_after_the_hello_gets_a_protocol_error_and_closes_only_that_connection(string what)
    {
        await using var lease = await pool.LeaseAsync();
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await socket.HelloAsync(lease.Id, lease.Token);
        var bad = what switch
        {
            "garbage" => Garbage,
            "bad magic" => FrameSocket.Encode(0x4750, (ushort)FrameType.Synchronize, 0, 3, []),
            "unknown type" => FrameSocket.Encode(FrameCodec.Magic, 999, 0, 3, []),
            "launch params of 5000 bytes" => FrameSocket.Encode(new OpRequest { Seq = 3, Launch = new Launch { Function = 1, GridX = 1, BlockX = 1, Params = ByteString.CopyFrom(new byte[5000]) } }),
            "mem free with a payload" => FrameSocket.Encode(FrameCodec.Magic, (ushort)FrameType.MemFree, 8, 3, new byte[16]),
            "a reply frame" => FrameSocket.Encode(FrameCodec.Magic, (ushort)FrameType.Reply, 0, 3, new byte[16]),
            _ => FrameSocket.Hello(lease.Id, lease.Token, seq: 3),
        };

        // A good op and the bad frame in one write: the op is answered, then the bad frame ends the connection.
        byte[] both = [.. FrameSocket.Encode(new OpRequest { Seq = 2, MemAlloc = new MemAlloc { Bytes = 4096 } }), .. bad];
        await socket.SendAsync(both);
        var frames = await socket.ReadToCloseAsync();

        Assert.True(frames.Count == 2, $"expected the alloc's reply and an error, got [{string.Join(", ", frames)}]");
        Assert.Equal((FrameType.Reply, 2UL), (frames[0].Type, frames[0].Seq));
        var error = frames[1].Error();
        Assert.True(error.Code == ErrorCode.InvalidArgument, error.ToString());
        Assert.Equal(0UL, frames[1].Seq);
        Assert.StartsWith("protocol error: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(what switch
        {
            "garbage" => "bad frame magic 0x4547",
            "bad magic" => "bad frame magic 0x4750",
            "unknown type" => "unknown frame type 999 in frame #3",
            "launch params of 5000 bytes" => "frame #3 (Launch) declares a payload of 5000 bytes; the limit for Launch is 4096",
            "mem free with a payload" => "frame #3 (MemFree) declares a payload of 8 bytes; the limit for MemFree is 0",
            "a reply frame" => "frame #3 is a Reply frame, which a client may not send",
            _ => "frame #3: the session is already open",
        }, error.Message, StringComparison.Ordinal);
        await AssertLeaseOpensAgainAsync(lease);
        await pool.AssertBrokerHealthyAsync();
    }

    [Fact]
    public async Task Frame_declaring_a_payload_over_the_message_limit_gets_ResourceExhausted_and_is_closed()
    {
        await using var lease = await pool.LeaseAsync();
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var info = await socket.HelloAsync(lease.Id, lease.Token);

        // Only the header: the broker must refuse the length, not wait for (or buffer) the bytes.
        await socket.SendAsync(FrameSocket.Encode(FrameCodec.Magic, (ushort)FrameType.MemcpyHtoD, info.MaxMessageBytes + 1, 2, new byte[16]));
        var error = await socket.ReadErrorThenCloseAsync();

        Assert.True(error.Code == ErrorCode.ResourceExhausted, error.ToString());
        Assert.Equal($"message larger than the broker's limit: frame #2 (MemcpyHtoD) declares a payload of {info.MaxMessageBytes + 1} bytes; the limit for MemcpyHtoD is {info.MaxMessageBytes}", error.Message);
        await AssertLeaseOpensAgainAsync(lease);
        await pool.AssertBrokerHealthyAsync();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    public async Task Connection_without_a_hello_within_the_timeout_is_closed_by_the_broker(int headerBytesSent)
    {
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        var clock = Stopwatch.StartNew();
        await socket.SendAsync(FrameSocket.Hello("lease", "token").AsMemory(0, headerBytesSent));

        var frames = await socket.ReadToCloseAsync(FastPathPoolFixture.HelloTimeout + TimeSpan.FromSeconds(5));

        Assert.True(clock.Elapsed >= FastPathPoolFixture.HelloTimeout * 0.8, $"closed after {clock.Elapsed}, before the hello timeout");
        Assert.All(frames, f => Assert.Equal(ErrorCode.Unauthenticated, f.Error().Code));
        await pool.AssertBrokerHealthyAsync();
    }

    /// <summary>The refused or closed connection no longer holds the lease: a new session on it opens and works.</summary>
    private static async Task AssertLeaseOpensAgainAsync(Lease lease)
    {
        await using var session = await Sessions.OpenWhenDetachedAsync(lease);
        var ptr = await session.AllocAsync(64);
        await session.MemsetAsync(ptr, 0x42, 64);
        Assert.All(await session.CopyToHostAsync<byte>(ptr, 64), b => Assert.Equal(0x42, b));
    }
}
