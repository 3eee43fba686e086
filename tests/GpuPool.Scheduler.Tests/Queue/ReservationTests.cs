using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using GpuPool.Scheduler.Queue;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Queue;

/// <summary>
/// The first request of a class that finds no room holds the site where it is closest to fitting; the asks behind it
/// are placed around it (backfill), so a large ask is not starved by a stream of small ones; and no request is passed
/// over by later ones of its class for longer than the bound.
/// </summary>
public sealed class ReservationTests
{
    private static readonly TimeSpan SliceRuns = TimeSpan.FromSeconds(8);

    [Fact]
    public void A_gang_at_the_head_of_the_queue_is_placed_once_the_leases_on_its_site_end_while_small_slices_keep_arriving()
    {
        var (sim, gang) = GangBehindAStreamOfSlices(reservations: true, seconds: 300);

        var granted = Assert.Single(sim.Grants, g => g.Request == gang);

        // The bound: the longest lease on the site it holds (8 s) when it starts to hold it.
        Assert.InRange(granted.At - QueueSimulation.T0, TimeSpan.FromSeconds(1), SliceRuns);
        Assert.All(granted.Records, r => Assert.Equal("b0", r.BrokerId));
        Assert.Equal([0u, 1u, 2u, 3u], granted.Records.Select(r => r.DeviceIndex).Order());

        // Meanwhile the stream was placed around it, on the host the gang does not hold, and never where it waits.
        var whileItWaited = sim.Grants.Where(g => g.Request != gang && g.At < granted.At).ToList();
        Assert.NotEmpty(whileItWaited);
        Assert.All(whileItWaited, g => Assert.Equal("b1", g.Records[0].BrokerId));
    }

    [Fact]
    public void Without_the_reservation_the_same_gang_starves_behind_the_stream_of_slices()
    {
        var (sim, gang) = GangBehindAStreamOfSlices(reservations: false, seconds: 300);

        Assert.True(sim.IsWaiting(gang), "the gang was placed without a reservation: the scenario does not show starvation");
        Assert.DoesNotContain(sim.Grants, g => g.Request == gang);
        Assert.True(sim.Grants.Count(g => g.Records[0].BrokerId == "b0") > 100, "the stream of slices stopped taking the room the gang waits for");
    }

    [Fact]
    public void The_head_of_a_class_holds_the_site_closest_to_fitting_and_a_smaller_ask_behind_it_goes_elsewhere()
    {
        var (model, decider) = Pool();
        model.UpsertBroker(Broker("b0", Device(0, 80), Device(1, 80)));
        model.UpsertBroker(Broker("b1", Device(0, 40), Device(1, 40)));
        model.UpsertLease(Lease("b0-0", "b0", 0, 10, 100));
        model.UpsertLease(Lease("b0-1", "b0", 1, 10, 100));
        model.UpsertLease(Lease("b1-0", "b1", 0, 30, 100));
        var gang = Admit(decider, new AllocateRequest { Tenant = "t0", WholeDevices = 2, WaitTimeoutMs = 60_000 }, 1);
        var slice = Admit(decider, new AllocateRequest { Tenant = "t1", MemoryBytes = 20 * GiB, ComputeShare = 100, WaitTimeoutMs = 60_000 }, 2);

        // Alone, the slice's best fit is the free 40 GiB device of b1, which the gang's reservation holds.
        var alone = Assert.IsType<QueueDecision.Place>(decider.Decide(slice, QueueSimulation.T0));
        var round = decider.NewRound([gang, slice]);
        Assert.IsType<QueueDecision.Wait>(decider.Decide(gang, QueueSimulation.T0, round));
        var behind = Assert.IsType<QueueDecision.Place>(decider.Decide(slice, QueueSimulation.T0, round));

        Assert.Equal(("b1", 1u), (alone.Site.BrokerId, alone.Site.DeviceIndexes[0]));
        var (owner, site) = Assert.Single(round.Reserved);
        Assert.Same(gang, owner);
        Assert.Equal("b1", site.BrokerId);
        Assert.Equal([0u, 1u], site.DeviceIndexes);
        Assert.Equal("b0", behind.Site.BrokerId);
    }

    [Fact]
    public void A_higher_class_is_placed_in_room_a_lower_class_head_holds()
    {
        var (model, decider) = Pool();
        model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));
        model.UpsertLease(Lease("b0-0", "b0", 0, 10, 100));
        var head = Admit(decider, new AllocateRequest { Tenant = "t0", WholeDevices = 2, WaitTimeoutMs = 60_000, PriorityClass = "low" }, 1);
        var high = Admit(decider, new AllocateRequest { Tenant = "t1", MemoryBytes = 20 * GiB, ComputeShare = 100, PriorityClass = "high" }, 2);
        var normal = Admit(decider, new AllocateRequest { Tenant = "t2", MemoryBytes = 20 * GiB, ComputeShare = 100, WaitTimeoutMs = 60_000 }, 3);

        var round = decider.NewRound([head, high, normal]);
        Assert.IsType<QueueDecision.Wait>(decider.Decide(head, QueueSimulation.T0, round));

        Assert.IsType<QueueDecision.Place>(decider.Decide(high, QueueSimulation.T0, round));
        Assert.IsType<QueueDecision.Place>(decider.Decide(normal, QueueSimulation.T0, round));
    }

    [Fact]
    public void A_borrower_holds_no_room()
    {
        var (model, decider, policy) = PoolWithPolicy();
        model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));
        model.UpsertLease(Lease("b0-0", "b0", 0, 10, 100));
        policy.Quotas["t0"] = new Quota { Tenant = "t0", MaxMilliGpus = 100, MaxMemoryBytes = ulong.MaxValue, MaxLeases = 10, AllowBorrowing = true };
        var borrower = Admit(decider, new AllocateRequest { Tenant = "t0", WholeDevices = 2, WaitTimeoutMs = 60_000 }, 1);

        var round = decider.NewRound([borrower]);
        Assert.IsType<QueueDecision.Wait>(decider.Decide(borrower, QueueSimulation.T0, round));

        Assert.Empty(round.Reserved);
    }

    [Fact]
    public void A_request_passed_over_by_the_tenant_fair_order_goes_first_of_its_class_once_it_has_waited_the_bound()
    {
        var bound = TimeSpan.FromSeconds(30);
        var (model, decider) = Pool(bound);
        model.UpsertBroker(Broker("b0", Device(0, 80)));
        model.UpsertLease(Lease("held", "b0", 0, 1, 500, tenant: "t0"));
        var old = decider.Admit(new AllocateRequest { Tenant = "t0", MemoryBytes = GiB, ComputeShare = 100, WaitTimeoutMs = 600_000 }, QueueSimulation.T0, new(), 1);
        var younger = decider.Admit(new AllocateRequest { Tenant = "t1", MemoryBytes = GiB, ComputeShare = 100, WaitTimeoutMs = 600_000 }, QueueSimulation.T0 + TimeSpan.FromSeconds(1), new(), 2);
        var high = decider.Admit(new AllocateRequest { Tenant = "t1", MemoryBytes = GiB, ComputeShare = 100, PriorityClass = "high", WaitTimeoutMs = 600_000 }, QueueSimulation.T0 + TimeSpan.FromSeconds(1), new(), 3);

        Assert.Equal([high, younger, old], decider.Order([old, younger, high], QueueSimulation.T0 + bound - TimeSpan.FromTicks(1)));
        Assert.Equal([high, old, younger], decider.Order([old, younger, high], QueueSimulation.T0 + bound));
    }

    /// <summary>
    /// Two hosts, b0 with 4 devices and b1 with 2, every device full of 250-share slices of tenant "stream" that end
    /// 3 a second over the first 8 s; a gang of 4 whole devices (only b0 can hold it) is asked at the start, and 3
    /// slices of "stream", each run 8 s, arrive every second: as many as end, so the pool stays full.
    /// </summary>
    private static (QueueSimulation Sim, PendingRequest Gang) GangBehindAStreamOfSlices(bool reservations, int seconds)
    {
        var sim = new QueueSimulation(reservations);
        sim.Model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40), Device(2, 40), Device(3, 40)));
        sim.Model.UpsertBroker(Broker("b1", Device(0, 40), Device(1, 40)));
        var slot = 0;
        foreach (var (broker, devices) in new[] { ("b0", 4u), ("b1", 2u) })
        {
            for (var device = 0u; device < devices; device++)
            {
                for (var k = 0; k < 4; k++)
                {
                    sim.Hold("stream", broker, device, GiB, 250, TimeSpan.FromSeconds(1 + (slot++ % 8)));
                }
            }
        }

        var gang = sim.Ask(new AllocateRequest { Tenant = "trainer", WholeDevices = 4, WaitTimeoutMs = 600_000 }, TimeSpan.FromHours(1));
        for (var s = 0; s < seconds; s++)
        {
            sim.Step(() =>
            {
                for (var i = 0; i < 3; i++)
                {
                    sim.Ask(new AllocateRequest { Tenant = "stream", MemoryBytes = GiB, ComputeShare = 250, WaitTimeoutMs = 60_000 }, SliceRuns);
                }
            });
        }

        return (sim, gang);
    }

    private static (PoolModel Model, QueueDecider Decider) Pool(TimeSpan? maxPassOver = null)
    {
        var (model, decider, _) = PoolWithPolicy(maxPassOver);
        return (model, decider);
    }

    private static (PoolModel Model, QueueDecider Decider, PoolPolicy Policy) PoolWithPolicy(TimeSpan? maxPassOver = null)
    {
        var model = new PoolModel();
        var policy = new PoolPolicy(openTenants: true);
        foreach (var cls in PriorityClasses.Defaults)
        {
            policy.Classes[cls.Name] = cls;
        }

        return (model, new QueueDecider(model, policy, static _ => false, TimeSpan.FromSeconds(10), maxPassOver), policy);
    }

    private static PendingRequest Admit(QueueDecider decider, AllocateRequest request, long sequence)
        => decider.Admit(request, QueueSimulation.T0, new(), sequence);
}
