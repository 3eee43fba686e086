using System.Net;
using GpuPool.Client;
using GpuPool.Coordination.Election;
using GpuPool.Coordination.Embedded;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler;
using GpuPool.Scheduler.Hosting;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// What a scheduler replica publishes for the others to forward to: never a wildcard address. Two replicas bound to
/// every address: the leader publishes this host's address (or the one --advertise names), and a standby forwards
/// allocations there rather than to itself.
/// </summary>
public sealed class SchedulerAddressTests
{
    [Fact]
    public async Task Replicas_bound_to_every_address_publish_this_hosts_address_and_a_standby_forwards_to_the_leader()
    {
        await using var store = new EmbeddedClusterStore();
        using var key = LeaseToken.CreateKey();
        await using var first = await SchedulerHost.StartAsync(Options(key, "0.0.0.0", advertise: null), store);
        await using var second = await SchedulerHost.StartAsync(Options(key, "0.0.0.0", advertise: null), store);
        var (leader, standby) = first.IsLeader ? (first, second) : (second, first);
        Assert.False(standby.IsLeader);

        var published = await LeaderElection.GetLeaderAsync(store, StoreKeys.Leader);

        Assert.Equal(leader.Endpoint, published);
        var host = new Uri(published!).Host.Trim('[', ']');
        Assert.True(IPAddress.TryParse(host, out var address), published);
        Assert.False(AdvertisedAddress.IsWildcard(address), published);
        Assert.Equal(AdvertisedAddress.Choose("0.0.0.0", null).Host, host);
        Assert.NotEqual(leader.Endpoint, standby.Endpoint);

        // An allocation the standby takes reaches the leader (with no broker it is refused for lack of room, by the
        // leader, not with "no replica leads" as a standby forwarding to itself answered).
        using var client = new GpuPoolClient(standby.Endpoint, new GpuPoolClientOptions { BearerToken = AdminToken });
        var error = await Assert.ThrowsAsync<GpuPool.Protocol.Errors.GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { Tenant = "t", MemoryBytes = 1 << 20, ComputeShare = 10 }));
        Assert.DoesNotContain("no scheduler replica leads", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_advertised_host_is_what_a_replica_publishes()
    {
        await using var store = new EmbeddedClusterStore();
        using var key = LeaseToken.CreateKey();
        await using var scheduler = await SchedulerHost.StartAsync(Options(key, "0.0.0.0", advertise: "sched-1.pool.example"), store);

        Assert.True(scheduler.IsLeader);
        Assert.Equal($"http://sched-1.pool.example:{new Uri(scheduler.Endpoint).Port}", await LeaderElection.GetLeaderAsync(store, StoreKeys.Leader));
    }

    [Theory]
    [InlineData("0.0.0.0", "::", "is a wildcard address")]
    [InlineData("any", null, "--listen 'any' is not an IP address")]
    public async Task A_bad_listen_or_advertise_address_is_refused_with_a_sentence_naming_it(string listen, string? advertise, string says)
    {
        await using var store = new EmbeddedClusterStore();
        using var key = LeaseToken.CreateKey();

        var error = await Assert.ThrowsAsync<ArgumentException>(() => SchedulerHost.StartAsync(Options(key, listen, advertise), store));

        Assert.Contains(says, error.Message, StringComparison.Ordinal);
    }

    private const string AdminToken = "address-tests-admin";

    private static SchedulerOptions Options(System.Security.Cryptography.ECDsa key, string listen, string? advertise) => new()
    {
        ListenAddress = listen,
        AdvertiseAddress = advertise,
        Port = 0,
        SigningKey = key,
        AdminToken = AdminToken,
        OpenTenants = true,
        LeaderTtl = TimeSpan.FromSeconds(2),
    };
}
