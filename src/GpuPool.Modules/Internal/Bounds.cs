using System.Buffers.Binary;

namespace GpuPool.Modules.Internal;

/// <summary>
/// Little-endian reads at offsets an image supplied: a read past the end is an InvalidImage error naming the field,
/// never an IndexOutOfRangeException.
/// </summary>
internal static class Bounds
{
    /// <summary>Fails unless <paramref name="length"/> bytes at <paramref name="at"/> lie inside <paramref name="data"/>.</summary>
    public static void Require(ReadOnlySpan<byte> data, ulong at, ulong length, string what)
    {
        if (at > (ulong)data.Length || length > (ulong)data.Length - at)
        {
            throw ModuleImageException.Invalid($"{what} ({length} bytes at offset {Hex(at)}) runs past the end of the {data.Length}-byte image");
        }
    }

    public static ushort U16(ReadOnlySpan<byte> data, ulong at, string what)
    {
        Require(data, at, 2, what);
        return BinaryPrimitives.ReadUInt16LittleEndian(data[(int)at..]);
    }

    public static uint U32(ReadOnlySpan<byte> data, ulong at, string what)
    {
        Require(data, at, 4, what);
        return BinaryPrimitives.ReadUInt32LittleEndian(data[(int)at..]);
    }

    public static ulong U64(ReadOnlySpan<byte> data, ulong at, string what)
    {
        Require(data, at, 8, what);
        return BinaryPrimitives.ReadUInt64LittleEndian(data[(int)at..]);
    }

    public static ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> data, ulong at, ulong length, string what)
    {
        Require(data, at, length, what);
        return data.Slice((int)at, (int)length);
    }

    public static string Hex(ulong value) => $"0x{value:X}";

    public static string Hex(long value) => $"0x{value:X}";
}
