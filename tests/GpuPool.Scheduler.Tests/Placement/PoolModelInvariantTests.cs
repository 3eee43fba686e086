using CsCheck;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>
/// The model stays equal to the naive picture whatever order the store's changes arrive in: every device's
/// usage is the sum of its leases, every tenant's the sum of theirs, and the indexes place as a full scan does.
/// </summary>
public sealed class PoolModelInvariantTests
{
    /// <summary>Asks that probe both indexes after every step.</summary>
    private static readonly PlacementAsk[] Probes =
    [
        PlacementAsk.Slice(0, 0),
        PlacementAsk.Slice(GiB, 100),
        PlacementAsk.Slice(8 * GiB, 500),
        PlacementAsk.Slice(20 * GiB, 250, "h100"),
        PlacementAsk.Slice(39 * GiB, 1000),
        PlacementAsk.Slice(40 * GiB, 0, "a100"),
        PlacementAsk.Slice(79 * GiB, 1),
        PlacementAsk.Gang(1),
        PlacementAsk.Gang(2),
        PlacementAsk.Gang(3, "nvidia"),
        PlacementAsk.Gang(4),
    ];

    private static readonly Gen<Op> AnyOp = Gen.Frequency(
        (3, Gen.Select(Gen.OneOf(BrokerIds), Gen.OneOf(AnyBroker, UniformBroker), (id, broker) => (Op)new UpsertBroker(Named(broker, id)))),
        (1, Gen.OneOf<string>([.. BrokerIds, "unknown"]).Select(id => (Op)new RemoveBroker(id))),
        (6, AnyLease.Select(lease => (Op)new UpsertLease(lease))),
        (3, Gen.OneOf<string>([.. LeaseIds, "unknown"]).Select(id => (Op)new RemoveLease(id))),
        (1, Gen.Select(Gen.OneOf<string>([.. BrokerIds, "unknown"]), Gen.Bool, (id, drained) => (Op)new SetDrained(id, drained))),
        (3, Gen.Select(Gen.OneOf(BrokerIds), Gen.ULong[0, 80], Gen.Frequency((4, Gen.Const(false)), (1, Gen.Const(true))), (id, used, flip) => (Op)new Heartbeat(id, used * GiB, flip))));

    [Fact]
    public void Any_sequence_of_changes_keeps_the_model_equal_to_a_full_scan()
    {
        AnyOp.Array[1, 40].Sample(ops =>
        {
            var model = new PoolModel();
            var shadow = new ShadowPool();
            for (var step = 0; step < ops.Length; step++)
            {
                ops[step].Apply(model, shadow);
                AssertAgrees(model, shadow, $"after step {step} ({ops[step]})");
            }
        }, iter: 300);
    }

    [Fact]
    public void Upserting_a_lease_again_replaces_it_instead_of_counting_it_twice()
    {
        var model = Model([Broker("b0", Device(0, 80))], []);
        var lease = Lease("l0", "b0", 0, 10, 250, tenant: "t0");

        model.UpsertLease(lease);
        model.UpsertLease(lease);
        var marked = lease.Clone();
        marked.PreemptReason = "preempted";
        model.UpsertLease(marked);

        var device = Assert.Single(model.DeviceViews());
        Assert.Equal((10 * GiB, 250u, 1u), (device.MemoryLeasedBytes, device.ComputeLeased, device.LeaseCount));
        Assert.Equal((250UL, 10 * GiB, 1), (model.UsageOf("t0").MilliGpus, model.UsageOf("t0").MemoryBytes, model.UsageOf("t0").Leases));
        Assert.Equal(1, model.LeaseCount);
        Assert.Equal("preempted", model.FindLease("l0")?.PreemptReason);
    }

    [Fact]
    public void A_lease_upserted_with_another_device_or_tenant_moves_there()
    {
        var model = Model([Broker("b0", Device(0, 80), Device(1, 80))], [Lease("l0", "b0", 0, 10, 250, tenant: "t0")]);

        model.UpsertLease(Lease("l0", "b0", 1, 20, 500, tenant: "t1"));

        var devices = model.DeviceViews().OrderBy(d => d.Device.Index).ToArray();
        Assert.Equal((0UL, 0u), (devices[0].MemoryLeasedBytes, devices[0].ComputeLeased));
        Assert.Equal((20 * GiB, 500u), (devices[1].MemoryLeasedBytes, devices[1].ComputeLeased));
        Assert.Same(TenantUsage.None, model.UsageOf("t0"));
        Assert.Equal(500UL, model.UsageOf("t1").MilliGpus);
    }

    [Fact]
    public void Removing_an_unknown_lease_changes_nothing()
    {
        var model = Model([Broker("b0", Device(0, 80))], [Lease("l0", "b0", 0, 10, 250)]);

        Assert.Null(model.RemoveLease("l-unknown"));

        Assert.Equal(1, model.LeaseCount);
        Assert.Equal(10 * GiB, Assert.Single(model.DeviceViews()).MemoryLeasedBytes);
        Assert.Equal(1, model.UsageOf("t0").Leases);
        Assert.Equal("b0", model.TryPlace(PlacementAsk.Slice(70 * GiB, 750))?.BrokerId);
    }

    [Fact]
    public void A_broker_that_goes_and_comes_back_finds_its_leases_on_its_devices()
    {
        var model = Model([Broker("b0", Device(0, 80), Device(1, 80))], [Lease("l0", "b0", 0, 70, 250)]);

        var orphans = model.RemoveBroker("b0");

        Assert.Equal("l0", Assert.Single(orphans).LeaseId);
        Assert.Equal(0, model.DeviceCount);
        Assert.Equal(1, model.UsageOf("t0").Leases);

        model.UpsertBroker(Broker("b0", Device(0, 80), Device(1, 80)));

        Assert.Equal(2, model.DeviceCount);
        Assert.Equal(70 * GiB, model.DeviceViews().Single(d => d.Device.Index == 0).MemoryLeasedBytes);
        Assert.Equal(1u, model.TryPlace(PlacementAsk.Slice(20 * GiB, 1))?.DeviceIndexes[0]);
    }

    [Fact]
    public void A_device_listed_twice_counts_once()
    {
        var model = Model([Broker("b0", Device(0, 16), Device(0, 80))], []);

        Assert.Equal(1, model.DeviceCount);
        Assert.Equal(80 * GiB, Assert.Single(model.DeviceViews()).Device.MemoryTotalBytes);
    }

    /// <summary>Counts, device usage, tenant usage and placement, each compared with the shadow's.</summary>
    internal static void AssertAgrees(PoolModel model, ShadowPool shadow, string when)
    {
        var devices = shadow.Devices();
        Assert.True(shadow.Brokers.Count == model.BrokerCount, $"broker count {when}");
        Assert.True(devices.Count == model.DeviceCount, $"device count {model.DeviceCount}, expected {devices.Count}, {when}");
        Assert.True(shadow.Leases.Count == model.LeaseCount, $"lease count {when}");
        Assert.True(shadow.Drained.SetEquals(model.Drained), $"drained set {when}");
        foreach (var lease in shadow.Leases.Values)
        {
            Assert.True(Equals(lease, model.FindLease(lease.LeaseId)), $"lease {lease.LeaseId} {when}");
        }

        var views = model.DeviceViews().ToDictionary(v => (v.BrokerId, v.Device.Index));
        Assert.True(views.Count == devices.Count, $"device views {when}");
        foreach (var device in devices)
        {
            var view = views[(device.BrokerId, device.Info.Index)];
            Assert.True(
                (UInt128)view.MemoryLeasedBytes == device.MemoryLeased && (UInt128)view.ComputeLeased == device.ShareLeased && view.LeaseCount == device.Leases.Count && Equals(view.Device, device.Info),
                $"device {device}: model has {view.MemoryLeasedBytes} B, share {view.ComputeLeased}, {view.LeaseCount} leases, {when}");
        }

        foreach (var tenant in Tenants)
        {
            var usage = model.UsageOf(tenant);
            Assert.True(shadow.UsageOf(tenant) == (usage.MilliGpus, usage.MemoryBytes, usage.Leases), $"usage of {tenant}: model {usage.MilliGpus}/{usage.MemoryBytes}/{usage.Leases}, expected {shadow.UsageOf(tenant)}, {when}");
        }

        foreach (var ask in Probes)
        {
            var site = model.TryPlace(ask);
            if (ask.IsGang)
            {
                GangPlacementTests.AssertBestFitGang(shadow, ask, shadow.FeasibleForGang(ask), site);
                continue;
            }

            var feasible = shadow.FeasibleForSlice(ask);
            Assert.True(feasible.Count == 0 == (site is null), $"{ask}: model placed at {site?.BrokerId}, {feasible.Count} feasible devices, {when}");
            if (site is not null)
            {
                var chosen = feasible.SingleOrDefault(d => d.BrokerId == site.BrokerId && d.Info.Index == site.DeviceIndexes[0]);
                Assert.True(chosen is not null && chosen.FreeMemory == feasible.Min(d => d.FreeMemory), $"{ask}: model chose {site.BrokerId}/{site.DeviceIndexes[0]}, not a best fit among {string.Join(", ", feasible)}, {when}");
            }
        }
    }

    /// <summary>One change as the store's watch delivers it, applied to the model and to the shadow alike.</summary>
    private abstract record Op
    {
        public abstract void Apply(PoolModel model, ShadowPool shadow);
    }

    private sealed record UpsertBroker(BrokerRecord Record) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            model.UpsertBroker(Record);
            shadow.Brokers[Record.BrokerId] = Record;
        }
    }

    /// <summary>A registered broker re-registers its devices with fresh telemetry, sometimes flipping its own draining flag.</summary>
    private sealed record Heartbeat(string Id, ulong MemoryUsed, bool FlipDraining) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            if (!shadow.Brokers.TryGetValue(Id, out var current))
            {
                return;
            }

            var record = current.Clone();
            record.Draining ^= FlipDraining;
            foreach (var device in record.Devices)
            {
                device.MemoryUsedBytes = MemoryUsed;
            }

            model.UpsertBroker(record);
            shadow.Brokers[Id] = record;
            Assert.Equal(record, model.FindBroker(Id));
        }
    }

    private sealed record RemoveBroker(string Id) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            var orphans = model.RemoveBroker(Id);

            // The leases on a registered broker come back, to be ended; an unknown broker has none on it.
            string[] expected = shadow.Brokers.Remove(Id) ? [.. shadow.Leases.Values.Where(l => l.BrokerId == Id).Select(l => l.LeaseId).Order()] : [];
            Assert.Equal(expected, orphans.Select(l => l.LeaseId).Order());
        }
    }

    private sealed record UpsertLease(LeaseRecord Lease) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            model.UpsertLease(Lease);
            shadow.Leases[Lease.LeaseId] = Lease;
        }
    }

    private sealed record RemoveLease(string Id) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            var removed = model.RemoveLease(Id);
            Assert.Equal(shadow.Leases.GetValueOrDefault(Id), removed);
            shadow.Leases.Remove(Id);
        }
    }

    private sealed record SetDrained(string Id, bool Drained) : Op
    {
        public override void Apply(PoolModel model, ShadowPool shadow)
        {
            model.SetDrained(Id, Drained);
            if (Drained)
            {
                shadow.Drained.Add(Id);
            }
            else
            {
                shadow.Drained.Remove(Id);
            }
        }
    }
}
