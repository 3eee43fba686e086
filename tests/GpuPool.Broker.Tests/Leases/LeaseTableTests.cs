using GpuPool.Broker.Leases;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Tests.Leases;

/// <summary>
/// A broker serves a lease while the scheduler's record of it exists and its token is in date, both by the
/// broker's clock; a lease marked for preemption is told at once and revoked at its deadline.
/// </summary>
public sealed class LeaseTableTests : IAsyncLifetime
{
    private static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(1);

    private readonly BrokerRig _rig = new();
    private LeaseTable _table = null!;

    public Task InitializeAsync()
    {
        _table = new LeaseTable(_rig.Options, _rig.Store, NullLogger.Instance);
        _table.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _table.DisposeAsync();
        await _rig.DisposeAsync();
    }

    [Fact]
    public async Task A_lease_ends_when_the_scheduler_deletes_its_record()
    {
        var record = BrokerRig.Lease("l-1");
        await _rig.PutAsync(record);
        var lease = await _table.AttachSessionAsync(record.LeaseId, _rig.Token(record, TokenLifetime), CancellationToken.None);

        await _rig.Store.DeleteAsync(StoreKeys.Leases + record.LeaseId);

        await Until.TrueAsync(() => lease.Ended.IsCancellationRequested, "the lease ends");
        Assert.Empty(_table.Leases);
    }

    [Fact]
    public async Task A_lease_whose_record_is_gone_is_refused_as_ended()
    {
        var record = BrokerRig.Lease("l-1");

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => _table.AttachSessionAsync(record.LeaseId, _rig.Token(record, TokenLifetime), CancellationToken.None));

        Assert.Equal(ErrorCode.LeaseEnded, error.Code);
    }

    [Fact]
    public async Task A_session_token_past_its_lifetime_is_refused()
    {
        var record = BrokerRig.Lease("l-1");
        await _rig.PutAsync(record);
        var token = _rig.Token(record, TokenLifetime);

        _rig.Clock.Advance(TokenLifetime + TimeSpan.FromMilliseconds(1));

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => _table.AttachSessionAsync(record.LeaseId, token, CancellationToken.None));
        Assert.Equal(ErrorCode.Unauthenticated, error.Code);
        Assert.Contains("expired", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_lease_marked_for_preemption_tells_its_session_the_deadline_and_why()
    {
        var record = BrokerRig.Lease("l-1");
        await _rig.PutAsync(record);
        var lease = await _table.AttachSessionAsync(record.LeaseId, _rig.Token(record, TokenLifetime), CancellationToken.None);
        var deadline = _rig.Clock.GetUtcNow() + TimeSpan.FromSeconds(10);
        var marked = BrokerRig.Preempted(record, deadline);

        await _rig.PutAsync(marked);

        await Until.TrueAsync(() => lease.PreemptNotice is not null, "the lease is told of its preemption");
        Assert.Equal("preempting", lease.PreemptNotice!.Kind);
        Assert.Equal(marked.PreemptReason, lease.PreemptNotice.Message);
        Assert.Equal(deadline.ToUnixTimeMilliseconds(), lease.PreemptNotice.DeadlineUnixMs);
        Assert.False(lease.Ended.IsCancellationRequested, "a lease marked for preemption ended before its deadline");
    }

    [Fact]
    public async Task A_preempted_lease_is_revoked_at_its_deadline()
    {
        var record = BrokerRig.Lease("l-1");
        await _rig.PutAsync(record);
        var lease = await _table.AttachSessionAsync(record.LeaseId, _rig.Token(record, TokenLifetime), CancellationToken.None);
        var grace = TimeSpan.FromSeconds(10);
        var deadline = _rig.Clock.GetUtcNow() + grace;
        var marked = BrokerRig.Preempted(record, deadline);
        await _rig.PutAsync(marked);

        // The revocation waits on the broker's clock for the deadline, and for nothing else.
        await Until.TimerDueAsync(_rig.Clock, deadline);
        _rig.Clock.Advance(grace);

        await Until.TrueAsync(() => lease.Ended.IsCancellationRequested, "the lease is revoked");
        Assert.Equal(marked.PreemptReason, lease.EndReason);
        Assert.Empty(_table.Leases);
    }
}
