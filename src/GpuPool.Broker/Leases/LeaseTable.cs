using System.Collections.Concurrent;
using GpuPool.Coordination;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Leases;

/// <summary>
/// The leases this broker serves. A lease lives while its record exists in the coordination store (the
/// leading scheduler writes it, and deletes it when the lease ends); when the record goes — released, expired,
/// revoked — the broker closes the lease's context and frees everything it held.
/// </summary>
public sealed class LeaseTable : IAsyncDisposable
{
    private readonly BrokerOptions _options;
    private readonly IClusterStore _store;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, BrokerLease> _leases = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _openGate = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private Task? _watch;
    private bool _closed;
    private int _disposed;

    public LeaseTable(BrokerOptions options, IClusterStore store, ILogger logger)
    {
        _options = options;
        _store = store;
        _logger = logger;
    }

    public ICollection<BrokerLease> Leases => _leases.Values;

    public void Start() => _watch = Task.Run(() => WatchLoopAsync(_stop.Token));

    /// <summary>
    /// Checks a session's token and returns its lease with the session attached, creating the lease's
    /// context on first use. Throws GpuPoolException with the reason a client can act on.
    /// </summary>
    public async Task<BrokerLease> AttachSessionAsync(string leaseId, string token, CancellationToken cancellationToken)
    {
        var claims = LeaseToken.Verify(token, _options.SchedulerPublicKey, _options.TimeProvider.GetUtcNow());
        if (!string.Equals(claims.LeaseId, leaseId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"the token was issued for lease {claims.LeaseId}, not for lease {leaseId}");
        }

        if (!string.Equals(claims.BrokerId, _options.BrokerId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"lease {leaseId} is placed on broker {claims.BrokerId}, not on this broker ({_options.BrokerId})");
        }

        var devices = _options.Backend.Devices;
        if (claims.DeviceIndex >= devices.Count)
        {
            throw new GpuPoolException(ErrorCode.NotFound, $"lease {leaseId} names device {claims.DeviceIndex}, but this broker has {devices.Count} device(s)");
        }

        await _openGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_closed)
            {
                throw new GpuPoolException(ErrorCode.Unavailable, $"broker {_options.BrokerId} is shutting down: allocate a new lease");
            }

            if (!await RecordExistsAsync(leaseId, cancellationToken).ConfigureAwait(false))
            {
                throw LeaseGone(leaseId);
            }

            if (!_leases.TryGetValue(leaseId, out var lease))
            {
                var device = devices[(int)claims.DeviceIndex];
                IDeviceContext context;
                try
                {
                    context = device.CreateContext(new ContextOptions(leaseId, claims.MemoryBytes, (int)claims.ComputeShare, (GpuPool.Devices.ShareMode)claims.ShareMode));
                }
                catch (DeviceException ex)
                {
                    throw OpErrors.ToGpuPool(ex);
                }

                lease = new BrokerLease(claims, device, context);
                _leases[leaseId] = lease;
                Log.LeaseOpened(_logger, leaseId, claims.Tenant, claims.DeviceIndex, claims.MemoryBytes, claims.ComputeShare);

                // The record may have gone while the context was being made; the watch could have missed it.
                if (!await RecordExistsAsync(leaseId, cancellationToken).ConfigureAwait(false))
                {
                    await EndAsync(leaseId, "lease record removed").ConfigureAwait(false);
                    throw LeaseGone(leaseId);
                }
            }

            if (!lease.TryAttachSession())
            {
                throw new GpuPoolException(ErrorCode.FailedPrecondition, $"lease {leaseId} already has an open session; close it before opening another");
            }

            return lease;
        }
        finally
        {
            _openGate.Release();
        }
    }

    /// <summary>
    /// Checks the token of a connection that asks to join an open session of <paramref name="leaseId"/> (a fast-path
    /// data connection): it must verify and be this lease's and this broker's. Throws GpuPoolException with the
    /// reason; whether the session it names is open and this lease's is the caller's check.
    /// </summary>
    public void VerifyJoin(string leaseId, string token)
    {
        var claims = LeaseToken.Verify(token, _options.SchedulerPublicKey, _options.TimeProvider.GetUtcNow());
        if (!string.Equals(claims.LeaseId, leaseId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"the token was issued for lease {claims.LeaseId}, not for lease {leaseId}");
        }

        if (!string.Equals(claims.BrokerId, _options.BrokerId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"lease {leaseId} is placed on broker {claims.BrokerId}, not on this broker ({_options.BrokerId})");
        }
    }

    /// <summary>Ends a lease: closes its sessions, waits for its device work, frees all its memory.</summary>
    public async Task EndAsync(string leaseId, string reason)
    {
        if (!_leases.TryRemove(leaseId, out var lease))
        {
            return;
        }

        lease.MarkEnded(reason);
        var bytes = lease.Context.MemoryUsed;
        await lease.Context.DisposeAsync().ConfigureAwait(false);
        Log.LeaseEnded(_logger, leaseId, reason, bytes);
    }

    /// <summary>
    /// A lease record changed. When the scheduler has marked it for preemption, the holder's session is told now
    /// and the broker revokes the lease itself at the deadline (the scheduler ends its record then too).
    /// </summary>
    private void OnRecord(KvEntry entry)
    {
        var leaseId = entry.Key[StoreKeys.Leases.Length..];
        if (!_leases.TryGetValue(leaseId, out var lease))
        {
            return;
        }

        LeaseRecord record;
        try
        {
            record = LeaseRecord.Parser.ParseFrom(entry.Value.Span);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return;
        }

        if (record.PreemptDeadline is null)
        {
            return;
        }

        var deadline = record.PreemptDeadline.ToDateTimeOffset();
        var notice = new Notice { Kind = "preempting", Message = record.PreemptReason, DeadlineUnixMs = deadline.ToUnixTimeMilliseconds() };
        if (lease.MarkPreempting(notice))
        {
            Log.LeasePreempting(_logger, leaseId, record.PreemptReason, deadline);
            _ = RevokeAtAsync(leaseId, deadline, record.PreemptReason);
        }
    }

    private async Task RevokeAtAsync(string leaseId, DateTimeOffset deadline, string reason)
    {
        var wait = deadline - _options.TimeProvider.GetUtcNow();
        try
        {
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, _options.TimeProvider, _stop.Token).ConfigureAwait(false);
            }

            await EndAsync(leaseId, reason).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The broker is stopping: every lease ends anyway.
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task<bool> RecordExistsAsync(string leaseId, CancellationToken cancellationToken)
        => await _store.GetAsync(StoreKeys.Leases + leaseId, cancellationToken).ConfigureAwait(false) is not null;

    private static GpuPoolException LeaseGone(string leaseId)
        => new(ErrorCode.LeaseEnded, $"lease {leaseId} has ended (released, expired or revoked) or was never granted: allocate a new lease");

    private async Task WatchLoopAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var listing = await _store.ListAsync(StoreKeys.Leases, cancellationToken).ConfigureAwait(false);
                var revision = listing.Revision;
                var live = listing.Entries.Select(e => e.Key[StoreKeys.Leases.Length..]).ToHashSet(StringComparer.Ordinal);
                foreach (var id in _leases.Keys.Where(id => !live.Contains(id)).ToArray())
                {
                    await EndAsync(id, "lease record removed").ConfigureAwait(false);
                }

                foreach (var entry in listing.Entries)
                {
                    OnRecord(entry);
                }

                await foreach (var change in _store.WatchAsync(StoreKeys.Leases, revision, cancellationToken).ConfigureAwait(false))
                {
                    if (change.Kind == WatchEventKind.Delete)
                    {
                        await EndAsync(change.Entry.Key[StoreKeys.Leases.Length..], "released or expired").ConfigureAwait(false);
                    }
                    else
                    {
                        OnRecord(change.Entry);
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is InvalidOperationException or IOException or GpuPoolException or StoreUnavailableException or StoreCompactedException)
            {
                Log.WatchFailed(_logger, ex.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(200), _options.TimeProvider, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Ends every lease and refuses new sessions; the server may still be taking calls while this runs.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        if (_watch is not null)
        {
            await _watch.ConfigureAwait(false);
        }

        // Under the gate, so that no session attaches to a lease after it has been ended here.
        await _openGate.WaitAsync().ConfigureAwait(false);
        try
        {
            _closed = true;
            foreach (var id in _leases.Keys.ToArray())
            {
                await EndAsync(id, "broker shutting down").ConfigureAwait(false);
            }
        }
        finally
        {
            _openGate.Release();
        }

        // The gate stays undisposed: a call still arriving waits on it and is refused, rather than failing on a disposed object.
        _stop.Dispose();
    }
}
