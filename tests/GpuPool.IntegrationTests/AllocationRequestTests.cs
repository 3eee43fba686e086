using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests;

/// <summary>What the scheduler says to lease requests that are malformed or cannot fit.</summary>
public sealed class AllocationRequestTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    [Fact]
    public async Task Lease_bigger_than_any_device_fails_at_once_with_ResourceExhausted()
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.LeaseAsync(memoryBytes: 2 * PoolFixture.DeviceMemory));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.Equal("no device of this pool is large enough for 8 GiB with compute share 100", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Lease_asking_for_more_compute_share_than_is_left_fails_with_ResourceExhausted()
    {
        await using var holder = await pool.LeaseAsync(share: 900);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.LeaseAsync(share: 200));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.Contains("the most free share is 100", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Lease_of_zero_bytes_fails_with_InvalidArgument()
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.LeaseAsync(memoryBytes: 0));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("memory_bytes must be at least 1 byte (for example --memory 512MiB)", error.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1001)]
    [InlineData(-5)]
    public async Task Lease_with_a_compute_share_outside_1_to_1000_fails_with_InvalidArgument(int share)
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.LeaseAsync(share: share));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal($"ComputeShare must be 1..1000 milli-GPU (1000 = a whole device), not {share}", error.Message);
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1001u)]
    public async Task Scheduler_refuses_a_compute_share_outside_1_to_1000_with_InvalidArgument(uint share)
    {
        using var channel = GrpcChannel.ForAddress(pool.Scheduler.Endpoint);
        var leases = new Leases.LeasesClient(channel);

        var rpc = await Assert.ThrowsAsync<RpcException>(() => leases.AllocateAsync(new AllocateRequest { Tenant = "it", MemoryBytes = 1 << 20, ComputeShare = share }, new Metadata { { "authorization", "Bearer " + pool.AdminToken } }).ResponseAsync);
        var error = GpuPoolException.FromRpc(rpc, "allocate");

        Assert.Equal(StatusCode.InvalidArgument, rpc.StatusCode);
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal($"compute_share must be 1..1000 milli-GPU (1000 = a whole device), not {share}", error.Message);
    }

    [Fact]
    public async Task Scheduler_refuses_a_share_mode_it_does_not_know_with_InvalidArgument()
    {
        using var channel = GrpcChannel.ForAddress(pool.Scheduler.Endpoint);
        var leases = new Leases.LeasesClient(channel);

        var rpc = await Assert.ThrowsAsync<RpcException>(() => leases.AllocateAsync(new AllocateRequest { Tenant = "it", MemoryBytes = 1 << 20, ComputeShare = 100, ShareMode = (ShareMode)7 }, new Metadata { { "authorization", "Bearer " + pool.AdminToken } }).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, rpc.StatusCode);
        Assert.Equal("share_mode 7 is not one this scheduler knows: work-conserving (0) or capped (1)", GpuPoolException.FromRpc(rpc, "allocate").Message);
        Assert.DoesNotContain((await pool.Client.ListClusterAsync()).Leases, l => l.Tenant == "it" && l.ShareMode == (ShareMode)7);
    }

    [Fact]
    public async Task Lease_with_a_ttl_past_the_pool_maximum_fails_with_InvalidArgument()
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client.AllocateAsync(
            new LeaseRequest { Tenant = "default", MemoryBytes = 1 << 20, Ttl = TimeSpan.FromDays(2) }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("ttl_seconds 172800 is longer than this pool's maximum of 86400", error.Message);
    }

    [Fact]
    public async Task Lease_with_a_tenant_containing_a_slash_fails_with_InvalidArgument()
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client.AllocateAsync(
            new LeaseRequest { Tenant = "a/b", MemoryBytes = 1 << 20 }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("tenant must be at most 128 characters and contain no '/'", error.Message);
    }

    [Fact]
    public async Task Lease_with_a_device_model_longer_than_128_characters_fails_with_InvalidArgument()
    {
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client.AllocateAsync(
            new LeaseRequest { Tenant = "default", DeviceModel = new string('H', 10_000), MemoryBytes = 1 << 20 }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("device_model must be at most 128 characters, not 10000", error.Message);
    }
}
