using GpuPool.Coordination;
using GpuPool.Coordination.Election;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Hosting;

/// <summary>
/// Runs this replica's part in the leader election: campaigns through the store's lock, runs an
/// <see cref="Allocator"/> while it leads, and stops it (failing what waits, so clients retry elsewhere)
/// the moment the term is lost. A standby serves reads and forwards allocations to the leader.
/// </summary>
internal sealed class Leadership : IAsyncDisposable
{
    private readonly SchedulerOptions _options;
    private readonly IClusterStore _store;
    private readonly string _endpoint;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _settled = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private volatile Allocator? _current;

    public Leadership(SchedulerOptions options, IClusterStore store, string endpoint, ILogger logger)
    {
        _options = options;
        _store = store;
        _endpoint = endpoint;
        _logger = logger;
    }

    /// <summary>The allocator while this replica leads; null while it stands by.</summary>
    public Allocator? Current => _current;

    /// <summary>Starts campaigning; completes when this replica leads or another replica is known to.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Before anything reads the lock: a lock this replica's dead earlier run left is not another leader.
        await ClearOwnStaleLockAsync(cancellationToken).ConfigureAwait(false);
        _loop = Task.Run(() => LoopAsync(_stop.Token), CancellationToken.None);
        while (!_settled.Task.IsCompleted)
        {
            var leader = await LeaderElection.GetLeaderAsync(_store, StoreKeys.Leader, cancellationToken).ConfigureAwait(false);
            if (leader is not null && leader != _endpoint)
            {
                return;
            }

            await Task.WhenAny(_settled.Task, Task.Delay(TimeSpan.FromMilliseconds(100), cancellationToken)).ConfigureAwait(false);
        }
    }

    private async Task LoopAsync(CancellationToken cancellationToken)
    {
        var election = new LeaderElection(_store, StoreKeys.Leader, _endpoint, _options.LeaderTtl, _options.TimeProvider);
        while (!cancellationToken.IsCancellationRequested)
        {
            LeaderTerm? term = null;
            Allocator? allocator = null;
            try
            {
                term = await election.CampaignAsync(cancellationToken).ConfigureAwait(false);
                await ClaimOwnershipAsync(term, cancellationToken).ConfigureAwait(false);
                using var leading = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, term.Lost);
                allocator = new Allocator(_options, _store, term, _logger);
                await allocator.StartAsync(leading.Token).ConfigureAwait(false);
                _current = allocator;
                _settled.TrySetResult();
                Log.Leading(_logger, _endpoint, term.Revision);
                await Task.Delay(Timeout.Infinite, leading.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
            catch (OperationCanceledException) when (term?.IsLost == true)
            {
                Log.LostLeadership(_logger, _endpoint);
            }
            catch (Exception ex) when (ex is StoreUnavailableException or StoreSessionNotFoundException)
            {
                Log.ElectionFailed(_logger, ex.Message);
                await Task.Delay(_options.TickInterval, _options.TimeProvider, CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _current = null;
                if (allocator is not null)
                {
                    await allocator.DisposeAsync().ConfigureAwait(false);
                }

                if (term is not null)
                {
                    await term.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>
    /// A lock held under this replica's own endpoint belongs to its previous run (one endpoint, one process), and so
    /// does one whose owner record names this machine and a process that is no longer running (a previous run on
    /// another port): a restart after a crash takes the lead at once instead of waiting out the dead run's TTL.
    /// </summary>
    private async Task ClearOwnStaleLockAsync(CancellationToken cancellationToken)
    {
        try
        {
            var current = await _store.GetAsync(StoreKeys.Leader, cancellationToken).ConfigureAwait(false);
            if (current is null)
            {
                return;
            }

            var holder = System.Text.Encoding.UTF8.GetString(current.Value.Span);
            if (holder == _endpoint)
            {
                await _store.DeleteAsync(StoreKeys.Leader, current.ModRevision, cancellationToken).ConfigureAwait(false);
                return;
            }

            var owner = await _store.GetAsync(StoreKeys.LeaderOwner, cancellationToken).ConfigureAwait(false);
            if (owner is not null && current.SessionId is { } session && owner.SessionId == session
                && DeadPredecessor(System.Text.Encoding.UTF8.GetString(owner.Value.Span)) is { } pid)
            {
                // Its session holds the lock and the owner record and nothing else: ending it frees both.
                await _store.RevokeSessionAsync(session, cancellationToken).ConfigureAwait(false);
                Log.TookOverDeadLeader(_logger, holder, pid);
            }
        }
        catch (StoreUnavailableException ex)
        {
            Log.ElectionFailed(_logger, ex.Message);
        }
    }

    /// <summary>The process id an owner record names when it is this machine's and that process has ended; else null.</summary>
    private static uint? DeadPredecessor(string owner)
    {
        var parts = owner.Split(' ');
        return parts.Length == 2
            && parts[0] == MachineIdentity.Get()
            && uint.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid)
            && pid != (uint)Environment.ProcessId
            && !MachineIdentity.ProcessIsAlive(pid)
            ? pid
            : null;
    }

    /// <summary>Writes who holds the lock (<see cref="StoreKeys.LeaderOwner"/>) under the term's session; a failure costs only the fast takeover.</summary>
    private async Task ClaimOwnershipAsync(LeaderTerm term, CancellationToken cancellationToken)
    {
        try
        {
            var owner = System.Text.Encoding.UTF8.GetBytes(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{MachineIdentity.Get()} {Environment.ProcessId}"));
            await _store.PutAsync(StoreKeys.LeaderOwner, owner, sessionId: term.Session.Id, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is StoreUnavailableException or StoreSessionNotFoundException)
        {
            Log.ElectionFailed(_logger, ex.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        _stop.Dispose();
    }
}
