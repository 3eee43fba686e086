using Google.Protobuf.WellKnownTypes;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Placement;
using GpuPool.Scheduler.Policy;
using GpuPool.Scheduler.Queue;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Queue;

/// <summary>
/// How the leader decides its queue, by the pool model, the quotas and the time it is told: highest class first and
/// fair across tenants; within the quota a request is placed, past it it waits, borrows or is refused; with no room
/// a higher class preempts with a grace period; gangs take whole devices of one host.
/// </summary>
public sealed class QueueDeciderTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(10);

    private readonly PoolModel _model = new();
    private readonly PoolPolicy _policy = new(openTenants: false);
    private readonly HashSet<string> _ending = new(StringComparer.Ordinal);
    private readonly QueueDecider _decider;
    private long _sequence;

    public QueueDeciderTests()
    {
        _decider = new QueueDecider(_model, _policy, _ending.Contains, Grace);
        foreach (var cls in PriorityClasses.Defaults)
        {
            _policy.Classes[cls.Name] = cls;
        }

        foreach (var tenant in Tenants)
        {
            SetQuota(tenant, milliGpus: 4000, memoryGiB: 400, leases: 10);
        }
    }

    [Fact]
    public void Higher_classes_are_decided_first()
    {
        var normal = Ask("t0", 1, 100, "normal");
        var high = Ask("t1", 1, 100, "high");
        var low = Ask("t2", 1, 100, "low");

        Assert.Equal([high, normal, low], _decider.Order([normal, high, low]));
    }

    [Fact]
    public void Within_a_class_the_tenant_holding_least_goes_first()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80)));
        _model.UpsertLease(Lease("held", "b0", 0, 1, 500, tenant: "t0"));
        var first = Ask("t0", 1, 100);
        var second = Ask("t1", 1, 100);

        Assert.Equal([second, first], _decider.Order([first, second]));
    }

    [Fact]
    public void Tenants_take_turns_by_what_their_requests_ahead_would_give_them()
    {
        var a1 = Ask("t0", 1, 300);
        var a2 = Ask("t0", 1, 300);
        var b1 = Ask("t1", 1, 500);

        // t0 and t1 hold nothing (t0 first by name); then t1 has 0 against t0's 300; then t0 again.
        Assert.Equal([a1, b1, a2], _decider.Order([a1, a2, b1]));
    }

    [Fact]
    public void A_tenants_requests_keep_their_arrival_order()
    {
        var first = Ask("t0", 1, 100);
        var second = Ask("t0", 1, 100);
        var third = Ask("t0", 1, 100);

        Assert.Equal([first, second, third], _decider.Order([third, first, second]));
    }

    [Fact]
    public void A_request_of_an_unknown_class_is_refused_naming_the_classes_there_are()
    {
        var error = Assert.Throws<GpuPoolException>(() => Ask("t0", 1, 100, "urgent"));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal("priority class 'urgent' does not exist (classes: high, low, normal)", error.Message);
    }

    [Fact]
    public void A_tenant_without_a_quota_is_refused_with_the_command_that_sets_one()
    {
        var error = Assert.Throws<GpuPoolException>(() => Ask("stranger", 1, 100));

        Assert.Equal(ErrorCode.PermissionDenied, error.Code);
        Assert.Contains("gpupool quota set stranger", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_request_no_device_of_the_pool_could_ever_hold_is_refused_at_once()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));

        var error = Assert.Throws<GpuPoolException>(() => Ask("t0", 41, 100));

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
    }

    [Fact]
    public void A_request_within_its_quota_is_placed_where_it_fits_best()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80), Device(1, 40)));

        var decision = _decider.Decide(Ask("t0", 30, 100), T0);

        var place = Assert.IsType<QueueDecision.Place>(decision);
        Assert.Equal(("b0", 1u), (place.Site.BrokerId, Assert.Single(place.Site.DeviceIndexes)));
        Assert.False(place.Borrowed);
    }

    [Fact]
    public void A_request_larger_than_the_whole_quota_is_refused_at_once()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80)));
        SetQuota("t0", milliGpus: 200, memoryGiB: 80, leases: 10);

        var decision = _decider.Decide(Ask("t0", 1, 300, wait: TimeSpan.FromMinutes(1)), T0);

        Assert.Equal(ErrorCode.QuotaExceeded, Assert.IsType<QueueDecision.Refuse>(decision).Error.Code);
    }

    [Fact]
    public void A_request_past_the_quota_waits_while_its_wait_timeout_runs()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80)));
        SetQuota("t0", milliGpus: 500, memoryGiB: 80, leases: 10);
        _model.UpsertLease(Lease("held", "b0", 0, 1, 400, tenant: "t0"));
        var pending = Ask("t0", 1, 200, wait: TimeSpan.FromSeconds(30));

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0 + TimeSpan.FromSeconds(30) - TimeSpan.FromTicks(1)));
    }

    [Fact]
    public void A_request_past_the_quota_is_refused_when_its_wait_timeout_is_over()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80)));
        SetQuota("t0", milliGpus: 500, memoryGiB: 80, leases: 10);
        _model.UpsertLease(Lease("held", "b0", 0, 1, 400, tenant: "t0"));
        var pending = Ask("t0", 1, 200, wait: TimeSpan.FromSeconds(30));

        var refuse = Assert.IsType<QueueDecision.Refuse>(_decider.Decide(pending, T0 + TimeSpan.FromSeconds(30)));

        Assert.Equal(ErrorCode.QuotaExceeded, refuse.Error.Code);
        Assert.EndsWith("(waited 30000 ms)", refuse.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tenant_allowed_to_borrow_is_placed_past_its_quota_on_idle_capacity_as_borrowed()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 80)));
        SetQuota("t0", milliGpus: 100, memoryGiB: 80, leases: 10, borrow: true);

        var decision = _decider.Decide(Ask("t0", 1, 500), T0);

        Assert.True(Assert.IsType<QueueDecision.Place>(decision).Borrowed);
    }

    [Fact]
    public void A_tenant_whose_quota_is_deleted_while_it_waits_is_refused()
    {
        var pending = Ask("t0", 1, 100, wait: TimeSpan.FromMinutes(1));

        _policy.Quotas.Remove("t0");

        Assert.Equal(ErrorCode.PermissionDenied, Assert.IsType<QueueDecision.Refuse>(_decider.Decide(pending, T0)).Error.Code);
    }

    [Fact]
    public void A_higher_class_preempts_a_preemptible_lease_of_a_lower_one_and_gives_it_the_grace_period()
    {
        FullDeviceOf(preemptible: true);

        var decision = _decider.Decide(Ask("t1", 40, 1000, "high"), T0);

        var preempt = Assert.IsType<QueueDecision.Preempt>(decision);
        Assert.Equal(T0 + Grace, preempt.RevokeAt);
        var victim = Assert.Single(preempt.Victims);
        Assert.Equal("victim", victim.LeaseId);
        Assert.Equal(T0 + Grace, victim.PreemptDeadline.ToDateTimeOffset());
        Assert.Equal("preempted by a request of priority class 'high' (tenant 't1')", victim.PreemptReason);
    }

    [Fact]
    public void Preempting_leaves_the_model_as_it_was()
    {
        FullDeviceOf(preemptible: true);

        _decider.Decide(Ask("t1", 40, 1000, "high"), T0);

        Assert.Null(_model.FindLease("victim")!.PreemptDeadline);
    }

    [Fact]
    public void A_preempting_request_waits_a_grace_period_past_the_revocation_whatever_its_own_timeout()
    {
        FullDeviceOf(preemptible: true);

        var preempt = Assert.IsType<QueueDecision.Preempt>(_decider.Decide(Ask("t1", 40, 1000, "high"), T0));

        Assert.Equal(T0 + Grace + Grace, preempt.WaitUntil);
    }

    [Fact]
    public void A_lease_of_a_class_that_is_not_preemptible_is_never_a_victim()
    {
        FullDeviceOf(preemptible: false);

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t1", 40, 1000, "high", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_request_of_the_same_class_never_preempts()
    {
        FullDeviceOf(preemptible: true);

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t1", 40, 1000, "low", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_borrower_never_preempts()
    {
        FullDeviceOf(preemptible: true);
        SetQuota("t1", milliGpus: 100, memoryGiB: 80, leases: 10, borrow: true);

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t1", 40, 1000, "high", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_request_whose_victims_are_going_chooses_no_more()
    {
        FullDeviceOf(preemptible: true);
        var pending = Ask("t1", 40, 1000, "high", wait: TimeSpan.FromMinutes(1));

        pending.Evicting = true;

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0));
    }

    [Fact]
    public void A_victim_that_is_being_ended_already_is_not_marked()
    {
        FullDeviceOf(preemptible: true);

        _ending.Add("victim");

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t1", 40, 1000, "high", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void An_ask_that_found_no_eviction_searches_again_only_once_room_may_have_come()
    {
        FullDeviceOf(preemptible: false);
        var pending = Ask("t1", 40, 1000, "high", wait: TimeSpan.FromMinutes(1));

        var searched = Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0));
        pending.NoEvictionAt = searched.NoEvictionAt!.Value;
        var again = Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0));
        _model.UpsertLease(Lease("other", "b0", 0, 1, 0, tenant: "t2"));
        _model.RemoveLease("other");
        var afterRoomCame = Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0));

        Assert.Equal(_model.RoomGeneration - 1, searched.NoEvictionAt);
        Assert.Null(again.NoEvictionAt);
        Assert.Equal(_model.RoomGeneration, afterRoomCame.NoEvictionAt);
    }

    [Fact]
    public void A_request_that_finds_no_room_by_its_deadline_is_refused_saying_what_is_free()
    {
        FullDeviceOf(preemptible: false);

        var refuse = Assert.IsType<QueueDecision.Refuse>(_decider.Decide(Ask("t1", 40, 1000, "normal", wait: TimeSpan.FromSeconds(1)), T0 + TimeSpan.FromSeconds(1)));

        Assert.Equal(ErrorCode.ResourceExhausted, refuse.Error.Code);
        Assert.Equal("no device has room for 40 GiB with compute share 1000 after waiting 1000 ms: the most free memory on one device is 0 B and the most free share is 0", refuse.Error.Message);
    }

    [Fact]
    public void With_no_broker_registered_a_request_is_refused_at_its_deadline_saying_to_start_one()
    {
        var refuse = Assert.IsType<QueueDecision.Refuse>(_decider.Decide(Ask("t0", 1, 100), T0));

        Assert.Equal("no broker is registered with this pool: start one (gpupool up, or gpupool broker)", refuse.Error.Message);
    }

    [Fact]
    public void A_gang_goes_to_one_host_with_the_fewest_wholly_free_devices_that_still_has_enough()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));
        _model.UpsertBroker(Broker("b1", Device(0, 40), Device(1, 40), Device(2, 40)));
        _model.UpsertBroker(Broker("b2", Device(0, 40), Device(1, 40), Device(2, 40)));
        _model.UpsertLease(Lease("busy", "b0", 0, 1, 100));
        _model.UpsertLease(Lease("busy2", "b2", 0, 1, 100));

        var place = Assert.IsType<QueueDecision.Place>(_decider.Decide(Gang("t0", 2), T0));

        Assert.Equal("b2", place.Site.BrokerId);
        Assert.Equal([1u, 2u], place.Site.DeviceIndexes.Order());
    }

    [Fact]
    public void A_gang_counts_a_thousand_milli_gpus_per_device_against_the_quota()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));
        SetQuota("t0", milliGpus: 1500, memoryGiB: 400, leases: 10);

        var refuse = Assert.IsType<QueueDecision.Refuse>(_decider.Decide(Gang("t0", 2), T0));

        Assert.Equal(ErrorCode.QuotaExceeded, refuse.Error.Code);
    }

    [Fact]
    public void A_gang_no_host_of_the_pool_could_ever_hold_is_refused_at_once()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40), Device(1, 40)));

        var error = Assert.Throws<GpuPoolException>(() => Gang("t0", 3));

        Assert.Equal("no host of this pool has 3 devices", error.Message);
    }

    [Fact]
    public void A_lease_younger_than_its_class_minimum_runtime_is_not_a_victim_and_an_older_one_of_the_same_class_is()
    {
        _policy.Classes["low"] = new PriorityClass { Name = "low", Value = 0, Preemptible = true, MinRuntimeSeconds = 300 };
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(LowLease("old", 20, created: T0 - TimeSpan.FromMinutes(6)));
        _model.UpsertLease(LowLease("young", 20, created: T0 - TimeSpan.FromMinutes(1)));

        // Without a minimum runtime the youngest would go first.
        var preempt = Assert.IsType<QueueDecision.Preempt>(_decider.Decide(Ask("t1", 20, 100, "high"), T0));

        Assert.Equal("old", Assert.Single(preempt.Victims).LeaseId);
    }

    [Fact]
    public void Without_a_minimum_runtime_the_youngest_lease_of_a_class_is_the_victim()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(LowLease("old", 20, created: T0 - TimeSpan.FromMinutes(6)));
        _model.UpsertLease(LowLease("young", 20, created: T0 - TimeSpan.FromMinutes(1)));

        var preempt = Assert.IsType<QueueDecision.Preempt>(_decider.Decide(Ask("t1", 20, 100, "high"), T0));

        Assert.Equal("young", Assert.Single(preempt.Victims).LeaseId);
    }

    [Fact]
    public void A_request_that_only_a_young_lease_stands_in_the_way_of_waits_and_preempts_it_once_it_comes_of_age()
    {
        _policy.Classes["low"] = new PriorityClass { Name = "low", Value = 0, Preemptible = true, MinRuntimeSeconds = 300 };
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(LowLease("young", 40, created: T0 - TimeSpan.FromMinutes(1)));
        var pending = Ask("t1", 40, 100, "high", wait: TimeSpan.FromMinutes(10));

        var wait = Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0));
        pending.NoEvictionAt = wait.NoEvictionAt!.Value;
        pending.SearchAgainAt = wait.SearchAgainAt;
        var stillYoung = _decider.Decide(pending, T0 + TimeSpan.FromMinutes(4) - TimeSpan.FromTicks(1));
        var ofAge = _decider.Decide(pending, T0 + TimeSpan.FromMinutes(4));

        Assert.Equal(T0 + TimeSpan.FromMinutes(4), wait.SearchAgainAt);
        Assert.IsType<QueueDecision.Wait>(stillYoung);
        Assert.Equal("young", Assert.Single(Assert.IsType<QueueDecision.Preempt>(ofAge).Victims).LeaseId);
    }

    [Fact]
    public void A_tenant_within_its_quota_reclaims_what_another_tenant_borrowed_at_the_same_class_the_youngest_first()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(Borrowed("older", "t1", 20, created: T0 - TimeSpan.FromMinutes(5)));
        _model.UpsertLease(Borrowed("younger", "t1", 20, created: T0 - TimeSpan.FromMinutes(1)));

        var preempt = Assert.IsType<QueueDecision.Preempt>(_decider.Decide(Ask("t0", 20, 100, "normal"), T0));

        var victim = Assert.Single(preempt.Victims);
        Assert.Equal("younger", victim.LeaseId);
        Assert.Equal(T0 + Grace, victim.PreemptDeadline.ToDateTimeOffset());
        Assert.Equal("reclaimed by tenant 't0' within its quota (priority class 'normal'): this lease borrowed capacity past tenant 't1''s quota", victim.PreemptReason);
    }

    [Fact]
    public void A_borrower_of_the_same_class_reclaims_nothing()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(Borrowed("borrowed", "t1", 40, created: T0 - TimeSpan.FromMinutes(5)));
        SetQuota("t0", milliGpus: 50, memoryGiB: 80, leases: 10, borrow: true);

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t0", 20, 100, "normal", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_tenant_within_its_quota_does_not_reclaim_what_was_borrowed_at_a_higher_class_nor_leases_within_quota()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        var high = Borrowed("high-borrowed", "t1", 20, created: T0 - TimeSpan.FromMinutes(5));
        (high.PriorityClass, high.PriorityValue) = ("high", 1000);
        _model.UpsertLease(high);
        _model.UpsertLease(Lease("within", "b0", 0, 20, 100, tenant: "t2", priority: 100, preemptible: false));

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t0", 20, 100, "normal", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_tenant_does_not_reclaim_from_itself()
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(Borrowed("own", "t0", 40, created: T0 - TimeSpan.FromMinutes(5)));
        SetQuota("t0", milliGpus: 4000, memoryGiB: 400, leases: 10, borrow: true);

        Assert.IsType<QueueDecision.Wait>(_decider.Decide(Ask("t0", 20, 100, "normal", wait: TimeSpan.FromMinutes(1)), T0));
    }

    [Fact]
    public void A_reclaim_waits_for_the_borrowed_lease_to_reach_its_class_minimum_runtime()
    {
        _policy.Classes["normal"] = new PriorityClass { Name = "normal", Value = 100, MinRuntimeSeconds = 120 };
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(Borrowed("young", "t1", 40, created: T0 - TimeSpan.FromMinutes(1)));
        var pending = Ask("t0", 20, 100, "normal", wait: TimeSpan.FromMinutes(10));

        Assert.Equal(T0 + TimeSpan.FromMinutes(1), Assert.IsType<QueueDecision.Wait>(_decider.Decide(pending, T0)).SearchAgainAt);
        Assert.IsType<QueueDecision.Preempt>(_decider.Decide(pending, T0 + TimeSpan.FromMinutes(1)));
    }

    /// <summary>A lease of the low class (preemptible) of t0 on b0's device 0.</summary>
    private static LeaseRecord LowLease(string id, ulong memoryGiB, DateTimeOffset created)
    {
        var lease = Lease(id, "b0", 0, memoryGiB, 100, tenant: "t0", priority: 0, preemptible: true);
        lease.PriorityClass = "low";
        lease.Created = Timestamp.FromDateTimeOffset(created);
        return lease;
    }

    /// <summary>A lease of the normal class that <paramref name="tenant"/> borrowed past its quota, on b0's device 0.</summary>
    private static LeaseRecord Borrowed(string id, string tenant, ulong memoryGiB, DateTimeOffset created)
    {
        var lease = Lease(id, "b0", 0, memoryGiB, 100, tenant: tenant, priority: 100, preemptible: true);
        lease.PriorityClass = "normal";
        lease.Borrowed = true;
        lease.Created = Timestamp.FromDateTimeOffset(created);
        return lease;
    }

    /// <summary>One 40 GiB device on b0 wholly taken by t0's lease "victim" of the low class.</summary>
    private void FullDeviceOf(bool preemptible)
    {
        _model.UpsertBroker(Broker("b0", Device(0, 40)));
        _model.UpsertLease(Lease("victim", "b0", 0, 40, 1000, tenant: "t0", priority: 0, preemptible: preemptible));
    }

    private void SetQuota(string tenant, uint milliGpus, ulong memoryGiB, uint leases, bool borrow = false)
        => _policy.Quotas[tenant] = new Quota { Tenant = tenant, MaxMilliGpus = milliGpus, MaxMemoryBytes = memoryGiB * GiB, MaxLeases = leases, AllowBorrowing = borrow };

    private PendingRequest Ask(string tenant, ulong memoryGiB, uint share, string cls = "normal", TimeSpan wait = default)
        => Admit(new AllocateRequest { Tenant = tenant, MemoryBytes = memoryGiB * GiB, ComputeShare = share, PriorityClass = cls, WaitTimeoutMs = (uint)wait.TotalMilliseconds, TtlSeconds = 30 });

    private PendingRequest Gang(string tenant, uint devices)
        => Admit(new AllocateRequest { Tenant = tenant, WholeDevices = devices, PriorityClass = "normal", TtlSeconds = 30 });

    private PendingRequest Admit(AllocateRequest request) => _decider.Admit(request, T0, new(), ++_sequence);
}
