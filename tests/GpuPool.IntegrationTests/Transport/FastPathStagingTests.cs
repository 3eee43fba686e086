using GpuPool.Client;
using System.Buffers;
using System.Buffers.Binary;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Copies to the device that arrive while their stream is busy are staged within a budget per connection; past it
/// the broker stops reading the connection until staged chunks have gone to the device, so a client cannot make
/// the broker hold more than the budget (plus what the sockets between hold) however much it sends.
/// </summary>
public sealed class FastPathStagingTests(PoolFixture pool, ITestOutputHelper output) : IClassFixture<PoolFixture>
{
    private const int Held = 64 << 20;
    private const int Chunk = 4 << 20;
    private const int Total = 256 << 20;

    /// <summary>
    /// The broker's staging budget (16 MiB by default) and, generously, what lies between the test's writes and the
    /// broker's reader: the test's send buffer (up to 4 MiB here), the broker's receive buffer (Linux grows it up to
    /// tcp_rmem's maximum, 32 MiB on the development machine, while the broker reads fast) and its read buffer (a
    /// frame and a little more).
    /// </summary>
    private const long Bound = 80L << 20;

    [Fact]
    public async Task Copies_queued_behind_a_held_stream_are_not_read_past_the_staging_budget_and_all_land_once_it_moves()
    {
        await using var lease = await LongLeaseAsync(384UL << 20);
        using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
        await socket.HelloAsync(lease.Id, lease.Token);
        var held = Pointer(await socket.CallAsync(new OpRequest { Seq = 2, MemAlloc = new MemAlloc { Bytes = Held } }));
        var target = Pointer(await socket.CallAsync(new OpRequest { Seq = 3, MemAlloc = new MemAlloc { Bytes = Total } }));

        // A copy to the host that the test does not read holds stream 0: the broker sends until the sockets are full,
        // then the copy waits, as a copy engine waits for the bus. Every copy to the device after it on stream 0 waits.
        await socket.SendAsync(new OpRequest { Seq = 4, MemcpyDtoh = new MemcpyDtoH { Ptr = held, Bytes = Held } });
        await Task.Delay(TimeSpan.FromMilliseconds(300));

        long sent = 0;
        var copies = Task.Run(async () =>
        {
            for (var i = 0; i < Total / Chunk; i++)
            {
                var frame = CopyFrame(target + (ulong)(i * Chunk), seq: 5 + (ulong)i, ChunkBytes(i));
                await socket.SendAsync(frame);
                Interlocked.Add(ref sent, frame.Length);
            }
        });

        // Sending stops once the broker stops reading: wait until it has made no progress for a second.
        var before = -1L;
        while (!copies.IsCompleted && Interlocked.Read(ref sent) != before)
        {
            before = Interlocked.Read(ref sent);
            await Task.WhenAny(copies, Task.Delay(TimeSpan.FromSeconds(1)));
        }

        var stalledAt = Interlocked.Read(ref sent);
        output.WriteLine($"with stream 0 held, the broker took {stalledAt >> 20} MiB of {Total >> 20} MiB of copies before it stopped reading");
        Assert.False(copies.IsCompleted, $"the broker read all {Total >> 20} MiB of copies queued behind a busy stream: staging is not bounded");
        Assert.True(stalledAt <= Bound, $"the broker read {stalledAt} bytes of copies queued behind a busy stream; the staging budget and the sockets hold at most about {Bound}");

        // Reading the held copy lets stream 0 go on: the staged chunks land, the broker reads again, every copy lands.
        var heldBytes = 0L;
        while (heldBytes < Held)
        {
            var frame = await socket.ReadFrameAsync(TimeSpan.FromSeconds(20));
            Assert.True(frame is { Type: FrameType.Data, Seq: 4 }, $"expected the held copy's data, got {frame}");
            heldBytes += frame.Payload.Length;
        }

        await copies.WaitAsync(TimeSpan.FromSeconds(30));
        var synced = await socket.CallAsync(new OpRequest { Seq = 100, Synchronize = new CtxSynchronize() });
        Assert.Equal(FrameType.Reply, synced.Type);

        await socket.SendAsync(new OpRequest { Seq = 101, MemcpyDtoh = new MemcpyDtoH { Ptr = target, Bytes = Total } });
        var back = new byte[Total];
        var received = 0L;
        while (received < Total)
        {
            var frame = await socket.ReadFrameAsync(TimeSpan.FromSeconds(20));
            Assert.True(frame is { Type: FrameType.Data, Seq: 101 }, $"expected the read-back copy's data, got {frame}");
            var offset = (int)BinaryPrimitives.ReadUInt64LittleEndian(frame.Fixed);
            frame.Payload.CopyTo(back, offset);
            received += frame.Payload.Length;
        }

        for (var i = 0; i < Total / Chunk; i++)
        {
            Assert.True(back.AsSpan(i * Chunk, Chunk).SequenceEqual(ChunkBytes(i)), $"copy {i} (seq {5 + i}) did not land as sent");
        }
    }

    /// <summary>
    /// A lease that outlives the fixture's 2 s TTL by far: these copies keep both cores busy for seconds, and a late
    /// keepalive must not end the lease under the test.
    /// </summary>
    private Task<Lease> LongLeaseAsync(ulong memoryBytes)
        => pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = memoryBytes, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(30) });

    private static ulong Pointer(ReceivedFrame reply)
    {
        Assert.Equal(FrameType.Reply, reply.Type);
        return BinaryPrimitives.ReadUInt64LittleEndian(reply.Fixed);
    }

    private static byte[] ChunkBytes(int i)
    {
        var bytes = new byte[Chunk];
        new Random(100 + i).NextBytes(bytes);
        return bytes;
    }

    private static byte[] CopyFrame(ulong ptr, ulong seq, byte[] payload)
    {
        var writer = new ArrayBufferWriter<byte>(FrameCodec.HeaderSize + 16 + payload.Length);
        Span<byte> scratch = stackalloc byte[16];
        FrameCodec.Write(writer, FrameType.MemcpyHtoD, seq, new FixedBuilder(scratch).U64(ptr).U64(0).Written, payload);
        return writer.WrittenSpan.ToArray();
    }
}
