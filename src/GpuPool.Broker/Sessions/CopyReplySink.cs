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
/// they are staged (the gRPC stream). A lane that closes fails the copy with an error naming it.
/// </summary>
internal sealed class CopyReplySink(SessionExecutor session, ulong seq, ulong ptr, ulong total, int chunk, (IDirectReplies Writer, string Name)[]? lanes, uint? carriedBy = null) : ICopyToHostSink
{
    private bool _failed;

    public bool AcceptsChunks => true;

    public bool AcceptsMemory => lanes is not null;

    public void OnData(ReadOnlySpan<byte> data) => OnChunk(0, data, last: true);

    public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
    {
        if (_failed)
        {
            return;
        }

        if (lanes is null || (carriedBy is null && data.Length < lanes[0].Writer.DirectThreshold))
        {
            var at = 0;
            do
            {
                var n = Math.Min(chunk, data.Length - at);
                session.Replies.Data(seq, offset + (ulong)at, data.Slice(at, n), last && at + n == data.Length);
                at += n;
            }
            while (at < data.Length);
            return;
        }

        SendDirect(offset, data);
    }

    /// <summary>
    /// The whole copy from device memory (cpu): chunk i goes on lane i mod n, in that lane's next slot; a slot is
    /// waited for before it is used again, so each lane has several chunks in flight and nothing holds a thread.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask OnMemoryAsync(nint bytes, int length)
    {
        if (carriedBy is null && length < lanes![0].Writer.DirectThreshold)
        {
            OnChunk(0, Span(bytes, length), last: true);
            return;
        }

        // The lanes' slots are this copy's until it has sent its chunks; another stream's copy waits its turn.
        var taken = 0;
        while (taken < lanes!.Length && await lanes[taken].Writer.AcquireDirectAsync().ConfigureAwait(false))
        {
            taken++;
        }

        try
        {
            if (taken < lanes.Length)
            {
                Finish(lanes[taken].Name, 0, whole: false);
                return;
            }

            await SendFromMemoryAsync(bytes, length).ConfigureAwait(false);
        }
        finally
        {
            for (var k = 0; k < taken; k++)
            {
                lanes[k].Writer.ReleaseDirect();
            }
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SendFromMemoryAsync(nint bytes, int length)
    {
        var slots = lanes![0].Writer.DirectSlots;
        var posted = new bool[lanes.Length * slots];
        var at = 0;
        string? lost = null;
        for (var i = 0; at < length; i++)
        {
            var position = (ulong)at;
            var k = i % lanes.Length;
            var slot = i / lanes.Length % slots;
            var n = Math.Min(chunk, length - at);
            var lane = lanes[k].Writer;
            if (posted[(k * slots) + slot])
            {
                posted[(k * slots) + slot] = false;
                if (!await lane.WaitDirectAsync(slot).ConfigureAwait(false))
                {
                    lost = lanes[k].Name;
                    break;
                }
            }

            if (!lane.PostDirect(slot, seq, position, bytes + at, n, position + (ulong)n == total))
            {
                lost = lanes[k].Name;
                break;
            }

            posted[(k * slots) + slot] = true;
            at += n;
        }

        // Every lane must have let go of the bytes before the stream goes on.
        for (var p = 0; p < posted.Length; p++)
        {
            if (posted[p] && !await lanes[p / slots].Writer.WaitDirectAsync(p % slots).ConfigureAwait(false))
            {
                lost ??= lanes[p / slots].Name;
            }
        }

        Finish(lost, (ulong)at, whole: at == length);
    }

    private static unsafe ReadOnlySpan<byte> Span(nint bytes, int length) => new((void*)bytes, length);

    /// <summary>A piece handed over as a span (cuda's staging): sent from it while this thread, the stream's own, waits.</summary>
    private void SendDirect(ulong offset, ReadOnlySpan<byte> data)
    {
        var taken = 0;
        while (taken < lanes!.Length && lanes[taken].Writer.AcquireDirect())
        {
            taken++;
        }

        try
        {
            if (taken < lanes.Length)
            {
                Finish(lanes[taken].Name, offset, whole: false);
                return;
            }

            SendFromSpan(offset, data);
        }
        finally
        {
            for (var k = 0; k < taken; k++)
            {
                lanes[k].Writer.ReleaseDirect();
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
                var lane = lanes![(int)(position / (ulong)chunk % (ulong)lanes.Length)];
                var n = (int)Math.Min((ulong)chunk - (position % (ulong)chunk), (ulong)(data.Length - at));
                if (!lane.Writer.WaitDirect(0) || !lane.Writer.PostDirect(0, seq, position, (nint)(bytes + at), n, position + (ulong)n == total))
                {
                    lost = lane.Name;
                    break;
                }

                at += n;
            }

            // Every lane must have let go of the bytes before they are given back to the device.
            foreach (var lane in lanes!)
            {
                if (!lane.Writer.WaitDirect(0))
                {
                    lost ??= lane.Name;
                }
            }

            Finish(lost, offset + (ulong)at, whole: offset + (ulong)data.Length == total);
        }
    }

    /// <summary>After the last piece, a striped copy's last word (which connections carried it); after a lost lane, the error naming the copy.</summary>
    private void Finish(string? lost, ulong sent, bool whole)
    {
        if (lost is null)
        {
            if (carriedBy is { } carried && whole)
            {
                session.Replies.Reply(seq, ReplyKind.Handle, carried);
            }

            return;
        }

        // A session that is over says why itself (the lease ended); the copy adds nothing to it.
        _failed = true;
        if (lanes![0].Writer.SessionEnded)
        {
            return;
        }

        session.Replies.Error(seq, new Error
        {
            Code = ErrorCode.Unavailable,
            Message = $"copy #{seq} of {total} bytes from the device at 0x{ptr:x} to the host failed: {lost} closed after {sent} of {total} bytes had been sent; the rest was not",
            FailedSeq = seq,
            FailedOp = MemcpyDtoHOp.Name,
        });
    }

    public void OnError(StickyError error)
        => session.Replies.Error(seq, error.Op.Seq == seq ? OpErrors.Own(error.Error) : OpErrors.Sticky(error));
}
