using Microsoft.Extensions.Logging;

namespace GpuPool.Broker;

/// <summary>The broker's log messages, source-generated.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Lease {LeaseId} of tenant {Tenant} opened on device {Device} ({MemoryBytes} bytes, share {Share})")]
    public static partial void LeaseOpened(ILogger logger, string leaseId, string tenant, uint device, ulong memoryBytes, uint share);

    [LoggerMessage(2, LogLevel.Information, "Lease {LeaseId} ended ({Reason}); reclaimed {Bytes} bytes")]
    public static partial void LeaseEnded(ILogger logger, string leaseId, string reason, ulong bytes);

    [LoggerMessage(3, LogLevel.Information, "Session for lease {LeaseId} refused: {Reason}")]
    public static partial void SessionRefused(ILogger logger, string leaseId, string reason);

    [LoggerMessage(4, LogLevel.Information, "Session for lease {LeaseId} closed: {Reason}")]
    public static partial void SessionClosed(ILogger logger, string leaseId, string reason);

    [LoggerMessage(5, LogLevel.Warning, "Broker registration heartbeat failed: {Reason}")]
    public static partial void HeartbeatFailed(ILogger logger, string reason);

    [LoggerMessage(6, LogLevel.Warning, "Lease watch failed; restarting: {Reason}")]
    public static partial void WatchFailed(ILogger logger, string reason);

    [LoggerMessage(7, LogLevel.Information, "Lease {LeaseId} is being preempted ({Reason}); revoking it at {Deadline}")]
    public static partial void LeasePreempting(ILogger logger, string leaseId, string reason, DateTimeOffset deadline);

    [LoggerMessage(8, LogLevel.Information, "Data connection for lease {LeaseId} refused: {Reason}")]
    public static partial void JoinRefused(ILogger logger, string leaseId, string reason);

    [LoggerMessage(9, LogLevel.Debug, "Data connection {Index} of session {Session} for lease {LeaseId} closed: {Reason}")]
    public static partial void DataConnectionClosed(ILogger logger, int index, ulong session, string leaseId, string reason);

    [LoggerMessage(10, LogLevel.Debug, "Lease {LeaseId} launches {Function} on stream {Stream}: grid ({GridX}, {GridY}, {GridZ}), block ({BlockX}, {BlockY}, {BlockZ}), {SharedBytes} shared bytes, parameters {Parameters}")]
    public static partial void KernelLaunch(ILogger logger, string leaseId, string function, ulong stream, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ, uint sharedBytes, string parameters);

    [LoggerMessage(11, LogLevel.Debug, "Lease {LeaseId} allocated {Bytes} bytes at {Address}")]
    public static partial void Allocated(ILogger logger, string leaseId, ulong bytes, ulong address);

    [LoggerMessage(12, LogLevel.Warning, "Broker {BrokerId}: {Warning}")]
    public static partial void AdvertisingLoopback(ILogger logger, string brokerId, string warning);

    [LoggerMessage(13, LogLevel.Warning, "Broker {BrokerId} took over its registration from its own earlier process {ProcessId} on this machine, which is gone")]
    public static partial void TookOverRegistration(ILogger logger, string brokerId, uint processId);

    [LoggerMessage(14, LogLevel.Error, "Broker {BrokerId} cannot register again: {Reason}")]
    public static partial void RegistrationRefused(ILogger logger, string brokerId, string reason);

    [LoggerMessage(15, LogLevel.Warning, "Fast-path connection from {Peer} refused: {Reason}")]
    public static partial void FastPathRefused(ILogger logger, string peer, string reason);
}
