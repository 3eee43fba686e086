namespace GpuPool.Devices.Tests.Cpu;

/// <summary>Streams and events with CUDA's semantics: in order per stream, cross-stream order only through events.</summary>
public sealed class StreamAndEventTests
{
    private const int N = 4096;

    [Fact]
    public async Task Work_on_one_stream_runs_in_the_order_it_was_enqueued()
    {
        var device = Dev.Device(slots: 4);
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        var ones = Dev.Upload(context, Enumerable.Repeat(1f, N).ToArray(), stream);
        var x = context.Allocate(N * 4);

        // x = ((((0 + 1) * 2 + 1) * 2 + 1) ...): any reordering of the 40 steps gives another number.
        Dev.Fill(context, stream, x, N, 0f);
        for (var i = 0; i < 20; i++)
        {
            Dev.Axpy(context, stream, 1f, ones, x, N);
            Dev.Scale(context, stream, 2f, x, N);
        }

        var result = await Dev.DownloadAsync<float>(context, x, N, stream);

        Assert.All(result, v => Assert.Equal((1 << 21) - 2f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task StreamWaitEvent_makes_a_stream_wait_for_work_recorded_on_another()
    {
        // One slot, held: stream A's chain and stream B's copy both queue behind the gate, and without the
        // wait B's copy would run right after A's first step.
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        ulong a = context.CreateStream(), b = context.CreateStream();
        var ones = Dev.Upload(context, Enumerable.Repeat(1f, N).ToArray(), a);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4);
        var done = context.CreateEvent();
        await context.SynchronizeAsync();

        using (await SlotGate.CloseAsync(device))
        {
            for (var i = 0; i < 50; i++)
            {
                Dev.Axpy(context, a, 1f, ones, x, N);
            }

            context.EnqueueEventRecord(a, done, Dev.Tag("event_record"));
            context.EnqueueStreamWaitEvent(b, done, Dev.Tag("stream_wait_event"));
            context.EnqueueCopyDeviceToDevice(b, y, x, N * 4, Dev.Tag("memcpy_dtod"));
            await Dev.Settle();
        }

        var copied = await Dev.DownloadAsync<float>(context, y, N, b);

        Assert.All(copied, v => Assert.Equal(50f, v));
    }

    [Fact]
    public async Task A_stream_waiting_on_an_event_does_not_run_before_the_event_completes()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        ulong a = context.CreateStream(), b = context.CreateStream();
        var x = context.Allocate(N * 4);
        ulong done = context.CreateEvent(), after = context.CreateEvent();

        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, a, x, N, 1f);
            context.EnqueueEventRecord(a, done, Dev.Tag("event_record"));
            context.EnqueueStreamWaitEvent(b, done, Dev.Tag("stream_wait_event"));
            context.EnqueueEventRecord(b, after, Dev.Tag("event_record"));
            await Dev.Settle();

            Assert.False(context.QueryEvent(after));
        }

        await Dev.Within(context.SynchronizeEventAsync(after));
        Assert.True(context.QueryEvent(done));
    }

    [Fact]
    public async Task An_event_never_recorded_counts_as_complete()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var evt = context.CreateEvent();

        Assert.True(context.QueryEvent(evt));
        await Dev.Within(context.SynchronizeEventAsync(evt));
    }

    [Fact]
    public async Task Waiting_on_an_event_never_recorded_does_not_block_the_stream()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        context.EnqueueStreamWaitEvent(stream, evt, Dev.Tag("stream_wait_event"));
        Dev.Fill(context, stream, x, N, 3f);

        Assert.All(await Dev.DownloadAsync<float>(context, x, N, stream), v => Assert.Equal(3f, v));
    }

    [Fact]
    public async Task QueryEvent_is_false_until_the_stream_reaches_the_record()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(0, evt, Dev.Tag("event_record"));
            await Dev.Settle();

            Assert.False(context.QueryEvent(evt));
        }

        await Dev.Within(context.SynchronizeEventAsync(evt));
        Assert.True(context.QueryEvent(evt));
    }

    [Fact]
    public async Task EventElapsedMilliseconds_is_not_negative_once_both_events_completed()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        ulong start = context.CreateEvent(), end = context.CreateEvent();

        context.EnqueueEventRecord(0, start, Dev.Tag("event_record"));
        Dev.Fill(context, 0, x, N, 1f);
        context.EnqueueEventRecord(0, end, Dev.Tag("event_record"));
        await Dev.Within(context.SynchronizeEventAsync(end));

        var ms = context.EventElapsedMilliseconds(start, end);
        Assert.True(ms >= 0, $"elapsed {ms} ms");
    }

    [Fact]
    public async Task EventElapsedMilliseconds_fails_with_NotReady_while_an_event_is_pending()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        ulong start = context.CreateEvent(), end = context.CreateEvent();

        using (await SlotGate.CloseAsync(device))
        {
            context.EnqueueEventRecord(0, start, Dev.Tag("event_record"));
            Dev.Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(0, end, Dev.Tag("event_record"));
            await Dev.Within(context.SynchronizeEventAsync(start));

            var e = Assert.Throws<DeviceException>(() => context.EventElapsedMilliseconds(start, end));
            Assert.Equal(DeviceErrorCode.NotReady, e.Code);
        }

        await context.SynchronizeAsync();
    }

    [Fact]
    public async Task EventElapsedMilliseconds_fails_with_InvalidArgument_for_an_event_never_recorded()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        ulong start = context.CreateEvent(), end = context.CreateEvent();
        context.EnqueueEventRecord(0, start, Dev.Tag("event_record"));
        await context.SynchronizeAsync();

        var e = Assert.Throws<DeviceException>(() => context.EventElapsedMilliseconds(start, end));

        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
    }

    [Fact]
    public async Task SynchronizeAsync_waits_for_the_work_of_every_stream()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        var streams = new[] { 0UL, context.CreateStream(), context.CreateStream() };
        var events = streams.Select(_ => context.CreateEvent()).ToArray();

        Task sync;
        using (await SlotGate.CloseAsync(device))
        {
            for (var i = 0; i < streams.Length; i++)
            {
                Dev.Fill(context, streams[i], x, N, i);
                context.EnqueueEventRecord(streams[i], events[i], Dev.Tag("event_record"));
            }

            sync = context.SynchronizeAsync();
            await Dev.Settle();
            Assert.False(sync.IsCompleted);
        }

        await Dev.Within(sync);
        Assert.All(events, e => Assert.True(context.QueryEvent(e)));
    }

    [Fact]
    public async Task SynchronizeStreamAsync_does_not_wait_for_other_streams()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var x = context.Allocate(N * 4);
        ulong busy = context.CreateStream(), idle = context.CreateStream();

        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, busy, x, N, 1f);
            await Dev.Within(context.SynchronizeStreamAsync(idle));
        }

        await context.SynchronizeAsync();
    }

    [Fact]
    public async Task Destroying_the_default_stream_fails()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var e = Assert.Throws<DeviceException>(() => context.DestroyStream(0));

        Assert.Equal(DeviceErrorCode.NotFound, e.Code);
        Assert.Contains("default stream", e.Message);
    }

    [Fact]
    public async Task A_destroyed_stream_cannot_take_more_work()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        context.DestroyStream(stream);

        context.EnqueueMemset(stream, context.Allocate(64), 0, 4, 16, new OpTag(77, "memset"));

        var error = context.TakeError();
        Assert.Equal((77UL, DeviceErrorCode.NotFound), (error!.Op.Seq, error.Error.Code));
    }

    [Fact]
    public async Task Work_queued_on_a_destroyed_stream_still_runs()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);

        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, stream, x, N, 5f);
            context.DestroyStream(stream);
        }

        await context.SynchronizeAsync();
        Assert.All(await Dev.DownloadAsync<float>(context, x, N), v => Assert.Equal(5f, v));
    }

    [Fact]
    public async Task FreeAsync_waits_for_queued_work_that_uses_the_memory()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        Task free;
        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, stream, x, N, 1f);
            context.EnqueueEventRecord(stream, evt, Dev.Tag("event_record"));
            free = context.FreeAsync(x).AsTask();
            await Dev.Settle();
            Assert.False(free.IsCompleted);
        }

        await Dev.Within(free);
        Assert.True(context.QueryEvent(evt));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task FreeAsync_waits_for_work_queued_on_a_stream_destroyed_since()
    {
        var device = Dev.Device(slots: 1);
        await using var context = Dev.Context(device);
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        Task free;
        using (await SlotGate.CloseAsync(device))
        {
            Dev.Fill(context, stream, x, N, 1f);
            context.EnqueueEventRecord(stream, evt, Dev.Tag("event_record"));
            context.DestroyStream(stream);
            free = context.FreeAsync(x).AsTask();
            await Dev.Settle();
            Assert.False(free.IsCompleted);
        }

        await Dev.Within(free);
        Assert.True(context.QueryEvent(evt));
        Assert.Null(context.TakeError());
    }
}
