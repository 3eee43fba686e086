namespace GpuPool.Devices.Streams;

/// <summary>
/// Where a blocking stream stands with its context's stream 0 (the legacy default stream): whether work went to it since
/// stream 0 last waited for it, the internal event stream 0 waits on, and how much of stream 0's work it has waited for.
/// </summary>
internal sealed class LegacyOrder
{
    /// <summary>Work was queued on the stream since stream 0 last waited for it.</summary>
    public bool Pending { get; set; }

    /// <summary>The count of stream 0's work that the stream's queue already waits for; -1: none yet.</summary>
    public long SeenDefaultWork { get; set; } = -1;

    /// <summary>The event recorded on the stream for stream 0 to wait on; made the first time it is needed.</summary>
    public ContextEvent? Mark { get; set; }
}
