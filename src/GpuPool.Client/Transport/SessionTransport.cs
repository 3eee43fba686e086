using System.Buffers;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport;

/// <summary>What a reply carries besides data: a pointer, handle, flag or pair of sizes, or the session's description.</summary>
internal readonly record struct ReplyValue(ulong Value, ulong Value2, SessionInfo? Session);

/// <summary>Receives a session's replies from its transport, on the transport's reader thread.</summary>
internal interface IReplyTarget
{
    void OnValue(ulong seq, in ReplyValue value);

    /// <summary>A chunk of a device-to-host copy; the bytes are valid only during the call.</summary>
    void OnData(ulong seq, ulong offset, in ReadOnlySequence<byte> bytes, bool last);

    /// <summary>
    /// Where the payload of a Data frame of op <paramref name="seq"/> may be received directly, without a staging copy:
    /// the part of the copy's destination it covers. Empty when there is none (then it comes through <see cref="OnData"/>).
    /// </summary>
    Memory<byte> DataDestination(ulong seq, ulong offset, int length) => Memory<byte>.Empty;

    /// <summary>A Data frame's payload was received straight into <see cref="DataDestination"/>.</summary>
    void OnDataReceived(ulong seq, ulong offset, int length, bool last)
    {
    }

    /// <summary>An op failed; seq 0 is the session itself (the lease ended, a protocol error).</summary>
    void OnError(ulong seq, GpuPoolException error);

    /// <summary>The broker told the session something unasked (seq 0), such as a preemption.</summary>
    void OnNotice(Notice notice);

    /// <summary>A data connection of a striped session closed: copies in flight over it (bit <paramref name="lane"/> of their connections) fail.</summary>
    void OnLaneClosed(int lane, GpuPoolException error);

    /// <summary>The transport is closed; nothing more will arrive.</summary>
    void OnClosed(GpuPoolException error);
}

/// <summary>
/// How a device session's ops reach the broker: the gRPC op stream (portable) or the raw fast path.
/// Sends are made in sequence order by the session, one at a time.
/// </summary>
internal abstract class SessionTransport : IAsyncDisposable
{
    /// <summary>"grpc", "tcp" or "unix".</summary>
    public abstract string Name { get; }

    /// <summary>Largest payload one copy op may carry on this transport.</summary>
    public int MaxCopyChunk { get; private set; } = 1 << 20;

    /// <summary>Largest message the broker takes, from its session description.</summary>
    public int MaxMessageBytes { get; private set; } = 4 << 20;

    /// <summary>Sizes copy chunks to the broker's message limit, once the session description has come.</summary>
    public void UseMessageLimit(int maxMessageBytes, int preferredChunk)
    {
        MaxMessageBytes = maxMessageBytes;
        MaxCopyChunk = Math.Clamp(maxMessageBytes - (64 * 1024), 4096, preferredChunk);
    }

    public abstract void Start(IReplyTarget target);

    /// <summary>Queues the session's open op, which carries the lease token; answered with the session's description.</summary>
    public abstract ValueTask SendOpenAsync(ulong seq, string leaseId, string token, CancellationToken cancellationToken);

    /// <summary>
    /// Queues an op and its payload (kernel parameters, a module image, a name); completes once it is queued (not
    /// sent), unless the queue is full. The payload may be reused as soon as this returns.
    /// </summary>
    public abstract ValueTask SendAsync<TOp>(ulong seq, in TOp op, ReadOnlySpan<byte> payload, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>;

    /// <summary>Queues a copy to the device; completes once <paramref name="data"/> may be reused by the caller.</summary>
    public abstract ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    public abstract ValueTask DisposeAsync();
}
