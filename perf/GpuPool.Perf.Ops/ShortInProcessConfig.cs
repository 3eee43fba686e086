using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace GpuPool.Perf.Ops;

/// <summary>
/// BenchmarkDotNet's short job (3 warm-up and 3 measured iterations), run in this process: no per-benchmark build,
/// so a whole run takes minutes on a 2-core machine, and the pool each benchmark starts lives beside it.
/// </summary>
public sealed class ShortInProcessConfig : ManualConfig
{
    public ShortInProcessConfig()
    {
        AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("ShortRun-InProcess"));
    }
}
