using System.Buffers;
using System.Runtime.CompilerServices;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>Receives the rest of a chunk's payload straight from the socket into device memory, for either kind of connection.</summary>
internal static class ChunkReceiver
{
    /// <summary>After a payload received straight into device memory, the pipe reads no more than the next frame's header and fixed fields.</summary>
    private const int HeaderReadLimit = FrameCodec.HeaderSize + 16;

    /// <summary>
    /// Receives the rest of a payload straight from the socket into device memory (the pipe holds nothing more and
    /// reads nothing until asked), then ends the write. A connection that fails or closes in the middle ends the write
    /// with the chunk uncounted (its bytes in device memory undefined) and throws: its copy fails, naming the connection.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask ReceiveAsync(FrameWire wire, BoundedReadStream bounded, PointerMemory view, FastPathSession session, DirectReceive receive, CancellationToken cancellationToken)
    {
        var whole = false;
        view.Reset(receive.Chunk.Target + receive.Arrived, receive.Chunk.Length - receive.Arrived);
        try
        {
            // The rest is on its way: waiting for it in poll beats a trip through the socket engine per wake-up.
            await wire.ReceiveExactlyAsync(view.Memory, "client", cancellationToken).ConfigureAwait(false);
            whole = true;
        }
        finally
        {
            view.Reset(0, 0);
            session.EndDirectChunk(receive.Chunk, whole);
        }

        // More bulk is likely next: the pipe reads just its header, so that its payload can come this way too.
        bounded.LimitNextRead(HeaderReadLimit);
    }

    /// <summary>A frame cut by the end of what was read: the rest of it is on its way, and the next read may wait for it in poll.</summary>
    public static void ExpectRest(BoundedReadStream bounded, in ReadOnlySequence<byte> buffer, in DecodeStep step)
    {
        if (step.Stop == Stop.None && buffer.Slice(step.Consumed).Length > 0)
        {
            bounded.RestIsComing();
        }
    }
}
