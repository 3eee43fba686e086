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

    /// <summary>
    /// Polls the session with a cheap call until it fails, and asserts the failure is the lease's end, with
    /// the sentence a user sees.
    /// </summary>
    public static async Task AssertEndsWithLeaseEndedAsync(DeviceSession session, Lease lease, TimeSpan deadline)
    {
        GpuPoolException? error = null;
        await Poll.UntilAsync(async () =>
        {
            try
            {
                await session.MemGetInfoAsync();
                return false;
            }
            catch (GpuPoolException ex)
            {
                error = ex;
                return true;
            }
        }, deadline, "the session fails");
        Assert.True(error!.Code == ErrorCode.LeaseEnded, error.ToString());
        Assert.Equal($"lease {lease.Id} has ended (released or expired); its device memory has been freed", error.Message);
    }
}
