using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Identity;

/// <summary>
/// What a <see cref="Caller"/> may do: the tenant comes from the credential, never from the request; an admin acts for
/// any tenant it names; writes of pool policy need the admin role. Each refusal is logged as an audit warning.
/// </summary>
internal sealed class AccessRules(SchedulerOptions options, ILogger logger)
{
    /// <summary>What a caller with no credential is told to present.</summary>
    public const string WhatToPresent =
        "present a tenant token (from gpupool tenant add: $GPUPOOL_TENANT_TOKEN, or GpuPoolClientOptions.BearerToken), a client certificate of the pool's CA, or the admin credential";

    /// <summary>Refuses a caller with no credential unless the pool takes anonymous tenants.</summary>
    public void RequireCredential(Caller caller, string what)
    {
        if (caller.Identity is null && !options.AnonymousTenants)
        {
            Log.AuditCredentialRefused(logger, caller.From, $"no credential ({what})");
            throw new GpuPoolException(ErrorCode.Unauthenticated, $"this pool needs a credential to {what}: {WhatToPresent}");
        }
    }

    /// <summary>The tenant an allocation is charged to: the credential's, or for an admin the one the request names.</summary>
    public string TenantFor(Caller caller, string requested)
    {
        RequireCredential(caller, "allocate");
        requested = requested.Trim();
        switch (caller.Identity)
        {
            case null:
                return requested.Length == 0 ? "default" : requested;
            case { Role: PoolRole.Admin }:
                return requested.Length > 0
                    ? requested
                    : throw new GpuPoolException(ErrorCode.InvalidArgument, $"{caller.Identity} acts for any tenant: name the tenant to allocate for (--tenant, LeaseRequest.Tenant)");
            case { Role: PoolRole.Tenant, Name: var tenant }:
                if (requested.Length == 0 || requested == tenant)
                {
                    return tenant;
                }

                throw Deny(caller, $"tenant {tenant}'s credential cannot allocate for tenant {requested}");
            default:
                throw Deny(caller, $"a {caller.Identity.Role.ToString().ToLowerInvariant()}'s credential ({caller.Identity.Name}) cannot allocate leases: use a tenant's or the admin's");
        }
    }

    /// <summary>A tenant may keep alive or release only its own leases; an admin any.</summary>
    public void RequireLeaseOwner(Caller caller, string leaseId, string leaseTenant, string what)
    {
        RequireCredential(caller, what);
        if (caller.Identity is null || caller.IsAdmin)
        {
            return;
        }

        if (caller.Identity.Role != PoolRole.Tenant || caller.Identity.Name != leaseTenant)
        {
            throw Deny(caller, $"{caller.Identity}'s credential cannot {what} lease {leaseId} of tenant {leaseTenant}");
        }
    }

    /// <summary>Quota, priority, drain and tenant writes: the admin role only.</summary>
    public void RequireAdmin(Caller caller, string what)
    {
        if (caller.Identity is null)
        {
            Log.AuditCredentialRefused(logger, caller.From, $"no credential ({what})");
            throw new GpuPoolException(ErrorCode.Unauthenticated, $"to {what} you need the admin credential (gpupool reads it from the config dir, --admin-token or GPUPOOL_ADMIN_TOKEN), an admin tenant token or an admin certificate");
        }

        if (!caller.IsAdmin)
        {
            throw Deny(caller, $"{caller.Identity}'s credential cannot {what}: that needs the admin role");
        }
    }

    /// <summary>What a caller may see of the pool: everything, or the capacity and only its own leases and queue entries.</summary>
    public ClusterView Filter(Caller caller, ClusterView view)
    {
        if (caller.SeesEverything(options))
        {
            return view;
        }

        var own = caller.Identity?.Role == PoolRole.Tenant ? caller.Identity.Name : null;
        var filtered = view.Clone();
        filtered.Leases.Clear();
        filtered.Leases.AddRange(view.Leases.Where(l => l.Tenant == own));
        filtered.Queue.Clear();
        filtered.Queue.AddRange(view.Queue.Where(q => q.Tenant == own));
        return filtered;
    }

    private GpuPoolException Deny(Caller caller, string reason)
    {
        Log.AuditAccessDenied(logger, caller.Who, caller.From, reason);
        return new GpuPoolException(ErrorCode.PermissionDenied, reason);
    }
}
