using System.Buffers.Binary;
using System.Collections.Concurrent;
using Google.Protobuf;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Random and mutated frames thrown at a live broker, one per fresh connection after a valid hello:
/// every connection ends with a protocol error frame or a clean close, within a deadline; the broker never
/// sends a malformed frame, never hangs, and keeps serving other leases.
/// </summary>
public sealed class FastPathFuzzTests(FastPathPoolFixture pool) : IClassFixture<FastPathPoolFixture>
{
    private const int Workers = 4;
    private const int ConnectionsPerWorker = 500;
    private static readonly TimeSpan ConnectionDeadline = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Every_connection_fed_a_random_or_mutated_frame_ends_in_an_error_frame_or_a_clean_close()
    {
        var outcomes = new ConcurrentDictionary<string, int>();
        var leases = new List<Lease>();
        try
        {
            for (var w = 0; w < Workers; w++)
            {
                leases.Add(await pool.LeaseAsync());
            }

            // One lease per worker: a lease holds one session at a time, so each worker's connections follow one another.
            await Task.WhenAll(leases.Select((lease, w) => Task.Run(() => FuzzAsync(lease, seed: 9000 + w, outcomes))));
        }
        finally
        {
            foreach (var lease in leases)
            {
                await lease.DisposeAsync();
            }
        }

        // The generator must reach both ends: frames the broker refuses and frames it runs or waits on.
        Assert.Equal(Workers * ConnectionsPerWorker, outcomes.Values.Sum());
        Assert.True(outcomes.GetValueOrDefault("protocol error") > Workers * ConnectionsPerWorker / 4, string.Join(", ", outcomes));
        Assert.True(outcomes.GetValueOrDefault("clean close") > Workers * ConnectionsPerWorker / 10, string.Join(", ", outcomes));
        await pool.AssertBrokerHealthyAsync();
    }

    private async Task FuzzAsync(Lease lease, int seed, ConcurrentDictionary<string, int> outcomes)
    {
        var random = new Random(seed);
        for (var i = 0; i < ConnectionsPerWorker; i++)
        {
            var bytes = Mutate(random, BaseFrame(random));
            string outcome;
            try
            {
                using var socket = await FrameSocket.ConnectAsync(pool.Broker.FastPath.Tcp);
                await socket.HelloAsync(lease.Id, lease.Token);
                await socket.SendAsync(bytes);

                // Our end of the stream: a frame cut short can only end in a close, never in a wait.
                socket.ShutdownSend();
                var frames = await socket.ReadToCloseAsync(ConnectionDeadline);
                outcome = Classify(frames);
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"connection {i} of seed {seed}, after sending {Convert.ToHexString(bytes.AsSpan(0, Math.Min(bytes.Length, 96)))} ({bytes.Length} bytes): {ex.Message}", ex);
            }

            outcomes.AddOrUpdate(outcome, 1, (_, n) => n + 1);
        }
    }

    /// <summary>Replies and op errors may come first; a session-level error (seq 0) only last, and only a protocol error or the message limit.</summary>
    private static string Classify(List<ReceivedFrame> frames)
    {
        for (var i = 0; i < frames.Count; i++)
        {
            var frame = frames[i];
            Assert.True(frame.Type is FrameType.Reply or FrameType.Data or FrameType.Error, $"the broker sent a {frame}");
            // An op numbered 0 gets its own error numbered 0, which is not the end of the session.
            if (frame.Type == FrameType.Error && frame.Seq == 0 && !frame.Error().Message.StartsWith("sequence number 0 is not greater than the previous one", StringComparison.Ordinal))
            {
                Assert.True(i == frames.Count - 1, $"frames came after the session's error: [{string.Join(", ", frames)}]");
                var error = frame.Error();
                Assert.True(
                    (error.Code == ErrorCode.InvalidArgument && error.Message.StartsWith("protocol error: ", StringComparison.Ordinal))
                    || (error.Code == ErrorCode.ResourceExhausted && error.Message.StartsWith("message larger than the broker's limit: ", StringComparison.Ordinal)),
                    error.ToString());
                return "protocol error";
            }
        }

        return "clean close";
    }

    /// <summary>A valid op frame with random fields (seq 2, right after the hello).</summary>
    private static byte[] BaseFrame(Random random)
    {
        ulong Any() => (ulong)random.NextInt64();
        var op = new OpRequest { Seq = 2 };
        switch (random.Next(20))
        {
            case 16 or 17:
                // A striped copy either way: it names this connection (always open), or others that never joined.
                var striped = new StripedCopy(2, Any(), Any(), (ulong)random.Next(0, 4 << 20), (uint)random.Next(0, 2 << 20), random.Next(2) == 0 ? 1u : (uint)random.Next());
                var stripedWriter = new System.Buffers.ArrayBufferWriter<byte>();
                StripeFrames.WriteCopy(stripedWriter, random.Next(2) == 0 ? FrameType.MemcpyHtoDStriped : FrameType.MemcpyDtoHStriped, striped);
                return stripedWriter.WrittenSpan.ToArray();
            case 18:
                // A chunk of a striped copy this connection never announced.
                var chunkWriter = new System.Buffers.ArrayBufferWriter<byte>();
                Span<byte> offset = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(offset, (ulong)random.Next(0, 1 << 20));
                FrameCodec.Write(chunkWriter, FrameType.StripeChunk, 2, offset, RandomBytes(random, random.Next(0, 300)));
                return chunkWriter.WrittenSpan.ToArray();
            case 19:
                // A join on a connection whose session is open already.
                var joinWriter = new System.Buffers.ArrayBufferWriter<byte>();
                StripeFrames.WriteJoin(joinWriter, Any(), "l-x", "t");
                return joinWriter.WrittenSpan.ToArray();
            case 0: op.MemAlloc = new MemAlloc { Bytes = (ulong)random.Next(1, 1 << 20) }; break;
            case 1: op.MemFree = new MemFree { Ptr = Any() }; break;
            case 2: op.MemcpyHtod = new MemcpyHtoD { Ptr = Any(), Data = ByteString.CopyFrom(RandomBytes(random, random.Next(0, 300))) }; break;
            case 3: op.MemcpyDtoh = new MemcpyDtoH { Ptr = Any(), Bytes = (ulong)random.Next(0, 1 << 16) }; break;
            case 4: op.MemcpyDtod = new MemcpyDtoD { Dst = Any(), Src = Any(), Bytes = (ulong)random.Next(0, 1 << 16) }; break;
            case 5: op.Memset = new Memset { Ptr = Any(), Count = (ulong)random.Next(0, 1 << 16), Value = (uint)random.Next(), ElementSize = (uint)random.Next(0, 6) }; break;
            case 6: op.ModuleLoad = random.Next(2) == 0 ? new ModuleLoad { Builtin = true } : new ModuleLoad { Image = ByteString.CopyFrom(RandomBytes(random, random.Next(0, 200))) }; break;
            case 7: op.ModuleGetFunction = new ModuleGetFunction { Module = Any(), Name = "fill_f32" }; break;
            case 8: op.Launch = new Launch { Function = Any(), GridX = 1, GridY = 1, GridZ = 1, BlockX = 32, BlockY = 1, BlockZ = 1, Params = ByteString.CopyFrom(RandomBytes(random, random.Next(0, 64))) }; break;
            case 9: op.StreamCreate = new StreamCreate { Flags = (uint)random.Next(0, 4) }; break;
            case 10: op.EventCreate = new EventCreate(); break;
            case 11: op.EventRecord = new EventRecord { Stream = Any(), Event = Any() }; break;
            case 12: op.StreamWaitEvent = new StreamWaitEvent { Stream = Any(), Event = Any() }; break;
            case 13: op.EventElapsedTime = new EventElapsedTime { Start = Any(), End = Any() }; break;
            case 14: op.Synchronize = new CtxSynchronize(); break;
            default: op.MemGetInfo = new MemGetInfo(); break;
        }

        return FrameSocket.Encode(op);
    }

    private static byte[] Mutate(Random random, byte[] frame)
    {
        switch (random.Next(10))
        {
            case 0:
                // Unchanged: the valid frames keep the broker's op paths in the mix.
                return frame;
            case 1:
                // A few flipped bytes anywhere.
                for (var n = random.Next(1, 4); n > 0; n--)
                {
                    frame[random.Next(frame.Length)] ^= (byte)random.Next(1, 256);
                }

                return frame;
            case 2:
                // A flipped byte in the header: magic, type, length or seq.
                frame[random.Next(FrameCodec.HeaderSize)] ^= (byte)random.Next(1, 256);
                return frame;
            case 3:
                // Cut short: a truncated header, fixed fields or payload.
                return frame[..random.Next(1, frame.Length)];
            case 4:
                // A length that disagrees with the bytes: a little off, huge, or anything.
                var length = BinaryPrimitives.ReadUInt32LittleEndian(frame.AsSpan(4));
                BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), random.Next(4) switch
                {
                    0 => length + (uint)random.Next(1, 64),
                    1 => length == 0 ? 1 : length - 1,
                    2 => uint.MaxValue - (uint)random.Next(16),
                    _ => (uint)random.NextInt64(0, 1L << 32),
                });
                return frame;
            case 5:
                // Another type: unknown, a broker-to-client type, or an op whose fixed fields have another size.
                BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(2), random.Next(4) switch
                {
                    0 => (ushort)random.Next(ushort.MaxValue + 1),
                    1 => (ushort)random.Next(64, 69),
                    2 => (ushort)random.Next(32, 36),
                    _ => (ushort)random.Next(2, 25),
                });
                return frame;
            case 6:
                // Noise.
                return RandomBytes(random, random.Next(1, 120));
            case 7:
                // A valid frame followed by noise.
                return [.. frame, .. RandomBytes(random, random.Next(1, 64))];
            case 8:
                // A sequence number that does not follow the hello's.
                BinaryPrimitives.WriteUInt64LittleEndian(frame.AsSpan(8), (ulong)random.Next(0, 2));
                return frame;
            default:
                // A valid frame, then a mutated one.
                var second = BaseFrame(random);
                BinaryPrimitives.WriteUInt64LittleEndian(second.AsSpan(8), 3);
                return [.. frame, .. Mutate(random, second)];
        }
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
