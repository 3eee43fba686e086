using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests.Sessions;

/// <summary>A reply the executor sent, as the test's sink recorded it.</summary>
internal abstract record SentReply(ulong Seq);

internal sealed record ValueSent(ulong Seq, ReplyKind Kind, ulong Value, ulong Value2) : SentReply(Seq);

internal sealed record ErrorSent(ulong Seq, Error Error) : SentReply(Seq);

internal sealed record DataSent(ulong Seq, ulong Offset, byte[] Bytes, bool Last) : SentReply(Seq);

internal sealed record SessionSent(ulong Seq, SessionInfo Info) : SentReply(Seq);

internal sealed record NoticeSent(Notice Notice) : SentReply(0);

/// <summary>The test's sink for a session's replies: records each, in the order sent, from any thread.</summary>
internal sealed class RecordingReplies : ISessionReplies
{
    private readonly Lock _gate = new();
    private readonly List<SentReply> _sent = [];
    private readonly TaskCompletionSource _lastChunk = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when a copy's last chunk has been sent.</summary>
    public Task LastChunk => _lastChunk.Task;

    public Task Completion => Task.CompletedTask;

    /// <summary>What was sent for op <paramref name="seq"/>, in order.</summary>
    public IReadOnlyList<SentReply> For(ulong seq)
    {
        lock (_gate)
        {
            return [.. _sent.Where(r => r.Seq == seq)];
        }
    }

    /// <summary>The one reply sent for <paramref name="seq"/>, which must be a value.</summary>
    public ValueSent Value(ulong seq) => Assert.IsType<ValueSent>(Assert.Single(For(seq)));

    /// <summary>The one reply sent for <paramref name="seq"/>, which must be an error.</summary>
    public Error Error(ulong seq) => Assert.IsType<ErrorSent>(Assert.Single(For(seq))).Error;

    public void Reply(ulong seq, ReplyKind kind, ulong value = 0, ulong value2 = 0) => Add(new ValueSent(seq, kind, value, value2));

    public void Error(ulong seq, Error error) => Add(new ErrorSent(seq, error));

    public void Session(ulong seq, SessionInfo info) => Add(new SessionSent(seq, info));

    public void Notice(Notice notice) => Add(new NoticeSent(notice));

    public void Data(ulong seq, ulong offset, ReadOnlySpan<byte> bytes, bool last)
    {
        Add(new DataSent(seq, offset, bytes.ToArray(), last));
        if (last)
        {
            _lastChunk.TrySetResult();
        }
    }

    public void Complete()
    {
    }

    private void Add(SentReply reply)
    {
        lock (_gate)
        {
            _sent.Add(reply);
        }
    }
}
