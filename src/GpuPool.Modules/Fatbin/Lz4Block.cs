using static GpuPool.Modules.Internal.Bounds;

namespace GpuPool.Modules.Fatbin;

/// <summary>
/// The LZ4 block format (sequences of token, literals, 16-bit back offset and match length of at least 4), which
/// fatbinary uses for compressed entries. Every length and offset in the stream is checked against what is left of
/// the input and the output before it is used.
/// </summary>
internal static class Lz4Block
{
    private const int MinMatch = 4;

    /// <summary>
    /// Decodes <paramref name="source"/> into exactly <paramref name="length"/> bytes; <paramref name="where"/> says
    /// where the stream starts in the image, for the messages.
    /// </summary>
    public static byte[] Decode(ReadOnlySpan<byte> source, int length, long where)
    {
        var output = new byte[length];
        int input = 0, written = 0;
        while (true)
        {
            if (input >= source.Length)
            {
                throw Fail(where, input, $"the stream ends after {written} of its {length} bytes, without a final literal run");
            }

            var token = source[input++];
            var literals = ReadLength(source, ref input, token >> 4, length, where);
            if (literals > source.Length - input)
            {
                throw Fail(where, input, $"a run of {literals} literals runs past the end of the {source.Length}-byte stream");
            }

            if (literals > length - written)
            {
                throw Fail(where, input, $"a run of {literals} literals at output byte {written} runs past the {length} bytes the entry decompresses to");
            }

            source.Slice(input, literals).CopyTo(output.AsSpan(written));
            input += literals;
            written += literals;

            // The last sequence is literals only: the stream ends where they do.
            if (input == source.Length)
            {
                break;
            }

            if (source.Length - input < 2)
            {
                throw Fail(where, input, "a match offset is cut off by the end of the stream");
            }

            var offset = source[input] | (source[input + 1] << 8);
            if (offset == 0 || offset > written)
            {
                throw Fail(where, input, $"a match reaches {offset} bytes back from output byte {written}, before the start of the output");
            }

            input += 2;
            var match = ReadLength(source, ref input, token & 0xF, length, where) + MinMatch;
            if (match > length - written)
            {
                throw Fail(where, input, $"a match of {match} bytes at output byte {written} runs past the {length} bytes the entry decompresses to");
            }

            // A match may overlap its own output (offset < length repeats a pattern), so it is copied forwards byte by byte.
            var from = written - offset;
            if (offset >= match)
            {
                output.AsSpan(from, match).CopyTo(output.AsSpan(written));
            }
            else
            {
                for (var i = 0; i < match; i++)
                {
                    output[written + i] = output[from + i];
                }
            }

            written += match;
        }

        if (written != length)
        {
            throw Fail(where, input, $"the stream decompresses to {written} bytes, not the {length} the entry header says");
        }

        return output;
    }

    /// <summary>A 4-bit length from the token, extended by bytes of 255 and a final byte below 255 when it is 15.</summary>
    private static int ReadLength(ReadOnlySpan<byte> source, ref int input, int nibble, int limit, long where)
    {
        if (nibble != 0xF)
        {
            return nibble;
        }

        long value = nibble;
        byte next;
        do
        {
            if (input >= source.Length)
            {
                throw Fail(where, input, "a length is cut off by the end of the stream");
            }

            next = source[input++];
            value += next;

            // Beyond the output size the length is a lie; stop before it can overflow.
            if (value > limit)
            {
                throw Fail(where, input, $"a length of more than {value} bytes is longer than the {limit} bytes the entry decompresses to");
            }
        }
        while (next == 0xFF);

        return (int)value;
    }

    private static ModuleImageException Fail(long where, int at, string what)
        => ModuleImageException.Invalid($"LZ4 stream at offset {Hex(where)}: {what} (stream offset {Hex(at)})");
}
