using System.Numerics;
using CsCheck;
using GpuPool.Protocol;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Policy;

/// <summary>
/// Quota admission: within the quota a request is admitted; past it, it waits or (with borrowing) takes idle
/// capacity as preemptible; a request larger than the whole quota, or of a class the tenant may not use, is refused.
/// </summary>
public sealed class AdmissionTests
{
    private static readonly Quota Team = new() { Tenant = "team-a", MaxMilliGpus = 2000, MaxMemoryBytes = 64 * GiB, MaxLeases = 4 };

    [Fact]
    public void A_request_within_the_quota_is_admitted()
    {
        var usage = Usage(("team-a", 10, 500), ("team-a", 10, 500));

        var result = Admission.Check(Team, usage, PlacementAsk.Slice(44 * GiB, 1000), 0, "default");

        Assert.Equal(AdmissionVerdict.Admit, result.Verdict);
    }

    [Fact]
    public void A_request_past_the_quota_waits_and_the_reason_names_the_tenant_and_the_numbers()
    {
        var usage = Usage(("team-a", 40, 1500));

        var result = Admission.Check(Team, usage, PlacementAsk.Slice(8 * GiB, 600), 0, "default");

        Assert.Equal(AdmissionVerdict.Wait, result.Verdict);
        Assert.Contains("'team-a'", result.Reason, StringComparison.Ordinal);
        Assert.Contains("holds 1500 milli-GPU, 40 GiB, 1 lease", result.Reason, StringComparison.Ordinal);
        Assert.Contains("quota of 2000 milli-GPU, 64 GiB, 4 leases", result.Reason, StringComparison.Ordinal);
        Assert.Contains("needs 600 milli-GPU, 8 GiB, 1 lease more", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_past_the_quota_borrows_when_the_quota_allows_borrowing()
    {
        var quota = Team.Clone();
        quota.AllowBorrowing = true;

        var result = Admission.Check(quota, Usage(("team-a", 60, 500)), PlacementAsk.Slice(8 * GiB, 100), 0, "default");

        Assert.Equal(AdmissionVerdict.Borrow, result.Verdict);
        Assert.Contains("'team-a' holds 500 milli-GPU, 60 GiB, 1 lease", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Each_of_milli_GPUs_memory_and_lease_count_can_hold_a_request_back()
    {
        Assert.Equal(AdmissionVerdict.Wait, Admission.Check(Team, Usage(("team-a", 1, 1950)), PlacementAsk.Slice(GiB, 100), 0, "default").Verdict);
        Assert.Equal(AdmissionVerdict.Wait, Admission.Check(Team, Usage(("team-a", 60, 1)), PlacementAsk.Slice(5 * GiB, 1), 0, "default").Verdict);
        Assert.Equal(AdmissionVerdict.Wait, Admission.Check(Team, Usage(("team-a", 1, 1), ("team-a", 1, 1), ("team-a", 1, 1), ("team-a", 1, 1)), PlacementAsk.Slice(GiB, 1), 0, "default").Verdict);
    }

    [Fact]
    public void A_request_larger_than_the_whole_quota_is_refused_unless_the_tenant_may_borrow()
    {
        var borrowing = Team.Clone();
        borrowing.AllowBorrowing = true;

        var refused = Admission.Check(Team, TenantUsage.None, PlacementAsk.Slice(65 * GiB, 100), 0, "default");
        var borrowed = Admission.Check(borrowing, TenantUsage.None, PlacementAsk.Slice(65 * GiB, 100), 0, "default");

        Assert.Equal(AdmissionVerdict.Refuse, refused.Verdict);
        Assert.Equal("the request (100 milli-GPU, 65 GiB, 1 lease) is larger than tenant 'team-a''s whole quota (2000 milli-GPU, 64 GiB, 4 leases)", refused.Reason);
        Assert.Equal(AdmissionVerdict.Borrow, borrowed.Verdict);
    }

    [Fact]
    public void A_gang_costs_a_thousand_milli_GPUs_the_whole_memory_and_one_lease_per_device()
    {
        Assert.Equal((3000UL, 240 * GiB, 3UL), Admission.Cost(PlacementAsk.Gang(3), 80 * GiB));

        var result = Admission.Check(Team, TenantUsage.None, PlacementAsk.Gang(3), 16 * GiB, "default");

        Assert.Equal(AdmissionVerdict.Refuse, result.Verdict);
        Assert.Contains("(3000 milli-GPU, 48 GiB, 3 leases)", result.Reason, StringComparison.Ordinal);
        Assert.Equal(AdmissionVerdict.Admit, Admission.Check(Team, TenantUsage.None, PlacementAsk.Gang(2), 16 * GiB, "default").Verdict);
    }

    [Fact]
    public void A_class_outside_the_allowed_list_is_refused_and_the_reason_names_the_tenant_the_class_and_the_list()
    {
        var quota = Team.Clone();
        quota.AllowedPriorityClasses.Add(["batch", "default"]);

        var result = Admission.Check(quota, TenantUsage.None, PlacementAsk.Slice(GiB, 100), 0, "critical");

        Assert.Equal(AdmissionVerdict.Refuse, result.Verdict);
        Assert.Equal("tenant 'team-a' may not use priority class 'critical' (allowed: batch, default)", result.Reason);
        Assert.Equal(AdmissionVerdict.Admit, Admission.Check(quota, TenantUsage.None, PlacementAsk.Slice(GiB, 100), 0, "batch").Verdict);
    }

    [Fact]
    public void An_empty_allowed_list_allows_every_class()
    {
        foreach (var cls in new[] { "default", "batch", "critical", "anything" })
        {
            Assert.Equal(AdmissionVerdict.Admit, Admission.Check(Team, TenantUsage.None, PlacementAsk.Slice(GiB, 100), 0, cls).Verdict);
        }
    }

    [Fact]
    public void A_tenant_already_past_a_lowered_quota_waits_for_new_requests()
    {
        var lowered = Team.Clone();
        lowered.MaxMilliGpus = 500;

        var result = Admission.Check(lowered, Usage(("team-a", 10, 1000)), PlacementAsk.Slice(GiB, 100), 0, "default");

        Assert.Equal(AdmissionVerdict.Wait, result.Verdict);
        Assert.Contains("holds 1000 milli-GPU", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void The_verdict_follows_the_quota_arithmetic_for_any_quota_usage_and_request()
    {
        var leases = Gen.Select(Gen.ULong[0, 96], Gen.UInt[0, 2500]).Array[0, 6];
        var ask = Gen.OneOf(
            Gen.Select(Gen.ULong[0, 96], Gen.UInt[0, 2500], (gib, share) => PlacementAsk.Slice(gib * GiB, share)),
            Gen.UInt[1, 8].Select(n => PlacementAsk.Gang(n)));
        var quota = Gen.Select(Gen.UInt[0, 8000], Gen.ULong[0, 256], Gen.UInt[0, 8], Gen.Bool, Gen.Int[0, 3], (milli, gib, count, borrow, classes) =>
        {
            var q = new Quota { Tenant = "t", MaxMilliGpus = milli, MaxMemoryBytes = gib * GiB, MaxLeases = count, AllowBorrowing = borrow };
            q.AllowedPriorityClasses.Add(new[] { "low", "default", "high" }.Take(classes));
            return q;
        });

        Gen.Select(quota, leases, ask, Gen.OneOf(0UL, 40 * GiB, 80 * GiB), Gen.OneOf("low", "default", "high")).Sample((q, held, request, wholeMemory, cls) =>
        {
            var usage = Usage([.. held.Select(h => ("t", h.Item1, h.Item2))]);

            var result = Admission.Check(q, usage, request, wholeMemory, cls);

            // The same rules in exact arithmetic.
            BigInteger n = request.IsGang ? request.WholeDevices : 1;
            var (milli, memory) = request.IsGang ? (1000 * n, wholeMemory * n) : (request.ComputeShare, (BigInteger)request.MemoryBytes);
            BigInteger heldMilli = held.Sum(h => (long)h.Item2), heldMemory = held.Aggregate(BigInteger.Zero, (s, h) => s + (h.Item1 * GiB));
            var expected =
                q.AllowedPriorityClasses.Count > 0 && !q.AllowedPriorityClasses.Contains(cls) ? AdmissionVerdict.Refuse
                : (milli > q.MaxMilliGpus || memory > q.MaxMemoryBytes || n > q.MaxLeases) && !q.AllowBorrowing ? AdmissionVerdict.Refuse
                : heldMilli + milli <= q.MaxMilliGpus && heldMemory + memory <= q.MaxMemoryBytes && held.Length + n <= q.MaxLeases ? AdmissionVerdict.Admit
                : q.AllowBorrowing ? AdmissionVerdict.Borrow
                : AdmissionVerdict.Wait;
            Assert.Equal(expected, result.Verdict);
            if (expected is AdmissionVerdict.Wait or AdmissionVerdict.Borrow)
            {
                Assert.Contains($"tenant 't' holds {heldMilli} milli-GPU, {Units.FormatBytes((ulong)heldMemory)}, {held.Length} lease", result.Reason, StringComparison.Ordinal);
                Assert.Contains($"needs {milli} milli-GPU, {Units.FormatBytes((ulong)memory)}, {n} lease", result.Reason, StringComparison.Ordinal);
            }
            else if (expected == AdmissionVerdict.Admit)
            {
                Assert.Equal("", result.Reason);
            }
        }, iter: 5_000);
    }

    /// <summary>A tenant's usage as the pool model counts it from leases: (tenant, GiB, milli-GPU) each.</summary>
    private static TenantUsage Usage(params (string Tenant, ulong GiB, uint Milli)[] leases)
    {
        var model = new PoolModel();
        var i = 0;
        foreach (var (tenant, gib, milli) in leases)
        {
            model.UpsertLease(Lease("u" + i++, "b0", 0, gib, milli, tenant));
        }

        return leases.Length == 0 ? TenantUsage.None : model.UsageOf(leases[0].Tenant);
    }
}
