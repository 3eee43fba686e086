using BenchmarkDotNet.Attributes;

namespace GpuPool.Perf.Ops;

/// <summary>
/// Whether the Allocated column counts other threads: each op allocates one 64-byte object (a byte[40]) on a
/// thread-pool thread while the benchmark thread waits. 64 B/op means every thread is counted; about 0 means only the
/// benchmark thread is.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ShortInProcessConfig))]
public class AllocationCountingCheck
{
    private const int Ops = 1000;

    [Benchmark(OperationsPerInvoke = Ops)]
    public object? AllocateOnAnotherThread()
        => Task.Run(static () =>
        {
            object? last = null;
            for (var i = 0; i < Ops; i++)
            {
                last = new byte[40];
            }

            return last;
        }).GetAwaiter().GetResult();
}
