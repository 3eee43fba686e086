using System.Text;

namespace GpuPool.Coordination.Election;

/// <summary>
/// A leader lock on any <see cref="IClusterStore"/>: the leader is whoever created <see cref="Key"/> bound to
/// its own session. The key vanishes when that session ends (resigned, or keepalives stopped), and a waiting
/// candidate then creates it. The lock key's ModRevision is the term's fencing token: a leader conditions its
/// writes on <c>TxnCheck(Key, term.Revision)</c>, so a deposed leader that has not noticed yet writes nothing.
/// </summary>
public sealed class LeaderElection(IClusterStore store, string key, string candidateId, TimeSpan ttl, TimeProvider? timeProvider = null)
{
    private readonly TimeProvider _time = timeProvider ?? TimeProvider.System;

    public string Key { get; } = !string.IsNullOrEmpty(key) ? key : throw new ArgumentException("the election key must not be empty", nameof(key));

    public string CandidateId { get; } = !string.IsNullOrEmpty(candidateId) ? candidateId : throw new ArgumentException("the candidate id must not be empty", nameof(candidateId));

    /// <summary>Waits until this candidate holds the lock, and returns the term; the caller disposes it to resign.</summary>
    public async Task<LeaderTerm> CampaignAsync(CancellationToken cancellationToken = default)
    {
        var value = Encoding.UTF8.GetBytes(CandidateId);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var current = await store.GetAsync(Key, cancellationToken).ConfigureAwait(false);
            if (current is null)
            {
                var session = await store.CreateSessionAsync(ttl, cancellationToken).ConfigureAwait(false);
                PutResult put;
                try
                {
                    put = await store.PutAsync(Key, value, expectedModRevision: 0, sessionId: session.Id, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    await RevokeQuietlyAsync(session.Id).ConfigureAwait(false);
                    throw;
                }

                if (put.Succeeded)
                {
                    return new LeaderTerm(store, Key, CandidateId, session, put.ModRevision, _time);
                }

                // Another candidate won the race (or a lock delay holds the key back): wait as a standby.
                await RevokeQuietlyAsync(session.Id).ConfigureAwait(false);
            }

            await WaitForChangeAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The current leader's candidate id, or null when nobody holds the lock.</summary>
    public static async ValueTask<string?> GetLeaderAsync(IClusterStore store, string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var entry = await store.GetAsync(key, cancellationToken).ConfigureAwait(false);
        return entry is null ? null : Encoding.UTF8.GetString(entry.Value.Span);
    }

    /// <summary>
    /// Returns when the lock key changes, or after a third of the TTL: watches may miss a change on drivers that
    /// poll, and a lock delay can refuse a free key for a while, so the campaign re-checks on its own clock too.
    /// </summary>
    private async Task WaitForChangeAsync(CancellationToken cancellationToken)
    {
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(Period(ttl));
        try
        {
            var listing = await store.ListAsync(Key, wait.Token).ConfigureAwait(false);
            if (!listing.Entries.Any(e => e.Key == Key))
            {
                return;
            }

            await foreach (var change in store.WatchAsync(Key, listing.Revision, wait.Token).ConfigureAwait(false))
            {
                if (change.Entry.Key == Key)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }
        catch (StoreCompactedException)
        {
        }
    }

    internal static TimeSpan Period(TimeSpan ttl) => TimeSpan.FromTicks(Math.Max(ttl.Ticks / 3, TimeSpan.FromMilliseconds(50).Ticks));

    private async Task RevokeQuietlyAsync(string sessionId)
    {
        try
        {
            await store.RevokeSessionAsync(sessionId).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or ObjectDisposedException)
        {
            // The session ends on its own within the TTL.
        }
    }
}

/// <summary>
/// One candidate's time as leader: keeps its session alive, and cancels <see cref="Lost"/> when the session
/// ends or cannot be renewed before its TTL runs out. Disposing resigns.
/// </summary>
public sealed class LeaderTerm : IAsyncDisposable
{
    private readonly IClusterStore _store;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _lost = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _keepAlive;

    internal LeaderTerm(IClusterStore store, string key, string candidateId, StoreSession session, long revision, TimeProvider time)
    {
        _store = store;
        _time = time;
        Key = key;
        CandidateId = candidateId;
        Session = session;
        Revision = revision;
        _keepAlive = KeepAliveLoopAsync();
    }

    public string Key { get; }

    public string CandidateId { get; }

    public StoreSession Session { get; }

    /// <summary>The lock key's ModRevision for this term: the fencing token.</summary>
    public long Revision { get; }

    /// <summary>The check that fences a leader's writes to this term.</summary>
    public TxnCheck Fence => new(Key, Revision);

    /// <summary>Cancelled when leadership is lost (the session ended or could not be renewed in time).</summary>
    public CancellationToken Lost => _lost.Token;

    public bool IsLost => _lost.IsCancellationRequested;

    private async Task KeepAliveLoopAsync()
    {
        var period = LeaderElection.Period(Session.Ttl);
        var lastRenewed = _time.GetUtcNow();
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await Task.Delay(period, _time, _stop.Token).ConfigureAwait(false);
                try
                {
                    if (!await _store.KeepAliveAsync(Session.Id, _stop.Token).ConfigureAwait(false))
                    {
                        break;
                    }

                    lastRenewed = _time.GetUtcNow();
                }
                catch (StoreUnavailableException)
                {
                    // Keep trying while the session may still be alive on the store's side.
                    if (_time.GetUtcNow() - lastRenewed >= Session.Ttl)
                    {
                        break;
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            return;
        }
        catch (ObjectDisposedException)
        {
        }

        await _lost.CancelAsync().ConfigureAwait(false);
    }

    /// <summary>Gives the lock up now, so a standby takes over without waiting for the TTL.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await _keepAlive.ConfigureAwait(false);
        try
        {
            await _store.RevokeSessionAsync(Session.Id).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or ObjectDisposedException)
        {
        }

        await _lost.CancelAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
