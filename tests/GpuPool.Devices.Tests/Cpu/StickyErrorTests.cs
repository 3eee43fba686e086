namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// Sticky errors as in CUDA: the first failure of fire-and-forget work is kept with the op it came from,
/// later device work is skipped, and the next synchronizing call reports it and clears it.
/// </summary>
public sealed class StickyErrorTests
{
    private const int N = 256;

    [Fact]
    public async Task A_launch_with_a_bad_pointer_is_reported_as_InvalidAddress_against_its_op()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var fill = Dev.Function(context, "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(N).F32(1f).Ptr(0xdead0000).ToArray(), new OpTag(41, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal(new OpTag(41, "launch"), error!.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Error.Code);
    }

    [Fact]
    public async Task A_launch_with_the_wrong_parameter_block_size_is_reported_as_InvalidArgument()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var fill = Dev.Function(context, "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(N).F32(1f).ToArray(), new OpTag(42, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal(new OpTag(42, "launch"), error!.Op);
        Assert.Equal(DeviceErrorCode.InvalidArgument, error.Error.Code);
        Assert.Contains("24 bytes", error.Error.Message);
    }

    [Fact]
    public async Task A_launch_of_an_unknown_function_handle_is_reported_as_NotFound()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        context.EnqueueLaunch(0, 987654, Dev.Dims, new byte[24], new OpTag(43, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal(new OpTag(43, "launch"), error!.Op);
        Assert.Equal(DeviceErrorCode.NotFound, error.Error.Code);
    }

    [Fact]
    public async Task A_launch_with_an_empty_block_is_reported_as_InvalidArgument()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        context.EnqueueLaunch(0, Dev.Function(context, "fill_f32"), new LaunchDims(1, 1, 1, 0, 1, 1, 0),
            new ParamPacker().U64(N).F32(1f).Ptr(x).ToArray(), new OpTag(44, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((44UL, DeviceErrorCode.InvalidArgument), (error!.Op.Seq, error.Error.Code));
    }

    [Fact]
    public async Task Work_on_an_unknown_stream_is_reported_as_NotFound()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        context.EnqueueMemset(31337, x, 0, 4, N, new OpTag(45, "memset"));

        var error = context.TakeError();
        Assert.Equal(new OpTag(45, "memset"), error!.Op);
        Assert.Equal(DeviceErrorCode.NotFound, error.Error.Code);
    }

    [Fact]
    public async Task A_memset_with_element_size_3_is_reported_as_InvalidArgument()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        context.EnqueueMemset(0, x, 0, 3, N, new OpTag(46, "memset"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal(new OpTag(46, "memset"), error!.Op);
        Assert.Equal(DeviceErrorCode.InvalidArgument, error.Error.Code);
    }

    [Fact]
    public async Task A_memset_past_the_end_of_its_allocation_is_reported_as_InvalidAddress()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        context.EnqueueMemset(0, x, 0, 4, N + 1, new OpTag(47, "memset"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((47UL, DeviceErrorCode.InvalidAddress), (error!.Op.Seq, error.Error.Code));
        Assert.Contains("by 4 bytes", error.Error.Message);
    }

    [Fact]
    public async Task An_error_found_at_enqueue_surfaces_in_stream_order_not_before_earlier_work()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, 0, x, N, 2f);
            context.EnqueueMemset(0, x, 0, 3, N, new OpTag(48, "memset"));
            await Dev.Settle();

            Assert.Null(context.TakeError());
        }

        await context.SynchronizeAsync();
        Assert.Equal(48UL, context.TakeError()!.Op.Seq);
        Assert.All(await Dev.DownloadAsync<float>(context, x, N), v => Assert.Equal(2f, v));
    }

    [Fact]
    public async Task TakeError_returns_null_when_nothing_failed()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        Dev.Fill(context, 0, context.Allocate(N * 4), N, 1f);
        await context.SynchronizeAsync();

        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task TakeError_clears_the_error()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        context.EnqueueMemset(0, context.Allocate(N * 4), 0, 3, N, Dev.Tag("memset"));
        await context.SynchronizeAsync();

        Assert.NotNull(context.TakeError());
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task Device_work_after_a_failure_is_skipped_until_the_error_is_taken()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        context.EnqueueMemset(0, x, 0, 3, N, new OpTag(50, "memset"));
        context.EnqueueMemset(0, x, 0x01010101, 4, N, new OpTag(51, "memset"));
        await context.SynchronizeAsync();

        Assert.Equal(50UL, context.TakeError()!.Op.Seq);
        Assert.All(await Dev.DownloadAsync<int>(context, x, N), v => Assert.Equal(0, v));
    }

    [Fact]
    public async Task Device_work_on_other_streams_is_skipped_while_an_error_is_pending()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var other = context.CreateStream();
        var x = context.Allocate(N * 4);
        context.EnqueueMemset(0, x, 0, 3, N, new OpTag(52, "memset"));
        await context.SynchronizeAsync();

        Dev.Fill(context, other, x, N, 9f);
        await context.SynchronizeAsync();

        Assert.Equal(52UL, context.TakeError()!.Op.Seq);
        Assert.All(await Dev.DownloadAsync<float>(context, x, N), v => Assert.Equal(0f, v));
    }

    [Fact]
    public async Task Work_runs_again_once_the_error_was_taken()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        context.EnqueueMemset(0, x, 0, 3, N, Dev.Tag("memset"));
        await context.SynchronizeAsync();
        context.TakeError();

        Dev.Fill(context, 0, x, N, 7f);

        Assert.All(await Dev.DownloadAsync<float>(context, x, N), v => Assert.Equal(7f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_copy_to_host_after_a_pending_error_gets_that_error()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        context.EnqueueMemset(0, x, 0, 3, N, new OpTag(53, "memset"));

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, N * 4, sink, new OpTag(54, "memcpy_dtoh"));
        var (data, error) = await Dev.Within(sink.Result);

        Assert.Null(data);
        Assert.Equal(new OpTag(53, "memset"), error!.Op);
        Assert.Equal(DeviceErrorCode.InvalidArgument, error.Error.Code);
    }

    [Fact]
    public async Task A_copy_to_host_that_reported_the_pending_error_has_cleared_it()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        context.EnqueueMemset(0, x, 0, 3, N, Dev.Tag("memset"));
        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, N * 4, sink, Dev.Tag("memcpy_dtoh"));
        await Dev.Within(sink.Result);

        Assert.Null(context.TakeError());
        Assert.Equal(N, (await Dev.DownloadAsync<float>(context, x, N)).Length);
    }

    [Fact]
    public async Task A_copy_to_host_of_a_bad_range_reports_its_own_failure_and_leaves_nothing_sticky()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, (N * 4) + 8, sink, new OpTag(55, "memcpy_dtoh"));
        var (_, error) = await Dev.Within(sink.Result);

        Assert.Equal(new OpTag(55, "memcpy_dtoh"), error!.Op);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Error.Code);
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_copy_to_host_on_an_unknown_stream_reports_NotFound_to_its_sink()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);

        var sink = new CopySink();
        context.EnqueueCopyToHost(31337, x, 16, sink, new OpTag(56, "memcpy_dtoh"));
        var (_, error) = await Dev.Within(sink.Result);

        Assert.Equal((56UL, DeviceErrorCode.NotFound), (error!.Op.Seq, error.Error.Code));
    }

    [Fact]
    public async Task The_first_error_wins()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        context.EnqueueMemset(0, x, 0, 3, N, new OpTag(60, "memset"));
        await context.SynchronizeAsync();

        // A failure that needs no stream to reach it (an unknown stream) must not replace the pending one.
        context.EnqueueMemset(31337, x, 0, 4, N, new OpTag(61, "memset"));

        Assert.Equal(new OpTag(60, "memset"), context.TakeError()!.Op);
    }

    [Fact]
    public async Task Synchronization_and_event_records_still_complete_while_an_error_is_pending()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var evt = context.CreateEvent();
        context.EnqueueMemset(0, context.Allocate(N * 4), 0, 3, N, Dev.Tag("memset"));
        context.EnqueueEventRecord(0, evt, Dev.Tag("event_record"));

        await Dev.Within(context.SynchronizeEventAsync(evt));
        await Dev.Within(context.SynchronizeStreamAsync(0));
        Assert.True(context.QueryEvent(evt));
    }

    [Fact]
    public async Task Work_enqueued_after_dispose_is_reported_as_ContextClosed()
    {
        var device = Dev.Device();
        var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        await context.DisposeAsync();

        var sink = new CopySink();
        context.EnqueueCopyToHost(0, x, 16, sink, new OpTag(62, "memcpy_dtoh"));
        var (_, error) = await Dev.Within(sink.Result);

        Assert.Equal(DeviceErrorCode.ContextClosed, error!.Error.Code);
    }
}
