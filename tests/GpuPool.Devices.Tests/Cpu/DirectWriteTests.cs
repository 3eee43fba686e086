using System.Runtime.InteropServices;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// A direct write (bytes received from a socket straight into device memory): offered only when the copy may land
/// now, in its place in the stream's order; what is written is what the device then holds; and the context is not
/// freed while a write is open.
/// </summary>
public sealed class DirectWriteTests
{
    [Fact]
    public async Task An_idle_stream_offers_the_destination_and_what_is_written_there_is_on_the_device()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptr = context.Allocate(4096);

        var target = context.TryBeginDirectWrite(0, ptr + 1024, 2048);
        Assert.NotEqual(0, target);
        unsafe
        {
            new Span<byte>((void*)target, 2048).Fill(0x5A);
        }

        context.EndDirectWrite();
        var back = await Dev.DownloadAsync<byte>(context, ptr + 1024, 2048);
        Assert.Equal(-1, back.AsSpan().IndexOfAnyExcept((byte)0x5A));
    }

    [Fact]
    public async Task A_busy_stream_a_pending_error_or_a_bad_range_offers_nothing()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptr = context.Allocate(4096);

        Assert.Equal(0, context.TryBeginDirectWrite(0, ptr + 4000, 200));
        Assert.Equal(0, context.TryBeginDirectWrite(0, 0xdead0000, 16));
        Assert.Equal(0, context.TryBeginDirectWrite(999, ptr, 16));

        // Work queued ahead on the stream: the bytes must wait their turn, so they cannot be written now.
        using (await SlotGate.CloseAsync(device.Dispatcher))
        {
            var fill = Dev.Function(context, "fill_f32");
            context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(16).F32(1f).Ptr(ptr).ToArray(), Dev.Tag("launch"));
            Assert.Equal(0, context.TryBeginDirectWrite(0, ptr, 16));
        }

        await context.SynchronizeAsync();
        await OfferedAsync(context, ptr);

        // A failure not yet reported: nothing lands before it is.
        context.EnqueueLaunch(0, Dev.Function(context, "fill_f32"), Dev.Dims, new ParamPacker().U64(16).F32(1f).Ptr(0xdead0000).ToArray(), Dev.Tag("launch"));
        await context.SynchronizeAsync();
        Assert.Equal(0, context.TryBeginDirectWrite(0, ptr, 16));
        Assert.NotNull(context.TakeError());
        await OfferedAsync(context, ptr);
    }

    /// <summary>
    /// A stream's worker marks it idle just after the work that a synchronize waits for has finished, so "offered
    /// again" is polled for (briefly) rather than expected at the instant the synchronize returns.
    /// </summary>
    private static async Task OfferedAsync(IDeviceContext context, ulong ptr)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        nint target;
        while ((target = context.TryBeginDirectWrite(0, ptr, 16)) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "an idle stream with no pending error offered no direct write within 10 s");
            await Task.Delay(5);
        }

        context.EndDirectWrite();
        Assert.Equal((nint)ptr, target);
    }

    [Fact]
    public async Task Disposing_the_context_waits_for_an_open_write_and_offers_nothing_after()
    {
        var device = Dev.Device();
        var context = Dev.Context(device);
        var ptr = context.Allocate(1 << 20);
        var target = context.TryBeginDirectWrite(0, ptr, 1 << 20);
        Assert.NotEqual(0, target);

        // Started on a thread of its own, so the test goes on while the dispose waits for the open write.
        var disposed = Task.Run(() => context.DisposeAsync().AsTask());
        await Task.Delay(200);
        Assert.False(disposed.IsCompleted, "the context was freed while a direct write into it was open");

        // The memory is still the lease's: writing it now is safe.
        Marshal.Copy(new byte[1 << 20], 0, target, 1 << 20);
        context.EndDirectWrite();
        await disposed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, context.TryBeginDirectWrite(0, ptr, 16));
    }
}
