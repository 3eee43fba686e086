using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;

namespace GpuPool.Scheduler.Tests.Leases;

/// <summary>
/// A lease lives while its holder renews it within its TTL, by the times the leader's loop passes in; a gang's
/// members live and end as one; a lease the leader starts following gets a full TTL from then.
/// </summary>
public sealed class LeaseLivenessTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan Tick = TimeSpan.FromTicks(1);

    private readonly LeaseLiveness _liveness = new();

    private static LeaseRecord Lease(string id, string gangId = "", uint ttlSeconds = 5)
        => new() { LeaseId = id, GangId = gangId, TtlSeconds = ttlSeconds, Created = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(T0) };

    [Fact]
    public void Lease_not_renewed_within_its_ttl_expires()
    {
        _liveness.Track(Lease("l1"), T0);

        var expired = _liveness.TakeExpired(T0 + Ttl);

        Assert.Equal(["l1"], Assert.Single(expired));
    }

    [Fact]
    public void Lease_lives_until_its_ttl_is_over()
    {
        _liveness.Track(Lease("l1"), T0);

        Assert.Empty(_liveness.TakeExpired(T0 + Ttl - Tick));
    }

    [Fact]
    public void Renewal_gives_a_full_ttl_from_the_time_of_the_renewal()
    {
        _liveness.Track(Lease("l1"), T0);
        var renewedAt = T0 + TimeSpan.FromSeconds(4);

        Assert.True(_liveness.Renew("l1", renewedAt, Ttl));

        Assert.Empty(_liveness.TakeExpired(renewedAt + Ttl - Tick));
        Assert.Equal(["l1"], Assert.Single(_liveness.TakeExpired(renewedAt + Ttl)));
    }

    [Fact]
    public void Lease_renewed_within_every_ttl_never_expires()
    {
        _liveness.Track(Lease("l1"), T0);

        for (var now = T0 + TimeSpan.FromSeconds(4); now < T0 + TimeSpan.FromMinutes(1); now += TimeSpan.FromSeconds(4))
        {
            Assert.Empty(_liveness.TakeExpired(now));
            Assert.True(_liveness.Renew("l1", now, Ttl));
        }
    }

    [Fact]
    public void A_renewal_never_brings_a_deadline_forward()
    {
        _liveness.Track(Lease("l1", ttlSeconds: 30), T0);

        _liveness.Renew("l1", T0 + TimeSpan.FromSeconds(1), Ttl);

        Assert.Empty(_liveness.TakeExpired(T0 + TimeSpan.FromSeconds(30) - Tick));
    }

    [Fact]
    public void A_lease_not_followed_cannot_be_renewed()
    {
        Assert.False(_liveness.Renew("l1", T0, Ttl));
    }

    [Fact]
    public void A_lease_the_leader_starts_following_gets_a_full_ttl_from_then_whenever_it_was_created()
    {
        // A replica that takes over finds a lease granted an hour ago: its holder may have renewed it a moment before.
        var takeover = T0 + TimeSpan.FromHours(1);

        _liveness.Track(Lease("l1"), takeover);

        Assert.Empty(_liveness.TakeExpired(takeover + Ttl - Tick));
        Assert.Equal(["l1"], Assert.Single(_liveness.TakeExpired(takeover + Ttl)));
    }

    [Fact]
    public void Following_a_lease_again_keeps_its_deadline()
    {
        _liveness.Track(Lease("l1"), T0);

        _liveness.Track(Lease("l1"), T0 + TimeSpan.FromSeconds(4));

        Assert.Equal(["l1"], Assert.Single(_liveness.TakeExpired(T0 + Ttl)));
    }

    [Fact]
    public void A_ttl_under_a_second_counts_as_one_second()
    {
        _liveness.Track(Lease("l1", ttlSeconds: 0), T0);

        Assert.Empty(_liveness.TakeExpired(T0 + TimeSpan.FromSeconds(1) - Tick));
        Assert.Single(_liveness.TakeExpired(T0 + TimeSpan.FromSeconds(1)));
    }

    [Fact]
    public void An_expired_lease_is_taken_once_and_no_longer_followed()
    {
        _liveness.Track(Lease("l1"), T0);
        _liveness.TakeExpired(T0 + Ttl);

        Assert.Empty(_liveness.TakeExpired(T0 + Ttl + Ttl));
        Assert.Empty(_liveness.MembersOf("l1"));
        Assert.Equal(0, _liveness.Count);
    }

    [Fact]
    public void A_lease_no_longer_followed_never_expires()
    {
        _liveness.Track(Lease("l1"), T0);

        _liveness.Untrack("l1");

        Assert.Empty(_liveness.TakeExpired(T0 + TimeSpan.FromHours(1)));
    }

    [Fact]
    public void A_gang_lives_while_any_member_is_renewed()
    {
        _liveness.Track(Lease("a", "g1"), T0);
        _liveness.Track(Lease("b", "g1"), T0);
        var renewedAt = T0 + TimeSpan.FromSeconds(4);

        _liveness.Renew("b", renewedAt, Ttl);

        Assert.Empty(_liveness.TakeExpired(renewedAt + Ttl - Tick));
    }

    [Fact]
    public void A_gang_expires_as_one()
    {
        _liveness.Track(Lease("a", "g1"), T0);
        _liveness.Track(Lease("b", "g1"), T0);

        var expired = _liveness.TakeExpired(T0 + Ttl);

        Assert.Equal(["a", "b"], Assert.Single(expired).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_member_of_a_gang_names_the_whole_gang()
    {
        _liveness.Track(Lease("a", "g1"), T0);
        _liveness.Track(Lease("b", "g1"), T0);
        _liveness.Track(Lease("c"), T0);

        Assert.Equal(["a", "b"], _liveness.MembersOf("b").Order(StringComparer.Ordinal));
        Assert.Equal(["c"], _liveness.MembersOf("c"));
    }

    [Fact]
    public void A_gang_member_no_longer_followed_leaves_the_others_living_as_before()
    {
        _liveness.Track(Lease("a", "g1"), T0);
        _liveness.Track(Lease("b", "g1"), T0);

        _liveness.Untrack("a");

        Assert.Equal(["b"], _liveness.MembersOf("b"));
        Assert.Equal(["b"], Assert.Single(_liveness.TakeExpired(T0 + Ttl)));
    }
}
