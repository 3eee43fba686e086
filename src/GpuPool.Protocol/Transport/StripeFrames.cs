using System.Buffers;
using System.Text;

namespace GpuPool.Protocol.Transport;

/// <summary>A striped copy as its op frame states it: which bytes, in chunks of what size, over which connections.</summary>
/// <param name="Connections">Bit i set: connection index i carries chunks (bit 0 is the session's first connection).</param>
public readonly record struct StripedCopy(ulong Seq, ulong Ptr, ulong Stream, ulong Bytes, uint ChunkBytes, uint Connections)
{
    /// <summary>How many chunks the copy is cut into.</summary>
    public ulong ChunkCount => ChunkBytes == 0 ? 0 : (Bytes + ChunkBytes - 1) / ChunkBytes;
}

/// <summary>A join frame: the session an extra data connection asks to join, and the lease token that allows it.</summary>
public sealed record JoinRequest(ulong Session, string LeaseId, string Token);

/// <summary>
/// Encodes and decodes the frames of striped copies: <see cref="FrameType.Join"/>, the two striped copy ops and
/// <see cref="FrameType.StripeChunk"/>. Pure functions over frames, like <see cref="OpFrames"/>.
/// </summary>
public static class StripeFrames
{
    /// <summary>Most connections one session may stripe over: one bit each in a u32, the first connection included.</summary>
    public const int MaxConnections = 32;

    public static void WriteJoin(IBufferWriter<byte> writer, ulong session, string leaseId, string token)
    {
        var (lease, secret) = Credentials.Encode(leaseId, token);
        Span<byte> scratch = stackalloc byte[16];
        var f = new FixedBuilder(scratch).U64(session).U16(checked((ushort)lease.Length)).U16(checked((ushort)secret.Length)).U32(0);
        FrameCodec.Write(writer, FrameType.Join, 0, f.Written, [.. lease, .. secret]);
    }

    /// <summary>Reads a Join frame; null with a reason when its lengths do not add up.</summary>
    public static JoinRequest? ReadJoin(in Frame frame, out string? error)
    {
        Span<byte> scratch = stackalloc byte[16];
        var f = new FixedFields(frame.Fixed, scratch);
        var session = f.U64();
        return Credentials.TryDecode(frame, f.U16(), f.U16(), "join frame", out var leaseId, out var token, out error)
            ? new JoinRequest(session, leaseId, token)
            : null;
    }

    /// <summary>Writes the op frame of a striped copy (<see cref="FrameType.MemcpyHtoDStriped"/> or <see cref="FrameType.MemcpyDtoHStriped"/>).</summary>
    public static void WriteCopy(IBufferWriter<byte> writer, FrameType type, in StripedCopy copy)
    {
        Span<byte> scratch = stackalloc byte[32];
        var f = new FixedBuilder(scratch);
        f = type switch
        {
            FrameType.MemcpyHtoDStriped => f.U64(copy.Ptr).U64(copy.Stream).U64(copy.Bytes),
            FrameType.MemcpyDtoHStriped => f.U64(copy.Ptr).U64(copy.Bytes).U64(copy.Stream),
            _ => throw new ArgumentException($"{type} is not a striped copy", nameof(type)),
        };
        FrameCodec.Write(writer, type, copy.Seq, f.U32(copy.ChunkBytes).U32(copy.Connections).Written, ReadOnlySpan<byte>.Empty);
    }

    /// <summary>Reads the op frame of a striped copy of either direction.</summary>
    public static StripedCopy ReadCopy(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[32];
        var f = new FixedFields(frame.Fixed, scratch);
        var ptr = f.U64();
        ulong stream, bytes;
        if (frame.Type == FrameType.MemcpyHtoDStriped)
        {
            stream = f.U64();
            bytes = f.U64();
        }
        else
        {
            bytes = f.U64();
            stream = f.U64();
        }

        return new StripedCopy(frame.Seq, ptr, stream, bytes, f.U32(), f.U32());
    }

    /// <summary>The fixed fields of a chunk frame: where its bytes go in the copy.</summary>
    public static ulong ReadChunkOffset(in Frame frame)
    {
        Span<byte> scratch = stackalloc byte[8];
        return new FixedFields(frame.Fixed, scratch).U64();
    }
}
