using System.Diagnostics;
using System.Reflection;
using GpuPool.Devices.Contexts;
using Xunit.Abstractions;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// Issue 13's "nothing is allocated per op in steady state", held for the device layer the broker calls: on a fresh cpu
/// context, after a warm-up, the ops of the fast path allocate (nearly) nothing each, enqueueing and running both. Not a
/// timed test: it counts the bytes allocated (<see cref="GC.GetTotalAllocatedBytes(bool)"/>) around many ops and one
/// synchronize. The count sees the whole process, so the tests run alone and each figure is the least of three rounds.
/// </summary>
[Collection(nameof(SteadyStateAllocationCollection))]
public sealed class SteadyStateAllocationTests(ITestOutputHelper output)
{
    private const int OpsPerRound = 20_000;
    private const int SyncsPerRound = 2_000;
    private const int Rounds = 3;

    /// <summary>One small object per op breaks it; the share of the round's one synchronize is far below it.</summary>
    private const double BoundBytesPerOp = 8;

    public static TheoryData<string> Ops => new() { "launch", "memset", "memcpy_htod", "memcpy_dtoh", "memcpy_dtoh_memory", "memcpy_dtod", "event_record", "stream_wait_event" };

    public static TheoryData<string> Syncs => new() { "synchronize", "stream_synchronize", "event_synchronize" };

    [ReleaseBuildTheory]
    [MemberData(nameof(Ops))]
    public async Task An_op_allocates_nothing_in_steady_state(string op)
    {
        // Away from xunit's synchronization context, which would take a work item for every continuation posted to it.
        var perOp = await Task.Run(() => MeasureOpAsync(op));

        output.WriteLine($"{op}: {perOp:F3} B per op (least of {Rounds} rounds of {OpsPerRound} ops and one synchronize)");
        Assert.True(perOp < BoundBytesPerOp, $"{op} allocated {perOp:F1} B per op (bound {BoundBytesPerOp}): something is allocated per op");
    }

    [ReleaseBuildTheory]
    [MemberData(nameof(Syncs))]
    public async Task A_synchronize_allocates_nothing_in_steady_state(string sync)
    {
        var perCall = await Task.Run(() => MeasureSyncAsync(sync));

        output.WriteLine($"{sync}: {perCall:F3} B per call, with the memset before it (least of {Rounds} rounds of {SyncsPerRound})");
        Assert.True(perCall < BoundBytesPerOp, $"{sync} after a memset allocated {perCall:F1} B per call (bound {BoundBytesPerOp})");
    }

    private static async Task<double> MeasureOpAsync(string op)
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var rig = new Rig(context);
        Action enqueue = op switch
        {
            "launch" => rig.Launch,
            "memset" => rig.Memset,
            "memcpy_htod" => rig.CopyToDevice,
            "memcpy_dtoh" => rig.CopyToHost,
            "memcpy_dtoh_memory" => rig.CopyToHostAsMemory,
            "memcpy_dtod" => rig.CopyDeviceToDevice,
            "event_record" => rig.Record,
            "stream_wait_event" => rig.StreamWait,
            _ => throw new ArgumentOutOfRangeException(nameof(op), op, null),
        };

        var least = double.MaxValue;
        for (var round = -2; round < Rounds; round++)
        {
            // Rounds -2 and -1 warm up: pools fill, the JIT settles, the thread pool has its threads.
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < OpsPerRound; i++)
            {
                enqueue();
            }

            await context.SynchronizeAsync().ConfigureAwait(false);
            var after = GC.GetTotalAllocatedBytes(precise: true);
            if (round >= 0)
            {
                least = Math.Min(least, (after - before) / (double)OpsPerRound);
            }
        }

        rig.Check();
        return least;
    }

    private static async Task<double> MeasureSyncAsync(string sync)
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var rig = new Rig(context);
        var least = double.MaxValue;
        for (var round = -2; round < Rounds; round++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            for (var i = 0; i < SyncsPerRound; i++)
            {
                // A memset first, so the synchronize has work to wait for, as it has when a client calls it.
                rig.Memset();
                switch (sync)
                {
                    case "synchronize":
                        await context.SynchronizeAsync().ConfigureAwait(false);
                        break;
                    case "stream_synchronize":
                        await context.SynchronizeStreamAsync(0).ConfigureAwait(false);
                        break;
                    default:
                        rig.Record();
                        await context.SynchronizeEventAsync(rig.Event).ConfigureAwait(false);
                        break;
                }
            }

            var after = GC.GetTotalAllocatedBytes(precise: true);
            if (round >= 0)
            {
                least = Math.Min(least, (after - before) / (double)SyncsPerRound);
            }
        }

        rig.Check();
        return least;
    }

    /// <summary>One of each op, with every argument made once: the measured loop allocates only what the context does.</summary>
    private sealed class Rig
    {
        private readonly DeviceContext _context;
        private readonly ulong _buffer;
        private readonly ulong _fill;
        private readonly byte[] _fillParams;
        private readonly byte[] _bytes = [1, 2, 3, 4];
        private readonly NoOwner _owner = new();
        private readonly Sink _sink = new(acceptsMemory: false);
        private readonly Sink _memorySink = new(acceptsMemory: true);
        private readonly ulong _waiter;
        private readonly ulong _waitedOn;

        public Rig(DeviceContext context)
        {
            _context = context;
            _buffer = context.Allocate(256);
            _fill = Dev.Function(context, "fill_f32");
            _fillParams = Contexts.ContextOps.FillParams(1, 2f, _buffer);
            Event = context.CreateEvent();
            _waiter = context.CreateStream();
            _waitedOn = context.CreateEvent();
            context.EnqueueEventRecord(0, _waitedOn, new OpTag(0, "event_record"));
        }

        public ulong Event { get; }

        public void Launch() => _context.EnqueueLaunch(0, _fill, Dev.Dims, _fillParams, new OpTag(1, "launch"));

        public void Memset() => _context.EnqueueMemset(0, _buffer, 7, 4, 16, new OpTag(2, "memset"));

        public void CopyToDevice() => _context.EnqueueCopyToDevice(0, _buffer + 128, _bytes, new OpTag(3, "memcpy_htod"), _owner);

        public void CopyToHost() => _context.EnqueueCopyToHost(0, _buffer, 4, _sink, new OpTag(4, "memcpy_dtoh"));

        public void CopyToHostAsMemory() => _context.EnqueueCopyToHost(0, _buffer, 4, _memorySink, new OpTag(4, "memcpy_dtoh"));

        public void CopyDeviceToDevice() => _context.EnqueueCopyDeviceToDevice(0, _buffer + 64, _buffer, 4, new OpTag(5, "memcpy_dtod"));

        public void Record() => _context.EnqueueEventRecord(0, Event, new OpTag(6, "event_record"));

        public void StreamWait() => _context.EnqueueStreamWaitEvent(_waiter, _waitedOn, new OpTag(7, "stream_wait_event"));

        /// <summary>The ops ran and nothing failed: the loop measured work, not skipped work.</summary>
        public void Check()
        {
            Assert.Null(_context.TakeError());
            Assert.Null(_sink.Error ?? _memorySink.Error);
            Assert.True(_context.QueryEvent(Event) && _context.QueryEvent(_waitedOn));
        }
    }

    private sealed class NoOwner : IDisposable
    {
        public void Dispose()
        {
        }
    }

    /// <summary>A reusable sink, as the broker's copy replies are meant to be.</summary>
    private sealed class Sink(bool acceptsMemory) : ICopyToHostSink
    {
        private readonly byte[] _last = new byte[4];

        public StickyError? Error { get; private set; }

        public bool AcceptsMemory => acceptsMemory;

        public void OnData(ReadOnlySpan<byte> data) => data.CopyTo(_last);

        public unsafe ValueTask OnMemoryAsync(nint bytes, int length)
        {
            new ReadOnlySpan<byte>((void*)bytes, length).CopyTo(_last);
            return default;
        }

        public void OnError(StickyError error) => Error = error;
    }
}

/// <summary>Allocation counts see the whole process: these tests run alone, not beside other collections.</summary>
[CollectionDefinition(nameof(SteadyStateAllocationCollection), DisableParallelization = true)]
public sealed class SteadyStateAllocationCollection;

/// <summary>
/// A theory that runs only against optimized (Release) builds: a Debug build compiles async methods into state machine
/// classes, allocated per call, so allocation counts there say nothing about the shipped code.
/// </summary>
public sealed class ReleaseBuildTheoryAttribute : TheoryAttribute
{
    public ReleaseBuildTheoryAttribute()
    {
        if (typeof(IDeviceContext).Assembly.GetCustomAttribute<DebuggableAttribute>()?.IsJITOptimizerDisabled == true)
        {
            Skip = "allocation counts are only meaningful for a Release build (dotnet test -c Release)";
        }
    }
}
