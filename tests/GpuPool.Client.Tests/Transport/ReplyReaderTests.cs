using System.Buffers;
using System.Net.Sockets;
using GpuPool.Client.Transport.FastPath;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Tests.Transport;

/// <summary>
/// A connection's reply reader over a real loopback connection, the test writing frames as the broker would: each
/// reaches the target in order, a large copy chunk lands straight in its destination, and a malformed frame ends the
/// reader with an error that says what was wrong.
/// </summary>
public sealed class ReplyReaderTests : IDisposable
{
    private Socket _broker = null!;
    private Socket _client = null!;

    public void Dispose()
    {
        _broker?.Dispose();
        _client?.Dispose();
    }

    [Fact]
    public async Task Replies_errors_data_and_notices_reach_the_target_in_order()
    {
        var target = new RecordingTarget();
        var running = await StartAsync(target);

        await SendAsync(w =>
        {
            OpFrames.WriteReply(w, 1, 0x7f00_0000_1000);
            OpFrames.WriteError(w, 2, ErrorCode.InvalidAddress, "0xdead0000 is not inside any allocation of this lease", failedSeq: 1, failedOp: "launch");
            OpFrames.WriteData(w, 3, 0, [1, 2, 3, 4], last: false);
            OpFrames.WriteData(w, 3, 4, [5, 6], last: true);
            OpFrames.WriteNotice(w, new Notice { Kind = "preempting", Message = "preempted by a request of priority class 'high'", DeadlineUnixMs = 1234 });
            OpFrames.WriteReply(w, 4, 100, 200);
        });
        _broker.Shutdown(SocketShutdown.Send);

        var closed = await Within.Bound(running, "the reader ends");
        Assert.Equal(
            [
                "value #1 7f0000001000 0",
                "error #2 InvalidAddress (#1 launch): 0xdead0000 is not inside any allocation of this lease",
                "data #3 @0 [1,2,3,4]",
                "data #3 @4 [5,6] last",
                "notice preempting at 1234: preempted by a request of priority class 'high'",
                "value #4 64 c8",
            ],
            target.Got);
        Assert.Equal((ErrorCode.Unavailable, $"{Peer} closed the fast-path connection"), (closed.Code, closed.Message));
    }

    [Fact]
    public async Task A_large_data_frame_is_received_straight_into_the_destination_the_target_gives()
    {
        const int Length = 2 << 20;
        var destination = new byte[Length];
        var target = new RecordingTarget { Destinations = (seq, offset, length) => seq == 5 ? destination.AsMemory((int)offset, length) : Memory<byte>.Empty };
        var payload = new byte[Length];
        Random.Shared.NextBytes(payload);
        var running = await StartAsync(target);

        await SendAsync(w =>
        {
            OpFrames.WriteData(w, 5, 0, payload, last: true);
            OpFrames.WriteReply(w, 6, 0);
        });
        _broker.Shutdown(SocketShutdown.Send);
        await Within.Bound(running, "the reader ends");

        Assert.Equal([$"destination #5 @0 {Length}", $"received #5 @0 {Length} last", "value #6 0 0"], target.Got);
        Assert.Equal(payload, destination);
    }

    [Theory]
    [InlineData("magic", "bad frame magic 0x1234 (expected 0x5047): not a GpuPool fast-path peer, or the stream lost its framing")]
    [InlineData("op", "frame #9 is a MemAlloc frame, which a broker does not send")]
    public async Task A_malformed_frame_ends_the_reader_with_an_Internal_error_naming_the_problem(string malformed, string problem)
    {
        var target = new RecordingTarget();
        var running = await StartAsync(target);

        await SendAsync(w =>
        {
            OpFrames.WriteReply(w, 1, 0);
            if (malformed == "magic")
            {
                w.Write<byte>([0x34, 0x12, 64, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
            }
            else
            {
                OpFrames.Write(w, 9, new MemAllocOp(4096));
            }

            OpFrames.WriteReply(w, 2, 0);
        });

        var closed = await Within.Bound(running, "the reader ends");
        Assert.Equal((ErrorCode.Internal, $"{Peer} sent a malformed frame: {problem}"), (closed.Code, closed.Message));
        Assert.Equal(["value #1 0 0"], target.Got);
    }

    /// <summary>How the reader names the broker in what it reports.</summary>
    private const string Peer = "broker b0 at tcp 127.0.0.1:7072";

    private async Task<Task<GpuPoolException>> StartAsync(RecordingTarget target)
    {
        (_broker, _client) = await Loopback.PairAsync();
        return Task.Run(new ReplyReader(GpuPool.Protocol.Transport.FrameWire.Plain(_client), target, Peer).RunAsync);
    }

    private async Task SendAsync(Action<ArrayBufferWriter<byte>> write)
    {
        var writer = new ArrayBufferWriter<byte>();
        write(writer);
        await _broker.SendAsync(writer.WrittenMemory, SocketFlags.None);
    }
}
