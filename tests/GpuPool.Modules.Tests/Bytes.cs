using System.Buffers.Binary;
using System.Text;

namespace GpuPool.Modules.Tests;

/// <summary>Copies of real images with one field changed, and where the fields of a real ELF are, found the plain way.</summary>
public static class Bytes
{
    public static byte[] WithU16(this byte[] image, int at, ushort value) => Patched(image, b => BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(at), value));

    public static byte[] WithU32(this byte[] image, int at, uint value) => Patched(image, b => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), value));

    public static byte[] WithU64(this byte[] image, int at, ulong value) => Patched(image, b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(at), value));

    public static byte[] WithByte(this byte[] image, int at, byte value) => Patched(image, b => b[at] = value);

    public static ushort U16(this byte[] image, int at) => BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(at));

    public static uint U32(this byte[] image, int at) => BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(at));

    public static ulong U64(this byte[] image, int at) => BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(at));

    private static byte[] Patched(byte[] image, Action<byte[]> change)
    {
        var copy = (byte[])image.Clone();
        change(copy);
        return copy;
    }
}

/// <summary>
/// Offsets of the headers, symbols and .nv.info attributes of a well-formed ELF image, read independently of the
/// reader under test so that a test can aim a lie at one field.
/// </summary>
public sealed class ElfLayout
{
    private readonly byte[] _image;
    private readonly Dictionary<string, int> _sectionHeaders = new(StringComparer.Ordinal);

    public ElfLayout(byte[] image)
    {
        _image = image;
        var table = (int)image.U64(0x28);
        var count = image.U16(0x3C);
        var names = table + (image.U16(0x3E) * 64);
        var namesAt = (int)image.U64(names + 24);
        for (var i = 0; i < count; i++)
        {
            var header = table + (i * 64);
            _sectionHeaders[CString(namesAt + (int)image.U32(header))] = header;
        }
    }

    /// <summary>Where a section's 64-byte header is.</summary>
    public int SectionHeader(string name) => _sectionHeaders[name];

    public (int Offset, int Size) SectionData(string name)
    {
        var header = SectionHeader(name);
        return ((int)_image.U64(header + 24), (int)_image.U64(header + 32));
    }

    /// <summary>Where a symbol's 24-byte entry in .symtab is.</summary>
    public int Symbol(string name)
    {
        var (at, size) = SectionData(".symtab");
        var strings = SectionData(".strtab").Offset;
        for (var entry = at; entry < at + size; entry += 24)
        {
            if (CString(strings + (int)_image.U32(entry)) == name)
            {
                return entry;
            }
        }

        throw new KeyNotFoundException($"no symbol {name}");
    }

    /// <summary>Where the <paramref name="nth"/> attribute <paramref name="attribute"/> of an .nv.info section starts (its format byte).</summary>
    public int Attribute(string section, byte attribute, int nth = 0)
    {
        var (at, size) = SectionData(section);
        for (var p = at; p < at + size;)
        {
            if (_image[p + 1] == attribute && nth-- == 0)
            {
                return p;
            }

            p += _image[p] == 4 ? 4 + _image.U16(p + 2) : 4;
        }

        throw new KeyNotFoundException($"{section} has no attribute {attribute:X}");
    }

    private string CString(int at) => Encoding.ASCII.GetString(_image, at, Array.IndexOf(_image, (byte)0, at) - at);
}

/// <summary>Fat binary containers made here, for entries nvcc would never write (an LZ4 stream that lies).</summary>
public static class Container
{
    public static byte[] WithEntry(byte[] stored, ulong flags, uint compressedSize, ulong uncompressedSize, ushort kind = 2)
    {
        var padded = (stored.Length + 7) / 8 * 8;
        var image = new byte[16 + 64 + padded];
        BinaryPrimitives.WriteUInt32LittleEndian(image, 0xBA55ED50);
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(4), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(6), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(8), (ulong)(64 + padded));
        var entry = image.AsSpan(16);
        BinaryPrimitives.WriteUInt16LittleEndian(entry, kind);
        BinaryPrimitives.WriteUInt16LittleEndian(entry[2..], 0x0101);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[4..], 64);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], (uint)padded);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], compressedSize);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[28..], 70);
        BinaryPrimitives.WriteUInt64LittleEndian(entry[40..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(entry[56..], uncompressedSize);
        stored.CopyTo(entry[64..]);
        return image;
    }

    /// <summary>A container whose one entry is the LZ4 <paramref name="stream"/>, said to decompress to <paramref name="length"/> bytes.</summary>
    public static byte[] WithLz4(byte[] stream, int length) => WithEntry(stream, 0x2011, (uint)stream.Length, (ulong)length);
}
