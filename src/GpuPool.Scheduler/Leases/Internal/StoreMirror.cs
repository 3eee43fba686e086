using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Coordination;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Policy;
using Microsoft.Extensions.Logging;

namespace GpuPool.Scheduler.Leases.Internal;

/// <summary>
/// Keeps the leader's memory in step with the store: follows the brokers, leases, quotas, priority classes and
/// drained brokers (a listing, then a watch, fed to the loop) and, on the loop, applies each listing and change
/// to the <see cref="LeaseBook"/> and the <see cref="PoolPolicy"/>. It knows how far it has applied each prefix,
/// so an admin's call returns once its change is in force.
/// </summary>
internal sealed class StoreMirror(SchedulerOptions options, IClusterStore store, ChannelWriter<AllocatorWork> work, LeaseBook book, PoolPolicy policy, ILogger logger)
{
    public static readonly string[] Prefixes = [StoreKeys.Brokers, StoreKeys.Leases, StoreKeys.Quotas, StoreKeys.Priorities, StoreKeys.Draining];

    private readonly TimeProvider _time = options.TimeProvider;
    private readonly HashSet<string> _loaded = new(StringComparer.Ordinal);

    /// <summary>The highest store revision applied per prefix, and the admin calls waiting to see theirs.</summary>
    private readonly Dictionary<string, long> _applied = new(StringComparer.Ordinal);
    private readonly List<SyncWork> _syncs = [];
    private readonly TaskCompletionSource _loadedAll = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes once the first listing of every prefix has been applied: only then is the queue decided.</summary>
    public Task Loaded => _loadedAll.Task;

    /// <summary>Writes the default priority classes when the store holds none.</summary>
    public async Task SeedPriorityClassesAsync(CancellationToken cancellationToken)
    {
        var existing = await store.ListAsync(StoreKeys.Priorities, cancellationToken).ConfigureAwait(false);
        if (existing.Entries.Count > 0)
        {
            return;
        }

        foreach (var cls in PriorityClasses.Defaults)
        {
            await store.PutAsync(StoreKeys.Priorities + cls.Name, cls.ToByteArray(), expectedModRevision: 0, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Lists a prefix and follows it, feeding the loop; starts over from a fresh listing when the watch breaks.</summary>
    public async Task FollowAsync(string prefix, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var listing = await store.ListAsync(prefix, cancellationToken).ConfigureAwait(false);
                work.TryWrite(new ResetWork(prefix, listing.Entries, listing.Revision));
                await foreach (var change in store.WatchAsync(prefix, listing.Revision, cancellationToken).ConfigureAwait(false))
                {
                    work.TryWrite(new ChangeWork(prefix, change));
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is StoreUnavailableException or StoreCompactedException or ObjectDisposedException)
            {
                Log.WatchRestart(logger, prefix, ex.Message);
                try
                {
                    await Task.Delay(options.TickInterval, _time, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>On the loop: replaces what the leader holds under the listing's prefix with the listing.</summary>
    public void Apply(ResetWork reset)
    {
        var model = book.Model;
        switch (reset.Prefix)
        {
            case StoreKeys.Brokers:
                var live = reset.Entries.Select(e => Parse(e, BrokerRecord.Parser)).OfType<BrokerRecord>().ToArray();
                foreach (var gone in model.Brokers.Select(b => b.BrokerId).Except(live.Select(b => b.BrokerId)).ToArray())
                {
                    book.BrokerGone(gone);
                }

                foreach (var broker in live)
                {
                    model.UpsertBroker(broker);
                }

                break;
            case StoreKeys.Leases:
                var leases = reset.Entries.Select(e => Parse(e, LeaseRecord.Parser)).OfType<LeaseRecord>().ToDictionary(l => l.LeaseId, StringComparer.Ordinal);
                foreach (var gone in model.Leases.Select(l => l.LeaseId).Where(id => !leases.ContainsKey(id)).ToArray())
                {
                    book.Forget(gone);
                }

                var now = _time.GetUtcNow();
                foreach (var lease in leases.Values)
                {
                    book.Hold(lease, now);
                }

                break;
            case StoreKeys.Quotas:
                policy.Quotas.Clear();
                foreach (var entry in reset.Entries)
                {
                    Put(policy.Quotas, entry, Quota.Parser, static q => q.Tenant);
                }

                break;
            case StoreKeys.Priorities:
                policy.Classes.Clear();
                foreach (var entry in reset.Entries)
                {
                    Put(policy.Classes, entry, PriorityClass.Parser, static c => c.Name);
                }

                break;
            case StoreKeys.Draining:
                var drained = reset.Entries.Select(e => e.Key[StoreKeys.Draining.Length..]).ToHashSet(StringComparer.Ordinal);
                foreach (var id in model.Drained.Except(drained).ToArray())
                {
                    model.SetDrained(id, false);
                }

                foreach (var id in drained)
                {
                    model.SetDrained(id, true);
                }

                break;
        }

        Applied(reset.Prefix, reset.Revision);
        _loaded.Add(reset.Prefix);
        if (_loaded.Count == Prefixes.Length && !_loadedAll.Task.IsCompleted)
        {
            // Leases whose broker is not registered are orphans of a broker that died while nobody led.
            foreach (var orphan in model.Leases.Where(l => !model.HasBroker(l.BrokerId)).ToArray())
            {
                book.Lose(orphan, $"its broker {orphan.BrokerId} is no longer registered");
            }

            _loadedAll.TrySetResult();
        }
    }

    /// <summary>On the loop: applies one change under a watched prefix.</summary>
    public void Apply(ChangeWork change)
    {
        var (prefix, entry) = (change.Prefix, change.Event.Entry);
        Applied(prefix, change.Event.Revision);
        var put = change.Event.Kind == WatchEventKind.Put;
        var id = entry.Key[prefix.Length..];
        switch (prefix)
        {
            case StoreKeys.Brokers when put:
                if (Parse(entry, BrokerRecord.Parser) is { } broker)
                {
                    book.Model.UpsertBroker(broker);
                }

                break;
            case StoreKeys.Brokers:
                book.BrokerGone(id);
                break;
            case StoreKeys.Leases when put:
                if (Parse(entry, LeaseRecord.Parser) is { } lease)
                {
                    book.Hold(lease, _time.GetUtcNow());
                }

                break;
            case StoreKeys.Leases:
                book.Forget(id);
                break;
            case StoreKeys.Quotas:
                Change(policy.Quotas, put, id, entry, Quota.Parser, static q => q.Tenant);
                break;
            case StoreKeys.Priorities:
                Change(policy.Classes, put, id, entry, PriorityClass.Parser, static c => c.Name);
                break;
            case StoreKeys.Draining:
                book.Model.SetDrained(id, put);
                break;
        }
    }

    /// <summary>On the loop: the admin call completes once its revision has been applied (at once if it has).</summary>
    public void WaitApplied(SyncWork sync) => _syncs.Add(sync);

    /// <summary>On the loop, after each batch: completes the admin calls whose revisions have been applied.</summary>
    public void CompleteSyncs()
    {
        for (var i = _syncs.Count - 1; i >= 0; i--)
        {
            if (_applied.GetValueOrDefault(_syncs[i].Prefix) >= _syncs[i].Revision)
            {
                _syncs[i].Done.TrySetResult();
                _syncs.RemoveAt(i);
            }
        }
    }

    private void Applied(string prefix, long revision)
        => _applied[prefix] = Math.Max(_applied.GetValueOrDefault(prefix), revision);

    /// <summary>A put replaces the record under its own key; a delete removes the record of <paramref name="id"/>.</summary>
    private static void Change<T>(Dictionary<string, T> records, bool put, string id, KvEntry entry, MessageParser<T> parser, Func<T, string> keyOf)
        where T : class, IMessage<T>
    {
        if (put)
        {
            Put(records, entry, parser, keyOf);
        }
        else
        {
            records.Remove(id);
        }
    }

    /// <summary>Puts the entry's record under its own key (a quota by tenant, a class by name); a value that does not parse is passed over.</summary>
    private static void Put<T>(Dictionary<string, T> records, KvEntry entry, MessageParser<T> parser, Func<T, string> keyOf)
        where T : class, IMessage<T>
    {
        if (Parse(entry, parser) is { } record)
        {
            records[keyOf(record)] = record;
        }
    }

    /// <summary>A record, or null for a value that does not parse (never the loop's failure).</summary>
    private static T? Parse<T>(KvEntry entry, MessageParser<T> parser)
        where T : class, IMessage<T>
    {
        try
        {
            return parser.ParseFrom(entry.Value.Span);
        }
        catch (InvalidProtocolBufferException)
        {
            return null;
        }
    }
}
