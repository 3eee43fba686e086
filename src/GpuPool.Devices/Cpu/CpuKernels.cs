using System.Text;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Streams;
using GpuPool.Modules;
using GpuPool.Modules.Ptx;
using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Syntax;

namespace GpuPool.Devices.Cpu;

/// <summary>
/// A cpu context's modules and launches. The built-in kernel library — loaded as such, or as its exact PTX image — runs
/// as C# over the lease's host memory; any other PTX module runs on the PTX engine, whatever its kernels are named, so it
/// does what its PTX says. A module the engine cannot run all of is refused at its load, naming what it does not run.
/// </summary>
internal sealed class CpuKernels(HostMemory memory) : IKernelRunner
{
    /// <summary>How many of the host's cores a launch on the PTX engine spreads its blocks over.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>The shared memory a block may have, static and dynamic together (the device's MAX_SHARED_MEMORY_PER_BLOCK).</summary>
    public ulong SharedLimit { get; init; } = 48 * 1024;

    /// <summary>
    /// Whose modules share compiled code (<see cref="PtxProgramCache"/>): the lease's own, so that how fast a load is
    /// never tells one tenant what another loaded.
    /// </summary>
    public string CacheScope { get; init; } = "";

    public IKernelModule LoadBuiltinModule() => new CpuModule(null, Builtin: true);

    /// <summary>The lease's printf buffer: CUDA's default FIFO size, cudaLimitPrintfFifoSize (1 MiB).</summary>
    internal const int OutputLimit = 1 << 20;

    private readonly Lock _outputGate = new();
    private Action<string>? _printed;
    private StringBuilder? _output;
    private long _outputDropped;

    /// <summary>A launch's printed text, kept for the lease until it synchronizes; past the limit, dropped and counted.</summary>
    private void Printed(string text)
    {
        lock (_outputGate)
        {
            _output ??= new StringBuilder();
            var room = OutputLimit - _output.Length;
            if (text.Length <= room)
            {
                _output.Append(text);
                return;
            }

            _output.Append(text, 0, Math.Max(0, room));
            _outputDropped += text.Length - Math.Max(0, room);
        }
    }

    public string? TakeOutput()
    {
        lock (_outputGate)
        {
            if (_output is not { Length: > 0 } && _outputDropped == 0)
            {
                return null;
            }

            var text = _output?.ToString() ?? "";
            if (_outputDropped > 0)
            {
                text += $"[gpupool: {_outputDropped} characters of device printf output did not fit the lease's {OutputLimit}-character buffer and were dropped]\n";
            }

            (_output, _outputDropped) = (null, 0);
            return text;
        }
    }

    /// <summary>
    /// A PTX image, or a fat binary's PTX entry: every kernel is checked by the engine now (its code is kept from its
    /// first launch), and the first it does not run fails the load with NotSupported. A cubin, or a fat binary of SASS
    /// only, loads (the CUDA runtime loads every module a program and its libraries carry at start), but none of its
    /// kernels runs: the cpu backend has no use for SASS. A fat binary with no code at all is refused.
    /// </summary>
    public IKernelModule LoadModule(ReadOnlySpan<byte> image, ModuleRead read)
    {
        var module = read.Strict;
        if (module.Ptx is null && module.Cubin is null)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, "the fat binary holds no code: neither PTX nor a cubin");
        }

        if (module.Ptx is null)
        {
            return new CpuModule(module.Kernels, Builtin: false, SassOnly: true);
        }

        if (BuiltinModule.IsBuiltinPtx(module.Ptx))
        {
            return new CpuModule(module.Kernels, Builtin: true);
        }

        PtxModuleProgram program;
        try
        {
            program = PtxProgramCache.Get(CacheScope, module.Ptx);
            program.CheckAll(Parallelism);
        }
        catch (PtxNotSupportedException ex)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, ex.Message, ex);
        }
        catch (PtxSyntaxException ex)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, $"the cpu backend's PTX engine cannot read the module: {ex.Message}", ex);
        }

        return new CpuModule(module.Kernels, Builtin: false) { Program = program };
    }

    /// <summary>Each variable in host memory of its own, aligned as it asks and initialized from its initializer.</summary>
    public IReadOnlyList<PlacedVariable> PlaceVariables(IKernelModule module, IReadOnlyList<ModuleVariable> variables)
    {
        var placed = new List<PlacedVariable>(variables.Count);
        try
        {
            foreach (var v in variables)
            {
                var allocation = memory.Allocate((ulong)v.Size, (ulong)v.Align);
                placed.Add(new PlacedVariable(v.Name, allocation));
                memory.Initialize(allocation, v.Initializer);
            }
        }
        catch
        {
            foreach (var p in placed)
            {
                memory.Free(p.Memory);
            }

            throw;
        }

        if (module is CpuModule { Program: { } program } cpu)
        {
            cpu.Symbols = [.. program.Variables.Select(name => placed.FirstOrDefault(p => p.Name == name) is { } p ? p.Memory.Base : 0UL)];
        }

        return placed;
    }

    /// <summary>Frees the module's variables; the rest of a cpu module is managed memory.</summary>
    public void UnloadModule(IKernelModule module, IReadOnlyList<Allocation> variables)
    {
        foreach (var v in variables)
        {
            memory.Free(v);
        }
    }

    public IKernelFunction GetFunction(IKernelModule module, ulong moduleId, string name)
    {
        var m = (CpuModule)module;
        if (m.Entries is null)
        {
            return BuiltinKernels.All.TryGetValue(name, out var builtin) ? new CpuFunction(moduleId, builtin) : throw ContextErrors.NoKernel(moduleId, name);
        }

        if (!m.Entries.TryGetValue(name, out var signature))
        {
            throw ContextErrors.NoKernel(moduleId, name);
        }

        if (m.Builtin && BuiltinKernels.All.TryGetValue(name, out var builtinKernel))
        {
            return new CpuFunction(moduleId, builtinKernel);
        }

        if (m.Program is { } compiled && compiled.Kernels.TryGetValue(name, out var kernel))
        {
            return new EngineFunction(moduleId, m, kernel, signature.ToString());
        }

        // Found, so the program can go on, but not run: SASS, or an entry (of a fat binary's cubin) its PTX has no body for.
        var reason = m.SassOnly
            ? $"the cpu backend cannot run kernel {name}: its module carries SASS only, no PTX (build it with PTX too: nvcc -gencode arch=compute_XX,code=compute_XX)"
            : $"the cpu backend cannot run kernel {name}: its module's PTX has no body for it";
        return new UnrunnableFunction(moduleId, name, signature.ToString(), reason);
    }

    public void Launch(WorkStream stream, IKernelFunction function, LaunchDims dims, ReadOnlySpan<byte> parameters)
    {
        if (function is UnrunnableFunction unrunnable)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, unrunnable.Reason);
        }

        if (function is EngineFunction engine)
        {
            RunOnEngine(engine, dims, parameters);
            return;
        }

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

    /// <summary>A deadline no kernel should need on this backend; a launch past it fails rather than hold the device.</summary>
    internal static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(120);

    /// <summary>How long one launch of a program's kernel may run before it is stopped (the broker's kernel deadline).</summary>
    public TimeSpan Deadline { get; init; } = DefaultDeadline;

    /// <summary>Runs a launch of a program's kernel on the PTX engine, on this stream's worker.</summary>
    private void RunOnEngine(EngineFunction function, LaunchDims dims, ReadOnlySpan<byte> parameters)
    {
        // A kernel is mostly launched with the shape of its last launch: that launch's settings serve again (they are
        // immutable, so streams launching the same kernel at once may share them), and a launch allocates less.
        var launch = function.Last;
        if (launch is null || launch.GridX != dims.GridX || launch.GridY != dims.GridY || launch.GridZ != dims.GridZ
            || launch.BlockX != dims.BlockX || launch.BlockY != dims.BlockY || launch.BlockZ != dims.BlockZ || launch.DynamicSharedBytes != dims.SharedMemBytes)
        {
            launch = new PtxLaunch(dims.GridX, dims.GridY, dims.GridZ, dims.BlockX, dims.BlockY, dims.BlockZ, dims.SharedMemBytes, memory)
            {
                Parallelism = Parallelism,
                Deadline = Deadline,
                SharedLimit = SharedLimit,
                Printf = _printed ??= Printed,
            };
            function.Last = launch;
        }

        try
        {
            function.Kernel.Launch(launch, parameters, function.Owner.Symbols);
        }
        catch (PtxFault fault)
        {
            throw new DeviceException(
                fault.Kind switch
                {
                    PtxFaultKind.IllegalAddress or PtxFaultKind.MisalignedAddress => DeviceErrorCode.InvalidAddress,
                    PtxFaultKind.Timeout => DeviceErrorCode.LaunchTimeout,
                    _ => DeviceErrorCode.LaunchFailed,
                },
                fault.Message,
                fault);
        }
        catch (PtxNotSupportedException ex)
        {
            throw new DeviceException(DeviceErrorCode.NotSupported, ex.Message, ex);
        }
        catch (ArgumentException ex)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, ex.Message, ex);
        }
    }

    /// <summary>
    /// A module: its entries (null: the whole built-in library), whether it is the built-in library (its kernels run as
    /// C#), or its kernels as the PTX engine runs them, or SASS only.
    /// </summary>
    private sealed record CpuModule(IReadOnlyDictionary<string, KernelSignature>? Entries, bool Builtin, bool SassOnly = false) : IKernelModule
    {
        public PtxModuleProgram? Program { get; init; }

        /// <summary>The device addresses of the program's variables, in its order, once placed.</summary>
        public ulong[] Symbols { get; set; } = [];

        /// <summary>Nothing of a cpu module is the backend's but its variables' memory, which the context hands back to free.</summary>
        public bool NeedsUnload => false;
    }

    /// <summary>A program's kernel that the PTX engine runs.</summary>
    private sealed record EngineFunction(ulong Module, CpuModule Owner, PtxKernel Kernel, string Signature) : IKernelFunction
    {
        /// <summary>The settings of its last launch, for the next of the same shape.</summary>
        public PtxLaunch? Last { get; set; }

        public string Name => Kernel.Name;

        public int? ParamBytes => Kernel.ParameterBytes;
    }

    /// <summary>A built-in kernel as a function of one module.</summary>
    private sealed record CpuFunction(ulong Module, KernelDef Kernel) : IKernelFunction
    {
        public string Name => Kernel.Name;

        public int? ParamBytes => Kernel.ParamBytes;

        public string Signature => Kernel.Signature;
    }

    /// <summary>
    /// A kernel the cpu backend finds but cannot run: its launch fails with <see cref="Reason"/>. Its parameter block
    /// goes unchecked, so that the launch's answer is that reason, whatever the block.
    /// </summary>
    private sealed record UnrunnableFunction(ulong Module, string Name, string Signature, string Reason) : IKernelFunction
    {
        public int? ParamBytes => null;
    }
}
