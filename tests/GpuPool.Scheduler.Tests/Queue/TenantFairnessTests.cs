using GpuPool.Protocol.V1;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Queue;

/// <summary>Within a class the queue serves the tenant holding least first: tenants that ask alike end up holding alike.</summary>
public sealed class TenantFairnessTests
{
    [Fact]
    public void Two_tenants_asking_at_equal_rates_get_equal_shares_of_a_contended_pool()
    {
        // Two devices of four 250-share slots; each slice runs 8 s, so one slot frees a second. Tenant "a" holds the
        // whole pool at the start. From then on each tenant asks one slice a second ("a" always first), and each
        // ask waits up to 10 s: twice the pool's rate, so the queue always holds asks of both.
        var sim = new QueueSimulation(reservations: true);
        sim.Model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));
        for (var i = 0; i < 8; i++)
        {
            sim.Hold("a", "b0", (uint)(i % 2), GiB, 250, TimeSpan.FromSeconds(1 + i));
        }

        var samples = new List<(ulong A, ulong B)>();
        for (var second = 1; second <= 400; second++)
        {
            sim.Step(() =>
            {
                foreach (var tenant in new[] { "a", "b" })
                {
                    sim.Ask(new AllocateRequest { Tenant = tenant, MemoryBytes = GiB, ComputeShare = 250, WaitTimeoutMs = 10_000 }, TimeSpan.FromSeconds(8));
                }
            });

            if (second > 20)
            {
                samples.Add((sim.Held("a"), sim.Held("b")));
            }
        }

        // After the first 20 s, each holds half the pool (1000 milli-GPU) on average, and never more than one slice past it.
        var (meanA, meanB) = (samples.Average(s => (double)s.A), samples.Average(s => (double)s.B));
        Assert.InRange(meanA, 900, 1100);
        Assert.InRange(meanB, 900, 1100);
        Assert.All(samples, s => Assert.InRange(s.A, 750UL, 1250UL));
        Assert.Equal(2000UL, samples[^1].A + samples[^1].B);
    }
}
