using GpuPool.Protocol.Security;

namespace GpuPool.Scheduler.Identity;

/// <summary>
/// Who made a call, as its credential proved: the identity (null for a call with no credential), how it was proved
/// (for the audit: "admin token", "tenant token tk-…", "certificate", "forwarded by …") and the peer it came from.
/// </summary>
internal sealed record Caller(PoolIdentity? Identity, string Proof, string Peer)
{
    public static Caller Anonymous(string peer) => new(null, "no credential", peer);

    public bool IsAdmin => Identity?.Role == PoolRole.Admin;

    /// <summary>Sees every lease and queue entry: an admin, a scheduler replica, or anyone on a pool that takes anonymous callers.</summary>
    public bool SeesEverything(SchedulerOptions options)
        => Identity is null ? options.AnonymousTenants : Identity.Role is PoolRole.Admin or PoolRole.Scheduler;

    /// <summary>"tenant alice (tenant token tk-…)": who, for log lines and errors.</summary>
    public string Who => Identity is null ? "an anonymous caller" : $"{Identity} ({Proof})";

    /// <summary>The peer's address without its port.</summary>
    public string From => Admin.CredentialThrottle.Key(Peer);
}
