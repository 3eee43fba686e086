using System.Text;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Identity;
using GpuPool.Scheduler.Leases;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Admin;

/// <summary>
/// What admins read and set: the pool's view, quotas, priority classes, drains and tenant tokens. Writes go straight
/// to the store (any replica may take them; the leader follows the store by watches), need the admin role, and are
/// logged as audit lines naming who made them and from where.
/// </summary>
internal sealed class AdminCore(SchedulerOptions options, IClusterStore store, Func<Allocator?> leader, AccessRules access, TokenAllowList allowList, ILogger logger)
{
    /// <summary>The most tokens one tenant may hold at once: each is a store record every replica keeps in memory.</summary>
    public const int MaxTokensPerTenant = 100;

    public async Task<ClusterView> ListClusterAsync(Caller caller, CancellationToken cancellationToken)
    {
        access.RequireCredential(caller, "list the pool");
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
        return access.Filter(caller, view);
    }

    public async Task<Quota> SetQuotaAsync(Quota quota, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "set a quota");
        if (quota is null)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "the request holds no quota");
        }

        PriorityClasses.ValidateName(quota.Tenant, "tenant");
        var classes = await ReadPriorityClassesAsync(cancellationToken).ConfigureAwait(false);
        var unknown = quota.AllowedPriorityClasses.Where(c => classes.All(k => k.Name != c)).ToArray();
        if (unknown.Length > 0)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"priority class{(unknown.Length == 1 ? "" : "es")} {string.Join(", ", unknown.Select(c => $"'{c}'"))} do{(unknown.Length == 1 ? "es" : "")} not exist (classes: {string.Join(", ", classes.Select(c => c.Name))})");
        }

        await Put(StoreKeys.Quotas + quota.Tenant, quota, cancellationToken).ConfigureAwait(false);
        Audit(caller, "set the quota of", $"tenant {quota.Tenant} ({quota})");
        return quota;
    }

    public async Task<Quota> GetQuotaAsync(string tenant, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireCredential(caller, "read quotas");
        PriorityClasses.ValidateName(tenant, "tenant");
        var entry = await store.GetAsync(StoreKeys.Quotas + tenant, cancellationToken).ConfigureAwait(false);
        return entry is null
            ? throw new GpuPoolException(ErrorCode.NotFound, $"tenant '{tenant}' has no quota" + (options.OpenTenants ? " (this pool gives tenants without one an unlimited quota)" : ""))
            : Quota.Parser.ParseFrom(entry.Value.Span);
    }

    public async Task<IReadOnlyList<Quota>> ListQuotasAsync(Caller caller, CancellationToken cancellationToken)
    {
        access.RequireCredential(caller, "read quotas");
        return [.. (await store.ListAsync(StoreKeys.Quotas, cancellationToken).ConfigureAwait(false)).Entries.Select(e => Quota.Parser.ParseFrom(e.Value.Span))];
    }

    public async Task<bool> DeleteQuotaAsync(string tenant, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "delete a quota");
        PriorityClasses.ValidateName(tenant, "tenant");
        var deleted = await store.DeleteAsync(StoreKeys.Quotas + tenant, cancellationToken: cancellationToken).ConfigureAwait(false);
        Audit(caller, "deleted the quota of", $"tenant {tenant}{(deleted ? "" : " (it had none)")}");
        return deleted;
    }

    public async Task<PriorityClass> SetPriorityClassAsync(PriorityClass cls, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "set a priority class");
        if (cls is null)
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, "the request holds no priority class");
        }

        PriorityClasses.ValidateName(cls.Name, "priority class");
        PriorityClasses.ValidateMinRuntime(cls, options.MaxLeaseTtl);
        await Put(StoreKeys.Priorities + cls.Name, cls, cancellationToken).ConfigureAwait(false);
        Audit(caller, "set priority class", $"{cls.Name} ({cls})");
        return cls;
    }

    public async Task<IReadOnlyList<PriorityClass>> ListPriorityClassesAsync(Caller caller, CancellationToken cancellationToken)
    {
        access.RequireCredential(caller, "read priority classes");
        return await ReadPriorityClassesAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<IReadOnlyList<PriorityClass>> ReadPriorityClassesAsync(CancellationToken cancellationToken)
        => [.. (await store.ListAsync(StoreKeys.Priorities, cancellationToken).ConfigureAwait(false)).Entries
            .Select(e => PriorityClass.Parser.ParseFrom(e.Value.Span)).OrderByDescending(c => c.Value).ThenBy(c => c.Name, StringComparer.Ordinal)];

    public async Task<bool> DeletePriorityClassAsync(string name, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "delete a priority class");
        PriorityClasses.ValidateName(name, "priority class");
        if (name == PriorityClasses.DefaultName)
        {
            throw new GpuPoolException(ErrorCode.FailedPrecondition, $"'{PriorityClasses.DefaultName}' is the class of requests that name none; change it instead of deleting it");
        }

        var deleted = await store.DeleteAsync(StoreKeys.Priorities + name, cancellationToken: cancellationToken).ConfigureAwait(false);
        Audit(caller, "deleted priority class", $"{name}{(deleted ? "" : " (there was none)")}");
        return deleted;
    }

    /// <summary>Drains (or returns to service) every broker whose id or host is <paramref name="target"/>.</summary>
    public async Task<DrainReply> DrainAsync(string target, bool undo, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, undo ? "return a broker to service" : "drain a broker");
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

        Audit(caller, undo ? "returned to service" : "drained", string.Join(", ", brokers));
        var reply = new DrainReply { LeasesRemaining = (uint)state.Leases.Count(l => brokers.Contains(l.BrokerId)) };
        reply.BrokerIds.AddRange(brokers);
        return reply;
    }

    /// <summary>Issues a token for <paramref name="tenant"/>: its record goes to the store (the allow-list) and the token to the caller, once.</summary>
    public async Task<AddTenantTokenReply> AddTenantTokenAsync(string tenant, bool admin, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "add a tenant token");
        PriorityClasses.ValidateName(tenant, "tenant");
        var existing = await store.ListAsync(StoreKeys.TenantTokens(tenant), cancellationToken).ConfigureAwait(false);
        if (existing.Entries.Count >= MaxTokensPerTenant)
        {
            throw new GpuPoolException(ErrorCode.ResourceExhausted, $"tenant {tenant} holds {existing.Entries.Count} tokens, the most one tenant may: revoke some first (gpupool tenant revoke {tenant} --token ID)");
        }

        var now = options.TimeProvider.GetUtcNow();
        var record = new TenantTokenRecord { Tenant = tenant, TokenId = TenantToken.NewId(), Admin = admin, Issued = Timestamp.FromDateTimeOffset(now), IssuedBy = caller.Who };
        var key = StoreKeys.TenantToken(tenant, record.TokenId);
        var put = await store.PutAsync(key, record.ToByteArray(), expectedModRevision: 0, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!put.Succeeded)
        {
            throw new GpuPoolException(ErrorCode.Unavailable, $"token id {record.TokenId} was taken already (a one in 2^64 chance): try again");
        }

        allowList.Applied(key, record);
        var token = TenantToken.Sign(new TenantClaims(tenant, record.TokenId, admin ? TenantToken.AdminRole : TenantToken.TenantRole, now.ToUnixTimeMilliseconds()), options.SigningKey);
        Audit(caller, admin ? "added an admin token for" : "added a token for", $"tenant {tenant}: {record.TokenId}");
        return new AddTenantTokenReply { Token = token, Record = record };
    }

    /// <summary>Revokes token <paramref name="tokenId"/> of <paramref name="tenant"/>, or every token of it when the id is empty.</summary>
    public async Task<RevokeTenantTokensReply> RevokeTenantTokensAsync(string tenant, string tokenId, Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "revoke a tenant token");
        PriorityClasses.ValidateName(tenant, "tenant");
        var reply = new RevokeTenantTokensReply();
        if (tokenId.Length > 0)
        {
            PriorityClasses.ValidateName(tokenId, "token id");
            var key = StoreKeys.TenantToken(tenant, tokenId);
            if (!await store.DeleteAsync(key, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                throw new GpuPoolException(ErrorCode.NotFound, $"tenant {tenant} has no token {tokenId} (see gpupool tenant ls)");
            }

            allowList.Applied(key, null);
            reply.TokenIds.Add(tokenId);
        }
        else
        {
            var listing = await store.ListAsync(StoreKeys.TenantTokens(tenant), cancellationToken).ConfigureAwait(false);
            foreach (var entry in listing.Entries)
            {
                if (await store.DeleteAsync(entry.Key, cancellationToken: cancellationToken).ConfigureAwait(false))
                {
                    allowList.Applied(entry.Key, null);
                    reply.TokenIds.Add(entry.Key[StoreKeys.TenantTokens(tenant).Length..]);
                }
            }
        }

        Audit(caller, "revoked", $"tenant {tenant}'s token{(reply.TokenIds.Count == 1 ? "" : "s")} {(reply.TokenIds.Count == 0 ? "(it had none)" : string.Join(", ", reply.TokenIds))}");
        return reply;
    }

    /// <summary>Tenants with tokens or a quota, and their tokens' records (never the tokens).</summary>
    public async Task<ListTenantsReply> ListTenantsAsync(Caller caller, CancellationToken cancellationToken)
    {
        access.RequireAdmin(caller, "list tenants and their tokens");
        var tenants = new SortedDictionary<string, TenantView>(StringComparer.Ordinal);
        TenantView Of(string name) => tenants.TryGetValue(name, out var view) ? view : tenants[name] = new TenantView { Tenant = name };
        foreach (var entry in (await store.ListAsync(StoreKeys.Tenants, cancellationToken).ConfigureAwait(false)).Entries)
        {
            var record = TenantTokenRecord.Parser.ParseFrom(entry.Value.Span);
            Of(record.Tenant).Tokens.Add(record);
        }

        foreach (var entry in (await store.ListAsync(StoreKeys.Quotas, cancellationToken).ConfigureAwait(false)).Entries)
        {
            Of(entry.Key[StoreKeys.Quotas.Length..]).HasQuota = true;
        }

        var reply = new ListTenantsReply();
        foreach (var view in tenants.Values)
        {
            var ordered = view.Tokens.OrderBy(t => t.Issued?.ToDateTimeOffset() ?? default).ThenBy(t => t.TokenId, StringComparer.Ordinal).ToArray();
            view.Tokens.Clear();
            view.Tokens.AddRange(ordered);
            reply.Tenants.Add(view);
        }

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

    private void Audit(Caller caller, string action, string target) => Log.AuditAdminChange(logger, caller.Who, caller.From, action, target);
}
