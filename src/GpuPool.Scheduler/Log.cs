using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler;

/// <summary>The scheduler's log messages, source-generated.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Lease {LeaseId} granted to tenant {Tenant} on {BrokerId}/{Device} ({MemoryBytes} bytes, share {Share})")]
    public static partial void LeaseGranted(ILogger logger, string leaseId, string tenant, string brokerId, uint device, ulong memoryBytes, uint share);

    [LoggerMessage(2, LogLevel.Information, "Lease {LeaseId} released")]
    public static partial void LeaseReleased(ILogger logger, string leaseId);

    [LoggerMessage(3, LogLevel.Information, "Allocation for tenant {Tenant} refused: {Reason}")]
    public static partial void AllocationRefused(ILogger logger, string tenant, string reason);

    [LoggerMessage(4, LogLevel.Warning, "Lease {LeaseId} lost: {Reason}")]
    public static partial void LeaseLost(ILogger logger, string leaseId, string reason);

    [LoggerMessage(5, LogLevel.Information, "Preempting lease {LeaseId} of tenant {Tenant} for a request of class {Class} from tenant {Requester}")]
    public static partial void Preempting(ILogger logger, string leaseId, string tenant, string @class, string requester);

    [LoggerMessage(6, LogLevel.Warning, "Watch of {Prefix} restarts: {Reason}")]
    public static partial void WatchRestart(ILogger logger, string prefix, string reason);

    [LoggerMessage(7, LogLevel.Warning, "A store write failed and will be retried by the next change or tick: {Reason}")]
    public static partial void StoreWriteFailed(ILogger logger, string reason);

    [LoggerMessage(8, LogLevel.Information, "This replica ({Endpoint}) leads the pool (term {Term})")]
    public static partial void Leading(ILogger logger, string endpoint, long term);

    [LoggerMessage(9, LogLevel.Warning, "This replica ({Endpoint}) lost the leadership")]
    public static partial void LostLeadership(ILogger logger, string endpoint);

    [LoggerMessage(10, LogLevel.Warning, "Leader election failed, retrying: {Reason}")]
    public static partial void ElectionFailed(ILogger logger, string reason);

    [LoggerMessage(11, LogLevel.Error, "The allocation loop failed on a piece of work; it goes on")]
    public static partial void AllocatorFailed(ILogger logger, Exception exception);

    [LoggerMessage(12, LogLevel.Warning, "Scheduler replica: {Warning}")]
    public static partial void AdvertisingLoopback(ILogger logger, string warning);

    [LoggerMessage(13, LogLevel.Warning, "The leader lock was held by {Holder}, an earlier scheduler on this machine (process {ProcessId}) that has ended: its session is ended so that this replica can lead at once")]
    public static partial void TookOverDeadLeader(ILogger logger, string holder, uint processId);

    [LoggerMessage(14, LogLevel.Warning, "Broker {BrokerId} does not answer at {Endpoint} ({Reason}): no new leases go to it until it does")]
    public static partial void BrokerDoesNotAnswer(ILogger logger, string brokerId, string endpoint, string reason);

    [LoggerMessage(15, LogLevel.Information, "Broker {BrokerId} answers again at {Endpoint}: it takes new leases again")]
    public static partial void BrokerAnswers(ILogger logger, string brokerId, string endpoint);

    // Audit lines: every admin change and every refused credential or access, one line each, event names "Audit…".
    [LoggerMessage(100, LogLevel.Warning, "Audit: refused a credential from {Peer}: {Reason}", EventName = "AuditCredentialRefused")]
    public static partial void AuditCredentialRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(101, LogLevel.Warning, "Audit: refused {Caller} from {Peer}: {Reason}", EventName = "AuditAccessDenied")]
    public static partial void AuditAccessDenied(ILogger logger, string caller, string peer, string reason);

    [LoggerMessage(102, LogLevel.Warning, "Audit: {Caller} from {Peer}: {Action} {Target}", EventName = "AuditAdminChange")]
    public static partial void AuditAdminChange(ILogger logger, string caller, string peer, string action, string target);
}
