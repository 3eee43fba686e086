namespace GpuPool.Broker.Sessions;

/// <summary>
/// A reply writer that sends chunks of a device-to-host copy straight from the memory the device hands over, with
/// no staging copy: the caller (the device stream, which holds the copy) keeps the bytes valid from
/// <see cref="PostDirect"/> until <see cref="WaitDirect"/> returns (or <see cref="WaitDirectAsync"/> completes).
/// Up to <see cref="DirectSlots"/> chunks are in flight per writer, sent in the order posted, so the writer need not
/// wait for the stream between them; several writers (the connections of a striped copy) send theirs in parallel.
/// </summary>
internal interface IDirectReplies
{
    /// <summary>Smallest chunk worth sending this way; smaller ones are staged and batched with other replies.</summary>
    int DirectThreshold { get; }

    /// <summary>How many chunks may be in flight at once, one per slot.</summary>
    int DirectSlots { get; }

    /// <summary>The session is over (its lease ended, its first connection closed): a copy cut short then reports nothing.</summary>
    bool SessionEnded { get; }

    /// <summary>
    /// Queues a Data frame whose payload is the <paramref name="length"/> bytes at <paramref name="bytes"/>, in
    /// <paramref name="slot"/>, which must be free (never used, or waited for since). False when the connection is
    /// gone or the session is over: nothing was queued.
    /// </summary>
    bool PostDirect(int slot, ulong seq, ulong offset, nint bytes, int length, bool last);

    /// <summary>
    /// Waits until the slot's bytes have been sent (true), or will not be (false: the connection failed, or the
    /// session ended and the client did not take them). Either way the writer no longer reads them. True at once
    /// when nothing is posted. For a caller on a thread of its own (a cuda stream).
    /// </summary>
    bool WaitDirect(int slot);

    /// <summary>Like <see cref="WaitDirect"/>, without holding a thread; await it once per <see cref="PostDirect"/> that returned true.</summary>
    ValueTask<bool> WaitDirectAsync(int slot);
}
