using GpuPool.Devices.Scheduling;
using static GpuPool.Devices.Tests.Contexts.ContextOps;

namespace GpuPool.Devices.Tests.Contexts;

/// <summary>
/// Sticky errors as in CUDA, on every backend: the first failure of fire-and-forget work is kept with the op it came
/// from, later device work of the context is skipped, and the next synchronizing call takes it, after which work runs.
/// </summary>
public abstract class StickyErrorSpecs((IDevice Device, FairShareDispatcher Dispatcher) target) : ContextSpecs(target)
{
    private const int N = 256;

    [Fact]
    public async Task Work_after_a_failed_launch_is_skipped_until_the_error_is_taken()
    {
        await using var context = Context();
        var y = context.Allocate(N * 4);

        var bad = Tag("launch");
        Fill(context, 0, y, N + 1, 1f, bad);
        Fill(context, 0, y, N, 7f);
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();
        var skipped = await DownloadAsync<float>(context, y, N);
        Fill(context, 0, y, N, 9f);
        var after = await DownloadAsync<float>(context, y, N);

        Assert.Equal(bad, error?.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error?.Error.Code);
        Assert.All(skipped, v => Assert.Equal(0f, v));
        Assert.All(after, v => Assert.Equal(9f, v));
    }

    [Fact]
    public async Task The_error_is_taken_once()
    {
        await using var context = Context();
        FailingMemset(context, 0, context.Allocate(N * 4), Tag("memset"));
        await Within(context.SynchronizeAsync());

        Assert.NotNull(context.TakeError());
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task Nothing_is_taken_when_nothing_failed()
    {
        await using var context = Context();
        Fill(context, 0, context.Allocate(N * 4), N, 1f);
        await Within(context.SynchronizeAsync());

        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_launch_with_a_bad_pointer_is_reported_as_InvalidAddress_against_its_op()
    {
        await using var context = Context();

        context.EnqueueLaunch(0, Function(context, "fill_f32"), Dims, FillParams(N, 1f, 0xdead0000), new OpTag(41, "launch"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal(new OpTag(41, "launch"), error?.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error?.Error.Code);
        Assert.EndsWith("0xdead0000 is not inside any allocation of this lease", error?.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_launch_with_the_wrong_parameter_block_size_is_reported_as_InvalidArgument_naming_the_signature()
    {
        await using var context = Context();

        context.EnqueueLaunch(0, Function(context, "fill_f32"), Dims, new byte[12], new OpTag(42, "launch"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal(new OpTag(42, "launch"), error?.Op);
        Assert.Equal(DeviceErrorCode.InvalidArgument, error?.Error.Code);
        Assert.Equal("kernel fill_f32 takes 24 bytes of parameters (fill_f32(n:u64, value:f32, y:ptr)), but the launch passed 12", error?.Error.Message);
    }

    [Fact]
    public async Task A_launch_of_an_unknown_function_handle_is_reported_as_NotFound()
    {
        await using var context = Context();

        context.EnqueueLaunch(0, 987654, Dims, new byte[24], new OpTag(43, "launch"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal((43UL, DeviceErrorCode.NotFound), (error?.Op.Seq, error?.Error.Code));
    }

    [Theory]
    [InlineData(1u, 0u, "grid and block dimensions must all be at least 1")]
    [InlineData(1u, 1025u, "past the device's limits (1024 threads per block")]
    [InlineData(65536u, 32u, "past the device's limits")]
    public async Task A_launch_shape_the_device_cannot_run_is_reported_as_InvalidArgument(uint gridY, uint blockX, string message)
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);

        context.EnqueueLaunch(0, Function(context, "fill_f32"), new LaunchDims(1, gridY, 1, blockX, 1, 1, 0), FillParams(N, 1f, x), new OpTag(44, "launch"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal((44UL, DeviceErrorCode.InvalidArgument), (error?.Op.Seq, error?.Error.Code));
        Assert.Contains(message, error?.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Work_on_an_unknown_stream_is_reported_as_NotFound_at_once()
    {
        await using var context = Context();

        context.EnqueueMemset(31337, context.Allocate(N * 4), 0, 4, N, new OpTag(45, "memset"));
        var error = context.TakeError();

        Assert.Equal((45UL, DeviceErrorCode.NotFound), (error?.Op.Seq, error?.Error.Code));
    }

    [Fact]
    public async Task A_memset_with_element_size_3_is_reported_as_InvalidArgument()
    {
        await using var context = Context();

        FailingMemset(context, 0, context.Allocate(N * 4), new OpTag(46, "memset"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal((46UL, DeviceErrorCode.InvalidArgument), (error?.Op.Seq, error?.Error.Code));
    }

    [Fact]
    public async Task A_memset_past_the_end_of_its_allocation_is_reported_as_InvalidAddress()
    {
        await using var context = Context();

        context.EnqueueMemset(0, context.Allocate(N * 4), 0, 4, N + 1, new OpTag(47, "memset"));
        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal((47UL, DeviceErrorCode.InvalidAddress), (error?.Op.Seq, error?.Error.Code));
        Assert.Contains("memset destination", error?.Error.Message, StringComparison.Ordinal);
        Assert.Contains("by 4 bytes", error?.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_error_found_at_enqueue_surfaces_in_stream_order_not_before_earlier_work()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);

        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 2f);
            FailingMemset(context, 0, x, new OpTag(48, "memset"));
            await Settle();

            Assert.Null(context.TakeError());
        }

        await Within(context.SynchronizeAsync());
        Assert.Equal(48UL, context.TakeError()?.Op.Seq);
        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(2f, v));
    }

    [Fact]
    public async Task Device_work_after_a_failure_is_skipped_until_the_error_is_taken()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);

        FailingMemset(context, 0, x, new OpTag(50, "memset"));
        context.EnqueueMemset(0, x, 0x01010101, 4, N, new OpTag(51, "memset"));
        await Within(context.SynchronizeAsync());

        Assert.Equal(50UL, context.TakeError()?.Op.Seq);
        Assert.All(await DownloadAsync<int>(context, x, N), v => Assert.Equal(0, v));
    }

    [Fact]
    public async Task Device_work_on_other_streams_is_skipped_while_an_error_is_pending()
    {
        await using var context = Context();
        var other = context.CreateStream();
        var x = context.Allocate(N * 4);
        FailingMemset(context, 0, x, new OpTag(52, "memset"));
        await Within(context.SynchronizeAsync());

        Fill(context, other, x, N, 9f);
        await Within(context.SynchronizeAsync());

        Assert.Equal(52UL, context.TakeError()?.Op.Seq);
        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(0f, v));
    }

    [Fact]
    public async Task A_copy_to_host_after_a_pending_error_reports_that_error_and_takes_it()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        FailingMemset(context, 0, x, new OpTag(53, "memset"));

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, N * 4, sink, new OpTag(54, "memcpy_dtoh"));
        var (data, error) = await Within(sink.Result);

        Assert.Null(data);
        Assert.Equal(new OpTag(53, "memset"), error?.Op);
        Assert.Equal(DeviceErrorCode.InvalidArgument, error?.Error.Code);
        Assert.Null(context.TakeError());
        Assert.Equal(N, (await DownloadAsync<float>(context, x, N)).Length);
    }

    [Fact]
    public async Task A_copy_to_host_of_a_bad_range_reports_its_own_failure_and_leaves_nothing_sticky()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, (N * 4) + 8, sink, new OpTag(55, "memcpy_dtoh"));
        var (_, error) = await Within(sink.Result);

        Assert.Equal(new OpTag(55, "memcpy_dtoh"), error?.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error?.Error.Code);
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_copy_to_host_on_an_unknown_stream_reports_NotFound_to_its_sink()
    {
        await using var context = Context();

        var sink = new CopySink();
        context.EnqueueCopyToHost(31337, context.Allocate(N * 4), 16, sink, new OpTag(56, "memcpy_dtoh"));
        var (_, error) = await Within(sink.Result);

        Assert.Equal((56UL, DeviceErrorCode.NotFound), (error?.Op.Seq, error?.Error.Code));
    }

    [Fact]
    public async Task The_first_error_wins()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        FailingMemset(context, 0, x, new OpTag(60, "memset"));
        context.EnqueueFailure(0, new OpTag(61, "memcpy_htod"), new DeviceException(DeviceErrorCode.TransferFailed, "the bytes stopped arriving"));
        await Within(context.SynchronizeAsync());

        // A failure that needs no stream to reach it (an unknown stream) must not replace the pending one either.
        context.EnqueueMemset(31337, x, 0, 4, N, new OpTag(62, "memset"));

        Assert.Equal(new OpTag(60, "memset"), context.TakeError()?.Op);
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_queued_failure_becomes_the_error_when_its_stream_reaches_it()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);

        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 3f);
            context.EnqueueFailure(0, new OpTag(63, "memcpy_htod"), new DeviceException(DeviceErrorCode.TransferFailed, "the bytes stopped arriving"));
            await Settle();

            Assert.Null(context.TakeError());
        }

        await Within(context.SynchronizeAsync());
        var error = context.TakeError();

        Assert.Equal((63UL, DeviceErrorCode.TransferFailed), (error?.Op.Seq, error?.Error.Code));
        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(3f, v));
    }

    [Fact]
    public async Task Synchronization_and_event_records_still_complete_while_an_error_is_pending()
    {
        await using var context = Context();
        var evt = context.CreateEvent();
        FailingMemset(context, 0, context.Allocate(N * 4), Tag("memset"));
        context.EnqueueEventRecord(0, evt, Tag("event_record"));

        await Within(context.SynchronizeEventAsync(evt));
        await Within(context.SynchronizeStreamAsync(0));
        Assert.True(context.QueryEvent(evt));
    }

    [Fact]
    public async Task Work_enqueued_after_dispose_is_reported_as_ContextClosed()
    {
        var context = Context();
        var x = context.Allocate(N * 4);
        await context.DisposeAsync();

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, 16, sink, new OpTag(64, "memcpy_dtoh"));
        context.EnqueueMemset(0, x, 0, 4, 4, new OpTag(65, "memset"));
        var (_, copy) = await Within(sink.Result);
        var memset = context.TakeError();

        Assert.Equal(DeviceErrorCode.ContextClosed, copy?.Error.Code);
        Assert.Equal((65UL, DeviceErrorCode.ContextClosed), (memset?.Op.Seq, memset?.Error.Code));
        Assert.Equal(DeviceErrorCode.ContextClosed, Assert.Throws<DeviceException>(() => context.Allocate(16)).Code);
    }
}
