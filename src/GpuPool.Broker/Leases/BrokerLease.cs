using GpuPool.Protocol.V1;
using GpuPool.Devices;
using GpuPool.Protocol.Tokens;

namespace GpuPool.Broker.Leases;

/// <summary>A lease this broker serves: what its token grants, its device context, and whether a session holds it.</summary>
public sealed class BrokerLease(LeaseClaims claims, IDevice device, IDeviceContext context)
{
    private readonly CancellationTokenSource _ended = new();
    private int _sessionOpen;

    public LeaseClaims Claims { get; } = claims;

    public IDevice Device { get; } = device;

    public IDeviceContext Context { get; } = context;

    /// <summary>Cancelled when the lease ends; a session watching it closes with LeaseEnded.</summary>
    public CancellationToken Ended => _ended.Token;

    public string? EndReason { get; private set; }

    private readonly Lock _noticeGate = new();
    private Sessions.ISessionReplies? _replies;

    /// <summary>Set once the scheduler marks the lease for preemption: the notice every session of it is told.</summary>
    public Notice? PreemptNotice { get; private set; }

    internal bool TryAttachSession() => Interlocked.CompareExchange(ref _sessionOpen, 1, 0) == 0;

    /// <summary>Where notices go while a session is open; a notice that came before the session is told at once.</summary>
    internal void AttachNotices(Sessions.ISessionReplies replies)
    {
        lock (_noticeGate)
        {
            _replies = replies;
            if (PreemptNotice is { } notice)
            {
                replies.Notice(notice);
            }
        }
    }

    internal void DetachNotices(Sessions.ISessionReplies replies)
    {
        lock (_noticeGate)
        {
            if (ReferenceEquals(_replies, replies))
            {
                _replies = null;
            }
        }
    }

    /// <summary>Records the preemption and tells the open session, once. False when it was already known.</summary>
    internal bool MarkPreempting(Notice notice)
    {
        lock (_noticeGate)
        {
            if (PreemptNotice is not null)
            {
                return false;
            }

            PreemptNotice = notice;
            _replies?.Notice(notice);
            return true;
        }
    }

    internal void DetachSession() => Volatile.Write(ref _sessionOpen, 0);

    internal void MarkEnded(string reason)
    {
        EndReason = reason;
        _ended.Cancel();
    }
}
