using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// The SDK's way in for a process that does not hold the lease itself (the libcuda shim under `gpupool run`):
/// a session opened from the lease record and a token, and kernel arguments already packed.
/// </summary>
public sealed class HeldLeaseSessionTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Theory]
    [InlineData(SessionTransportKind.Auto)]
    [InlineData(SessionTransportKind.Grpc)]
    public async Task A_session_opens_from_the_record_and_token_of_a_lease_held_elsewhere(SessionTransportKind transport)
    {
        await using var lease = await pool.LeaseAsync();
        using var other = new GpuPoolClient(pool.Scheduler.Endpoint);

        await using var session = await other.OpenSessionAsync(lease.Record, lease.Token, transport);
        var ptr = await session.AllocAsync(16);
        await session.CopyToDeviceAsync(ptr, new float[] { 1, 2, 3, 4 });

        Assert.Equal(new float[] { 1, 2, 3, 4 }, await session.CopyToHostAsync<float>(ptr, 4));
        Assert.Equal(lease.Id, session.Info.LeaseId);
    }

    [Fact]
    public async Task A_token_of_another_lease_does_not_open_it()
    {
        await using var lease = await pool.LeaseAsync();
        await using var another = await pool.LeaseAsync();
        using var other = new GpuPoolClient(pool.Scheduler.Endpoint);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => other.OpenSessionAsync(lease.Record, another.Token));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
    }

    [Fact]
    public async Task A_record_without_its_broker_is_refused_before_any_call()
    {
        using var other = new GpuPoolClient(pool.Scheduler.Endpoint);

        await Assert.ThrowsAsync<ArgumentException>(() => other.OpenSessionAsync(new LeaseRecord { LeaseId = "l-1" }, "token"));
    }

    [Fact]
    public async Task Packed_kernel_arguments_launch_like_built_ones()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var module = await session.LoadBuiltinModuleAsync();
        var axpy = await session.GetFunctionAsync(module, "axpy_f32");
        var x = await session.AllocAsync(4 * sizeof(float));
        var y = await session.AllocAsync(4 * sizeof(float));
        await session.CopyToDeviceAsync(x, new float[] { 1, 2, 3, 4 });
        await session.CopyToDeviceAsync(y, new float[] { 10, 10, 10, 10 });

        // axpy_f32(n:u64, alpha:f32, x:ptr, y:ptr): offsets 0, 8, 16, 24, as cuLaunchKernel packs them.
        var packed = new byte[32];
        BitConverter.TryWriteBytes(packed.AsSpan(0), 4UL);
        BitConverter.TryWriteBytes(packed.AsSpan(8), 3f);
        BitConverter.TryWriteBytes(packed.AsSpan(16), x.Address);
        BitConverter.TryWriteBytes(packed.AsSpan(24), y.Address);
        await session.LaunchAsync(axpy, 1, 32, KernelArgs.FromPacked(packed));

        Assert.Equal(new float[] { 13, 16, 19, 22 }, await session.CopyToHostAsync<float>(y, 4));
    }
}
