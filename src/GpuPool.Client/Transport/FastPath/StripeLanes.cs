using System.Buffers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// The data connections of a striped session and the copies striped over them. Large copies go out on the session's
/// own connection (lane 0) and the data connections at once, chunk i on lane i mod n; the op that announces a copy
/// always goes on lane 0, so the copy keeps its place in the session's order. A data connection that closes is left
/// out of later copies, and fails the copies in flight over it.
/// </summary>
internal sealed class StripeLanes
{
    private readonly FrameConnection _first;
    private readonly IReplyTarget _session;
    private readonly Settings _settings;
    private readonly object _gate = new();
    private readonly SemaphoreSlim _joinGate = new(1, 1);
    private Lane[] _lanes = [];
    private int _joinFailures;
    private int _reported;

    /// <summary>
    /// How large copies are striped: over which session, with what token, into how many lanes and chunks; and whom to
    /// tell, once, when a data connection cannot be opened (the reason, and how many connections copies use instead).
    /// </summary>
    public sealed record Settings(ulong Session, string LeaseId, Func<string> Token, int Stripes, long Threshold, int ChunkBytes, Action<string, int>? Shortfall = null);

    /// <summary>A connection of this session, and the index the broker gave it (0: the session's first).</summary>
    private sealed record Lane(FrameConnection Connection, int Index);

    public StripeLanes(FrameConnection first, IReplyTarget session, Settings settings)
    {
        _first = first;
        _session = session;
        _settings = settings;
    }

    /// <summary>The data connections open now (one that has failed but whose closing is not handled yet not counted).</summary>
    public int Live
    {
        get
        {
            var live = 0;
            foreach (var lane in Volatile.Read(ref _lanes))
            {
                live += lane.Connection.Failure is null ? 1 : 0;
            }

            return live;
        }
    }

    /// <summary>
    /// Whether a copy of <paramref name="bytes"/> should be striped, after opening the data connections it needs (at
    /// the first large copy). False when it is too small, or no data connection could join (the copy then goes on the
    /// session's own connection).
    /// </summary>
    public async ValueTask<bool> PrepareAsync(long bytes, CancellationToken cancellationToken)
    {
        if (bytes < _settings.Threshold)
        {
            return false;
        }

        if (Live + 1 >= _settings.Stripes || Volatile.Read(ref _joinFailures) >= 3)
        {
            return Live > 0;
        }

        await _joinGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            while (Live + 1 < _settings.Stripes && _joinFailures < 3)
            {
                var (lane, failure, unreachable) = await JoinAsync(cancellationToken).ConfigureAwait(false);
                if (lane is null)
                {
                    // An endpoint that cannot be reached now is not tried again by this session: each try would hold a
                    // copy up for the connect timeout. A refused join may be the broker's limit of the moment.
                    _joinFailures = unreachable ? 3 : _joinFailures + 1;
                    if (Interlocked.Exchange(ref _reported, 1) == 0)
                    {
                        _settings.Shortfall?.Invoke(failure, Live + 1);
                    }

                    break;
                }

                lock (_gate)
                {
                    _lanes = [.. _lanes, lane];
                }
            }
        }
        finally
        {
            _joinGate.Release();
        }

        return Live > 0;
    }

    /// <summary>
    /// Opens one data connection and joins it to the session; no lane, and why, when it cannot be reached (within the
    /// session's connect timeout) or is refused.
    /// </summary>
    private async Task<(Lane? Lane, string Failure, bool Unreachable)> JoinAsync(CancellationToken cancellationToken)
    {
        var (connection, failure) = await FrameConnection.TryConnectAsync(_first.Endpoint, _first.IsUnix, _first.Peer, _first.ConnectTimeout, _first.Tls, cancellationToken).ConfigureAwait(false);
        if (connection is null)
        {
            return (null, failure, true);
        }

        var target = new LaneTarget(this, _session);
        connection.Start(target);
        connection.Sender.SendJoin(_settings.Session, _settings.LeaseId, _settings.Token());
        try
        {
            var index = await target.Joined.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            var lane = new Lane(connection, index);
            target.Lane = lane;
            return (lane, "", false);
        }
        catch (Exception ex) when (ex is GpuPoolException or TimeoutException)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            return (null, ex is TimeoutException ? "the broker did not answer its join within 10 s" : $"the broker refused it: {ex.Message}", false);
        }
    }

    /// <summary>A data connection closed or failed: later copies leave it out, and copies in flight over it fail.</summary>
    private void Lost(LaneTarget target, GpuPoolException error)
    {
        if (target.Lane is not { } lane)
        {
            return;
        }

        lock (_gate)
        {
            if (Array.IndexOf(_lanes, lane) < 0)
            {
                return;
            }

            _lanes = [.. _lanes.Where(l => l != lane)];
        }

        _session.OnLaneClosed(lane.Index, error);
    }

    /// <summary>The connections a copy stripes over now: the session's own (index 0) first, then the data connections.</summary>
    private (Lane[] Lanes, uint Mask) Current()
    {
        // A data connection that has failed but whose closing is not yet handled is left out already.
        var data = Volatile.Read(ref _lanes);
        var lanes = new List<Lane>(data.Length + 1) { new(_first, 0) };
        var mask = 1u;
        foreach (var lane in data)
        {
            if (lane.Connection.Failure is null)
            {
                lanes.Add(lane);
                mask |= 1u << lane.Index;
            }
        }

        return ([.. lanes], mask);
    }

    /// <summary>
    /// Sends a copy to the device striped over the session's connection and the data connections: the op on the first,
    /// then its chunks round-robin, two in flight per connection, straight from the caller's memory. Completes once every
    /// chunk has been sent (the caller may reuse its memory). A data connection that fails stops the copy: the broker
    /// fails it (a sticky error naming it, at the next synchronizing call). The first connection failing fails the call.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data)
    {
        var (lanes, mask) = Current();
        var chunk = _settings.ChunkBytes;
        _first.Sender.SendStripedCopy(FrameType.MemcpyHtoDStriped, new StripedCopy(seq, ptr, stream, (ulong)data.Length, (uint)chunk, mask));
        var inFlight = new ValueTask[lanes.Length * FrameSender.BulkSlots];
        var failure = new StrongBox<GpuPoolException?>();
        var at = 0;
        for (var i = 0; at < data.Length; i++)
        {
            var slot = i % inFlight.Length;
            var lane = lanes[slot % lanes.Length];
            if (await SettleAsync(inFlight, slot, lane, failure).ConfigureAwait(false))
            {
                break;
            }

            var n = Math.Min(chunk, data.Length - at);
            try
            {
                inFlight[slot] = lane.Connection.Sender.SendChunkAsync(seq, (ulong)at, data.Slice(at, n), slot / lanes.Length);
            }
            catch (GpuPoolException ex)
            {
                if (lane.Index == 0)
                {
                    failure.Value ??= ex;
                }

                break;
            }

            at += n;
        }

        // Every connection lets go of the caller's memory before the copy returns.
        for (var slot = 0; slot < inFlight.Length; slot++)
        {
            await SettleAsync(inFlight, slot, lanes[slot % lanes.Length], failure).ConfigureAwait(false);
        }

        if (failure.Value is { } failed)
        {
            throw failed;
        }
    }

    /// <summary>Waits for a slot's chunk to be sent; true when its connection failed (the first connection's failure is kept to throw).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private static async ValueTask<bool> SettleAsync(ValueTask[] inFlight, int slot, Lane lane, StrongBox<GpuPoolException?> failure)
    {
        var pending = inFlight[slot];
        inFlight[slot] = default;
        try
        {
            await pending.ConfigureAwait(false);
            return false;
        }
        catch (GpuPoolException ex)
        {
            if (lane.Index == 0)
            {
                failure.Value ??= ex;
            }

            return true;
        }
    }

    /// <summary>
    /// Asks for a copy to the host striped over the session's connection and the data connections; returns the
    /// connections it names (bit i: index i), whose Data frames carry its chunks.
    /// </summary>
    public uint SendCopyToHost(ulong seq, ulong ptr, ulong bytes, ulong stream)
    {
        var (_, mask) = Current();
        _first.Sender.SendStripedCopy(FrameType.MemcpyDtoHStriped, new StripedCopy(seq, ptr, stream, bytes, (uint)_settings.ChunkBytes, mask));
        return mask;
    }

    /// <summary>Closes the data connections: they carry nothing once the copies over them are done.</summary>
    public async ValueTask DisposeAsync()
    {
        Lane[] lanes;
        lock (_gate)
        {
            lanes = _lanes;
        }

        foreach (var lane in lanes)
        {
            await lane.Connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Replies on a data connection: the join's answer is its own; copy data and errors go to the session; its
    /// closing fails only the copies that used it.
    /// </summary>
    private sealed class LaneTarget(StripeLanes owner, IReplyTarget session) : IReplyTarget
    {
        public TaskCompletionSource<int> Joined { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Lane? Lane { get; set; }

        public void OnValue(ulong seq, in ReplyValue value)
        {
            if (seq == 0)
            {
                Joined.TrySetResult((int)value.Value);
            }
            else
            {
                session.OnValue(seq, value);
            }
        }

        public void OnData(ulong seq, ulong offset, in ReadOnlySequence<byte> bytes, bool last) => session.OnData(seq, offset, bytes, last);

        public Memory<byte> DataDestination(ulong seq, ulong offset, int length) => session.DataDestination(seq, offset, length);

        public void OnDataReceived(ulong seq, ulong offset, int length, bool last) => session.OnDataReceived(seq, offset, length, last);

        public void OnError(ulong seq, GpuPoolException error)
        {
            if (seq != 0)
            {
                session.OnError(seq, error);
            }
            else if (!Joined.TrySetException(error))
            {
                owner.Lost(this, error);
            }
        }

        public void OnNotice(Notice notice)
        {
        }

        public void OnLaneClosed(int lane, GpuPoolException error)
        {
        }

        public void OnClosed(GpuPoolException error)
        {
            Joined.TrySetException(error);
            owner.Lost(this, error);
        }
    }
}
