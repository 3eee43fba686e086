using BenchmarkDotNet.Attributes;
using GpuPool.Client;
using GpuPool.Perf.GpuPoolSuites;

namespace GpuPool.Perf.Ops;

/// <summary>
/// Time and bytes allocated per small op, on one session per transport to a pool in this process. Each invocation
/// issues <see cref="Ops"/> ops and ends when the broker has run them all (a synchronize after the fire-and-forget
/// ones), so what the broker allocates for them falls inside the measurement: BenchmarkDotNet's Allocated column is
/// GC.GetTotalAllocatedBytes(precise: true), every thread of the process (<see cref="AllocationCountingCheck"/> shows it).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ShortInProcessConfig))]
public class OpBenchmarks
{
    public const int Ops = 1000;

    private BenchPool? _pool;
    private OpWorkload? _workload;

    [Params(SessionTransportKind.Tcp, SessionTransportKind.Unix, SessionTransportKind.Grpc)]
    public SessionTransportKind Transport { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _pool = await BenchPool.StartAsync(64 << 20, CancellationToken.None).ConfigureAwait(false);
        _workload = await OpWorkload.OpenAsync(_pool, Transport).ConfigureAwait(false);
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        if (_workload is not null)
        {
            await _workload.DisposeAsync().ConfigureAwait(false);
        }

        if (_pool is not null)
        {
            await _pool.DisposeAsync().ConfigureAwait(false);
        }
    }

    [Benchmark(OperationsPerInvoke = Ops)]
    public Task Launch() => _workload!.LaunchAsync(Ops);

    [Benchmark(OperationsPerInvoke = Ops)]
    public Task Memset() => _workload!.MemsetAsync(Ops);

    [Benchmark(OperationsPerInvoke = Ops)]
    public Task CopyToDevice4B() => _workload!.CopyToDeviceAsync(Ops);

    [Benchmark(OperationsPerInvoke = Ops)]
    public Task CopyToHost4B() => _workload!.CopyToHostAsync(Ops);

    [Benchmark(OperationsPerInvoke = Ops)]
    public Task Synchronize() => _workload!.SynchronizeAsync(Ops);
}
