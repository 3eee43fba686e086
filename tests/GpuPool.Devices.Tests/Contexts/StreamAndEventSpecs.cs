using GpuPool.Devices.Scheduling;
using static GpuPool.Devices.Tests.Contexts.ContextOps;

namespace GpuPool.Devices.Tests.Contexts;

/// <summary>
/// Streams and events with CUDA's semantics, on every backend: in order per stream, across streams only through events;
/// synchronize waits for the work queued so far, freeing and closing wait for it too.
/// </summary>
public abstract class StreamAndEventSpecs((IDevice Device, FairShareDispatcher Dispatcher) target) : ContextSpecs(target)
{
    private const int N = 4096;

    [Fact]
    public async Task Work_on_one_stream_runs_in_the_order_it_was_enqueued()
    {
        await using var context = Context();
        var stream = context.CreateStream();
        ulong x = context.Allocate(N * 4), sum = context.Allocate(N * 4);

        // sum = 1 + 2 + ... + 20 only if every add sees the fill just before it and nothing after it.
        context.EnqueueMemset(stream, sum, 0, 4, N, Tag("memset"));
        for (var i = 1; i <= 20; i++)
        {
            Fill(context, stream, x, N, i);
            Axpy(context, stream, 1f, x, sum, N);
        }

        var result = await DownloadAsync<float>(context, sum, N, stream);

        Assert.All(result, v => Assert.Equal(210f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task StreamWaitEvent_makes_a_stream_wait_for_work_recorded_on_another()
    {
        await using var context = Context();
        ulong a = context.CreateStream(), b = context.CreateStream();
        var ones = Upload(context, Enumerable.Repeat(1f, N).ToArray(), a);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4);
        var done = context.CreateEvent();
        await Within(context.SynchronizeAsync());

        // Stream a's chain queues behind the gate; without the wait, b's copy would run before a's first step.
        using (await HoldSlotsAsync())
        {
            for (var i = 0; i < 50; i++)
            {
                Axpy(context, a, 1f, ones, x, N);
            }

            context.EnqueueEventRecord(a, done, Tag("event_record"));
            context.EnqueueStreamWaitEvent(b, done, Tag("stream_wait_event"));
            context.EnqueueCopyDeviceToDevice(b, y, x, N * 4, Tag("memcpy_dtod"));
            await Settle();
        }

        var copied = await DownloadAsync<float>(context, y, N, b);

        Assert.All(copied, v => Assert.Equal(50f, v));
    }

    [Theory]
    [InlineData("memcpy_dtod")]
    [InlineData("memcpy_dtoh")]
    [InlineData("event_record")]
    [InlineData("stream_synchronize")]
    public async Task The_default_stream_waits_for_the_work_queued_before_it_on_a_blocking_stream(string op)
    {
        await using var context = Context();
        var a = context.CreateStream();
        var ones = Upload(context, Enumerable.Repeat(1f, N).ToArray(), a);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4);
        var evt = context.CreateEvent();
        await Within(context.SynchronizeAsync());

        // a's chain queues behind the gate; stream 0's op, queued after it, must not run (or complete) before it. A copy
        // takes no compute slot, so without the legacy order it would run at once.
        Task<float[]>? downloaded = null;
        Task? waited = null;
        using (await HoldSlotsAsync())
        {
            for (var i = 0; i < 50; i++)
            {
                Axpy(context, a, 1f, ones, x, N);
            }

            switch (op)
            {
                case "memcpy_dtod":
                    context.EnqueueCopyDeviceToDevice(0, y, x, N * 4, Tag(op));
                    break;
                case "memcpy_dtoh":
                    downloaded = DownloadAsync<float>(context, x, N);
                    break;
                case "event_record":
                    context.EnqueueEventRecord(0, evt, Tag(op));
                    break;
                default:
                    waited = context.SynchronizeStreamAsync(0).AsTask();
                    break;
            }

            await Settle();
            Assert.False(downloaded?.IsCompleted ?? false);
            Assert.False(waited?.IsCompleted ?? false);
            if (op == "event_record")
            {
                Assert.False(context.QueryEvent(evt));
            }
        }

        if (waited is not null)
        {
            await Within(waited);
        }

        var seen = downloaded is not null ? await downloaded : await DownloadAsync<float>(context, op == "memcpy_dtod" ? y : x, N);
        Assert.All(seen, v => Assert.Equal(50f, v));
        Assert.True(context.QueryEvent(evt));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_blocking_stream_waits_for_the_work_queued_before_it_on_the_default_stream()
    {
        await using var context = Context();
        ulong a = context.CreateStream(), b = context.CreateStream();
        var ones = Upload(context, Enumerable.Repeat(1f, N).ToArray(), 0);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4), z = context.Allocate(N * 4);
        var evt = context.CreateEvent();
        await Within(context.SynchronizeAsync());

        using (await HoldSlotsAsync())
        {
            for (var i = 0; i < 50; i++)
            {
                Axpy(context, 0, 1f, ones, x, N);
            }

            // Two blocking streams wait for the same work of stream 0; a record takes no slot, so only that order holds it.
            context.EnqueueEventRecord(a, evt, Tag("event_record"));
            context.EnqueueCopyDeviceToDevice(a, y, x, N * 4, Tag("memcpy_dtod"));
            context.EnqueueCopyDeviceToDevice(b, z, x, N * 4, Tag("memcpy_dtod"));
            var synced = context.SynchronizeStreamAsync(a).AsTask();
            await Settle();
            Assert.False(context.QueryEvent(evt));
            Assert.False(synced.IsCompleted);
        }

        Assert.All(await DownloadAsync<float>(context, y, N, a), v => Assert.Equal(50f, v));
        Assert.All(await DownloadAsync<float>(context, z, N, b), v => Assert.Equal(50f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_non_blocking_stream_runs_beside_the_default_stream()
    {
        await using var context = Context();
        var free = context.CreateStream(StreamOrder.NonBlocking);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4);
        ulong onFree = context.CreateEvent(), onDefault = context.CreateEvent();
        await Within(context.SynchronizeAsync());

        // Each stream's record (which takes no slot) completes while the other's launch is held.
        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(free, onFree, Tag("event_record"));
            await Within(context.SynchronizeStreamAsync(free));
            Assert.True(context.QueryEvent(onFree));
        }

        await Within(context.SynchronizeAsync());
        using (await HoldSlotsAsync())
        {
            Fill(context, free, y, N, 2f);
            context.EnqueueEventRecord(0, onDefault, Tag("event_record"));
            await Within(context.SynchronizeEventAsync(onDefault));
        }

        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(1f, v));
        Assert.All(await DownloadAsync<float>(context, y, N, free), v => Assert.Equal(2f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task The_default_stream_waits_for_a_destroyed_blocking_streams_queued_work()
    {
        await using var context = Context();
        var a = context.CreateStream();
        var ones = Upload(context, Enumerable.Repeat(1f, N).ToArray(), a);
        ulong x = context.Allocate(N * 4), y = context.Allocate(N * 4);
        var evt = context.CreateEvent();
        await Within(context.SynchronizeAsync());

        using (await HoldSlotsAsync())
        {
            for (var i = 0; i < 20; i++)
            {
                Axpy(context, a, 1f, ones, x, N);
            }

            context.DestroyStream(a);
            context.EnqueueEventRecord(0, evt, Tag("event_record"));
            context.EnqueueCopyDeviceToDevice(0, y, x, N * 4, Tag("memcpy_dtod"));
            await Settle();
            Assert.False(context.QueryEvent(evt));
        }

        Assert.All(await DownloadAsync<float>(context, y, N), v => Assert.Equal(20f, v));
        Assert.Null(context.TakeError());
    }

    [Theory]
    [InlineData("stream_wait_event")]
    [InlineData("event_synchronize")]
    public async Task A_wait_is_for_the_record_as_of_its_call_not_a_later_one(string wait)
    {
        await using var context = Context();
        ulong a = context.CreateStream(), b = context.CreateStream(), idle = context.CreateStream();
        var x = context.Allocate(N * 4);
        ulong evt = context.CreateEvent(), after = context.CreateEvent();

        Task waited;
        using (await HoldSlotsAsync())
        {
            Fill(context, a, x, N, 1f);
            context.EnqueueEventRecord(a, evt, Tag("event_record"));
            if (wait == "stream_wait_event")
            {
                context.EnqueueStreamWaitEvent(b, evt, Tag("stream_wait_event"));
                context.EnqueueEventRecord(b, after, Tag("event_record"));
                waited = context.SynchronizeEventAsync(after).AsTask();
            }
            else
            {
                waited = context.SynchronizeEventAsync(evt).AsTask();
            }

            // Recorded again on a stream with nothing before it: that record completes at once, and is the event's latest.
            context.EnqueueEventRecord(idle, evt, Tag("event_record"));
            await Within(context.SynchronizeStreamAsync(idle));
            await Settle();

            Assert.True(context.QueryEvent(evt));
            Assert.False(waited.IsCompleted);
        }

        await Within(waited);
        Assert.All(await DownloadAsync<float>(context, x, N, a), v => Assert.Equal(1f, v));
    }

    [Fact]
    public async Task Streams_that_hand_work_to_each_other_through_events_see_every_step()
    {
        const int steps = 100;
        await using var context = Context();
        ulong a = context.CreateStream(), b = context.CreateStream();
        ulong x = context.Allocate(N * 4), sum = context.Allocate(N * 4);
        ulong produced = context.CreateEvent(), consumed = context.CreateEvent();

        // a writes step i only once b has added step i - 1 in; b adds only once a has written step i. A wait that let
        // either stream past the record it was queued behind would add some step twice, or miss one.
        for (var i = 1; i <= steps; i++)
        {
            context.EnqueueStreamWaitEvent(a, consumed, Tag("stream_wait_event"));
            Fill(context, a, x, N, i);
            context.EnqueueEventRecord(a, produced, Tag("event_record"));
            context.EnqueueStreamWaitEvent(b, produced, Tag("stream_wait_event"));
            Axpy(context, b, 1f, x, sum, N);
            context.EnqueueEventRecord(b, consumed, Tag("event_record"));
        }

        var result = await DownloadAsync<float>(context, sum, N, b);

        Assert.All(result, v => Assert.Equal(steps * (steps + 1) / 2f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_launch_keeps_its_parameter_block_when_the_caller_reuses_the_memory_at_once()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        var block = FillParams(N, 5f, x);

        using (await HoldSlotsAsync())
        {
            context.EnqueueLaunch(0, Function(context, "fill_f32"), Dims, block, Tag("launch"));
            FillParams(N, 6f, x).CopyTo(block, 0);
        }

        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(5f, v));
    }

    [Theory]
    [InlineData("context")]
    [InlineData("stream")]
    [InlineData("event")]
    public async Task A_cancelled_synchronize_ends_the_wait_not_the_work(string what)
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();
        using var cancellation = new CancellationTokenSource();

        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 4f);
            context.EnqueueEventRecord(0, evt, Tag("event_record"));
            var sync = (what switch
            {
                "context" => context.SynchronizeAsync(cancellation.Token),
                "stream" => context.SynchronizeStreamAsync(0, cancellation.Token),
                _ => context.SynchronizeEventAsync(evt, cancellation.Token),
            }).AsTask();
            await Settle();
            Assert.False(sync.IsCompleted);

            await cancellation.CancelAsync();

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Within(sync));
            Assert.False(context.QueryEvent(evt));
        }

        await Within(context.SynchronizeEventAsync(evt));
        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(4f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_stream_waiting_on_an_event_does_not_run_before_the_event_completes()
    {
        await using var context = Context();
        ulong a = context.CreateStream(), b = context.CreateStream();
        var x = context.Allocate(N * 4);
        ulong done = context.CreateEvent(), after = context.CreateEvent();

        using (await HoldSlotsAsync())
        {
            Fill(context, a, x, N, 1f);
            context.EnqueueEventRecord(a, done, Tag("event_record"));
            context.EnqueueStreamWaitEvent(b, done, Tag("stream_wait_event"));
            context.EnqueueEventRecord(b, after, Tag("event_record"));
            await Settle();

            Assert.False(context.QueryEvent(after));
        }

        await Within(context.SynchronizeEventAsync(after));
        Assert.True(context.QueryEvent(done));
    }

    [Fact]
    public async Task An_event_never_recorded_counts_as_complete_and_does_not_block_a_stream_waiting_on_it()
    {
        await using var context = Context();
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        context.EnqueueStreamWaitEvent(stream, evt, Tag("stream_wait_event"));
        Fill(context, stream, x, N, 3f);

        Assert.True(context.QueryEvent(evt));
        await Within(context.SynchronizeEventAsync(evt));
        Assert.All(await DownloadAsync<float>(context, x, N, stream), v => Assert.Equal(3f, v));
    }

    [Fact]
    public async Task QueryEvent_is_false_until_the_stream_reaches_the_record()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(0, evt, Tag("event_record"));
            await Settle();

            Assert.False(context.QueryEvent(evt));
        }

        await Within(context.SynchronizeEventAsync(evt));
        Assert.True(context.QueryEvent(evt));
    }

    [Fact]
    public async Task Elapsed_time_between_two_completed_records_is_not_negative()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        ulong start = context.CreateEvent(), end = context.CreateEvent();

        context.EnqueueEventRecord(0, start, Tag("event_record"));
        Fill(context, 0, x, N, 1f);
        context.EnqueueEventRecord(0, end, Tag("event_record"));
        await Within(context.SynchronizeEventAsync(end));

        var ms = context.EventElapsedMilliseconds(start, end);
        Assert.True(ms >= 0, $"elapsed {ms} ms");
    }

    [Fact]
    public async Task Elapsed_time_fails_with_NotReady_while_a_record_is_queued()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        ulong start = context.CreateEvent(), end = context.CreateEvent();

        using (await HoldSlotsAsync())
        {
            context.EnqueueEventRecord(0, start, Tag("event_record"));
            Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(0, end, Tag("event_record"));
            await Within(context.SynchronizeEventAsync(start));

            var e = Assert.Throws<DeviceException>(() => context.EventElapsedMilliseconds(start, end));
            Assert.Equal(DeviceErrorCode.NotReady, e.Code);
        }

        await Within(context.SynchronizeAsync());
    }

    [Fact]
    public async Task Elapsed_time_fails_with_InvalidArgument_for_an_event_never_recorded()
    {
        await using var context = Context();
        ulong start = context.CreateEvent(), end = context.CreateEvent();
        context.EnqueueEventRecord(0, start, Tag("event_record"));
        await Within(context.SynchronizeAsync());

        var e = Assert.Throws<DeviceException>(() => context.EventElapsedMilliseconds(start, end));

        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
        Assert.Equal("both events must have been recorded before their elapsed time can be read", e.Message);
    }

    [Fact]
    public async Task An_event_destroyed_while_its_record_is_queued_fails_nothing_and_is_gone()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        using (await HoldSlotsAsync())
        {
            Fill(context, 0, x, N, 1f);
            context.EnqueueEventRecord(0, evt, Tag("event_record"));
            context.DestroyEvent(evt);
        }

        await Within(context.SynchronizeAsync());

        Assert.Null(context.TakeError());
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.QueryEvent(evt)).Code);
    }

    [Fact]
    public async Task SynchronizeAsync_waits_for_the_work_of_every_stream()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        var streams = new[] { 0UL, context.CreateStream(), context.CreateStream() };
        var events = streams.Select(_ => context.CreateEvent()).ToArray();

        Task sync;
        using (await HoldSlotsAsync())
        {
            for (var i = 0; i < streams.Length; i++)
            {
                Fill(context, streams[i], x, N, i);
                context.EnqueueEventRecord(streams[i], events[i], Tag("event_record"));
            }

            sync = context.SynchronizeAsync().AsTask();
            await Settle();
            Assert.False(sync.IsCompleted);
        }

        await Within(sync);
        Assert.All(events, e => Assert.True(context.QueryEvent(e)));
    }

    [Fact]
    public async Task SynchronizeStreamAsync_does_not_wait_for_other_streams()
    {
        await using var context = Context();
        var x = context.Allocate(N * 4);
        ulong busy = context.CreateStream(), idle = context.CreateStream();

        using (await HoldSlotsAsync())
        {
            Fill(context, busy, x, N, 1f);
            await Within(context.SynchronizeStreamAsync(idle));
        }

        await Within(context.SynchronizeAsync());
    }

    [Fact]
    public async Task Destroying_the_default_stream_fails()
    {
        await using var context = Context();

        var e = Assert.Throws<DeviceException>(() => context.DestroyStream(0));

        Assert.Equal(DeviceErrorCode.NotFound, e.Code);
        Assert.Contains("default stream", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_destroyed_stream_cannot_take_more_work()
    {
        await using var context = Context();
        var stream = context.CreateStream();
        context.DestroyStream(stream);

        context.EnqueueMemset(stream, context.Allocate(64), 0, 4, 16, new OpTag(77, "memset"));
        var error = context.TakeError();

        Assert.Equal((77UL, DeviceErrorCode.NotFound), (error?.Op.Seq, error?.Error.Code));
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.DestroyStream(stream)).Code);
    }

    [Fact]
    public async Task Work_queued_on_a_destroyed_stream_still_runs()
    {
        await using var context = Context();
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);

        using (await HoldSlotsAsync())
        {
            Fill(context, stream, x, N, 5f);
            context.DestroyStream(stream);
        }

        await Within(context.SynchronizeAsync());
        Assert.All(await DownloadAsync<float>(context, x, N), v => Assert.Equal(5f, v));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FreeAsync_waits_for_queued_work_that_uses_the_memory(bool streamDestroyedSince)
    {
        await using var context = Context();
        var stream = context.CreateStream();
        var x = context.Allocate(N * 4);
        var evt = context.CreateEvent();

        Task free;
        using (await HoldSlotsAsync())
        {
            Fill(context, stream, x, N, 1f);
            context.EnqueueEventRecord(stream, evt, Tag("event_record"));
            if (streamDestroyedSince)
            {
                context.DestroyStream(stream);
            }

            free = context.FreeAsync(x).AsTask();
            await Settle();
            Assert.False(free.IsCompleted);
        }

        await Within(free);
        Assert.True(context.QueryEvent(evt));
        Assert.Null(context.TakeError());
        Assert.Equal(0UL, context.MemoryUsed);
    }
}
