namespace GpuPool.Coordination.Embedded;

/// <summary>The embedded store's file is damaged somewhere other than a last record cut short by a crash. The file is left as it was.</summary>
public sealed class EmbeddedStoreCorruptException(string path, long offset, string problem)
    : Exception($"the embedded store file '{path}' is damaged at byte {offset}: {problem}. It was left as it is: restore it from a backup, or move it aside to start with an empty store")
{
    public string FilePath { get; } = path;

    public long Offset { get; } = offset;
}

/// <summary>Another process (or another store in this one) has the embedded store's file open.</summary>
public sealed class EmbeddedStoreInUseException(string path, Exception? inner = null)
    : IOException($"the embedded store file '{path}' is in use by another process (is another `gpupool up` running?); stop that one first, or give this one another store file", inner)
{
    public string FilePath { get; } = path;
}
