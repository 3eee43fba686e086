using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Protocol;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases;

/// <summary>
/// Grants, renews and ends leases. A lease is a record under leases/{id} bound to a store session whose
/// TTL is the lease's: keepalives renew the session, and when they stop the store deletes the record,
/// which is how brokers and placement learn that the capacity is free again.
/// </summary>
public sealed class LeaseManager
{
    private readonly SchedulerOptions _options;
    private readonly IClusterStore _store;
    private readonly ILogger _logger;

    // Placement reads the whole pool and writes one record; one scheduler serializes it here, and the
    // create-only put guards the record itself. Multi-replica placement uses store transactions (issue 4).
    private readonly SemaphoreSlim _placementGate = new(1, 1);

    public LeaseManager(SchedulerOptions options, IClusterStore store, ILogger logger)
    {
        _options = options;
        _store = store;
        _logger = logger;
    }

    public async Task<AllocateReply> AllocateAsync(AllocateRequest request, CancellationToken cancellationToken)
    {
        var tenant = string.IsNullOrWhiteSpace(request.Tenant) ? "default" : request.Tenant.Trim();
        var ttl = Validate(request, tenant);
        await _placementGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var state = await ClusterState.ReadAsync(_store, cancellationToken).ConfigureAwait(false);
            var device = SlicePlacer.Place(state.Devices(), state.Brokers, request.MemoryBytes, request.ComputeShare, request.DeviceModel);
            if (device is null)
            {
                var reason = NoRoom(state, request);
                Log.AllocationRefused(_logger, tenant, reason);
                throw new GpuPoolException(ErrorCode.ResourceExhausted, reason);
            }

            var broker = state.Brokers.First(b => b.BrokerId == device.BrokerId);
            var session = await _store.CreateSessionAsync(ttl, cancellationToken).ConfigureAwait(false);
            var now = _options.TimeProvider.GetUtcNow();
            var record = new LeaseRecord
            {
                LeaseId = "l-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)),
                Tenant = tenant,
                BrokerId = broker.BrokerId,
                BrokerEndpoint = broker.Endpoint,
                DeviceIndex = device.Device.Index,
                MemoryBytes = request.MemoryBytes,
                ComputeShare = request.ComputeShare,
                PriorityClass = request.PriorityClass,
                Created = Timestamp.FromDateTimeOffset(now),
                TtlSeconds = (uint)ttl.TotalSeconds,
                StoreSession = session.Id,
                BrokerFastPathTcp = broker.FastPathTcp,
                BrokerFastPathUnix = broker.FastPathUnix,
                BrokerHost = broker.Host,
            };
            var put = await _store.PutAsync(ClusterState.LeasePrefix + record.LeaseId, record.ToByteArray(), expectedModRevision: 0, sessionId: session.Id, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (!put.Succeeded)
            {
                await _store.RevokeSessionAsync(session.Id, CancellationToken.None).ConfigureAwait(false);
                throw new GpuPoolException(ErrorCode.Internal, $"lease id {record.LeaseId} collided with an existing lease; try again");
            }

            Log.LeaseGranted(_logger, record.LeaseId, tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare);
            return new AllocateReply { Lease = record, Token = Sign(record, now), Expires = Timestamp.FromDateTimeOffset(now + ttl) };
        }
        finally
        {
            _placementGate.Release();
        }
    }

    public async Task<KeepAliveReply> KeepAliveAsync(KeepAliveRequest request, CancellationToken cancellationToken)
    {
        var record = await AuthorizeAsync(request.LeaseId, request.Token, cancellationToken).ConfigureAwait(false);
        if (!await _store.KeepAliveAsync(record.StoreSession, cancellationToken).ConfigureAwait(false))
        {
            throw Ended(request.LeaseId);
        }

        var now = _options.TimeProvider.GetUtcNow();
        return new KeepAliveReply { Expires = Timestamp.FromDateTimeOffset(now + TimeSpan.FromSeconds(record.TtlSeconds)), Token = Sign(record, now) };
    }

    public async Task ReleaseAsync(ReleaseRequest request, CancellationToken cancellationToken)
    {
        var record = await AuthorizeAsync(request.LeaseId, request.Token, cancellationToken).ConfigureAwait(false);
        await _store.RevokeSessionAsync(record.StoreSession, cancellationToken).ConfigureAwait(false);
        Log.LeaseReleased(_logger, record.LeaseId);
    }

    private TimeSpan Validate(AllocateRequest request, string tenant)
    {
        if (tenant.Length > 128 || tenant.Contains('/', StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "tenant must be at most 128 characters and contain no '/'");
        }

        if (request.MemoryBytes == 0)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "memory_bytes must be at least 1 byte (for example --memory 512MiB)");
        }

        if (request.ComputeShare is < 1 or > 1000)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"compute_share must be 1..1000 milli-GPU (1000 = a whole device), not {request.ComputeShare}");
        }

        var ttl = request.TtlSeconds == 0 ? _options.DefaultLeaseTtl : TimeSpan.FromSeconds(request.TtlSeconds);
        if (ttl > _options.MaxLeaseTtl)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"ttl_seconds {request.TtlSeconds} is longer than this pool's maximum of {(int)_options.MaxLeaseTtl.TotalSeconds}");
        }

        return ttl;
    }

    private async Task<LeaseRecord> AuthorizeAsync(string leaseId, string token, CancellationToken cancellationToken)
    {
        var claims = LeaseToken.Verify(token, _options.SigningKey, _options.TimeProvider.GetUtcNow());
        if (!string.Equals(claims.LeaseId, leaseId, StringComparison.Ordinal))
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, $"the token was issued for lease {claims.LeaseId}, not for lease {leaseId}");
        }

        var entry = await _store.GetAsync(ClusterState.LeasePrefix + leaseId, cancellationToken).ConfigureAwait(false);
        return entry is null ? throw Ended(leaseId) : LeaseRecord.Parser.ParseFrom(entry.Value.Span);
    }

    private string Sign(LeaseRecord record, DateTimeOffset now)
        => LeaseToken.Sign(
            new LeaseClaims(record.LeaseId, record.Tenant, record.BrokerId, record.DeviceIndex, record.MemoryBytes, record.ComputeShare, (now + _options.TokenLifetime).ToUnixTimeMilliseconds()),
            _options.SigningKey);

    private static GpuPoolException Ended(string leaseId)
        => new(ErrorCode.LeaseEnded, $"lease {leaseId} has ended (released or expired after its keepalives stopped): allocate a new lease");

    private static string NoRoom(ClusterState state, AllocateRequest request)
    {
        var devices = state.Devices();
        if (devices.Count == 0)
        {
            return "no broker is registered with this pool: start one (gpupool up, or gpupool broker)";
        }

        var largest = devices.Max(d => d.Device.MemoryTotalBytes - Math.Min(d.Device.MemoryTotalBytes, d.MemoryLeasedBytes));
        var share = devices.Max(d => d.Device.ComputeCapacity - Math.Min(d.Device.ComputeCapacity, d.ComputeLeased));
        return $"no device has room for {Units.FormatBytes(request.MemoryBytes)} with compute share {request.ComputeShare}"
            + (string.IsNullOrEmpty(request.DeviceModel) ? "" : $" of model '{request.DeviceModel}'")
            + $": the most free memory on one device is {Units.FormatBytes(largest)} and the most free share is {share}";
    }
}
