using GpuPool.Client;
using GpuPool.Protocol.Errors;
using ErrorCode = GpuPool.Protocol.V1.ErrorCode;

namespace GpuPool.IntegrationTests.Infrastructure;

internal static class Sessions
{
    /// <summary>
    /// Opens a session on the lease, retrying while the broker still finishes the session of a connection
    /// that was just closed (a lease holds one session at a time).
    /// </summary>
    public static async Task<DeviceSession> OpenWhenDetachedAsync(Lease lease, SessionTransportKind transport = SessionTransportKind.Tcp)
    {
        DeviceSession? session = null;
        await Poll.UntilAsync(async () =>
        {
            try
            {
                session = await lease.OpenSessionAsync(transport);
                return true;
            }
            catch (GpuPoolException ex) when (ex.Code == ErrorCode.FailedPrecondition)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(5), "the broker has detached the previous session from the lease");
        return session!;
    }
}
