using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using GpuPool.Protocol.Transport;
using Xunit.Abstractions;

namespace GpuPool.Protocol.Tests.Transport;

public sealed class FrameCodecFuzzTests(ITestOutputHelper output)
{
    private const int Seed = 0x5047_2025;
    private const int CasesPerMutation = 150_000;

    /// <summary>
    /// What one Error may allocate: its reason string (at most ~130 chars, about 300 bytes), which each of the two decoders
    /// the loop measures (the whole one and the header-only one) makes.
    /// </summary>
    private const long BytesPerError = 2 * 320;

    /// <summary>What all Frame and NeedMore results together may allocate: nothing, give or take runtime noise.</summary>
    private const long NonErrorSlack = 8 * 1024;

    /// <summary>A budget for the whole run, not a benchmark: about a second is normal on two cores.</summary>

    private static readonly Mutation[] Mutations = Enum.GetValues<Mutation>();

    private enum Mutation
    {
        RandomBytes,
        FlippedBytes,
        TruncatedHeader,
        LengthPastTheFrame,
        HugeLength,
        UnknownType,
        ShortPayload,
    }

    [Fact]
    public void A_million_random_and_mutated_inputs_never_throw_overrun_a_limit_or_move_the_reader_and_allocate_only_error_reasons()
    {
        var rng = new Random(Seed);
        var templates = Enumerable.Range(0, 256).Select(_ => Template.Random(rng)).ToArray();
        var withPayload = templates.Where(t => t.PayloadLength > 0).ToArray();
        var buffer = new byte[512];
        var head = new Segments.Segment(ReadOnlyMemory<byte>.Empty, 0);
        var tail = new Segments.Segment(ReadOnlyMemory<byte>.Empty, 0);
        var outcomes = new long[Mutations.Length, 3];
        long errorBytes = 0, nonErrorBytes = 0, errors = 0;
        var cases = Mutations.Length * CasesPerMutation;

        var clock = Stopwatch.StartNew();
        var loopBefore = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < cases; i++)
        {
            var mutation = Mutations[i % Mutations.Length];
            var length = Mutate(mutation, rng, templates, withPayload, buffer, out var expected);
            var input = buffer.AsMemory(0, length);
            ReadOnlySequence<byte> sequence;
            if (rng.Next(2) == 0)
            {
                sequence = new ReadOnlySequence<byte>(input);
            }
            else
            {
                // The same two segments every time, re-pointed at this case's bytes.
                var cut = rng.Next(length + 1);
                tail.Reset(input[cut..], cut, null);
                head.Reset(input[..cut], 0, tail);
                sequence = new ReadOnlySequence<byte>(head, 0, tail, length - cut);
            }

            var reader = new SequenceReader<byte>(sequence);
            var before = GC.GetAllocatedBytesForCurrentThread();
            DecodeStatus status;
            Frame frame;
            string? error;
            try
            {
                status = FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out frame, out error);
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"case {i} ({mutation}, {length} bytes): the decoder threw", ex);
            }

            // The header-only decoder (for payloads taken straight from the connection) agrees with the whole one.
            var headerStatus = FrameCodec.TryDecodeHeader(new SequenceReader<byte>(sequence), FrameCodec.DefaultMaxPayload, out var header, out var fixedFields, out var headerError);
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            CheckHeader(i, mutation, length, status, in frame, error, headerStatus, header, fixedFields, headerError);
            if (status == DecodeStatus.Error)
            {
                errors++;
                errorBytes += allocated;
            }
            else
            {
                nonErrorBytes += allocated;
            }

            Check(i, mutation, length, status, expected, in frame, error, reader.Consumed);
            outcomes[(int)mutation, (int)status]++;
        }

        var loopBytes = GC.GetAllocatedBytesForCurrentThread() - loopBefore;
        clock.Stop();

        output.WriteLine($"{cases:N0} cases in {clock.Elapsed.TotalSeconds:F2} s ({cases / clock.Elapsed.TotalSeconds:N0}/s), seed 0x{Seed:x}");
        output.WriteLine($"{"mutation",-20} {"NeedMore",10} {"Frame",10} {"Error",10}");
        foreach (var mutation in Mutations)
        {
            var m = (int)mutation;
            output.WriteLine($"{mutation,-20} {outcomes[m, 0],10:N0} {outcomes[m, 1],10:N0} {outcomes[m, 2],10:N0}");
        }

        output.WriteLine($"allocated by the decoder: {nonErrorBytes:N0} B on NeedMore/Frame, {errorBytes:N0} B on {errors:N0} errors ({(errors == 0 ? 0 : errorBytes / errors)} B each); whole loop {loopBytes:N0} B");

        Assert.True(nonErrorBytes <= NonErrorSlack, $"decoding frames and partial frames allocated {nonErrorBytes:N0} bytes; it must allocate nothing");
        Assert.True(errorBytes <= (errors * BytesPerError) + NonErrorSlack, $"{errors:N0} errors allocated {errorBytes:N0} bytes; only the reason strings may allocate");
    }

    /// <summary>Fills <paramref name="buffer"/> with one input of the given kind; returns its length and, where the kind decides it, the outcome.</summary>
    private static int Mutate(Mutation mutation, Random rng, Template[] templates, Template[] withPayload, byte[] buffer, out DecodeStatus? expected)
    {
        expected = null;
        var t = mutation == Mutation.ShortPayload ? withPayload[rng.Next(withPayload.Length)] : templates[rng.Next(templates.Length)];
        t.Bytes.CopyTo(buffer, 0);
        var length = t.Bytes.Length;
        var lengthField = buffer.AsSpan(4, 4);
        switch (mutation)
        {
            case Mutation.RandomBytes:
                length = rng.Next(0, 97);
                rng.NextBytes(buffer.AsSpan(0, length));
                if (length >= 4 && rng.Next(2) == 0)
                {
                    // Half the time get past the magic and type checks, so the lengths are what is random.
                    BinaryPrimitives.WriteUInt16LittleEndian(buffer, FrameCodec.Magic);
                    BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2), (ushort)templates[rng.Next(templates.Length)].Type);
                }

                break;

            case Mutation.FlippedBytes:
                for (var flips = rng.Next(1, 5); flips > 0; flips--)
                {
                    // Half the flips land in the header and fixed fields, where they change the decoder's decisions.
                    var at = rng.Next(2) == 0 ? rng.Next(Math.Min(length, 32)) : rng.Next(length);
                    buffer[at] ^= (byte)rng.Next(1, 256);
                }

                break;

            case Mutation.TruncatedHeader:
                length = rng.Next(0, FrameCodec.HeaderSize);
                expected = DecodeStatus.NeedMore;
                break;

            case Mutation.LengthPastTheFrame:
                var room = t.Limit - t.PayloadLength;
                var declared = (long)t.PayloadLength + (room > 0 && rng.Next(2) == 0 ? rng.Next(1, room + 1) : rng.Next(1, 1 << 26));
                BinaryPrimitives.WriteUInt32LittleEndian(lengthField, (uint)declared);
                expected = declared > t.Limit ? DecodeStatus.Error : DecodeStatus.NeedMore;
                break;

            case Mutation.HugeLength:
                var huge = rng.Next(4) == 0 ? uint.MaxValue : (uint)rng.NextInt64(t.Limit + 1L, uint.MaxValue + 1L);
                BinaryPrimitives.WriteUInt32LittleEndian(lengthField, huge);
                expected = DecodeStatus.Error;
                break;

            case Mutation.UnknownType:
                ushort code;
                do
                {
                    code = (ushort)rng.Next(0, ushort.MaxValue + 1);
                }
                while (FrameCodec.FixedSize((FrameType)code) >= 0);

                BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(2), code);
                expected = DecodeStatus.Error;
                break;

            case Mutation.ShortPayload:
                length -= rng.Next(1, t.PayloadLength + 1);
                expected = DecodeStatus.NeedMore;
                break;

            default:
                throw new ArgumentOutOfRangeException(nameof(mutation), mutation, null);
        }

        return length;
    }

    /// <summary>The decoder's contract on any input; fails the test naming the case (and only then builds a string).</summary>
    private static void Check(int i, Mutation mutation, int length, DecodeStatus status, DecodeStatus? expected, in Frame frame, string? error, long consumed)
    {
        var ok = status switch
        {
            DecodeStatus.NeedMore => consumed == 0 && error is null,
            DecodeStatus.Error => consumed == 0 && !string.IsNullOrEmpty(error),
            DecodeStatus.Frame => error is null && IsWithinLimits(in frame, consumed, length),
            _ => false,
        };
        if (!ok || (expected is { } e && status != e))
        {
            Assert.Fail($"case {i} ({mutation}, {length} bytes): {status} (expected {expected?.ToString() ?? "any"}), consumed {consumed}, frame {frame.Header}, error '{error}'");
        }
    }

    private static void CheckHeader(int i, Mutation mutation, int length, DecodeStatus status, in Frame frame, string? error, DecodeStatus headerStatus, FrameHeader header, ReadOnlySequence<byte> fixedFields, string? headerError)
    {
        var ok = status switch
        {
            DecodeStatus.Frame => headerStatus == DecodeStatus.Frame && header == frame.Header && fixedFields.Length == frame.Fixed.Length,
            DecodeStatus.Error => headerStatus == DecodeStatus.Error && headerError == error,
            _ => headerStatus == DecodeStatus.NeedMore
                || (headerStatus == DecodeStatus.Frame && fixedFields.Length == FrameCodec.FixedSize(header.Type)
                    && header.PayloadLength <= (uint)FrameCodec.MaxPayload(header.Type, FrameCodec.DefaultMaxPayload)
                    && FrameCodec.HeaderSize + fixedFields.Length <= length),
        };
        if (!ok)
        {
            Assert.Fail($"case {i} ({mutation}, {length} bytes): the whole decoder said {status} ('{error}'), the header decoder {headerStatus} ('{headerError}', {header})");
        }
    }

    private static bool IsWithinLimits(in Frame frame, long consumed, int length)
    {
        var fixedSize = FrameCodec.FixedSize(frame.Type);
        return fixedSize >= 0
            && frame.Header.PayloadLength <= (uint)FrameCodec.MaxPayload(frame.Type, FrameCodec.DefaultMaxPayload)
            && frame.Fixed.Length == fixedSize
            && frame.Payload.Length == frame.Header.PayloadLength
            && consumed == FrameCodec.HeaderSize + fixedSize + frame.Payload.Length
            && consumed <= length;
    }

    /// <summary>A valid encoded frame with a small payload, the seed of most mutations.</summary>
    private sealed record Template(FrameType Type, int PayloadLength, byte[] Bytes)
    {
        public int Limit => FrameCodec.MaxPayload(Type, FrameCodec.DefaultMaxPayload);

        public static Template Random(Random rng)
        {
            var type = TestFrame.Types[rng.Next(TestFrame.Types.Length)];
            var fixedFields = new byte[FrameCodec.FixedSize(type)];
            var payload = new byte[rng.Next(Math.Min(FrameCodec.MaxPayload(type, FrameCodec.DefaultMaxPayload), 256) + 1)];
            rng.NextBytes(fixedFields);
            rng.NextBytes(payload);
            var frame = new TestFrame(type, (ulong)rng.NextInt64(), fixedFields, payload);
            return new Template(type, payload.Length, frame.Encode());
        }
    }
}
