using System.Diagnostics;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Mvccpb;

namespace GpuPool.Coordination.Etcd.Internal;

/// <summary>
/// One store watch on etcd's Watch stream. It remembers the revision after the last event it delivered; when the
/// stream breaks (the member died, lost its leader, or the connection failed) it watches again from there on the
/// next member, so no event is lost or repeated (etcd sends all events of one revision in one response). A
/// stretch without a working stream longer than the request timeout fails with <see cref="StoreUnavailableException"/>.
/// </summary>
internal sealed class EtcdWatcher(EtcdMembers members, ByteString key, ByteString rangeEnd, long afterRevision, Func<KeyValue, KvEntry?> toEntry) : IAsyncDisposable
{
    private long _next = afterRevision + 1;
    private AsyncDuplexStreamingCall<WatchRequest, WatchResponse>? _call;
    private CancellationTokenSource? _callStop;
    private Metadata? _headers;
    private int _member = -1;

    /// <summary>When the watch last had no working stream (it starts without one), or null while it has one.</summary>
    private long? _brokenSince = Stopwatch.GetTimestamp();
    private int _failures;
    private RpcException? _lastError;

    /// <summary>The next response's events, waiting as long as it takes; empty responses (created, progress) are skipped.</summary>
    public async Task<IReadOnlyList<WatchEvent>> NextAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (_call is null)
            {
                await OpenAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            WatchResponse response;
            try
            {
                if (!await _call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
                {
                    Break(null);
                    continue;
                }

                response = _call.ResponseStream.Current;
            }
            catch (RpcException ex)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (EtcdMember.IsStaleToken(ex))
                {
                    members[_member].ForgetToken(_headers!);
                }
                else if (EtcdMembers.Classify(ex) == FailureKind.Refused)
                {
                    throw new EtcdRefusedException(members[_member].Endpoint, ex, members[_member].User);
                }

                Break(ex);
                continue;
            }

            if (response.CompactRevision != 0)
            {
                // etcd keeps history from CompactRevision on: a watch may resume after CompactRevision - 1.
                throw new StoreCompactedException(_next - 1, response.CompactRevision - 1);
            }

            if (response.Canceled && response.CancelReason.Contains("invalid auth token", StringComparison.Ordinal))
            {
                // The token expired between the watch's streams: watch again with a new one.
                members[_member].ForgetToken(_headers!);
                Break(null);
                continue;
            }

            if (response.Canceled)
            {
                throw new InvalidOperationException($"etcd at {members[_member].Endpoint} cancelled a watch: {response.CancelReason}");
            }

            if (_brokenSince is not null)
            {
                // The first answer on a new stream (the "created" response): this member works.
                _brokenSince = null;
                _failures = 0;
                members.Prefer(_member);
            }

            if (response.Events.Count == 0)
            {
                // A progress notification: every change up to its revision has been sent. Moving on keeps a quiet watch
                // from resuming at a revision compacted long ago (and failing) when its stream breaks.
                if (!response.Created)
                {
                    _next = Math.Max(_next, response.Header.Revision + 1);
                }

                continue;
            }

            var batch = new List<WatchEvent>(response.Events.Count);
            foreach (var e in response.Events)
            {
                if (ToWatchEvent(e) is { } mapped)
                {
                    batch.Add(mapped);
                }
            }

            _next = response.Events[^1].Kv.ModRevision + 1;
            if (batch.Count > 0)
            {
                return batch;
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        Close();
        return ValueTask.CompletedTask;
    }

    /// <summary>Opens a stream on the preferred member and asks for events from <see cref="_next"/>; a failure here shows on the next read.</summary>
    private async Task OpenAsync(CancellationToken cancellationToken)
    {
        if (Stopwatch.GetElapsedTime(_brokenSince!.Value) > members.RequestTimeout)
        {
            throw members.Unreachable(_lastError);
        }

        if (_failures > 0 && _failures % members.Count == 0)
        {
            // Every member failed once: give a leader election or a restart a moment.
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(100 * (_failures / members.Count), 1000)), cancellationToken).ConfigureAwait(false);
        }

        _member = members.Current;
        _callStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        CallOptions options;
        try
        {
            options = await EtcdMembers.OptionsAsync(members[_member], DateTime.UtcNow + members.RequestTimeout, _callStop.Token).ConfigureAwait(false);
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
        {
            // Authenticating with this member failed: a refusal is final, anything else is tried on the next member.
            if (EtcdMembers.Classify(ex) == FailureKind.Refused)
            {
                throw new EtcdRefusedException(members[_member].Endpoint, ex, members[_member].User);
            }

            Break(ex);
            return;
        }

        _headers = options.Headers;
        _call = members[_member].Watch.Watch(new CallOptions(options.Headers, null, _callStop.Token));
        var create = new WatchCreateRequest { Key = key, RangeEnd = rangeEnd, StartRevision = _next, PrevKv = true, ProgressNotify = true };
        try
        {
            await _call.RequestStream.WriteAsync(new WatchRequest { CreateRequest = create }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The call failed (no connection, the member went away); its status shows on the next read.
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private void Break(RpcException? error)
    {
        _lastError = error ?? _lastError;
        _brokenSince ??= Stopwatch.GetTimestamp();
        _failures++;
        members.Skip(_member);
        Close();
    }

    private void Close()
    {
        _callStop?.Cancel();
        _call?.Dispose();
        _callStop?.Dispose();
        _call = null;
        _callStop = null;
    }

    private WatchEvent? ToWatchEvent(Event e)
    {
        if (e.Type == Event.Types.EventType.Put)
        {
            return toEntry(e.Kv) is { } entry ? new WatchEvent(WatchEventKind.Put, entry, e.Kv.ModRevision) : null;
        }

        // A delete carries the last value (prev_kv) with the delete's revision; without it (history compacted), the key alone.
        var last = (e.PrevKv is null ? null : toEntry(e.PrevKv)) ?? toEntry(e.Kv);
        return last is null ? null : new WatchEvent(WatchEventKind.Delete, last with { ModRevision = e.Kv.ModRevision }, e.Kv.ModRevision);
    }
}
