using System.Buffers;
using GpuPool.Client.Transport;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Tests.Transport;

/// <summary>
/// The test's reply target: writes down each thing a transport hands it, in order, as a line a test compares, and
/// gives large copies the destinations <see cref="Destinations"/> names.
/// </summary>
internal sealed class RecordingTarget : IReplyTarget
{
    private readonly Lock _gate = new();
    private readonly List<string> _got = [];
    private readonly TaskCompletionSource<GpuPoolException> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Where a Data frame of (seq, offset, length) may be received directly; empty for none.</summary>
    public Func<ulong, ulong, int, Memory<byte>> Destinations { get; init; } = static (_, _, _) => Memory<byte>.Empty;

    public IReadOnlyList<string> Got
    {
        get
        {
            lock (_gate)
            {
                return [.. _got];
            }
        }
    }

    /// <summary>The error the transport closed with.</summary>
    public Task<GpuPoolException> Closed => _closed.Task;

    public void OnValue(ulong seq, in ReplyValue value) => Add($"value #{seq} {value.Value:x} {value.Value2:x}");

    public void OnData(ulong seq, ulong offset, in ReadOnlySequence<byte> bytes, bool last)
        => Add($"data #{seq} @{offset} [{string.Join(',', bytes.ToArray())}]{(last ? " last" : "")}");

    public Memory<byte> DataDestination(ulong seq, ulong offset, int length)
    {
        Add($"destination #{seq} @{offset} {length}");
        return Destinations(seq, offset, length);
    }

    public void OnDataReceived(ulong seq, ulong offset, int length, bool last) => Add($"received #{seq} @{offset} {length}{(last ? " last" : "")}");

    public void OnError(ulong seq, GpuPoolException error) => Add($"error #{seq} {error.Code} (#{error.FailedSeq} {error.FailedOp}): {error.Message}");

    public void OnNotice(Notice notice) => Add($"notice {notice.Kind} at {notice.DeadlineUnixMs}: {notice.Message}");

    public void OnLaneClosed(int lane, GpuPoolException error) => Add($"lane {lane} closed: {error.Message}");

    public void OnClosed(GpuPoolException error) => _closed.TrySetResult(error);

    private void Add(string line)
    {
        lock (_gate)
        {
            _got.Add(line);
        }
    }
}
