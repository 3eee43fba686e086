using GpuPool.Modules.Ptx;
using static GpuPool.Modules.Internal.Bounds;

namespace GpuPool.Modules.Elf;

/// <summary>
/// A kernel's <c>.nv.info.&lt;name&gt;</c> section: a list of attributes, each a format byte, an attribute byte and a
/// value. The parameter layout is read from it.
/// </summary>
/// <remarks>
/// Formats: 1 (no value) and 3 (u16) take 4 bytes in all, and so is 2 (byte) taken to, unseen in nvcc 11.8's output;
/// 4 is followed by a u16 size and that many bytes.
/// EIATTR_KPARAM_INFO (0x17, format 4, 12 bytes): u32 index (0), u16 ordinal, u16 offset, u32 whose bits 18..31 are
/// the size and bits 0..17 what cuobjdump shows as pointee log-alignment, space, cbank (0x1F) and parameter space.
/// EIATTR_PARAM_CBANK (0x0A, format 4, 8 bytes): u32 symbol of the bank section, u16 offset of the parameters in the
/// bank, u16 their size. EIATTR_CBANK_PARAM_SIZE (0x19, format 3): the same size. The size is not padded at the end:
/// (double, char) is 9. Checked against nvcc 11.8's cubins for sm_52 and sm_70.
/// </remarks>
internal static class NvInfo
{
    private const byte FormatSized = 4;
    private const byte AttributeParamCbank = 0x0A;
    private const byte AttributeKparamInfo = 0x17;
    private const byte AttributeCbankParamSize = 0x19;
    private const int KparamSizeShift = 18;

    /// <summary>The kernel's parameter layout; <paramref name="where"/> is the section's offset in the image, for messages.</summary>
    public static KernelSignature Signature(string kernel, ReadOnlySpan<byte> info, long where)
    {
        var found = new List<(int Ordinal, int Offset, int Size)>();
        int? bankSize = null, declaredSize = null;
        var at = 0;
        while (at < info.Length)
        {
            var attributeAt = where + at;
            if (info.Length - at < 4)
            {
                throw Fail(kernel, attributeAt, $"an attribute is cut off by the end of the section: {info.Length - at} of at least 4 bytes are there");
            }

            var format = info[at];
            var attribute = info[at + 1];
            ReadOnlySpan<byte> value;
            switch (format)
            {
                case 1 or 2 or 3:
                    value = info.Slice(at + 2, 2);
                    at += 4;
                    break;
                case FormatSized:
                    var size = U16(info, (ulong)at + 2, "an attribute size");
                    if (size > info.Length - at - 4)
                    {
                        throw Fail(kernel, attributeAt, $"attribute {Hex((ulong)attribute)} says its value is {size} bytes, but the section has {info.Length - at - 4} left");
                    }

                    value = info.Slice(at + 4, size);
                    at += 4 + size;
                    break;
                default:
                    throw Fail(kernel, attributeAt, $"attribute {Hex((ulong)attribute)} has format {format}, not one of 1 to 4");
            }

            switch (attribute)
            {
                case AttributeKparamInfo when format == FormatSized:
                    if (value.Length < 12)
                    {
                        throw Fail(kernel, attributeAt, $"EIATTR_KPARAM_INFO is {value.Length} bytes, not 12");
                    }

                    found.Add((U16(value, 4, "the parameter ordinal"), U16(value, 6, "the parameter offset"), (int)(U32(value, 8, "the parameter size") >> KparamSizeShift)));
                    break;
                case AttributeParamCbank when format == FormatSized:
                    if (value.Length < 8)
                    {
                        throw Fail(kernel, attributeAt, $"EIATTR_PARAM_CBANK is {value.Length} bytes, not 8");
                    }

                    bankSize = U16(value, 6, "the parameter bank size");
                    break;
                case AttributeCbankParamSize when format == 3:
                    declaredSize = U16(value, 0, "the parameter size");
                    break;
            }
        }

        if (bankSize is { } a && declaredSize is { } b && a != b)
        {
            throw Fail(kernel, where, $"EIATTR_PARAM_CBANK says the parameters take {a} bytes, EIATTR_CBANK_PARAM_SIZE says {b}");
        }

        return Layout(kernel, found, bankSize ?? declaredSize, where);
    }

    private static KernelSignature Layout(string kernel, List<(int Ordinal, int Offset, int Size)> found, int? totalBytes, long where)
    {
        // nvcc lists the parameters last to first; the ordinals say where each goes.
        found.Sort((x, y) => x.Ordinal.CompareTo(y.Ordinal));
        var parameters = new PtxParam[found.Count];
        var offsets = new int[found.Count];
        var end = 0;
        for (var i = 0; i < found.Count; i++)
        {
            var (ordinal, offset, size) = found[i];
            if (ordinal != i)
            {
                throw Fail(kernel, where, $"the EIATTR_KPARAM_INFO ordinals are not 0 to {found.Count - 1}: ordinal {ordinal} is where {i} should be");
            }

            if (offset < end)
            {
                throw Fail(kernel, where, $"parameter {i} starts at byte {offset}, inside parameter {i - 1}, which ends at {end}");
            }

            end = offset + size;
            parameters[i] = new PtxParam($"{kernel}_param_{i}", size, InferAlign(offset, size));
            offsets[i] = offset;
        }

        var total = totalBytes ?? end;
        if (total < end)
        {
            throw Fail(kernel, where, $"the parameters end at byte {end}, past the {total} bytes the parameter bank holds");
        }

        if (found.Count == 0 && total > 0)
        {
            throw Fail(kernel, where, $"the parameters take {total} bytes, but no EIATTR_KPARAM_INFO says what they are");
        }

        return new KernelSignature(kernel, parameters, offsets, total);
    }

    /// <summary>
    /// A cubin records no alignments; this is the largest one the layout allows (a C type's size and offset are both
    /// multiples of its alignment). It is exact for scalars, pointers and vector types, and may be too large for a
    /// struct of smaller members, which only matters for <see cref="KernelSignature.PaddedBytes"/>.
    /// </summary>
    private static int InferAlign(int offset, int size)
    {
        var align = size == 0 ? 1 : size & -size;
        return offset == 0 ? align : Math.Min(align, offset & -offset);
    }

    private static ModuleImageException Fail(string kernel, long at, string what)
        => ModuleImageException.Invalid($"kernel {kernel}'s .nv.info at offset {Hex(at)}: {what}");
}
