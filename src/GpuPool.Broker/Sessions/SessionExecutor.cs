using System.Runtime.CompilerServices;
using GpuPool.Broker.Leases;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// Runs one device session, whatever carries it: one method per op (in the partial files by family: memory and copies,
/// modules and launches, streams and events), called in sequence order by the transport's adapter. Host-side ops
/// (alloc, free, modules, handles) run at once; device work goes to the lease's context; synchronizing ops are answered
/// once the work they wait for is done, with the sticky error of an earlier op when there is one. An op method returns a
/// completed <see cref="ValueTask"/> unless it must wait, and reports its own failure by throwing.
/// </summary>
internal sealed partial class SessionExecutor
{
    private readonly BrokerLease _lease;
    private readonly BrokerOptions _options;
    private readonly IDeviceContext _context;
    private readonly ISessionReplies _replies;
    private readonly string _transport;
    private readonly ulong _fastPathSession;
    private readonly int _maxDataConnections;
    private readonly ILogger _logger;
    private ulong _lastSeq;

    /// <summary>The one lane of a copy to the host on a transport that sends from device memory (the fast path's connection).</summary>
    private readonly (IDirectReplies Writer, string Name)[]? _ownLane;

    /// <summary>Sinks of copies to the host that are over, for the next ones.</summary>
    private readonly Stack<CopyReplySink> _spareSinks = new();

    /// <param name="fastPathSession">The fast-path session's id, which its data connections name to join (0: none).</param>
    /// <param name="maxDataConnections">How many data connections may join it, told to the client.</param>
    /// <param name="logger">Where the session's debug log goes (allocations and launches, SessionExecutor.Debug.cs); none by default.</param>
    public SessionExecutor(BrokerLease lease, BrokerOptions options, ISessionReplies replies, string transport, ulong fastPathSession = 0, int maxDataConnections = 0, ILogger? logger = null)
    {
        _logger = logger ?? NullLogger.Instance;
        _lease = lease;
        _options = options;
        _context = lease.Context;
        _replies = replies;
        _transport = transport;
        _fastPathSession = fastPathSession;
        _maxDataConnections = maxDataConnections;
        _ownLane = replies is IDirectReplies direct ? [(direct, "the connection")] : null;
    }

    /// <summary>The highest sequence number run so far.</summary>
    public ulong LastSeq => _lastSeq;

    public ulong MemoryLimit => _context.MemoryLimit;

    internal ISessionReplies Replies => _replies;

    /// <summary>Answers the open op with the session's description; later ops must carry greater sequence numbers.</summary>
    public void Start(ulong openSeq)
    {
        _lastSeq = openSeq;
        _replies.Session(openSeq, DescribeSession());
        _lease.AttachNotices(_replies);
    }

    /// <summary>Ends the session: drains the replies, lets device work finish and forgets an unreported error.</summary>
    public async Task FinishAsync()
    {
        _lease.DetachNotices(_replies);
        _replies.Complete();
        await _replies.Completion.ConfigureAwait(false);
        await ForgetUnreportedErrorAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Lets the session's device work finish and drops a failure it never synchronized on: sequence numbers
    /// are per session, so the error would name an op the next session on the lease never sent.
    /// </summary>
    private async Task ForgetUnreportedErrorAsync()
    {
        try
        {
            await _context.SynchronizeAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (DeviceException)
        {
            // The context has closed with its lease; nothing is left to report to anyone.
        }

        _context.TakeError();
    }

    private SessionInfo DescribeSession()
    {
        var device = _lease.Device;
        var info = new SessionInfo
        {
            LeaseId = _lease.Claims.LeaseId,
            DeviceName = device.Name,
            Backend = device.Backend,
            DeviceIndex = (uint)device.Index,
            MemoryLimitBytes = _context.MemoryLimit,
            ComputeShare = (uint)_context.ComputeShare,
            MultiprocessorCount = (uint)device.MultiprocessorCount,
            MaxMessageBytes = (uint)_options.MaxMessageBytes,
            Uuid = device.Uuid,
            Transport = _transport,
            FastPathSession = _fastPathSession,
            MaxDataConnections = (uint)_maxDataConnections,
            DriverVersion = device.DriverVersion,
        };
        foreach (var (id, value) in device.Attributes)
        {
            info.Attributes[id] = value;
        }

        return info;
    }

    /// <summary>Whether <paramref name="seq"/> may be the next op's (greater than the previous one).</summary>
    public bool SeqIsNew(ulong seq) => seq > _lastSeq;

    /// <summary>
    /// Numbers an op before it runs: false, with the error replied, when its sequence number is not greater than the
    /// previous one (the op is not run).
    /// </summary>
    public bool TryTakeSeq(ulong seq)
    {
        if (seq <= _lastSeq)
        {
            _replies.Error(seq, new Error { Code = ErrorCode.InvalidArgument, Message = $"sequence number {seq} is not greater than the previous one ({_lastSeq}); the op was not run" });
            return false;
        }

        _lastSeq = seq;
        BrokerMetrics.Ops.Add(1);
        return true;
    }

    /// <summary>Numbers an op and answers it with an error without running it (a malformed striped copy to the host).</summary>
    public void Refuse(ulong seq, ErrorCode code, string message)
    {
        if (TryTakeSeq(seq))
        {
            _replies.Error(seq, new Error { Code = code, Message = message });
        }
    }

    /// <summary>
    /// Numbers op <paramref name="seq"/> and runs it with <paramref name="op"/> (a transport's mapping of its op to the
    /// method here). A failure is replied against the op; an op that must wait (a synchronize) is awaited here, and the
    /// caller runs nothing after it until the returned task completes.
    /// </summary>
    public ValueTask Run<TState>(ulong seq, in TState state, Func<SessionExecutor, TState, ValueTask> op)
    {
        if (!TryTakeSeq(seq))
        {
            return default;
        }

        ValueTask running;
        try
        {
            running = op(this, state);
        }
        catch (Exception ex) when (TryReport(seq, ex))
        {
            return default;
        }

        return running.IsCompletedSuccessfully ? default : AwaitAsync(seq, running);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask AwaitAsync(ulong seq, ValueTask running)
    {
        try
        {
            await running.ConfigureAwait(false);
        }
        catch (Exception ex) when (TryReport(seq, ex))
        {
        }
    }

    /// <summary>Replies an op's own failure; false for an exception that is not an op's failure (it propagates).</summary>
    private bool TryReport(ulong seq, Exception ex)
    {
        switch (ex)
        {
            case DeviceException device:
                _replies.Error(seq, OpErrors.Own(device));
                return true;
            case GpuPoolException error:
                _replies.Error(seq, error.ToProto());
                return true;
            default:
                return false;
        }
    }

    private ValueTask Done(ulong seq)
    {
        _replies.Reply(seq, ReplyKind.Done);
        return default;
    }

    private ValueTask Answer(ulong seq, ReplyKind kind, ulong value, ulong value2 = 0)
    {
        _replies.Reply(seq, kind, value, value2);
        return default;
    }

    /// <summary>Answers a synchronizing op: done, or the sticky error of an earlier fire-and-forget op.</summary>
    private void DoneOrSticky(ulong seq)
    {
        SendDeviceOutput();
        if (_context.TakeError() is { } sticky)
        {
            _replies.Error(seq, OpErrors.Sticky(sticky));
        }
        else
        {
            _replies.Reply(seq, ReplyKind.Done);
        }
    }

    /// <summary>Characters of device output in one notice: well inside what a fast-path notice frame carries.</summary>
    internal const int DeviceOutputChunk = 8000;

    /// <summary>
    /// What the lease's kernels printed, as "device_output" notices ahead of the synchronizing call's reply, so the
    /// client prints it at the synchronize as CUDA does (its order kept: the notices and replies share one stream).
    /// </summary>
    private void SendDeviceOutput()
    {
        if (_context.TakeDeviceOutput() is not { } text)
        {
            return;
        }

        for (var at = 0; at < text.Length;)
        {
            // Pieces of whole characters: a surrogate pair is never split.
            var length = Math.Min(DeviceOutputChunk, text.Length - at);
            if (at + length < text.Length && char.IsHighSurrogate(text[at + length - 1]))
            {
                length--;
            }

            _replies.Notice(new Notice { Kind = "device_output", Message = text.Substring(at, length) });
            at += length;
        }
    }

    /// <summary>The open op, sent again on an open session.</summary>
    public static ValueTask AlreadyOpen() => throw new GpuPoolException(ErrorCode.FailedPrecondition, "this session is already open");

    /// <summary>An op this broker does not know (a newer client's).</summary>
    public static ValueTask Unknown(ulong seq) => throw new GpuPoolException(ErrorCode.InvalidArgument, $"operation #{seq} names no known op; this broker may be older than the client");
}
