using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination.Embedded;
using GpuPool.Protocol.Tokens;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Scheduler.Tests.Leases;

/// <summary>
/// The leader's loop keeps lease deadlines and preemption grace by the injected clock: on a fake clock, over an
/// in-memory store that follows the same clock, a lease ends only when the clock passes its TTL without a
/// keepalive, and a victim only when the clock passes its grace.
/// </summary>
public sealed class AllocatorClockTests : IAsyncLifetime
{
    private const ulong GiB = 1UL << 30;
    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan TombstoneTtl = TimeSpan.FromSeconds(10);

    /// <summary>Years ahead of the machine's clock: a deadline taken from the machine's clock instead would be long past.</summary>
    private readonly ManualTimeProvider _clock = new(new DateTimeOffset(2040, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly EmbeddedClusterStore _store;
    private readonly SchedulerOptions _options;
    private Allocator _allocator = null!;

    public AllocatorClockTests()
    {
        _store = new EmbeddedClusterStore(_clock);
        // No broker checks: the broker here is a record with no process behind it (http://b0.pool:7071).
        _options = new SchedulerOptions { SigningKey = LeaseToken.CreateKey(), TimeProvider = _clock, OpenTenants = true, TickInterval = TickInterval, PreemptionGrace = Grace, TombstoneTtl = TombstoneTtl, BrokerCheckInterval = TimeSpan.Zero };
    }

    public async Task InitializeAsync()
    {
        var broker = new BrokerRecord { BrokerId = "b0", Endpoint = "http://b0.pool:7071" };
        broker.Devices.Add(new DeviceInfo { Index = 0, Name = "cpu", MemoryTotalBytes = 4 * GiB, ComputeCapacity = 1000 });
        await _store.PutAsync(StoreKeys.Brokers + broker.BrokerId, broker.ToByteArray());
    }

    public async Task DisposeAsync()
    {
        if (_allocator is not null)
        {
            await _allocator.DisposeAsync();
        }

        await _store.DisposeAsync();
        _options.SigningKey.Dispose();
    }

    [Fact]
    public async Task Lease_not_renewed_within_its_ttl_expires()
    {
        await StartAsync();
        var lease = (await AllocateAsync(ttlSeconds: 5)).Lease;

        _clock.Advance(TimeSpan.FromSeconds(5) + TickInterval);

        await Until.TrueAsync(async () => await _store.GetAsync(StoreKeys.Leases + lease.LeaseId) is null, "the lease's record is deleted");
        var tombstone = LeaseTombstone.Parser.ParseFrom((await _store.GetAsync(StoreKeys.Tombstones + lease.LeaseId))!.Value.Span);
        Assert.Equal("it expired: no keepalive from its holder for its TTL of 5 s", tombstone.Reason);
    }

    [Fact]
    public async Task The_reason_a_lease_ended_is_forgotten_once_the_tombstone_ttl_is_over()
    {
        await StartAsync();
        var lease = (await AllocateAsync(ttlSeconds: 5)).Lease;
        _clock.Advance(TimeSpan.FromSeconds(5) + TickInterval);
        var key = StoreKeys.Tombstones + lease.LeaseId;
        await Until.TrueAsync(async () => await _store.GetAsync(key) is not null, "the tombstone is written");

        _clock.Advance(TombstoneTtl);

        await Until.TrueAsync(async () => await _store.GetAsync(key) is null, "the tombstone vanishes");
    }

    [Fact]
    public async Task Lease_renewed_within_its_ttl_outlives_it()
    {
        await StartAsync();
        var lease = (await AllocateAsync(ttlSeconds: 5)).Lease;

        // Each keepalive is taken after the ticks of the time before it: had the lease expired, it would be refused.
        for (var i = 0; i < 3; i++)
        {
            _clock.Advance(TimeSpan.FromSeconds(4));
            Assert.NotNull(await _allocator.RenewAsync(lease.LeaseId, CancellationToken.None));
        }

        Assert.NotNull(await _store.GetAsync(StoreKeys.Leases + lease.LeaseId));
    }

    [Fact]
    public async Task A_lease_a_new_leader_finds_lives_a_full_ttl_from_when_it_took_over()
    {
        // Granted an hour before this leader started, and renewed (by the last leader) since.
        var found = new LeaseRecord { LeaseId = "l-found", Tenant = "t", BrokerId = "b0", DeviceIndex = 0, MemoryBytes = GiB, ComputeShare = 100, PriorityClass = "normal", TtlSeconds = 5, Created = Timestamp.FromDateTimeOffset(_clock.GetUtcNow() - TimeSpan.FromHours(1)) };
        await _store.PutAsync(StoreKeys.Leases + found.LeaseId, found.ToByteArray());
        await StartAsync();

        _clock.Advance(TimeSpan.FromSeconds(5) - TickInterval);

        Assert.NotNull(await _allocator.RenewAsync(found.LeaseId, CancellationToken.None));
    }

    [Fact]
    public async Task A_preempted_lease_is_revoked_when_its_grace_is_over_and_its_room_goes_to_the_request_that_preempted_it()
    {
        await StartAsync();
        var victim = (await AllocateAsync(ttlSeconds: 60, memory: 4 * GiB, share: 1000, priorityClass: "low")).Lease;
        var urgent = AllocateAsync(ttlSeconds: 60, memory: 4 * GiB, share: 1000, priorityClass: "high");
        await Until.TrueAsync(async () => await MarkedAsync(victim.LeaseId), "the victim's record carries its preemption deadline");

        _clock.Advance(Grace - TickInterval);
        Assert.NotNull(await _allocator.RenewAsync(victim.LeaseId, CancellationToken.None));
        Assert.False(urgent.IsCompleted, "the request that preempts was granted before its victim's grace was over");

        _clock.Advance(TickInterval);
        var granted = await urgent;

        Assert.Null(await _allocator.RenewAsync(victim.LeaseId, CancellationToken.None));
        Assert.Equal(("b0", 0u), (granted.Lease.BrokerId, granted.Lease.DeviceIndex));
    }

    private async Task StartAsync()
    {
        _allocator = new Allocator(_options, _store, term: null, NullLogger.Instance);
        await _allocator.StartAsync(CancellationToken.None);
    }

    private Task<AllocateReply> AllocateAsync(uint ttlSeconds, ulong memory = GiB, uint share = 100, string priorityClass = "normal")
        => _allocator.AllocateAsync(new AllocateRequest { Tenant = "t-" + priorityClass, MemoryBytes = memory, ComputeShare = share, PriorityClass = priorityClass, TtlSeconds = ttlSeconds }, CancellationToken.None);

    private async Task<bool> MarkedAsync(string leaseId)
        => await _store.GetAsync(StoreKeys.Leases + leaseId) is { } entry && LeaseRecord.Parser.ParseFrom(entry.Value.Span).PreemptDeadline is not null;
}
