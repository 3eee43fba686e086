using System.Net.Sockets;
using GpuPool.Client.Transport.FastPath;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;

namespace GpuPool.Client.Tests.Transport;

/// <summary>
/// A fast-path connection's sender over a real loopback connection, the test reading what it sends as the broker
/// would: frames leave in the order written, a large payload goes after what was batched before it straight from the
/// caller's memory, and a connection that fails fails what is queued and every later send.
/// </summary>
public sealed class FrameSenderTests : IAsyncLifetime
{
    private const int Bulk = 4 << 20;

    private readonly RecordingTarget _target = new();
    private Socket _broker = null!;
    private FrameConnection _connection = null!;

    private FrameSender Sender => _connection.Sender;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        _broker.Dispose();
        await _connection.DisposeAsync();
    }

    [Fact]
    public async Task Ops_sent_in_order_arrive_as_frames_in_order()
    {
        await StartAsync();
        var parameters = new byte[24];
        Random.Shared.NextBytes(parameters);
        var launch = new LaunchOp(0x11, 2, 4, 1, 1, 256, 1, 1, 0);
        var copy = new MemcpyDtoHOp(0x7f00_0000_1000, 16, 2);

        await Sender.SendAsync(1, new MemAllocOp(4096), [], CancellationToken.None);
        await Sender.SendAsync(2, launch, parameters, CancellationToken.None);
        await Sender.SendAsync(3, copy, [], CancellationToken.None);
        await Sender.SendAsync(4, new SynchronizeOp(), [], CancellationToken.None);

        var frames = await Within.Bound(new FrameInbox(_broker).ReadAsync(4), "4 frames have come");
        Assert.Equal([(FrameType.MemAlloc, 1UL), (FrameType.Launch, 2UL), (FrameType.MemcpyDtoH, 3UL), (FrameType.Synchronize, 4UL)], frames.Select(f => (f.Type, f.Seq)));
        Assert.Equal(new MemAllocOp(4096), frames[0].Op<MemAllocOp>());
        Assert.Equal(launch, frames[1].Op<LaunchOp>());
        Assert.Equal(parameters, frames[1].Payload);
        Assert.Equal(copy, frames[2].Op<MemcpyDtoHOp>());
    }

    [Fact]
    public async Task A_bulk_payload_goes_after_the_frames_batched_before_it_and_lets_its_caller_go_once_sent()
    {
        await StartAsync(smallBuffers: true);
        var payload = new byte[Bulk];
        Random.Shared.NextBytes(payload);
        var copy = new MemcpyHtoDOp(0x7f00_0000_2000, 1);

        await Sender.SendAsync(1, new MemAllocOp(Bulk), [], CancellationToken.None);
        await Sender.SendAsync(2, new MemsetOp(0x7f00_0000_2000, 16, 1, 0, 4), [], CancellationToken.None);
        var sent = Sender.SendCopyAsync(3, copy, payload, slot: 0, CancellationToken.None);
        await Sender.SendAsync(4, new SynchronizeOp(), [], CancellationToken.None);
        Assert.False(sent.IsCompleted, "the caller was let go before the broker read the payload, which the connection cannot hold");

        var frames = await Within.Bound(new FrameInbox(_broker).ReadAsync(4), "4 frames have come");
        await Within.Bound(sent.AsTask(), "the caller is let go");

        Assert.Equal([(FrameType.MemAlloc, 1UL), (FrameType.Memset, 2UL), (FrameType.MemcpyHtoD, 3UL), (FrameType.Synchronize, 4UL)], frames.Select(f => (f.Type, f.Seq)));
        Assert.Equal(copy, frames[2].Op<MemcpyHtoDOp>());
        Assert.Equal(payload, frames[2].Payload);
    }

    [Fact]
    public async Task After_the_connection_fails_bulk_sends_in_flight_fail_with_its_error_and_later_sends_throw_it()
    {
        await StartAsync(smallBuffers: true);
        var first = Sender.SendCopyAsync(1, new MemcpyHtoDOp(0x1000, 0), new byte[Bulk], slot: 0, CancellationToken.None).AsTask();
        var queued = Sender.SendCopyAsync(2, new MemcpyHtoDOp(0x1000 + Bulk, 0), new byte[Bulk], slot: 1, CancellationToken.None).AsTask();

        // The broker goes away mid-copy: a reset, not a close.
        _broker.LingerState = new LingerOption(true, 0);
        _broker.Close();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => Within.Bound(queued, "the queued send fails"));
        Assert.Same(_connection.Failure, error);
        Assert.Same(error, await Assert.ThrowsAsync<GpuPoolException>(() => Within.Bound(first, "the send in flight fails")));
        var later = Assert.Throws<GpuPoolException>(() => Sender.SendAsync(3, new SynchronizeOp(), [], CancellationToken.None));
        Assert.Equal((error.Code, error.Message), (later.Code, later.Message));
        Assert.Same(error, later.InnerException);
    }

    private async Task StartAsync(bool smallBuffers = false)
    {
        (_broker, _connection) = await Loopback.ConnectAsync(smallBuffers);
        _connection.Start(_target);
    }
}
