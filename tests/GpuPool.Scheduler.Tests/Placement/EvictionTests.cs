using CsCheck;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>
/// Preemption evicts the fewest preemptible leases of lower classes that make room, then those of the lowest
/// classes; leases already being preempted are not chosen again.
/// </summary>
public sealed class EvictionTests
{
    private const int High = 10;

    /// <summary>The asking request's class: often above every lease's (-1 to 3), so that most preemptible leases are candidates.</summary>
    private static readonly Gen<int> AskClass = Gen.Frequency((1, Gen.Int[-1, 3]), (2, Gen.Const(4)));

    /// <summary>Slices that some device of a crowded pool could hold once emptied.</summary>
    private static readonly Gen<PlacementAsk> ModestSliceAsk =
        Gen.Select(Gen.ULong[16, 64], Gen.OneOf(0u, 100u, 250u, 500u), Gen.OneOf("", "", "", "nvidia", "h100"), (gib, share, model) => PlacementAsk.Slice(gib * GiB, share, model));

    private static readonly Gen<PlacementAsk> SmallGangAsk = Gen.Select(Gen.UInt[1, 3], Gen.OneOf(ModelFilters), (n, model) => PlacementAsk.Gang(n, model));

    [Fact]
    public void Only_preemptible_leases_of_a_lower_class_not_already_being_preempted_are_victims()
    {
        var model = Model(
            [Broker("b0", Device(0, 40), Device(1, 40), Device(2, 40), Device(3, 40))],
            [
                Lease("fixed", "b0", 0, 40, 100, priority: 0, preemptible: false),
                Lease("same-class", "b0", 1, 40, 100, priority: High, preemptible: true),
                Lease("going", "b0", 2, 40, 100, priority: 0, preemptible: true, beingPreempted: true),
                Lease("victim", "b0", 3, 40, 100, priority: 0, preemptible: true),
            ]);

        var eviction = model.FindEviction(PlacementAsk.Slice(20 * GiB, 100), High);

        Assert.NotNull(eviction);
        Assert.Equal("victim", Assert.Single(eviction.Victims).LeaseId);
        Assert.Equal(("b0", 3u), (eviction.Site.BrokerId, Assert.Single(eviction.Site.DeviceIndexes)));
    }

    [Fact]
    public void No_eviction_is_found_when_evicting_every_candidate_would_not_make_room()
    {
        var model = Model(
            [Broker("b0", Device(0, 40))],
            [Lease("fixed", "b0", 0, 30, 100), Lease("small", "b0", 0, 5, 100, preemptible: true)]);

        Assert.Null(model.FindEviction(PlacementAsk.Slice(20 * GiB, 100), High));
        Assert.Null(model.FindEviction(PlacementAsk.Slice(41 * GiB, 100), High));
        Assert.Null(model.FindEviction(PlacementAsk.Gang(1), High));
    }

    [Fact]
    public void One_large_lease_is_evicted_rather_than_many_small_ones_of_a_lower_class()
    {
        // Lowest class first would take the four 8 GiB leases and still need the 30 GiB one.
        var model = Model(
            [Broker("b0", Device(0, 80))],
            [
                Lease("s1", "b0", 0, 8, 100, priority: 0, preemptible: true),
                Lease("s2", "b0", 0, 8, 100, priority: 0, preemptible: true),
                Lease("s3", "b0", 0, 8, 100, priority: 0, preemptible: true),
                Lease("s4", "b0", 0, 8, 100, priority: 0, preemptible: true),
                Lease("big", "b0", 0, 30, 100, priority: 1, preemptible: true),
                Lease("fixed", "b0", 0, 16, 100, priority: 5),
            ]);

        var eviction = model.FindEviction(PlacementAsk.Slice(32 * GiB, 100), High);

        Assert.NotNull(eviction);
        Assert.Equal("big", Assert.Single(eviction.Victims).LeaseId);
    }

    [Fact]
    public void Among_equally_few_victims_the_lowest_classes_go_and_then_the_youngest()
    {
        var model = Model(
            [Broker("b0", Device(0, 40)), Broker("b1", Device(0, 40))],
            [
                Lease("b0-class2", "b0", 0, 40, 100, priority: 2, preemptible: true),
                Lease("b1-old", "b1", 0, 20, 100, priority: 1, preemptible: true, createdSecond: 1),
                Lease("b1-young", "b1", 0, 20, 100, priority: 1, preemptible: true, createdSecond: 9),
            ]);

        Assert.Equal(["b0-class2"], model.FindEviction(PlacementAsk.Slice(40 * GiB, 100), High)?.Victims.Select(v => v.LeaseId));
        Assert.Equal(["b1-young"], model.FindEviction(PlacementAsk.Slice(10 * GiB, 100), High)?.Victims.Select(v => v.LeaseId));
    }

    [Fact]
    public void On_a_device_leased_past_its_size_the_excess_is_evicted_too()
    {
        // The broker re-registered with 40 GiB under 60 GiB of leases: evicting one 30 GiB lease would leave
        // 30 + 15 GiB on a 40 GiB device.
        var model = Model(
            [Broker("b0", Device(0, 80))],
            [Lease("a", "b0", 0, 30, 100, preemptible: true, createdSecond: 2), Lease("b", "b0", 0, 30, 100, preemptible: true, createdSecond: 1)]);
        model.UpsertBroker(Broker("b0", Device(0, 40)));

        var eviction = model.FindEviction(PlacementAsk.Slice(15 * GiB, 100), High);

        Assert.NotNull(eviction);
        Assert.Equal(["a", "b"], eviction.Victims.Select(v => v.LeaseId).Order());
    }

    [Fact]
    public void A_gang_evicts_whole_devices_on_one_host_with_the_fewest_victims()
    {
        var model = Model(
            [Broker("b0", Device(0, 80), Device(1, 80)), Broker("b1", Device(0, 80), Device(1, 80), Device(2, 80))],
            [
                Lease("b0-0a", "b0", 0, 10, 100, preemptible: true),
                Lease("b0-1a", "b0", 1, 10, 100, preemptible: true),
                Lease("b1-0a", "b1", 0, 10, 100, preemptible: true),
                Lease("b1-0b", "b1", 0, 10, 100, preemptible: true),
                Lease("b1-1a", "b1", 1, 10, 100, preemptible: false),
                Lease("b1-2a", "b1", 2, 10, 100, preemptible: true),
            ]);

        var eviction = model.FindEviction(PlacementAsk.Gang(2), High);

        Assert.NotNull(eviction);
        Assert.Equal("b0", eviction.Site.BrokerId);
        Assert.Equal(["b0-0a", "b0-1a"], eviction.Victims.Select(v => v.LeaseId).Order());
        Assert.Null(model.FindEviction(PlacementAsk.Gang(3), High));
    }

    [Fact]
    public void A_slice_eviction_is_valid_and_the_cheapest_a_search_of_every_subset_finds()
    {
        var checkedCases = 0;
        var evictions = 0;
        Gen.Select(Gen.OneOf(AnyPool(AnyBroker, maxLeases: 16), CrowdedPool), Gen.OneOf(AnySliceAsk, ModestSliceAsk), AskClass).Sample((pool, ask, priority) =>
        {
            var model = pool.Model();
            if (model.TryPlace(ask) is not null)
            {
                // The allocator looks for an eviction only when nothing fits as it is.
                return;
            }

            Interlocked.Increment(ref checkedCases);
            var shadow = pool.Shadow();
            var cheapest = shadow.CheapestSliceEviction(ask, priority);

            var eviction = model.FindEviction(ask, priority);

            if (cheapest is null)
            {
                Assert.Null(eviction);
                return;
            }

            Assert.NotNull(eviction);
            Interlocked.Increment(ref evictions);
            var device = shadow.Device(eviction.Site.BrokerId, Assert.Single(eviction.Site.DeviceIndexes));
            Assert.NotNull(device);
            AssertValidVictims(model, ask, priority, device.Leases, eviction);
            Assert.True(device.Placeable && device.Matches(ask.DeviceModel), $"{device} cannot take {ask}");
            Assert.True(device.FitsAfter(ask, eviction.Victims), $"{ask} does not fit on {device} without {Ids(eviction.Victims)}");
            Assert.Equal(cheapest, (eviction.Victims.Count, eviction.Victims.Max(v => v.PriorityValue)));

            foreach (var victim in eviction.Victims)
            {
                model.RemoveLease(victim.LeaseId);
            }

            Assert.NotNull(model.TryPlace(ask));
        }, iter: 6_000);

        // Most random pools have room somewhere; enough of them must not for the property to mean something.
        Assert.True(checkedCases > 500 && evictions > 200, $"slices: only {checkedCases} pools had no room for the ask, {evictions} of them an eviction that makes room");
    }

    [Fact]
    public void A_gang_eviction_is_valid_and_the_cheapest_a_search_of_every_host_finds()
    {
        var checkedCases = 0;
        var evictions = 0;
        Gen.Select(Gen.OneOf(AnyPool(Gen.OneOf(AnyBroker, UniformBroker), maxLeases: 16), CrowdedPool), Gen.OneOf(AnyGangAsk, SmallGangAsk), AskClass).Sample((pool, ask, priority) =>
        {
            var model = pool.Model();
            if (model.TryPlace(ask) is not null)
            {
                return;
            }

            Interlocked.Increment(ref checkedCases);
            var shadow = pool.Shadow();
            var cheapest = shadow.CheapestGangEviction(ask, priority);

            var eviction = model.FindEviction(ask, priority);

            if (cheapest is null)
            {
                Assert.Null(eviction);
                return;
            }

            Assert.NotNull(eviction);
            Interlocked.Increment(ref evictions);
            Assert.Equal((int)ask.WholeDevices, eviction.Site.DeviceIndexes.Distinct().Count());
            var devices = eviction.Site.DeviceIndexes.Select(i => shadow.Device(eviction.Site.BrokerId, i)!).ToArray();
            Assert.All(devices, d => Assert.True(d is not null && d.Placeable && d.Matches(ask.DeviceModel), $"{d} cannot take {ask}"));
            AssertValidVictims(model, ask, priority, [.. devices.SelectMany(d => d.Leases)], eviction);

            // Every lease on the chosen devices goes: a gang takes devices whole.
            Assert.Equal(devices.SelectMany(d => d.Leases).Select(l => l.LeaseId).Order(), eviction.Victims.Select(v => v.LeaseId).Order());
            Assert.Equal(cheapest, (eviction.Victims.Count, eviction.Victims.Max(v => v.PriorityValue)));

            foreach (var victim in eviction.Victims)
            {
                model.RemoveLease(victim.LeaseId);
            }

            Assert.NotNull(model.TryPlace(ask));
        }, iter: 8_000);

        Assert.True(checkedCases > 500 && evictions > 200, $"gangs: only {checkedCases} pools had no room for the ask, {evictions} of them an eviction that makes room");
    }

    /// <summary>Victims are distinct leases of the model, on the chosen devices, preemptible, of a lower class, not being preempted yet.</summary>
    private static void AssertValidVictims(PoolModel model, PlacementAsk ask, int priority, IReadOnlyList<LeaseRecord> onSite, Eviction eviction)
    {
        Assert.NotEmpty(eviction.Victims);
        Assert.Equal(eviction.Victims.Count, eviction.Victims.Select(v => v.LeaseId).Distinct().Count());
        foreach (var victim in eviction.Victims)
        {
            Assert.Equal(victim, model.FindLease(victim.LeaseId));
            Assert.Contains(victim, onSite);
            Assert.True(victim.Preemptible, $"{victim.LeaseId} is not preemptible ({ask})");
            Assert.True(victim.PriorityValue < priority, $"{victim.LeaseId} has class {victim.PriorityValue}, not below {priority}");
            Assert.True(victim.PreemptDeadline is null, $"{victim.LeaseId} is already being preempted");
        }
    }

    private static string Ids(IEnumerable<LeaseRecord> leases) => string.Join(", ", leases.Select(l => l.LeaseId));

    /// <summary>
    /// The allocator skips the search for an ask that found neither a place nor an eviction while the model's
    /// RoomGeneration stays the same; so adding leases (new ids, any class, evictable or not) must never make either
    /// appear without moving it.
    /// </summary>
    [Fact]
    public void While_the_room_generation_stays_the_same_an_ask_that_found_no_place_and_no_eviction_finds_none()
    {
        var unchangedCases = 0;
        Gen.Select(Gen.OneOf(AnyPool(AnyBroker, maxLeases: 16), CrowdedPool), Gen.OneOf(AnySliceAsk, ModestSliceAsk, AnyGangAsk, SmallGangAsk), AskClass, AnyLease.Array[1, 6])
            .Sample((pool, ask, priority, added) =>
            {
                var model = pool.Model();
                if (model.TryPlace(ask) is not null || model.FindEviction(ask, priority) is not null)
                {
                    return;
                }

                var generation = model.RoomGeneration;
                foreach (var (lease, i) in added.Select((l, i) => (l.Clone(), i)))
                {
                    lease.LeaseId = "added-" + i;
                    model.UpsertLease(lease);
                }

                Assert.Equal(generation, model.RoomGeneration);
                Interlocked.Increment(ref unchangedCases);
                Assert.Null(model.TryPlace(ask));
                Assert.Null(model.FindEviction(ask, priority));
            }, iter: 3_000);

        Assert.True(unchangedCases > 100, $"only {unchangedCases} cases had no place and no eviction to begin with");
    }
}
