using Google.Protobuf.WellKnownTypes;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;

namespace GpuPool.Perf.Scheduler;

/// <summary>
/// A simulated inventory in a <see cref="PoolModel"/>, and the leases the allocator would write for it: hosts of
/// eight devices, three in four with 80 GiB H100s, one in four with 40 GiB A100s. It keeps its own list of live
/// leases (to release a random one) and of leased memory (to hold a target fill); the model is what is measured.
/// </summary>
internal sealed class SimulatedPool
{
    public const ulong GiB = 1UL << 30;

    private static readonly PriorityClass Low = PriorityClasses.Defaults.Single(c => c.Name == "low");
    private static readonly PriorityClass Normal = PriorityClasses.Defaults.Single(c => c.Name == PriorityClasses.DefaultName);

    /// <summary>Slice sizes in GiB a request picks from; the share is proportional to memory on an 80 GiB device.</summary>
    internal static readonly ulong[] SliceGiB = [1, 2, 4, 5, 8, 10, 16, 20, 24, 40];

    /// <summary>Gang sizes, small ones more often.</summary>
    private static readonly uint[] GangSizes = [1, 1, 1, 1, 2, 2, 2, 4, 4, 8];

    private static readonly Quota Unlimited = new() { Tenant = "bench", MaxMilliGpus = uint.MaxValue, MaxMemoryBytes = ulong.MaxValue, MaxLeases = uint.MaxValue };

    private readonly Random _random;
    private readonly Dictionary<string, BrokerRecord> _brokers = new(StringComparer.Ordinal);
    private readonly List<(LeaseRecord[] Leases, bool Gang)> _live = [];
    private readonly Timestamp _created = Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private long _nextLease;

    public SimulatedPool(int hosts, int devicesPerHost, int seed)
    {
        _random = new Random(seed);
        for (var h = 0; h < hosts; h++)
        {
            var broker = CreateBroker(h, devicesPerHost, _created);
            _brokers[broker.BrokerId] = broker;
            Model.UpsertBroker(broker);
            TotalMemory += broker.Devices.Aggregate(0UL, (sum, d) => sum + d.MemoryTotalBytes);
        }

        DeviceCount = hosts * devicesPerHost;
    }

    /// <summary>Host <paramref name="h"/> of the inventory as its broker registers it: three in four with 80 GiB H100s, one in four with 40 GiB A100s.</summary>
    public static BrokerRecord CreateBroker(int h, int devicesPerHost, Timestamp heartbeat)
    {
        var a100 = h % 4 == 3;
        var broker = new BrokerRecord
        {
            BrokerId = $"host-{h:D5}",
            Host = $"host-{h:D5}.pool",
            Endpoint = $"http://host-{h:D5}.pool:7071",
            FastPathTcp = $"host-{h:D5}.pool:7072",
            Heartbeat = heartbeat,
        };
        for (var d = 0; d < devicesPerHost; d++)
        {
            broker.Devices.Add(new DeviceInfo
            {
                Index = (uint)d,
                Name = a100 ? "NVIDIA A100-SXM4-40GB" : "NVIDIA H100 80GB HBM3",
                Backend = "cuda",
                MemoryTotalBytes = (a100 ? 40UL : 80UL) * GiB,
                ComputeCapacity = 1000,
            });
        }

        return broker;
    }

    public PoolModel Model { get; } = new();

    /// <summary>Find the broker and devices of a placement the way the allocator does (the model's lookups), instead of the simulation's own table.</summary>
    public bool AllocatorLookups { get; set; }

    public ulong TotalMemory { get; }

    public int DeviceCount { get; }

    public ulong LeasedMemory { get; private set; }

    public int LeasedDevices { get; private set; }

    public int LiveGrants => _live.Count;

    public double MemoryFill => (double)LeasedMemory / TotalMemory;

    public double DeviceFill => (double)LeasedDevices / DeviceCount;

    public IReadOnlyCollection<BrokerRecord> Brokers => _brokers.Values;

    /// <summary>A slice as clients ask: one of ten sizes, a share in proportion, one in five naming a model.</summary>
    public PlacementAsk NextSlice() => NextSlice(withModel: true);

    /// <summary>A slice of any model, to fill the pool quickly: an ask naming a model scans past the devices of others.</summary>
    public PlacementAsk NextSlice(bool withModel)
    {
        var gib = SliceGiB[_random.Next(SliceGiB.Length)];
        var share = (uint)Math.Clamp(gib * 1000 / 80, 10, 1000);
        return PlacementAsk.Slice(gib * GiB, share, withModel ? NextModelFilter() : "");
    }

    public PlacementAsk NextGang() => PlacementAsk.Gang(GangSizes[_random.Next(GangSizes.Length)], NextModelFilter());

    /// <summary>
    /// One decision as the allocator makes it for a request: admission against the tenant's quota, placement,
    /// the lease records, and charging the model. Returns whether it was placed.
    /// </summary>
    public bool Decide(PlacementAsk ask)
    {
        var tenant = Tenant();
        var site = Model.TryPlace(ask);
        if (site is null)
        {
            return false;
        }

        BrokerRecord broker;
        ulong wholeMemory;
        if (AllocatorLookups)
        {
            // As Allocator.Decide and CreateGrant find them: the model's lookups by id.
            wholeMemory = ask.IsGang ? Model.FindDevice(site.BrokerId, site.DeviceIndexes[0])!.MemoryTotalBytes : 0;
            broker = Model.FindBroker(site.BrokerId)!;
        }
        else
        {
            broker = _brokers[site.BrokerId];
            wholeMemory = ask.IsGang ? broker.Devices[(int)site.DeviceIndexes[0]].MemoryTotalBytes : 0;
        }

        var admission = Admission.Check(Unlimited, Model.UsageOf(tenant), ask, wholeMemory, "normal");
        if (admission.Verdict is not (AdmissionVerdict.Admit or AdmissionVerdict.Borrow))
        {
            throw new InvalidOperationException("an unlimited quota refused a request: " + admission.Reason);
        }

        var cls = _random.Next(10) < 6 ? Low : Normal;
        var grant = new LeaseRecord[site.DeviceIndexes.Count];
        for (var i = 0; i < grant.Length; i++)
        {
            var index = site.DeviceIndexes[i];
            var device = AllocatorLookups ? Model.FindDevice(site.BrokerId, index)! : broker.Devices[(int)index];
            grant[i] = new LeaseRecord
            {
                LeaseId = "l-" + (++_nextLease).ToString("x12", System.Globalization.CultureInfo.InvariantCulture),
                Tenant = tenant,
                BrokerId = broker.BrokerId,
                BrokerEndpoint = broker.Endpoint,
                BrokerFastPathTcp = broker.FastPathTcp,
                BrokerHost = broker.Host,
                DeviceIndex = device.Index,
                MemoryBytes = ask.IsGang ? device.MemoryTotalBytes : ask.MemoryBytes,
                ComputeShare = ask.IsGang ? device.ComputeCapacity : ask.ComputeShare,
                PriorityClass = cls.Name,
                PriorityValue = cls.Value,
                Preemptible = cls.Preemptible,
                Created = _created,
                TtlSeconds = 30,
            };
            Model.UpsertLease(grant[i]);
            LeasedMemory += grant[i].MemoryBytes;
        }

        LeasedDevices += ask.IsGang ? grant.Length : 0;
        _live.Add((grant, ask.IsGang));
        return true;
    }

    /// <summary>Ends a random live grant (all of a gang's leases), as a release or an expiry does.</summary>
    public void ReleaseOne()
    {
        var at = _random.Next(_live.Count);
        var (grant, gang) = _live[at];
        _live[at] = _live[^1];
        _live.RemoveAt(_live.Count - 1);
        foreach (var lease in grant)
        {
            Model.RemoveLease(lease.LeaseId);
            LeasedMemory -= lease.MemoryBytes;
        }

        LeasedDevices -= gang ? grant.Length : 0;
    }

    /// <summary>A broker's heartbeat as the leader's watch delivers it: the same record with a new timestamp.</summary>
    public void Heartbeat(int host)
    {
        var record = BrokerAt(host).Clone();
        record.Heartbeat = Timestamp.FromDateTimeOffset(record.Heartbeat.ToDateTimeOffset().AddSeconds(3));
        Model.UpsertBroker(record);
    }

    public BrokerRecord BrokerAt(int host) => _brokers[$"host-{host:D5}"];

    public int NextHost() => _random.Next(_brokers.Count);

    private string NextModelFilter() => _random.Next(10) switch
    {
        0 => "h100",
        1 => "a100",
        _ => "",
    };

    private string Tenant() => "team-" + _random.Next(32).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
