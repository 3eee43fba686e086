using System.Runtime.CompilerServices;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Sessions;

/// <summary>
/// Turns a device-to-host copy into reply chunks no larger than <c>chunk</c>. It takes the copy in pieces too, as a
/// backend that stages through bounded buffers (cuda) hands it over. When the connection can send straight from
/// device memory (<see cref="IDirectReplies"/>), chunks go that way, spread over the lanes of a striped copy
/// (chunk i of the copy on lane i mod n), and the device stream waits until each lane has sent its share; else
/// they are staged (the gRPC stream). A lane that closes fails the copy with an error naming it. A sink is reused: its
/// session takes it back once the device has made its last call on it (the copy's bytes or its error).
/// </summary>
internal sealed class CopyReplySink : ICopyToHostSink
{
    private SessionExecutor _session = null!;
    private ulong _seq;
    private ulong _ptr;
    private ulong _total;
    private int _chunk;
    private (IDirectReplies Writer, string Name)[]? _lanes;
    private uint? _carriedBy;
    private bool _failed;
    private int _open;

    /// <summary>Readies the sink for copy #<paramref name="seq"/>; <paramref name="carriedBy"/> is set for a striped copy.</summary>
    public CopyReplySink Prepare(SessionExecutor session, ulong seq, ulong ptr, ulong total, int chunk, (IDirectReplies Writer, string Name)[]? lanes, uint? carriedBy = null)
    {
        _session = session;
        _seq = seq;
        _ptr = ptr;
        _total = total;
        _chunk = chunk;
        _lanes = lanes;
        _carriedBy = carriedBy;
        _failed = false;
        Volatile.Write(ref _open, 1);
        return this;
    }

    /// <summary>The device has made its last call on this copy: the sink goes back to its session.</summary>
    private void Close()
    {
        if (Interlocked.Exchange(ref _open, 0) == 1)
        {
            var session = _session;
            _lanes = null;
            session.Return(this);
        }
    }

    public bool AcceptsChunks => true;

    public bool AcceptsMemory => _lanes is not null;

    public void OnData(ReadOnlySpan<byte> data) => OnChunk(0, data, last: true);

    public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
    {
        try
        {
            if (_failed)
            {
                return;
            }

            if (_lanes is null || (_carriedBy is null && data.Length < _lanes[0].Writer.DirectThreshold))
            {
                var at = 0;
                do
                {
                    var n = Math.Min(_chunk, data.Length - at);
                    _session.Replies.Data(_seq, offset + (ulong)at, data.Slice(at, n), last && at + n == data.Length);
                    at += n;
                }
                while (at < data.Length);
                return;
            }

            SendDirect(offset, data);
        }
        finally
        {
            if (last)
            {
                Close();
            }
        }
    }

    /// <summary>
    /// The whole copy from device memory (cpu): chunk i goes on lane i mod n, in that lane's next slot; a slot is
    /// waited for before it is used again, so each lane has several chunks in flight and nothing holds a thread.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask OnMemoryAsync(nint bytes, int length)
    {
        if (_carriedBy is null && length < _lanes![0].Writer.DirectThreshold)
        {
            OnChunk(0, Span(bytes, length), last: true);
            return;
        }

        // The lanes' slots are this copy's until it has sent its chunks; another stream's copy waits its turn.
        var taken = 0;
        while (taken < _lanes!.Length && await _lanes[taken].Writer.AcquireDirectAsync().ConfigureAwait(false))
        {
            taken++;
        }

        try
        {
            if (taken < _lanes.Length)
            {
                Finish(_lanes[taken].Name, 0, whole: false);
                return;
            }

            await SendFromMemoryAsync(bytes, length).ConfigureAwait(false);
        }
        finally
        {
            for (var k = 0; k < taken; k++)
            {
                _lanes[k].Writer.ReleaseDirect();
            }

            Close();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendFromMemoryAsync(nint bytes, int length)
    {
        var slots = _lanes![0].Writer.DirectSlots;
        var posted = new bool[_lanes.Length * slots];
        var at = 0;
        string? lost = null;
        for (var i = 0; at < length; i++)
        {
            var position = (ulong)at;
            var k = i % _lanes.Length;
            var slot = i / _lanes.Length % slots;
            var n = Math.Min(_chunk, length - at);
            var lane = _lanes[k].Writer;
            if (posted[(k * slots) + slot])
            {
                posted[(k * slots) + slot] = false;
                if (!await lane.WaitDirectAsync(slot).ConfigureAwait(false))
                {
                    lost = _lanes[k].Name;
                    break;
                }
            }

            if (!lane.PostDirect(slot, _seq, position, bytes + at, n, position + (ulong)n == _total))
            {
                lost = _lanes[k].Name;
                break;
            }

            posted[(k * slots) + slot] = true;
            at += n;
        }

        // Every lane must have let go of the bytes before the stream goes on.
        for (var p = 0; p < posted.Length; p++)
        {
            if (posted[p] && !await _lanes[p / slots].Writer.WaitDirectAsync(p % slots).ConfigureAwait(false))
            {
                lost ??= _lanes[p / slots].Name;
            }
        }

        Finish(lost, (ulong)at, whole: at == length);
    }

    private static unsafe ReadOnlySpan<byte> Span(nint bytes, int length) => new((void*)bytes, length);

    /// <summary>A piece handed over as a span (cuda's staging): sent from it while this thread, the stream's own, waits.</summary>
    private void SendDirect(ulong offset, ReadOnlySpan<byte> data)
    {
        var taken = 0;
        while (taken < _lanes!.Length && _lanes[taken].Writer.AcquireDirect())
        {
            taken++;
        }

        try
        {
            if (taken < _lanes.Length)
            {
                Finish(_lanes[taken].Name, offset, whole: false);
                return;
            }

            SendFromSpan(offset, data);
        }
        finally
        {
            for (var k = 0; k < taken; k++)
            {
                _lanes[k].Writer.ReleaseDirect();
            }
        }
    }

    private unsafe void SendFromSpan(ulong offset, ReadOnlySpan<byte> data)
    {
        fixed (byte* bytes = data)
        {
            var at = 0;
            string? lost = null;
            while (at < data.Length)
            {
                var position = offset + (ulong)at;
                var lane = _lanes![(int)(position / (ulong)_chunk % (ulong)_lanes.Length)];
                var n = (int)Math.Min((ulong)_chunk - (position % (ulong)_chunk), (ulong)(data.Length - at));
                if (!lane.Writer.WaitDirect(0) || !lane.Writer.PostDirect(0, _seq, position, (nint)(bytes + at), n, position + (ulong)n == _total))
                {
                    lost = lane.Name;
                    break;
                }

                at += n;
            }

            // Every lane must have let go of the bytes before they are given back to the device.
            foreach (var lane in _lanes!)
            {
                if (!lane.Writer.WaitDirect(0))
                {
                    lost ??= lane.Name;
                }
            }

            Finish(lost, offset + (ulong)at, whole: offset + (ulong)data.Length == _total);
        }
    }

    /// <summary>After the last piece, a striped copy's last word (which connections carried it); after a lost lane, the error naming the copy.</summary>
    private void Finish(string? lost, ulong sent, bool whole)
    {
        if (lost is null)
        {
            if (_carriedBy is { } carried && whole)
            {
                _session.Replies.Reply(_seq, ReplyKind.Handle, carried);
            }

            return;
        }

        // A session that is over says why itself (the lease ended); the copy adds nothing to it.
        _failed = true;
        if (_lanes![0].Writer.SessionEnded)
        {
            return;
        }

        _session.Replies.Error(_seq, new Error
        {
            Code = ErrorCode.Unavailable,
            Message = $"copy #{_seq} of {_total} bytes from the device at 0x{_ptr:x} to the host failed: {lost} closed after {sent} of {_total} bytes had been sent; the rest was not",
            FailedSeq = _seq,
            FailedOp = MemcpyDtoHOp.Name,
        });
    }

    public void OnError(StickyError error)
    {
        _session.Replies.Error(_seq, error.Op.Seq == _seq ? OpErrors.Own(error.Error) : OpErrors.Sticky(error));
        Close();
    }
}
