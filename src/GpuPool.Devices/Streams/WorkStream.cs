namespace GpuPool.Devices.Streams;

/// <summary>
/// One stream of a lease: an ordered queue of work, which its owning context runs one item at a time, in order, while
/// different streams run concurrently. A backend decides where the work runs (the thread pool, a thread of its own).
/// </summary>
internal abstract class WorkStream(ulong id, nint handle)
{
    public ulong Id { get; } = id;

    /// <summary>The backend's own stream (a CUstream); 0 where it has none.</summary>
    public nint Handle { get; } = handle;

    /// <summary>
    /// Nothing queued and nothing running; a stream that does not track it says false (work then always queues, and a
    /// synchronize always waits for a marker).
    /// </summary>
    public virtual bool IsIdle => false;

    /// <summary>Whether items wait in the queue behind the one running (a hint for the dispatcher: the stream will ask for a slot again).</summary>
    public abstract bool HasQueued { get; }

    /// <summary>
    /// For a blocking stream other than stream 0, how it stands with stream 0's order (its context keeps it, under its
    /// lock); null for stream 0 and for a non-blocking stream.
    /// </summary>
    public LegacyOrder? Legacy { get; set; }

    public abstract void Enqueue(StreamWork work);

    /// <summary>
    /// Lets the stream end once the work queued so far has run; the task completes then. <paramref name="destroyed"/>:
    /// the client destroyed the stream, so the backend's stream goes too (when the whole context ends, it frees them all).
    /// </summary>
    public abstract Task Drain(bool destroyed);

    /// <summary>
    /// The item that its runner said waits has now run to its end, on whichever thread ended its wait: the stream goes on
    /// with the next. Called once for each such item, and possibly before the runner has said it waits.
    /// </summary>
    public abstract void ResumeAfterWait();

    /// <summary>
    /// Waits for what an item needs before it runs (an event's record, a fair-share slot). A stream on the thread pool
    /// awaits it; a stream with a thread of its own blocks, so that all of the item runs on that thread.
    /// </summary>
    public abstract ValueTask WaitAsync(ValueTask pending);
}
