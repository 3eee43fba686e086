using System.Runtime.InteropServices;
using System.Text;
using GpuPool.Shim.Internal;
using GpuPool.Modules.Ptx;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Modules: PTX text, parsed here for its kernels' parameter lists (cuLaunchKernel needs their sizes) and
/// loaded on the broker, whose backend decides whether it can run it. A cubin or fat binary has no parameter
/// lists the shim can read, so it is refused with CUDA_ERROR_NOT_SUPPORTED; bytes that are none of these are
/// CUDA_ERROR_INVALID_IMAGE.
/// </summary>
internal static unsafe partial class Cuda
{
    private const int JitInfoLogBuffer = 3;
    private const int JitInfoLogBufferSize = 4;
    private const int JitErrorLogBuffer = 5;
    private const int JitErrorLogBufferSize = 6;
    private const int JitWallTime = 2;

    [UnmanagedCallersOnly(EntryPoint = "cuModuleLoad")]
    internal static CuResult ModuleLoad(nint* module, byte* fileName)
    {
        try
        {
            NotNull(module, "module");
            NotNull(fileName, "fname");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var path = Utf8.Read(fileName);
            byte[] image;
            try
            {
                image = File.ReadAllBytes(path);
            }
            catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
            {
                throw new CudaException(CuResult.FileNotFound, $"no module file {path}");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CudaException(CuResult.OperatingSystem, $"cannot read {path}: {ex.Message}");
            }

            var end = Array.IndexOf(image, (byte)0);
            *module = Load(driver, ctx, end >= 0 ? image.AsSpan(0, end) : image);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleLoad", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuModuleLoadData")]
    internal static CuResult ModuleLoadData(nint* module, byte* image)
    {
        try
        {
            NotNull(module, "module");
            NotNull(image, "image");
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            *module = Load(driver, ctx, ImageBytes(image));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleLoadData", ex);
        }
    }

    /// <summary>As cuModuleLoadData; JIT options are accepted and ignored, the log buffers get the outcome.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuModuleLoadDataEx")]
    internal static CuResult ModuleLoadDataEx(nint* module, byte* image, uint optionCount, int* options, nint* optionValues)
    {
        string error = "";
        try
        {
            NotNull(module, "module");
            NotNull(image, "image");
            if (optionCount > 0 && (options is null || optionValues is null))
            {
                throw new CudaException(CuResult.InvalidValue, $"{optionCount} options but no option arrays");
            }

            var driver = Driver.Instance;
            var ctx = Driver.Current();
            *module = Load(driver, ctx, ImageBytes(image));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            error = ex.Message;
            return Errors.Report("cuModuleLoadDataEx", ex);
        }
        finally
        {
            if (optionCount > 0 && options is not null && optionValues is not null)
            {
                FillJitLogs(optionCount, options, optionValues, error);
            }
        }
    }

    /// <summary>Writes the info log (empty) and the error log (the failure, if any) where the options asked, and their lengths.</summary>
    private static void FillJitLogs(uint count, int* options, nint* values, string error)
    {
        int infoSize = 0, errorSize = 0;
        for (var i = 0; i < count; i++)
        {
            if (options[i] == JitInfoLogBufferSize)
            {
                infoSize = (int)Math.Min((long)values[i], int.MaxValue);
            }
            else if (options[i] == JitErrorLogBufferSize)
            {
                errorSize = (int)Math.Min((long)values[i], int.MaxValue);
            }
        }

        int infoWritten = 0, errorWritten = 0;
        for (var i = 0; i < count; i++)
        {
            switch (options[i])
            {
                case JitInfoLogBuffer:
                    infoWritten = Utf8.Write("", (byte*)values[i], infoSize);
                    break;
                case JitErrorLogBuffer:
                    errorWritten = Utf8.Write(error, (byte*)values[i], errorSize);
                    break;
                case JitWallTime:
                    *(float*)&values[i] = 0f;
                    break;
            }
        }

        for (var i = 0; i < count; i++)
        {
            if (options[i] == JitInfoLogBufferSize)
            {
                values[i] = infoWritten;
            }
            else if (options[i] == JitErrorLogBufferSize)
            {
                values[i] = errorWritten;
            }
        }
    }

    /// <summary>
    /// The bytes of an in-memory image: a cubin or fat binary is recognized by its first bytes (read one at a
    /// time, so a short text is never overrun), anything else is taken as NUL-terminated text.
    /// </summary>
    private static ReadOnlySpan<byte> ImageBytes(byte* image)
    {
        if (image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F')
        {
            return new ReadOnlySpan<byte>(image, 4);
        }

        if ((image[0] == 0xB1 && image[1] == 0x43 && image[2] == 0x62 && image[3] == 0x46) || (image[0] == 0x50 && image[1] == 0xED && image[2] == 0x55 && image[3] == 0xBA))
        {
            return new ReadOnlySpan<byte>(image, 4);
        }

        return MemoryMarshal.CreateReadOnlySpanFromNullTerminated(image);
    }

    private static nint Load(Driver driver, Context ctx, ReadOnlySpan<byte> image)
    {
        switch (PtxModule.Classify(image))
        {
            case ImageKind.Cubin:
                throw new CudaException(CuResult.NotSupported, "the image is a cubin (ELF): the shim reads kernel parameter lists from PTX only; load the kernels' PTX instead");
            case ImageKind.FatBinary:
                throw new CudaException(CuResult.NotSupported, "the image is a fat binary: the shim reads kernel parameter lists from PTX only; load the kernels' PTX instead");
            case ImageKind.Unknown:
                throw new CudaException(CuResult.InvalidImage, "the image is neither PTX text nor a cubin or fat binary");
        }

        PtxModule ptx;
        try
        {
            ptx = PtxModule.Parse(Encoding.UTF8.GetString(image));
        }
        catch (PtxFormatException ex)
        {
            throw new CudaException(ex.NotPtx ? CuResult.InvalidImage : CuResult.InvalidPtx, $"the PTX cannot be read: {ex.Message}");
        }

        var remote = driver.Wait(driver.Session.LoadModuleAsync(image.ToArray()), "cuModuleLoad");
        var module = new ModuleObject(ctx, remote, ptx);
        module.Handle = driver.Modules.Add(module);
        lock (driver.Gate)
        {
            ctx.Modules.Add(module);
        }

        return module.Handle;
    }

    [UnmanagedCallersOnly(EntryPoint = "cuModuleUnload")]
    internal static CuResult ModuleUnload(nint module)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            var m = ResolveModule(driver, module);
            driver.RemoveModule(m);
            lock (driver.Gate)
            {
                m.Context.Modules.Remove(m);
            }

            driver.Wait(driver.Session.UnloadModuleAsync(m.Remote), "cuModuleUnload");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleUnload", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuModuleGetFunction")]
    internal static CuResult ModuleGetFunction(nint* function, nint module, byte* name)
    {
        try
        {
            NotNull(function, "hfunc");
            NotNull(name, "name");
            var driver = Driver.Instance;
            var m = ResolveModule(driver, module);
            var kernel = Utf8.Read(name);
            lock (driver.Gate)
            {
                if (m.Functions.TryGetValue(kernel, out var known))
                {
                    *function = known.Handle;
                    return CuResult.Success;
                }
            }

            if (!m.Ptx.Entries.TryGetValue(kernel, out var signature))
            {
                throw new CudaException(CuResult.NotFound, $"the module has no kernel named '{kernel}'");
            }

            var remote = driver.Wait(driver.Session.GetFunctionAsync(m.Remote, kernel), "cuModuleGetFunction");
            var f = new FunctionObject(m, remote, signature);
            lock (driver.Gate)
            {
                if (m.Functions.TryGetValue(kernel, out var raced))
                {
                    *function = raced.Handle;
                    return CuResult.Success;
                }

                f.Handle = driver.Functions.Add(f);
                m.Functions[kernel] = f;
            }

            *function = f.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleGetFunction", ex);
        }
    }

    /// <summary>
    /// A module-scope variable's device address and size (either output may be NULL), from the broker, which allocated the
    /// variable when it loaded the module. Its range counts as an allocation of the process until the module is unloaded.
    /// </summary>
    [UnmanagedCallersOnly(EntryPoint = "cuModuleGetGlobal_v2")]
    internal static CuResult ModuleGetGlobal(ulong* pointer, nuint* bytes, nint module, byte* name)
    {
        try
        {
            NotNull(name, "name");
            var driver = Driver.Instance;
            var m = ResolveModule(driver, module);
            var (address, size) = driver.Global(m, Utf8.Read(name));
            if (pointer is not null)
            {
                *pointer = address;
            }

            if (bytes is not null)
            {
                *bytes = (nuint)size;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleGetGlobal", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuFuncGetAttribute")]
    internal static CuResult FuncGetAttribute(int* value, int attribute, nint function)
    {
        try
        {
            NotNull(value, "pi");
            var driver = Driver.Instance;
            var f = ResolveFunction(driver, function);
            var d = driver.Device;
            *value = attribute switch
            {
                0 => d.MaxThreadsPerBlock,                      // MAX_THREADS_PER_BLOCK
                1 or 2 or 3 => 0,                               // static shared, constant and local bytes
                4 => 32,                                        // NUM_REGS
                5 => f.Module.Ptx.Version,                      // PTX_VERSION
                6 => (d.ComputeMajor * 10) + d.ComputeMinor,    // BINARY_VERSION
                7 => 0,                                         // CACHE_MODE_CA
                8 => (int)d.MaxSharedPerBlock,                  // MAX_DYNAMIC_SHARED_SIZE_BYTES
                9 => -1,                                        // PREFERRED_SHARED_MEMORY_CARVEOUT: no preference
                _ => throw new CudaException(CuResult.InvalidValue, $"{attribute} is not a function attribute the shim answers"),
            };
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuFuncGetAttribute", ex);
        }
    }

    private static ModuleObject ResolveModule(Driver driver, nint handle)
        => handle != 0 && driver.Modules.TryGet(handle, out var m)
            ? m
            : throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a loaded module");

    private static FunctionObject ResolveFunction(Driver driver, nint handle)
        => handle != 0 && driver.Functions.TryGet(handle, out var f)
            ? f
            : throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a function of a loaded module");
}
