using CsCheck;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>Records and random pools for the placement tests: few ids, coarse sizes, so that collisions and ties are common.</summary>
internal static class Pools
{
    public const ulong GiB = 1UL << 30;

    public static readonly string[] BrokerIds = ["b0", "b1", "b2", "b3", "b4", "b5"];

    public static readonly string[] LeaseIds = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "l10", "l11"];

    public static readonly string[] Tenants = ["t0", "t1", "t2"];

    public static readonly string[] DeviceNames = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4", "cpu emulated device"];

    /// <summary>Model filters as a request spells them: any, substrings of some names in any case, and one that matches nothing.</summary>
    public static readonly string[] ModelFilters = ["", "", "h100", "A100", "nvidia", "tesla"];

    private static readonly DateTimeOffset Epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static DeviceInfo Device(uint index, ulong memoryGiB, uint capacity = 1000, string name = "NVIDIA H100 80GB HBM3")
        => new() { Index = index, Name = name, MemoryTotalBytes = memoryGiB * GiB, ComputeCapacity = capacity, Backend = "cpu" };

    public static BrokerRecord Broker(string id, params DeviceInfo[] devices) => Broker(id, draining: false, devices);

    public static BrokerRecord Broker(string id, bool draining, params DeviceInfo[] devices)
    {
        var record = new BrokerRecord { BrokerId = id, Host = id + ".pool", Endpoint = $"http://{id}.pool:7071", Draining = draining };
        record.Devices.Add(devices);
        return record;
    }

    public static LeaseRecord Lease(
        string id,
        string brokerId,
        uint device,
        ulong memoryGiB,
        uint share,
        string tenant = "t0",
        int priority = 0,
        bool preemptible = false,
        bool beingPreempted = false,
        int createdSecond = 0)
    {
        var lease = new LeaseRecord
        {
            LeaseId = id,
            Tenant = tenant,
            BrokerId = brokerId,
            DeviceIndex = device,
            MemoryBytes = memoryGiB * GiB,
            ComputeShare = share,
            PriorityClass = "class" + priority,
            PriorityValue = priority,
            Preemptible = preemptible,
            Created = Timestamp.FromDateTimeOffset(Epoch.AddSeconds(createdSecond)),
        };
        if (beingPreempted)
        {
            lease.PreemptDeadline = Timestamp.FromDateTimeOffset(Epoch.AddHours(1));
        }

        return lease;
    }

    public static PoolModel Model(IEnumerable<BrokerRecord> brokers, IEnumerable<LeaseRecord> leases, IEnumerable<string>? drained = null)
    {
        var model = new PoolModel();
        foreach (var broker in brokers)
        {
            model.UpsertBroker(broker);
        }

        foreach (var lease in leases)
        {
            model.UpsertLease(lease);
        }

        foreach (var id in drained ?? [])
        {
            model.SetDrained(id, true);
        }

        return model;
    }

    // Generators. Sizes are whole GiB so that equal free memory (a tie) happens often.

    public static readonly Gen<DeviceInfo> AnyDevice =
        Gen.Select(Gen.UInt[0, 4], Gen.OneOf(8UL, 16UL, 24UL, 40UL, 80UL), Gen.OneOf(1000u, 1000u, 500u, 2000u), Gen.OneOf(DeviceNames), (index, gib, capacity, name) => Device(index, gib, capacity, name));

    /// <summary>A broker with 1 to 5 devices; indexes may repeat (the later entry wins) or leave gaps; one in five is draining.</summary>
    public static readonly Gen<BrokerRecord> AnyBroker =
        Gen.Select(AnyDevice.Array[1, 5], Gen.Int[0, 4], (devices, draining) => Broker("", draining == 0, devices));

    /// <summary>Hosts as a data centre has them: every device of one model, indexes 0..n-1.</summary>
    public static readonly Gen<BrokerRecord> UniformBroker =
        Gen.Select(Gen.UInt[1, 6], Gen.OneOf(40UL, 80UL), Gen.OneOf(DeviceNames), Gen.Int[0, 4], (count, gib, name, draining) =>
            Broker("", draining == 0, [.. Enumerable.Range(0, (int)count).Select(i => Device((uint)i, gib, 1000, name))]));

    /// <summary>
    /// A lease anywhere: on a known or unknown broker, a device that may not exist, of any size (a device can
    /// end up leased past its size, as after a broker re-registers smaller), any class, preemptible or not.
    /// </summary>
    public static readonly Gen<LeaseRecord> AnyLease =
        Gen.Select(
            Gen.OneOf(LeaseIds),
            Gen.OneOf<string>([.. BrokerIds, "gone"]),
            Gen.UInt[0, 4],
            Gen.ULong[0, 40],
            Gen.OneOf(0u, 100u, 250u, 500u, 1000u),
            Gen.OneOf(Tenants),
            Gen.Select(Gen.Int[-1, 3], Gen.Bool, Gen.Int[0, 4], Gen.Int[0, 50]))
        .Select((id, broker, device, gib, share, tenant, cls) =>
            Lease(id, broker, device, gib, share, tenant, cls.Item1, cls.Item2, beingPreempted: cls.Item3 == 0, createdSecond: cls.Item4));

    public static readonly Gen<PlacementAsk> AnySliceAsk =
        Gen.Select(Gen.ULong[0, 82], Gen.OneOf(0u, 1u, 100u, 250u, 500u, 750u, 1000u, 1500u), Gen.OneOf(ModelFilters), (gib, share, model) => PlacementAsk.Slice(gib * GiB, share, model));

    public static readonly Gen<PlacementAsk> AnyGangAsk =
        Gen.Select(Gen.UInt[1, 6], Gen.OneOf(ModelFilters), (n, model) => PlacementAsk.Gang(n, model));

    /// <summary>A random pool: some of the brokers (b0 always), some leases on them, some brokers drained by an admin.</summary>
    public static Gen<Scenario> AnyPool(Gen<BrokerRecord> broker, int maxLeases)
        => Gen.Select(Gen.Bool.Array[BrokerIds.Length], broker.Array[BrokerIds.Length], LeasesGen(maxLeases), Gen.Bool.Array[BrokerIds.Length])
            .Select((present, brokers, leases, drained) => new Scenario(
                [.. brokers.Select((b, i) => Named(b, BrokerIds[i])).Where((_, i) => present[i] || i == 0)],
                leases,
                [.. BrokerIds.Where((_, i) => drained[i] && i % 3 == 1)]));

    /// <summary>
    /// Two hosts of one or two devices packed nearly full (each lease goes to the first device it fits on), mostly
    /// with preemptible leases: eviction has many sets to choose from on each device.
    /// </summary>
    public static readonly Gen<Scenario> CrowdedPool =
        Gen.Select(
            Gen.Select(Gen.Int[1, 2], Gen.OneOf(40UL, 80UL), Gen.OneOf(DeviceNames), (count, gib, name) => Broker("", [.. Enumerable.Range(0, count).Select(i => Device((uint)i, gib, 1000, name))])).Array[2],
            Gen.Select(Gen.ULong[1, 32], Gen.OneOf(0u, 50u, 100u, 250u, 500u), Gen.Int[-1, 3], Gen.Int[0, 9], Gen.Int[0, 50]).Array[4, 16])
        .Select((generated, sizes) =>
        {
            BrokerRecord[] brokers = [Named(generated[0], "b0"), Named(generated[1], "b1")];
            var devices = brokers.SelectMany(b => b.Devices.Select(d => (Broker: b.BrokerId, Info: d))).ToArray();
            var memory = new ulong[devices.Length];
            var share = new uint[devices.Length];
            var leases = new List<LeaseRecord>();
            foreach (var (gib, milli, cls, kind, created) in sizes)
            {
                var at = 0;
                while (at < devices.Length && (memory[at] + (gib * GiB) > devices[at].Info.MemoryTotalBytes || share[at] + milli > devices[at].Info.ComputeCapacity))
                {
                    at++;
                }

                if (at == devices.Length)
                {
                    continue;
                }

                memory[at] += gib * GiB;
                share[at] += milli;
                leases.Add(Lease("l" + leases.Count, devices[at].Broker, devices[at].Info.Index, gib, milli, Tenants[kind % 3], cls, preemptible: kind < 7, beingPreempted: kind == 0, createdSecond: created));
            }

            return new Scenario(brokers, [.. leases], []);
        });

    /// <summary>A copy of a generated broker under its id.</summary>
    public static BrokerRecord Named(BrokerRecord broker, string id)
    {
        var copy = broker.Clone();
        copy.BrokerId = id;
        copy.Host = id + ".pool";
        copy.Endpoint = $"http://{id}.pool:7071";
        return copy;
    }

    /// <summary>Leases with distinct ids (l0, l1, …), so that a scenario's leases are all in the pool.</summary>
    private static Gen<LeaseRecord[]> LeasesGen(int max)
        => AnyLease.Array[0, max].Select(leases => leases.Select((l, i) =>
        {
            var copy = l.Clone();
            copy.LeaseId = "l" + i;
            return copy;
        }).ToArray());
}

/// <summary>One random pool: its brokers, its leases, the brokers an admin drained.</summary>
internal sealed record Scenario(BrokerRecord[] Brokers, LeaseRecord[] Leases, string[] Drained)
{
    public PoolModel Model() => Pools.Model(Brokers, Leases, Drained);

    public ShadowPool Shadow() => ShadowPool.Of(Brokers, Leases, Drained);

    public override string ToString()
        => $"brokers: {string.Join("; ", Brokers.Select(b => b.ToString()))}\nleases: {string.Join("; ", Leases.Select(l => l.ToString()))}\ndrained: {string.Join(",", Drained)}";
}
