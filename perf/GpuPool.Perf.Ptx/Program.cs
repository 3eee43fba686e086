using BenchmarkDotNet.Running;

namespace GpuPool.Perf.Ptx;

/// <summary>Entry point: BenchmarkDotNet's switcher, so --filter/--job pick what to run.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
