using BenchmarkDotNet.Attributes;
using GpuPool.Devices;
using GpuPool.Devices.Cpu;

namespace GpuPool.Perf.Ptx;

/// <summary>
/// What a module load costs on the cpu backend now that every kernel of a PTX module is checked at load. The baseline is
/// the built-in library's exact image (native/kernels/ptx/gpupool_kernels.ptx: 25 kernels, run as C#, nothing checked);
/// against it, the same text with a comment added, which is any other module to the backend: parsed and every kernel
/// compiled by the PTX engine (and let go) before the load answers. Each operation loads and unloads one module.
/// </summary>
[MemoryDiagnoser]
public class ModuleLoadBenchmarks
{
    private CpuDevice _device = null!;
    private IDeviceContext _context = null!;
    private byte[] _builtin = null!;
    private byte[] _copy = null!;

    [GlobalSetup]
    public void Setup()
    {
        _device = new CpuDevice(0, 64UL << 20, 2);
        _context = _device.CreateContext(new ContextOptions("perf-ptx-load", 16UL << 20, 1000));
        using var stream = typeof(ModuleLoadBenchmarks).Assembly.GetManifestResourceStream("gpupool_kernels.ptx")
            ?? throw new InvalidOperationException("gpupool_kernels.ptx is not embedded; see this project's file");
        using var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        _builtin = [.. bytes.ToArray(), 0];
        _copy = [.. bytes.ToArray(), .. "// a copy of the library\n"u8, 0];
    }

    [GlobalCleanup]
    public void Cleanup() => _context.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark(Baseline = true)]
    public void BuiltinLibraryImage() => _context.UnloadModule(_context.LoadModule(_builtin));

    [Benchmark]
    public void SameLibraryCheckedOnTheEngine() => _context.UnloadModule(_context.LoadModule(_copy));
}
