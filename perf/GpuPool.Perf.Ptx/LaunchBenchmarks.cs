using BenchmarkDotNet.Attributes;
using GpuPool.Devices;
using GpuPool.Devices.Cpu;
using GpuPool.Ptx.Engine;

namespace GpuPool.Perf.Ptx;

/// <summary>
/// What one launch of a kernel that does nothing costs. The baseline is the built-in noop launched through a cpu device
/// context and waited for, as the broker does; against it, nvcc's empty kernel (one block of one thread) through the
/// same context, and launched on the engine directly. Issue 15's target: a ratio of at most 2. Each invocation queues
/// <see cref="Batch"/> launches and waits once, blocking (not spinning), with a time limit: a stream synchronization after
/// a launch was seen never to complete, once in some 100 000, before CpuStream's lost wakeup was fixed; a wait that hangs
/// fails the run.
/// </summary>
[MemoryDiagnoser]
public class LaunchBenchmarks
{
    private const int Batch = 100;

    private static readonly LaunchDims One = new(1, 1, 1, 1, 1, 1, 0);

    private readonly NativeBuffers _memory = new();
    private CpuDevice _device = null!;
    private IDeviceContext _context = null!;
    private ulong _noop;
    private ulong _empty;
    private PtxKernel _kernel = null!;
    private PtxLaunch _launch = null!;
    private ulong _stream;
    private ulong _seq;

    [GlobalSetup]
    public void Setup()
    {
        _device = new CpuDevice(0, 64UL << 20, 2);
        _context = _device.CreateContext(new ContextOptions("perf-ptx", 16UL << 20, 1000));
        _stream = _context.CreateStream();
        _noop = _context.GetFunction(_context.LoadBuiltinModule(), "noop");
        _empty = _context.GetFunction(_context.LoadModule(System.Text.Encoding.UTF8.GetBytes(CudaPtx.Text("empty"))), "empty");
        _kernel = CudaPtx.Kernel("empty", "empty");
        _launch = new PtxLaunch(1, 1, 1, 1, 1, 1, 0, _memory) { Parallelism = Environment.ProcessorCount };
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _context.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _memory.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public void BuiltinNoopThroughContext() => LaunchAndWait(_noop);

    [Benchmark(OperationsPerInvoke = Batch)]
    public void EngineEmptyThroughContext() => LaunchAndWait(_empty);

    [Benchmark(OperationsPerInvoke = Batch)]
    public void EngineEmptyDirect()
    {
        for (var i = 0; i < Batch; i++)
        {
            _kernel.Launch(_launch, [], []);
        }
    }

    private void LaunchAndWait(ulong function)
    {
        for (var i = 0; i < Batch; i++)
        {
            _context.EnqueueLaunch(_stream, function, One, ReadOnlyMemory<byte>.Empty, new OpTag(++_seq, "launch"));
        }

        // Waited for without spinning, as the broker's session waits, and with a limit, so a wait that never completes fails
        // the run instead of hanging it. A waiter spinning on one of two cores (as this benchmark did until 2026-12-07)
        // slows the stream's worker on the other: the empty kernel measured 8.6 × the noop so, 1.5 × when waited for.
        var wait = _context.SynchronizeStreamAsync(_stream);
        if (!wait.IsCompleted && !wait.AsTask().Wait(TimeSpan.FromSeconds(10)))
        {
            throw new TimeoutException($"stream synchronization after launch {_seq} did not complete in 10 s");
        }

        wait.GetAwaiter().GetResult();
        if (_context.TakeError() is { } error)
        {
            throw error.Error;
        }
    }
}
