namespace GpuPool.Coordination.Embedded;

/// <summary>Where an <see cref="EmbeddedClusterStore"/> keeps its state, and how hard it tries to keep it.</summary>
/// <param name="Path">The store file; its folder is created when missing. <c>gpupool up</c> uses <c>&lt;config dir&gt;/store/embedded.db</c>.</param>
public sealed record EmbeddedStoreOptions(string Path)
{
    /// <summary>The default <see cref="CompactionThreshold"/>: 8 MiB.</summary>
    public const long DefaultCompactionThreshold = 8 << 20;

    /// <summary>
    /// When true, every commit is fsynced before the call returns, so it survives a power loss or a kernel
    /// crash. When false (the default), a commit has reached the operating system before the call returns: it
    /// survives the process being killed, not the machine losing power. Measured on the 2-core test machine,
    /// a put costs about 7 µs without fsync (0.6 µs in memory) and 0.3 to 3 ms with it, as busy as its disk is.
    /// </summary>
    public bool FlushToDisk { get; init; }

    /// <summary>The file is rewritten as a snapshot of the live state once it grows past this many bytes or twice the last snapshot's size, whichever is larger.</summary>
    public long CompactionThreshold { get; init; } = DefaultCompactionThreshold;
}
