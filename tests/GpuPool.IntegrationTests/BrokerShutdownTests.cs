using System.Diagnostics;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>A broker that stops ends its sessions and frees their memory at once, without waiting for clients to hang up.</summary>
public sealed class BrokerShutdownTests
{
    [Fact]
    public async Task Stopping_the_broker_ends_open_sessions_and_frees_their_memory_promptly()
    {
        var pool = new PoolFixture();
        await pool.InitializeAsync();
        try
        {
            await using var lease = await pool.LeaseAsync();
            await using var session = await lease.OpenSessionAsync();
            await session.AllocAsync(1 << 20);

            var clock = Stopwatch.StartNew();
            await pool.Broker.DisposeAsync();

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the broker took {clock.Elapsed} to stop with a session open");
            Assert.Equal(0UL, pool.Device.MemoryUsed);

            // LeaseEnded when the session's status reaches the client before the broker's connection closes,
            // Unavailable when the close overtakes it; never an internal error.
            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
            Assert.True(error.Code is ErrorCode.LeaseEnded or ErrorCode.Unavailable, error.ToString());
        }
        finally
        {
            await pool.DisposeAsync();
        }
    }
}
