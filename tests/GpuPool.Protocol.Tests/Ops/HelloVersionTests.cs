using System.Buffers;
using System.Text;
using GpuPool.Protocol.Transport;

namespace GpuPool.Protocol.Tests.Ops;

/// <summary>A hello names the fast-path version its client speaks; one of another version is refused, naming both.</summary>
public sealed class HelloVersionTests
{
    [Fact]
    public void A_hello_of_this_version_reads_back_its_lease_and_token()
    {
        var frame = Decode(writer => OpFrames.WriteHello(writer, 1, "l-1", "token"));

        var hello = OpFrames.ReadHello(frame, out var error);

        Assert.Null(error);
        Assert.Equal(new Hello(1, OpFrames.Version, "l-1", "token"), hello);
    }

    [Fact]
    public void A_hello_of_version_1_is_refused_naming_both_versions()
    {
        // Version 1's layout: fixed {u16 lease id length, u16 token length}, no version field.
        var frame = Decode(writer => FrameCodec.Write(writer, FrameType.HelloVersion1, 1, [3, 0, 5, 0], Encoding.UTF8.GetBytes("l-1token")));

        Assert.Null(OpFrames.ReadHello(frame, out var error));
        AssertNamesBoth(1, error);
    }

    [Theory]
    [InlineData(2)] // before a stream's flags went with its creation
    [InlineData(4)] // a later one
    public void A_hello_of_another_version_is_refused_naming_both_versions(ushort version)
    {
        var frame = Decode(writer => OpFrames.WriteHello(writer, 1, "l-1", "token", version: version));

        Assert.Null(OpFrames.ReadHello(frame, out var error));
        AssertNamesBoth(version, error);
    }

    private static void AssertNamesBoth(ushort clientVersion, string? error)
    {
        Assert.NotNull(error);
        Assert.Contains($"the client speaks fast-path version {clientVersion}", error, StringComparison.Ordinal);
        Assert.Contains($"this broker speaks version {OpFrames.Version}", error, StringComparison.Ordinal);
    }

    private static Frame Decode(Action<IBufferWriter<byte>> write)
    {
        var writer = new ArrayBufferWriter<byte>();
        write(writer);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(writer.WrittenMemory));
        Assert.Equal(DecodeStatus.Frame, FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out var frame, out _));
        return frame;
    }
}
