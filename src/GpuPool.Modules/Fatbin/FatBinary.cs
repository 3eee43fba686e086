using System.Buffers.Binary;
using static GpuPool.Modules.Internal.Bounds;

namespace GpuPool.Modules.Fatbin;

/// <summary>
/// The fat binary container that nvcc embeds in executables (section <c>.nv_fatbin</c>) and writes with -fatbin: a
/// 16-byte header, then entries, each a header followed by a PTX or ELF payload, LZ4-compressed or not.
/// </summary>
/// <remarks>
/// Container header: u32 magic 0xBA55ED50, u16 version 1, u16 header size, u64 bytes after the header.
/// Entry header (64 bytes, or more when it carries PTX options or a source file name after those 64):
/// u16 kind (1 PTX, 2 ELF, 8 LTO IR), u16 version 0x0101, u32 header size, u32 payload size (the room the payload
/// takes, padded to 8), u32 0, u32 compressed size (0 when stored), u32 offset in the header of the PTX options
/// descriptor, u32 producer version (PTX ISA 7.8 reads 0x70008), u32 arch (52 for sm_52 or compute_52), u32 offset
/// and u32 length of the source file name in the header (nvcc -G), u64 flags (0x1 64-bit, 0x2 debug, 0x10 Linux,
/// 0x2000 LZ4, 0x8000 zstd), u64 0, u64 decompressed size (0 when stored). Checked against nvcc 11.8's output.
/// Executables hold several containers back to back, one per registered module.
/// </remarks>
public static class FatBinary
{
    public const uint Magic = 0xBA55ED50;

    /// <summary>The magic of <c>__fatBinC_Wrapper_t</c>, the struct the CUDA runtime registers, which points to a container.</summary>
    public const uint WrapperMagic = 0x466243B1;

    public const int HeaderBytes = 16;

    public const ulong Flag64Bit = 0x1;
    public const ulong FlagDebug = 0x2;
    public const ulong FlagLz4 = 0x2000;
    public const ulong FlagZstd = 0x8000;

    /// <summary>No container is believed to be larger than this, whatever its header says.</summary>
    public const long MaxContainerBytes = 1L << 30;

    /// <summary>No entry is decompressed to more than this, whatever its header says.</summary>
    public const int MaxPayloadBytes = 256 << 20;

    private const uint OldMagic = 0x1EE55A01;
    private const ushort EntryVersion = 0x0101;
    private const int EntryHeaderBytes = 64;

    /// <summary>
    /// The total size (header included) of the container whose first 16 bytes are given, so that a caller holding only
    /// a pointer to it (the shim, from a wrapper) knows how much to copy. Throws <see cref="ModuleImageException"/>
    /// when the bytes are not a container header or its size is not believable.
    /// </summary>
    public static long SizeFromHeader(ReadOnlySpan<byte> first16Bytes) => ContainerSize(first16Bytes, 0);

    /// <summary>
    /// The entries of a container, or of several concatenated, payloads decompressed. Throws
    /// <see cref="ModuleImageException"/> naming what is wrong and where.
    /// </summary>
    public static IReadOnlyList<FatBinaryEntry> Read(ReadOnlySpan<byte> image)
    {
        var entries = new List<FatBinaryEntry>();
        long at = 0;
        for (var container = 0; ; container++)
        {
            var size = ContainerSize(image[(int)at..], at);
            Require(image, (ulong)at, (ulong)size, $"the fat binary container at offset {Hex(at)}");
            ReadEntries(image.Slice((int)at, (int)size), at, container, entries);
            at += size;

            var rest = image[(int)at..];
            if (rest.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(rest) == Magic)
            {
                continue;
            }

            if (rest.ContainsAnyExcept((byte)0))
            {
                throw ModuleImageException.Invalid($"the {rest.Length} bytes after the fat binary container ending at offset {Hex(at)} are neither another container nor NUL padding");
            }

            return entries;
        }
    }

    private static long ContainerSize(ReadOnlySpan<byte> header, long where)
    {
        if (header.Length < HeaderBytes)
        {
            throw ModuleImageException.Invalid($"the fat binary container header at offset {Hex(where)} is cut off: {header.Length} of its {HeaderBytes} bytes are there");
        }

        var magic = BinaryPrimitives.ReadUInt32LittleEndian(header);
        switch (magic)
        {
            case Magic:
                break;
            case WrapperMagic:
                throw ModuleImageException.Invalid($"the bytes at offset {Hex(where)} are a __fatBinC_Wrapper_t (magic {Hex(WrapperMagic)}), which only points to its container; read the container it points to");
            case OldMagic:
                throw ModuleImageException.Unsupported($"the fat binary at offset {Hex(where)} has the pre-CUDA-4 magic {Hex(OldMagic)}, a format this reader does not handle");
            default:
                throw ModuleImageException.Invalid($"the magic at offset {Hex(where)} is {Hex(magic)}, not a fat binary container's {Hex(Magic)}");
        }

        var version = U16(header, 4, "the container version");
        if (version != 1)
        {
            throw ModuleImageException.Unsupported($"the fat binary container at offset {Hex(where)} has version {version}; only version 1 is known");
        }

        var headerSize = U16(header, 6, "the container header size");
        if (headerSize < HeaderBytes)
        {
            throw ModuleImageException.Invalid($"the fat binary container at offset {Hex(where)} says its header is {headerSize} bytes, less than the {HeaderBytes} it has");
        }

        var fatSize = U64(header, 8, "the container size");
        if (fatSize > (ulong)(MaxContainerBytes - headerSize))
        {
            throw ModuleImageException.Invalid($"the fat binary container at offset {Hex(where)} says it holds {fatSize} bytes after its header, more than the {MaxContainerBytes >> 20} MiB any container is believed to be");
        }

        return headerSize + (long)fatSize;
    }

    /// <summary>Reads the entries of the one container that <paramref name="container"/> spans exactly.</summary>
    private static void ReadEntries(ReadOnlySpan<byte> container, long where, int index, List<FatBinaryEntry> entries)
    {
        var at = (int)U16(container, 6, "the container header size");
        while (at < container.Length)
        {
            var entryWhere = where + at;
            var left = container.Length - at;
            if (left < EntryHeaderBytes)
            {
                throw ModuleImageException.Invalid($"the fat binary entry header at offset {Hex(entryWhere)} is cut off by the end of its container: {left} of its {EntryHeaderBytes} bytes are there");
            }

            var header = container.Slice(at, EntryHeaderBytes);
            var kind = U16(header, 0, "the entry kind");
            var version = U16(header, 2, "the entry version");
            var headerSize = U32(header, 4, "the entry header size");
            var payloadSize = U32(header, 8, "the entry payload size");
            var compressedSize = U32(header, 16, "the entry compressed size");
            var arch = U32(header, 28, "the entry architecture");
            var flags = U64(header, 40, "the entry flags");
            var uncompressedSize = U64(header, 56, "the entry uncompressed size");

            if (version != EntryVersion)
            {
                throw ModuleImageException.Unsupported($"the fat binary entry at offset {Hex(entryWhere)} has version {Hex((ulong)version)}; only {Hex((ulong)EntryVersion)} is known");
            }

            if (headerSize < EntryHeaderBytes || headerSize > (uint)left)
            {
                throw ModuleImageException.Invalid($"the fat binary entry at offset {Hex(entryWhere)} says its header is {headerSize} bytes; it must be at least {EntryHeaderBytes} and fit the {left} bytes left in its container");
            }

            var payloadAt = at + (int)headerSize;
            if (payloadSize > (uint)(container.Length - payloadAt))
            {
                throw ModuleImageException.Invalid($"the fat binary entry at offset {Hex(entryWhere)} says its payload is {payloadSize} bytes, but its container has {container.Length - payloadAt} left after the entry header");
            }

            var stored = container.Slice(payloadAt, (int)payloadSize);
            var payloadWhere = where + payloadAt;
            var (compression, payload) = Unpack(stored, flags, compressedSize, uncompressedSize, entryWhere, payloadWhere);
            entries.Add(new FatBinaryEntry(index, entryWhere, (FatBinaryEntryKind)kind, (int)Math.Min(arch, int.MaxValue), flags, compression, payload));
            at = payloadAt + (int)payloadSize;
        }
    }

    private static (FatBinaryCompression, byte[]) Unpack(ReadOnlySpan<byte> stored, ulong flags, uint compressedSize, ulong uncompressedSize, long entryWhere, long payloadWhere)
    {
        if ((flags & FlagZstd) != 0)
        {
            throw ModuleImageException.Unsupported($"the fat binary entry at offset {Hex(entryWhere)} is zstd-compressed (flag {Hex(FlagZstd)}), which this reader does not decompress; rebuild it with LZ4 compression or none");
        }

        if ((flags & FlagLz4) == 0)
        {
            return (FatBinaryCompression.None, stored.ToArray());
        }

        if (compressedSize > stored.Length)
        {
            throw ModuleImageException.Invalid($"the fat binary entry at offset {Hex(entryWhere)} says {compressedSize} bytes of it are compressed, more than its {stored.Length}-byte payload");
        }

        if (uncompressedSize > MaxPayloadBytes)
        {
            throw ModuleImageException.Invalid($"the fat binary entry at offset {Hex(entryWhere)} says it decompresses to {uncompressedSize} bytes, more than the {MaxPayloadBytes >> 20} MiB any entry is believed to be");
        }

        // LZ4 cannot expand a byte to more than 255: a larger claim is a lie, found before anything is allocated for it.
        if (uncompressedSize > (compressedSize * 255UL) + 16)
        {
            throw ModuleImageException.Invalid($"the fat binary entry at offset {Hex(entryWhere)} says it decompresses to {uncompressedSize} bytes, more than LZ4 can make of its {compressedSize} compressed bytes");
        }

        return (FatBinaryCompression.Lz4, Lz4Block.Decode(stored[..(int)compressedSize], (int)uncompressedSize, payloadWhere));
    }
}
