namespace GpuPool.Modules.Fatbin;

/// <summary>What an entry of a fat binary holds (the entry header's kind field).</summary>
public enum FatBinaryEntryKind : ushort
{
    /// <summary>PTX text for a virtual architecture (compute_XY), NUL-terminated.</summary>
    Ptx = 1,

    /// <summary>A cubin: SASS for one real architecture (sm_XY), as an ELF image.</summary>
    Elf = 2,

    /// <summary>NVVM IR for link-time optimization (nvcc's <c>code=lto_XY</c>), which a loader does not run.</summary>
    LtoIr = 8,
}

/// <summary>How an entry's payload was stored in the container.</summary>
public enum FatBinaryCompression
{
    None,
    Lz4,
}

/// <summary>One entry of a fat binary, its payload already decompressed.</summary>
public sealed class FatBinaryEntry
{
    internal FatBinaryEntry(int container, long offset, FatBinaryEntryKind kind, int smArch, ulong flags, FatBinaryCompression compression, ReadOnlyMemory<byte> payload)
    {
        Container = container;
        Offset = offset;
        Kind = kind;
        SmArch = smArch;
        Flags = flags;
        Compression = compression;
        Payload = payload;
    }

    /// <summary>Which container of the image holds the entry: 0 unless containers were concatenated.</summary>
    public int Container { get; }

    /// <summary>Where the entry header starts in the image.</summary>
    public long Offset { get; }

    public FatBinaryEntryKind Kind { get; }

    /// <summary>The architecture as major * 10 + minor: sm_70's cubin and compute_70's PTX are both 70.</summary>
    public int SmArch { get; }

    /// <summary>The entry header's flags as stored (see <see cref="FatBinary"/> for the bits).</summary>
    public ulong Flags { get; }

    public bool Is64Bit => (Flags & FatBinary.Flag64Bit) != 0;

    /// <summary>Built with device debug information (nvcc -G).</summary>
    public bool IsDebug => (Flags & FatBinary.FlagDebug) != 0;

    public FatBinaryCompression Compression { get; }

    public bool WasCompressed => Compression != FatBinaryCompression.None;

    /// <summary>
    /// The payload, decompressed. An entry that was stored uncompressed keeps the container's padding (NULs after the
    /// PTX's terminator or after the ELF's last section); a decompressed one is exactly its stated size.
    /// </summary>
    public ReadOnlyMemory<byte> Payload { get; }

    public override string ToString() => $"{Kind} sm_{SmArch} ({Payload.Length} bytes{(WasCompressed ? $", {Compression}" : "")}) at {Offset}";
}
