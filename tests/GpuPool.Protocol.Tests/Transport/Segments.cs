using System.Buffers;

namespace GpuPool.Protocol.Tests.Transport;

/// <summary>Builds multi-segment sequences, as a pipe hands them over, from bytes cut at chosen offsets.</summary>
internal static class Segments
{
    /// <summary>Cuts <paramref name="bytes"/> at each offset (clamped, sorted, repeats give empty segments); each segment gets its own array.</summary>
    public static ReadOnlySequence<byte> Split(byte[] bytes, IEnumerable<int> cuts)
    {
        var offsets = cuts.Select(c => Math.Clamp(c, 0, bytes.Length)).Append(0).Append(bytes.Length).Order().ToArray();
        Segment? first = null;
        Segment? last = null;
        for (var i = 0; i < offsets.Length - 1; i++)
        {
            var part = bytes.AsSpan(offsets[i]..offsets[i + 1]).ToArray();
            last = last is null ? first = new Segment(part, 0) : last.Append(part);
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    /// <summary>A segment whose memory and position can be set again, so a fuzz loop can reuse one chain without allocating.</summary>
    public sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex) => Reset(memory, runningIndex, null);

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }

        public void Reset(ReadOnlyMemory<byte> memory, long runningIndex, Segment? next)
        {
            Memory = memory;
            RunningIndex = runningIndex;
            Next = next;
        }
    }
}
