using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Admin;

/// <summary>
/// What admins read and set: the pool's view, quotas, priority classes and drains. Writes go straight to the
/// store (any replica may take them; the leader follows the store by watches) and need the admin credential.
/// </summary>
internal sealed class AdminCore(SchedulerOptions options, IClusterStore store, Func<Allocator?> leader, ILogger logger)
{
    private readonly CredentialThrottle _throttle = new(options.TimeProvider);

    public async Task<ClusterView> ListClusterAsync(CancellationToken cancellationToken)
    {
        ClusterView view;
        if (leader() is { } allocator)
        {
            view = await allocator.SnapshotAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            // A standby answers from the store: everything but the leader's queue.
            var state = await ClusterState.ReadAsync(store, cancellationToken).ConfigureAwait(false);
            view = new ClusterView();
            view.Brokers.AddRange(state.Brokers);
            view.Devices.AddRange(state.Devices());
            view.Leases.AddRange(state.Leases);
            var drained = await store.ListAsync(StoreKeys.Draining, cancellationToken).ConfigureAwait(false);
            view.Draining.AddRange(drained.Entries.Select(e => e.Key[StoreKeys.Draining.Length..]));
        }

        view.Leader = await LeaderElection.GetLeaderAsync(store, StoreKeys.Leader, cancellationToken).ConfigureAwait(false) ?? "";
        view.AnsweredBy = options.AdvertisedEndpoint ?? "";
        return view;
    }

    public async Task<Quota> SetQuotaAsync(Quota quota, AdminCaller caller, CancellationToken cancellationToken)
    {
        Authorize(caller);
        if (quota is null)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "the request holds no quota");
        }

        PriorityClasses.ValidateName(quota.Tenant, "tenant");
        var classes = await ListPriorityClassesAsync(cancellationToken).ConfigureAwait(false);
        var unknown = quota.AllowedPriorityClasses.Where(c => classes.All(k => k.Name != c)).ToArray();
        if (unknown.Length > 0)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"priority class{(unknown.Length == 1 ? "" : "es")} {string.Join(", ", unknown.Select(c => $"'{c}'"))} do{(unknown.Length == 1 ? "es" : "")} not exist (classes: {string.Join(", ", classes.Select(c => c.Name))})");
        }

        await Put(StoreKeys.Quotas + quota.Tenant, quota, cancellationToken).ConfigureAwait(false);
        return quota;
    }

    public async Task<Quota> GetQuotaAsync(string tenant, CancellationToken cancellationToken)
    {
        PriorityClasses.ValidateName(tenant, "tenant");
        var entry = await store.GetAsync(StoreKeys.Quotas + tenant, cancellationToken).ConfigureAwait(false);
        return entry is null
            ? throw new GpuPoolException(ErrorCode.NotFound, $"tenant '{tenant}' has no quota" + (options.OpenTenants ? " (this pool gives tenants without one an unlimited quota)" : ""))
            : Quota.Parser.ParseFrom(entry.Value.Span);
    }

    public async Task<IReadOnlyList<Quota>> ListQuotasAsync(CancellationToken cancellationToken)
        => [.. (await store.ListAsync(StoreKeys.Quotas, cancellationToken).ConfigureAwait(false)).Entries.Select(e => Quota.Parser.ParseFrom(e.Value.Span))];

    public async Task<bool> DeleteQuotaAsync(string tenant, AdminCaller caller, CancellationToken cancellationToken)
    {
        Authorize(caller);
        PriorityClasses.ValidateName(tenant, "tenant");
        return await store.DeleteAsync(StoreKeys.Quotas + tenant, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    public async Task<PriorityClass> SetPriorityClassAsync(PriorityClass cls, AdminCaller caller, CancellationToken cancellationToken)
    {
        Authorize(caller);
        if (cls is null)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "the request holds no priority class");
        }

        PriorityClasses.ValidateName(cls.Name, "priority class");
        await Put(StoreKeys.Priorities + cls.Name, cls, cancellationToken).ConfigureAwait(false);
        return cls;
    }

    public async Task<IReadOnlyList<PriorityClass>> ListPriorityClassesAsync(CancellationToken cancellationToken)
        => [.. (await store.ListAsync(StoreKeys.Priorities, cancellationToken).ConfigureAwait(false)).Entries
            .Select(e => PriorityClass.Parser.ParseFrom(e.Value.Span)).OrderByDescending(c => c.Value).ThenBy(c => c.Name, StringComparer.Ordinal)];

    public async Task<bool> DeletePriorityClassAsync(string name, AdminCaller caller, CancellationToken cancellationToken)
    {
        Authorize(caller);
        PriorityClasses.ValidateName(name, "priority class");
        if (name == PriorityClasses.DefaultName)
        {
            throw new GpuPoolException(ErrorCode.FailedPrecondition, $"'{PriorityClasses.DefaultName}' is the class of requests that name none; change it instead of deleting it");
        }

        return await store.DeleteAsync(StoreKeys.Priorities + name, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Drains (or returns to service) every broker whose id or host is <paramref name="target"/>.</summary>
    public async Task<DrainReply> DrainAsync(string target, bool undo, AdminCaller caller, CancellationToken cancellationToken)
    {
        Authorize(caller);
        if (string.IsNullOrWhiteSpace(target))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "name the broker id or host to drain");
        }

        PriorityClasses.ValidateName(target, "broker id or host", maxLength: 128);

        var state = await ClusterState.ReadAsync(store, cancellationToken).ConfigureAwait(false);
        var brokers = state.Brokers.Where(b => b.BrokerId == target || string.Equals(b.Host, target, StringComparison.OrdinalIgnoreCase)).Select(b => b.BrokerId).ToArray();
        if (brokers.Length == 0 && !undo)
        {
            throw new GpuPoolException(ErrorCode.NotFound, $"no registered broker has id or host '{target}' (see gpupool ls)");
        }

        if (undo && brokers.Length == 0)
        {
            brokers = [target];
        }

        foreach (var id in brokers)
        {
            if (undo)
            {
                await store.DeleteAsync(StoreKeys.Draining + id, cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var put = await store.PutAsync(StoreKeys.Draining + id, Encoding.UTF8.GetBytes(options.TimeProvider.GetUtcNow().ToString("O")), cancellationToken: cancellationToken).ConfigureAwait(false);
                await InForceAsync(StoreKeys.Draining + id, put.ModRevision, cancellationToken).ConfigureAwait(false);
            }
        }

        var reply = new DrainReply { LeasesRemaining = (uint)state.Leases.Count(l => brokers.Contains(l.BrokerId)) };
        reply.BrokerIds.AddRange(brokers);
        return reply;
    }

    private async Task Put(string key, IMessage message, CancellationToken cancellationToken)
    {
        var put = await store.PutAsync(key, message.ToByteArray(), cancellationToken: cancellationToken).ConfigureAwait(false);
        await InForceAsync(key, put.ModRevision, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>On the leader, returns once its allocator has applied the change, so the next request sees it.</summary>
    private async Task InForceAsync(string key, long revision, CancellationToken cancellationToken)
    {
        if (leader() is { } allocator)
        {
            var prefix = key[..(key.IndexOf('/', StringComparison.Ordinal) + 1)];
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            try
            {
                await allocator.WaitAppliedAsync(prefix, revision, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // Written; the leader applies it when its watch catches up.
            }
            catch (GpuPoolException)
            {
                // The leadership moved on: the next leader lists the store afresh.
            }
        }
    }

    private void Authorize(AdminCaller caller)
    {
        if (options.AdminToken is null)
        {
            throw new GpuPoolException(ErrorCode.PermissionDenied, "this scheduler has no admin credential configured, so it refuses every admin change");
        }

        if (string.IsNullOrEmpty(caller.Credential))
        {
            Log.AdminRefused(logger, CredentialThrottle.Key(caller.Peer), "no admin credential");
            throw new GpuPoolException(ErrorCode.Unauthenticated, "admin changes need the admin credential (gpupool reads it from the config dir, --admin-token or GPUPOOL_ADMIN_TOKEN)");
        }

        try
        {
            _throttle.Check(caller.Peer);
        }
        catch (GpuPoolException ex)
        {
            Log.AdminRefused(logger, CredentialThrottle.Key(caller.Peer), ex.Message);
            throw;
        }

        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(caller.Credential), Encoding.UTF8.GetBytes(options.AdminToken)))
        {
            _throttle.Failed(caller.Peer);
            Log.AdminRefused(logger, CredentialThrottle.Key(caller.Peer), "a wrong admin credential");
            throw new GpuPoolException(ErrorCode.PermissionDenied, "the admin credential is wrong");
        }

        _throttle.Succeeded(caller.Peer);
    }
}

/// <summary>Who asks for an admin change: the credential the call carried and the peer it came from (for the throttle).</summary>
internal readonly record struct AdminCaller(string? Credential, string Peer);
