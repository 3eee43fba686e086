using System.Collections.Concurrent;
using GpuPool.Coordination;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Identity;

/// <summary>
/// The records of the tenant tokens an admin issued (tenants/{tenant}/tokens/{id}), kept in memory by a watch so that
/// checking a token costs no store round trip; a revocation (a deleted record) reaches every replica as fast as the
/// store's watch. Until the first listing, and while the watch is broken, lookups read the store.
/// </summary>
internal sealed class TokenAllowList : IAsyncDisposable
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(500);

    private readonly IClusterStore _store;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private ConcurrentDictionary<string, TenantTokenRecord> _records = new(StringComparer.Ordinal);
    private volatile bool _inStep;

    public TokenAllowList(IClusterStore store, ILogger logger)
    {
        _store = store;
        _logger = logger;
        _loop = Task.Run(() => FollowAsync(_stop.Token));
    }

    /// <summary>
    /// The record of token <paramref name="tokenId"/> of <paramref name="tenant"/>; null when there is none (revoked, or
    /// never issued). From the watched cache, or the store when the cache does not have it.
    /// </summary>
    public async ValueTask<TenantTokenRecord?> FindAsync(string tenant, string tokenId, CancellationToken cancellationToken)
    {
        var key = StoreKeys.TenantToken(tenant, tokenId);
        if (_inStep && _records.TryGetValue(key, out var record))
        {
            return record;
        }

        // Not cached (or the cache is not in step): the store says. A token issued a moment ago, perhaps through another
        // replica, is in the store before this replica's watch brings it; only a signed token gets here, so a miss costs
        // one read for a token this pool issued.
        var entry = await _store.GetAsync(key, cancellationToken).ConfigureAwait(false);
        return entry is null ? null : TenantTokenRecord.Parser.ParseFrom(entry.Value.Span);
    }

    /// <summary>Applies a change this replica made at once (its watch will say the same a moment later).</summary>
    public void Applied(string key, TenantTokenRecord? record)
    {
        if (record is null)
        {
            _records.TryRemove(key, out _);
        }
        else
        {
            _records[key] = record;
        }
    }

    private async Task FollowAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var listing = await _store.ListAsync(StoreKeys.Tenants, cancellationToken).ConfigureAwait(false);
                var records = new ConcurrentDictionary<string, TenantTokenRecord>(StringComparer.Ordinal);
                foreach (var entry in listing.Entries)
                {
                    if (TryParse(entry, out var record))
                    {
                        records[entry.Key] = record;
                    }
                }

                _records = records;
                _inStep = true;
                await foreach (var change in _store.WatchAsync(StoreKeys.Tenants, listing.Revision, cancellationToken).ConfigureAwait(false))
                {
                    if (change.Kind == WatchEventKind.Put && TryParse(change.Entry, out var record))
                    {
                        _records[change.Entry.Key] = record;
                    }
                    else
                    {
                        _records.TryRemove(change.Entry.Key, out _);
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.WatchRestart(_logger, StoreKeys.Tenants, ex.Message);
            }

            // The watch ended or failed: read through to the store until it is listed and watched again.
            _inStep = false;
            try
            {
                await Task.Delay(RetryDelay, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private static bool TryParse(KvEntry entry, out TenantTokenRecord record)
    {
        try
        {
            record = TenantTokenRecord.Parser.ParseFrom(entry.Value.Span);
            return entry.Key.Contains("/tokens/", StringComparison.Ordinal);
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            record = new TenantTokenRecord();
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }
}
