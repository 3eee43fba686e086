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
}
