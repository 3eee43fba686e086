using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// Where a session's replies go, whatever the transport. Thread-safe: device-to-host data and the errors of
/// fire-and-forget work arrive on device threads while the session's reader answers other ops. An error with sequence
/// number 0 is the session's own (the lease ended, a protocol error): nothing is sent after it.
/// </summary>
internal interface ISessionReplies
{
    /// <summary>Op <paramref name="seq"/> succeeded with <paramref name="kind"/> of result.</summary>
    void Reply(ulong seq, ReplyKind kind, ulong value = 0, ulong value2 = 0);

    /// <summary>Op <paramref name="seq"/> failed, or (seq 0) the session did.</summary>
    void Error(ulong seq, Error error);

    /// <summary>The answer to the open op.</summary>
    void Session(ulong seq, SessionInfo info);

    /// <summary>Something the session is told unasked, such as a preemption.</summary>
    void Notice(Notice notice);

    /// <summary>A chunk of a device-to-host copy; the bytes are valid only during the call.</summary>
    void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last);

    /// <summary>No more replies will come; <see cref="Completion"/> ends once the queued ones are written.</summary>
    void Complete();

    Task Completion { get; }
}
