using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Identity;
using GpuPool.Scheduler.Policy;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Scheduler.Leases;

/// <summary>
/// The lease API's core: validates requests and hands them to the leader's <see cref="Allocator"/>, or forwards
/// them to the replica that leads. A lease is a record under leases/{id} that lives as long as its holder's
/// keepalives reach the leader within its TTL (the leader keeps the deadlines; renewing costs no store write);
/// when they stop, or the holder releases it, the leader deletes the record, which is how brokers learn that the
/// lease has ended.
/// </summary>
public sealed class LeaseManager : IDisposable
{
    /// <summary>Marks a call one replica forwarded to another, so a call is forwarded once at most.</summary>
    public const string ForwardedHeader = "gpupool-forwarded";

    private static readonly TimeSpan MaxWait = TimeSpan.FromHours(1);

    private readonly SchedulerOptions _options;
    private readonly IClusterStore _store;
    private readonly Func<Allocator?> _leader;
    private readonly AccessRules _access;
    private readonly CallerResolver _callers;
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    internal LeaseManager(SchedulerOptions options, IClusterStore store, Func<Allocator?> leader, AccessRules access, CallerResolver callers)
    {
        _options = options;
        _store = store;
        _leader = leader;
        _access = access;
        _callers = callers;
    }

    internal async Task<AllocateReply> AllocateAsync(AllocateRequest request, Caller caller, bool forwarded, CancellationToken cancellationToken)
    {
        var normalized = Normalize(request, caller);
        var (allocator, leader) = await RouteAsync(cancellationToken).ConfigureAwait(false);
        if (allocator is not null)
        {
            try
            {
                return await allocator.AllocateAsync(normalized, cancellationToken).ConfigureAwait(false);
            }
            catch (GpuPoolException ex) when (Allocator.IsLeadershipLoss(ex))
            {
                // This replica's term ended under the request and nothing of it was written: it goes once more to
                // whichever replica leads now (this one again, once it has taken over with a new term).
                (allocator, leader) = await RouteAsync(cancellationToken, ended: allocator).ConfigureAwait(false);
                if (allocator is not null)
                {
                    return await allocator.AllocateAsync(normalized, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        var timeout = TimeSpan.FromMilliseconds(normalized.WaitTimeoutMs) + _options.PreemptionGrace * 2 + TimeSpan.FromSeconds(30);
        return await ForwardAsync(leader, (client, headers, deadline) => client.AllocateAsync(normalized, headers, deadline, cancellationToken), caller, timeout, forwarded).ConfigureAwait(false);
    }

    internal async Task<KeepAliveReply> KeepAliveAsync(KeepAliveRequest request, Caller caller, bool forwarded, CancellationToken cancellationToken)
    {
        Authorize(request.LeaseId, request.Token, caller, "keep alive");
        var (allocator, leader) = await RouteAsync(cancellationToken).ConfigureAwait(false);
        if (allocator is null)
        {
            return await ForwardAsync(leader, (client, headers, deadline) => client.KeepAliveAsync(request, headers, deadline, cancellationToken), caller, ForwardTimeout, forwarded).ConfigureAwait(false);
        }

        var record = await allocator.RenewAsync(request.LeaseId, cancellationToken).ConfigureAwait(false)
            ?? throw await EndedAsync(request.LeaseId, cancellationToken).ConfigureAwait(false);
        var now = _options.TimeProvider.GetUtcNow();
        var reply = new KeepAliveReply { Expires = Timestamp.FromDateTimeOffset(now + TimeSpan.FromSeconds(record.TtlSeconds)), Token = Sign(_options, record, now) };
        if (record.PreemptDeadline is not null)
        {
            reply.PreemptDeadline = record.PreemptDeadline;
            reply.PreemptReason = record.PreemptReason;
        }

        return reply;
    }

    /// <summary>Ends the lease (a gang's members with it); releasing a lease that has ended already is harmless.</summary>
    internal async Task ReleaseAsync(ReleaseRequest request, Caller caller, bool forwarded, CancellationToken cancellationToken)
    {
        Authorize(request.LeaseId, request.Token, caller, "release");
        var (allocator, leader) = await RouteAsync(cancellationToken).ConfigureAwait(false);
        if (allocator is not null)
        {
            await allocator.ReleaseAsync(request.LeaseId, cancellationToken).ConfigureAwait(false);
            return;
        }

        await ForwardAsync(leader, (client, headers, deadline) => client.ReleaseAsync(request, headers, deadline, cancellationToken), caller, ForwardTimeout, forwarded).ConfigureAwait(false);
    }

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
    }

    /// <summary>Checks the request's fields and fills in defaults; what depends on the pool's state is the allocator's.</summary>
    private AllocateRequest Normalize(AllocateRequest request, Caller caller)
    {
        var normalized = request.Clone();
        normalized.Tenant = _access.TenantFor(caller, request.Tenant);
        if (normalized.Tenant.Length > 128 || normalized.Tenant.Contains('/', StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "tenant must be at most 128 characters and contain no '/'");
        }

        normalized.PriorityClass = string.IsNullOrWhiteSpace(request.PriorityClass) ? PriorityClasses.DefaultName : request.PriorityClass.Trim();
        PriorityClasses.ValidateName(normalized.PriorityClass, "priority class");

        // Matched against every device's name on each placement, and kept in the lease's record: bounded like every string.
        normalized.DeviceModel = request.DeviceModel.Trim();
        if (normalized.DeviceModel.Length > 128)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"device_model must be at most 128 characters, not {normalized.DeviceModel.Length}");
        }

        if (request.WholeDevices > 0)
        {
            if (request.MemoryBytes != 0 || request.ComputeShare != 0)
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, "ask for either a slice (memory_bytes and compute_share) or whole devices (whole_devices), not both");
            }

            if (request.WholeDevices > 64)
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"whole_devices {request.WholeDevices} is more than the 64 devices one host can have");
            }
        }
        else
        {
            if (request.MemoryBytes == 0)
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, "memory_bytes must be at least 1 byte (for example --memory 512MiB)");
            }

            if (request.ComputeShare is < 1 or > 1000)
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"compute_share must be 1..1000 milli-GPU (1000 = a whole device), not {request.ComputeShare}");
            }
        }

        if (!System.Enum.IsDefined(request.ShareMode))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"share_mode {(int)request.ShareMode} is not one this scheduler knows: work-conserving (0) or capped (1)");
        }

        var ttl = request.TtlSeconds == 0 ? _options.DefaultLeaseTtl : TimeSpan.FromSeconds(request.TtlSeconds);
        if (ttl > _options.MaxLeaseTtl)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"ttl_seconds {request.TtlSeconds} is longer than this pool's maximum of {(int)_options.MaxLeaseTtl.TotalSeconds}");
        }

        normalized.TtlSeconds = (uint)Math.Ceiling(ttl.TotalSeconds);
        if (TimeSpan.FromMilliseconds(request.WaitTimeoutMs) > MaxWait)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"wait_timeout_ms {request.WaitTimeoutMs} is longer than the most a request may wait ({(int)MaxWait.TotalSeconds} s)");
        }

        return normalized;
    }

    /// <summary>
    /// The token must be the scheduler's, unexpired, and for this lease, and the lease's tenant (which the token names)
    /// the caller's unless the caller is an admin; whether the lease lives is the leader's to say.
    /// </summary>
    private void Authorize(string leaseId, string token, Caller caller, string what)
    {
        _access.RequireCredential(caller, what + " leases");
        var claims = LeaseToken.Verify(token, _options.SigningKey, _options.TimeProvider.GetUtcNow());
        if (!string.Equals(claims.LeaseId, leaseId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"the token was issued for lease {claims.LeaseId}, not for lease {leaseId}");
        }

        _access.RequireLeaseOwner(caller, leaseId, claims.Tenant, what);
    }

    private static readonly TimeSpan ForwardTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How long a call waits for this replica to finish taking over once it has won an election.</summary>
    private static readonly TimeSpan TakeoverWait = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Where a call goes: this replica's allocator when it leads; else the replica the store names as leader. While an
    /// election is under way (no replica named), and while this replica has won but is still taking over (reading the
    /// pool's state), the call waits for it rather than being refused, for up to <see cref="TakeoverWait"/>.
    /// </summary>
    /// <param name="ended">An allocator whose term has ended: this replica leads again only with another.</param>
    private async Task<(Allocator? Local, string? Leader)> RouteAsync(CancellationToken cancellationToken, Allocator? ended = null)
    {
        if (_leader() is { } allocator && allocator != ended)
        {
            return (allocator, null);
        }

        // Real time: an election and a takeover are real work, whatever clock the leases keep.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var leader = await LeaderElection.GetLeaderAsync(_store, StoreKeys.Leader, cancellationToken).ConfigureAwait(false);
        while (leader is null && waited.Elapsed < TakeoverWait)
        {
            // An election under way: a replica is named within moments.
            await Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken).ConfigureAwait(false);
            leader = await LeaderElection.GetLeaderAsync(_store, StoreKeys.Leader, cancellationToken).ConfigureAwait(false);
        }

        if (leader != _options.AdvertisedEndpoint)
        {
            return (null, leader);
        }

        while (true)
        {
            if (_leader() is { } taken && taken != ended)
            {
                return (taken, null);
            }

            if (waited.Elapsed >= TakeoverWait)
            {
                return (null, leader);
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Sends a call to the replica that leads (once: a forwarded call is never forwarded again), with an assertion of
    /// the caller this replica verified, signed with the key the replicas share, so that the leader trusts the identity
    /// of no one but a replica.
    /// </summary>
    private async Task<T> ForwardAsync<T>(string? leader, Func<Protocol.V1.Leases.LeasesClient, Metadata, DateTime, AsyncUnaryCall<T>> call, Caller caller, TimeSpan timeout, bool forwarded)
    {
        if (forwarded || leader is null || leader == _options.AdvertisedEndpoint)
        {
            throw new GpuPoolException(ErrorCode.Unavailable, "no scheduler replica leads the pool right now (an election is under way); retry in a few seconds");
        }

        var client = new Protocol.V1.Leases.LeasesClient(_channels.GetOrAdd(leader, e => Hosting.ReplicaChannel.Create(e, _options)));
        try
        {
            var headers = new Metadata { { ForwardedHeader, "1" } };
            if (caller.Identity is not null)
            {
                headers.Add(CallerResolver.AssertionHeader, _callers.Assert(caller));
            }

            return await call(client, headers, _options.TimeProvider.GetUtcNow().UtcDateTime + timeout).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, $"the leading scheduler replica at {leader}");
        }
    }

    internal static string Sign(SchedulerOptions options, LeaseRecord record, DateTimeOffset now)
        => LeaseToken.Sign(
            new LeaseClaims(record.LeaseId, record.Tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare, (now + options.TokenLifetime).ToUnixTimeMilliseconds())
            {
                ShareMode = (uint)record.ShareMode,
            },
            options.SigningKey);

    /// <summary>The error for a lease that is gone: with the reason when the scheduler ended it (preempted, broker lost).</summary>
    private async Task<GpuPoolException> EndedAsync(string leaseId, CancellationToken cancellationToken)
    {
        var tombstone = await _store.GetAsync(StoreKeys.Tombstones + leaseId, cancellationToken).ConfigureAwait(false);
        if (tombstone is not null)
        {
            var reason = LeaseTombstone.Parser.ParseFrom(tombstone.Value.Span).Reason;
            return new GpuPoolException(ErrorCode.LeaseEnded, $"lease {leaseId} has ended: {reason}; allocate a new lease");
        }

        return new GpuPoolException(ErrorCode.LeaseEnded, $"lease {leaseId} has ended (released or expired after its keepalives stopped): allocate a new lease");
    }
}
