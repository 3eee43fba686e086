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

    internal bool TryAttachSession() => Interlocked.CompareExchange(ref _sessionOpen, 1, 0) == 0;

    internal void DetachSession() => Volatile.Write(ref _sessionOpen, 0);

    internal void MarkEnded(string reason)
    {
        EndReason = reason;
        _ended.Cancel();
    }
}
