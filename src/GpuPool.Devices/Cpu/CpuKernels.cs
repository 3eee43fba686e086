using System.Text;
using System.Text.RegularExpressions;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's modules and launches: it runs the built-in kernels only, so a module is a set of built-in kernel
/// names (PTX whose entries are all built-in), and a launch runs the kernel's C# body over the lease's host memory.
/// </summary>
internal sealed partial class CpuKernels(HostMemory memory) : IKernelRunner
{
    public IKernelModule LoadBuiltinModule() => new CpuModule(null);

    public IKernelModule LoadModule(ReadOnlySpan<byte> image)
    {
        if (image.Length >= 4 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F')
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, "the cpu backend cannot run cubin (ELF) modules; it runs PTX modules whose kernels are all built-in kernels");
        }

        var text = Encoding.UTF8.GetString(image.TrimEnd((byte)0));
        var entries = PtxEntry().Matches(text).Select(m => m.Groups[1].Value).Distinct(StringComparer.Ordinal).ToArray();
        if (entries.Length == 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX with .entry functions nor a cubin");
        }

        var unknown = entries.Where(e => !BuiltinKernels.All.ContainsKey(e)).ToArray();
        if (unknown.Length > 0)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported,
                $"the cpu backend cannot run kernel(s) {string.Join(", ", unknown)}: it runs only the built-in kernels (for example {string.Join(", ", BuiltinKernels.All.Keys.Order().Take(4))}, ...)");
        }

        return new CpuModule(entries.ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>Never called: a cpu module holds nothing to free.</summary>
    public void UnloadModule(IKernelModule module)
    {
    }

    public IKernelFunction GetFunction(IKernelModule module, ulong moduleId, string name)
    {
        var entries = ((CpuModule)module).Entries;
        if ((entries is not null && !entries.Contains(name)) || !BuiltinKernels.All.TryGetValue(name, out var kernel))
        {
            throw ContextErrors.NoKernel(moduleId, name);
        }

        return new CpuFunction(moduleId, kernel);
    }

    public void Launch(WorkStream stream, IKernelFunction function, LaunchDims dims, ReadOnlySpan<byte> parameters)
    {
        var kernel = ((CpuFunction)function).Kernel;
        var call = new KernelCall(kernel, parameters, memory);
        try
        {
            kernel.Body(ref call);
        }
        catch (ArgumentException ex)
        {
            throw new DeviceException(DeviceErrorCode.LaunchFailed, $"kernel {kernel.Name} failed: {ex.Message}", ex);
        }
    }

    [GeneratedRegex(@"\.entry\s+([A-Za-z_$][\w$]*)\s*\(", RegexOptions.CultureInvariant)]
    private static partial Regex PtxEntry();

    /// <summary>A module: the built-in kernels it names (null: the whole built-in library).</summary>
    private sealed record CpuModule(IReadOnlySet<string>? Entries) : IKernelModule
    {
        public bool NeedsUnload => false;
    }

    /// <summary>A built-in kernel as a function of one module.</summary>
    private sealed record CpuFunction(ulong Module, KernelDef Kernel) : IKernelFunction
    {
        public string Name => Kernel.Name;

        public int? ParamBytes => Kernel.ParamBytes;

        public string Signature => Kernel.Signature;

        public double Cost(LaunchDims dims, ReadOnlySpan<byte> parameters) => Kernel.Cost(parameters);
    }
}
