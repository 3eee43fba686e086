using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Cuda.Native;
using GpuPool.Devices.Streams;
using GpuPool.Modules;

namespace GpuPool.Devices.Cuda;

/// <summary>
/// A lease's modules and launches on a GPU: images JIT-loaded by the driver (the built-in library once per context),
/// kernels looked up with their parameter layouts, and launches through cuLaunchKernel's void** array, with a built-in
/// kernel's pointers checked against the lease's allocations first.
/// </summary>
internal sealed unsafe class CudaKernels(CudaContext context, AllocationTable allocations) : IKernelRunner
{
    private nint _builtinModule;

    public IKernelModule LoadBuiltinModule()
    {
        var module = context.OnLiveContext(() =>
        {
            // One JIT of the library per context, shared by every handle to it; it lives as long as the context.
            if (_builtinModule == 0)
            {
                _builtinModule = LoadImage(BuiltinModule.Image.Span);
            }

            return _builtinModule;
        });
        return new CudaModule(module, Builtin: true, Shared: true);
    }

    public IKernelModule LoadModule(ReadOnlySpan<byte> image, ModuleRead read)
    {
        var trimmed = image.TrimEnd((byte)0);
        if (trimmed.IsEmpty)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is empty");
        }

        var elf = trimmed.Length >= 4 && trimmed[0] == 0x7F && trimmed[1] == (byte)'E' && trimmed[2] == (byte)'L' && trimmed[3] == (byte)'F';
        var fatbin = trimmed.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(trimmed) == 0xBA55ED50;
        if (!elf && !fatbin && trimmed.IndexOf(".entry"u8) < 0 && trimmed.IndexOf(".version"u8) < 0)
        {
            throw new DeviceException(DeviceErrorCode.InvalidArgument, "the module image is neither PTX (text with .version and .entry functions) nor a cubin or fatbin");
        }

        var builtin = BuiltinModule.IsBuiltinImage(trimmed);
        var copy = image.ToArray();
        var module = context.OnLiveContext(() => LoadImage(copy));
        return new CudaModule(module, builtin, Shared: false);
    }

    /// <summary>
    /// The driver placed and initialized the variables when it loaded the image: this asks it where. A variable it does not
    /// have (its JIT may drop one no kernel uses) is left out, so it is not charged and looking it up is NOT_FOUND, as
    /// with the driver.
    /// </summary>
    public IReadOnlyList<PlacedVariable> PlaceVariables(IKernelModule module, IReadOnlyList<ModuleVariable> variables) => context.OnLiveContext(() =>
    {
        var handle = ((CudaModule)module).Handle;
        var placed = new List<PlacedVariable>(variables.Count);
        foreach (var v in variables)
        {
            var result = CuApi.cuModuleGetGlobal_v2(out var pointer, out var bytes, handle, v.Name);
            if (result == CudaErrors.NotFound)
            {
                continue;
            }

            context.Check(result, "cuModuleGetGlobal_v2", $"module variable {v.Name}");
            placed.Add(new PlacedVariable(v.Name, new Allocation(pointer, bytes, 0)));
        }

        return (IReadOnlyList<PlacedVariable>)placed;
    });

    /// <summary>Unloading the module frees its variables too.</summary>
    public void UnloadModule(IKernelModule module, IReadOnlyList<Allocation> variables) => context.TryOnLiveContext(() => CuApi.cuModuleUnload(((CudaModule)module).Handle));

    public IKernelFunction GetFunction(IKernelModule module, ulong moduleId, string name) => context.OnLiveContext(() =>
    {
        var found = (CudaModule)module;
        var result = CuApi.cuModuleGetFunction(out var handle, found.Handle, name);
        if (result == CudaErrors.NotFound)
        {
            throw ContextErrors.NoKernel(moduleId, name);
        }

        context.Check(result, "cuModuleGetFunction", name);
        var kernel = found.Builtin ? BuiltinKernels.All.GetValueOrDefault(name) : null;
        return new CudaFunction(moduleId, name, handle, kernel, kernel is not null ? ParamLayout.Of(kernel) : QueryLayout(handle));
    });

    /// <summary>Checks a built-in kernel's pointers, launches through the void** of the parameter block, and waits for the kernel.</summary>
    public void Launch(WorkStream stream, IKernelFunction function, LaunchDims d, ReadOnlySpan<byte> parameters)
    {
        var f = (CudaFunction)function;
        if (f.Builtin is { } kernel)
        {
            BuiltinKernelExtents.Check(kernel, parameters, allocations);
        }

        int result;
        fixed (byte* block = parameters)
        {
            if (f.Layout is { } layout)
            {
                var pointers = stackalloc nint[Math.Max(1, layout.Count)];
                KernelParams.Build(block, parameters.Length, layout, new Span<nint>(pointers, layout.Count));
                result = CuApi.cuLaunchKernel(
                    f.Handle, d.GridX, d.GridY, d.GridZ, d.BlockX, d.BlockY, d.BlockZ, d.SharedMemBytes, stream.Handle, layout.Count == 0 ? null : (void**)pointers, null);
            }
            else
            {
                // A driver without cuFuncGetParamInfo: hand the packed block over whole, as cuLaunchKernel's "extra" allows.
                var size = (nuint)parameters.Length;
                var extra = stackalloc nint[5];
                extra[0] = CuApi.LaunchParamBufferPointer;
                extra[1] = (nint)block;
                extra[2] = CuApi.LaunchParamBufferSize;
                extra[3] = (nint)(&size);
                extra[4] = CuApi.LaunchParamEnd;
                result = CuApi.cuLaunchKernel(
                    f.Handle, d.GridX, d.GridY, d.GridZ, d.BlockX, d.BlockY, d.BlockZ, d.SharedMemBytes, stream.Handle, null, (void**)extra);
            }
        }

        if (result != CudaErrors.Success)
        {
            context.Check(result, "cuLaunchKernel", $"kernel {f.Name}");
        }

        context.Synchronize(stream, "kernel", f.Name);
    }

    /// <summary>
    /// Where each parameter of a client's kernel sits, from the driver (cuFuncGetParamInfo, CUDA 12.4 and later);
    /// null when the driver cannot say, and launches then pass the packed block whole.
    /// </summary>
    private static ParamLayout? QueryLayout(nint function)
    {
        try
        {
            var offsets = new List<int>();
            var sizes = new List<int>();
            for (nuint i = 0; i < 4096; i++)
            {
                var result = CuApi.cuFuncGetParamInfo(function, i, out var offset, out var size);
                if (result == CudaErrors.InvalidValue)
                {
                    return new ParamLayout([.. offsets], [.. sizes]);
                }

                if (result != CudaErrors.Success)
                {
                    return null;
                }

                offsets.Add((int)offset);
                sizes.Add((int)size);
            }

            return null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Loads a module image (PTX, cubin or fatbin) into the current context, with the JIT's error log in the message when it fails.</summary>
    private nint LoadImage(ReadOnlySpan<byte> image)
    {
        const int logBytes = 8192;

        // PTX is text the driver reads up to a NUL; a binary image ignores the extra byte.
        var data = (byte*)NativeMemory.Alloc((nuint)image.Length + 1);
        var log = (byte*)NativeMemory.AllocZeroed(logBytes);
        try
        {
            image.CopyTo(new Span<byte>(data, image.Length));
            data[image.Length] = 0;
            var options = stackalloc int[2] { CuApi.JitErrorLogBuffer, CuApi.JitErrorLogBufferSizeBytes };
            var values = stackalloc nint[2] { (nint)log, logBytes };
            var result = CuApi.cuModuleLoadDataEx(out var module, data, 2, options, (void**)values);
            if (result != CudaErrors.Success)
            {
                var jit = (Marshal.PtrToStringUTF8((nint)log) ?? "").Trim().ReplaceLineEndings("; ");
                if (jit.Length > 400)
                {
                    jit = jit[..400] + "...";
                }

                if (CudaErrors.IsContextFatal(result))
                {
                    context.Check(result, "cuModuleLoadDataEx");
                }

                throw new DeviceException(CudaErrors.CodeOf(result), $"cuModuleLoadDataEx failed: {CudaErrors.Describe(result)}{(jit.Length > 0 ? $": {jit}" : "")}");
            }

            return module;
        }
        finally
        {
            NativeMemory.Free(data);
            NativeMemory.Free(log);
        }
    }
}

/// <summary>A loaded module. <c>Shared</c>: the context's one copy of the built-in library, freed with the context.</summary>
internal sealed record CudaModule(nint Handle, bool Builtin, bool Shared) : IKernelModule
{
    public bool NeedsUnload => !Shared;
}

/// <summary>
/// A kernel of a loaded module. <c>Builtin</c> names the library kernel (its pointer parameters are bounds-checked);
/// <c>Layout</c> is where its parameters sit in the packed block, or null when the driver cannot say.
/// </summary>
internal sealed record CudaFunction(ulong Module, string Name, nint Handle, KernelDef? Builtin, ParamLayout? Layout) : IKernelFunction
{
    public int? ParamBytes => Layout?.Bytes;

    public string Signature => Builtin?.Signature ?? $"{Name} with {Layout?.Count} parameters";
}
