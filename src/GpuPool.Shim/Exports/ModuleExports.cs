using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using GpuPool.Modules;
using GpuPool.Modules.Fatbin;
using GpuPool.Modules.Ptx;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Modules: PTX text, cubins and fat binaries, read here (GpuPool.Modules) for their kernels' parameter layouts
/// (cuLaunchKernel's kernelParams carry no sizes) and variables, and loaded on the broker as the program gave them:
/// its backend picks what it runs (the cuda backend's driver the SASS or the PTX, the cpu backend the PTX). Bytes
/// that are none of these, or a malformed one, are CUDA_ERROR_INVALID_IMAGE.
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
            var image = ReadModuleFile(Utf8.Read(fileName));
            *module = Load(driver, ctx, ModuleText(image));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleLoad", ex);
        }
    }

    /// <summary>A fat binary (or the runtime's wrapper of one) by pointer; its length comes from its header.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuModuleLoadFatBinary")]
    internal static CuResult ModuleLoadFatBinary(nint* module, byte* fatCubin)
    {
        try
        {
            NotNull(module, "module");
            NotNull(fatCubin, "fatCubin");
            *module = LoadFatBinaryAt(fatCubin, "cuModuleLoadFatBinary's image");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuModuleLoadFatBinary", ex);
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

    private const uint FatBinaryMagic = 0xBA55ED50;
    private const uint FatBinaryWrapperMagic = 0x466243B1;

    /// <summary>The biggest image the shim takes by pointer: a length read from an image's header beyond it is a lie.</summary>
    private const long MaxImageBytes = 1L << 30;

    /// <summary>
    /// The bytes of an image the program gave only a pointer to. A cubin's length is where its section headers end,
    /// a fat binary's is in its header (a runtime wrapper points at one), and anything else is NUL-terminated text.
    /// Headers are read a field at a time, so a short text is never overrun.
    /// </summary>
    internal static ReadOnlySpan<byte> ImageBytes(byte* image)
    {
        if (image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F')
        {
            var sectionHeaders = *(ulong*)(image + 0x28);
            var length = sectionHeaders + ((ulong)*(ushort*)(image + 0x3A) * *(ushort*)(image + 0x3C));
            return CopyOut(image, CheckedLength((long)Math.Min(length, (ulong)long.MaxValue), "cubin (ELF)"), "cubin (ELF)");
        }

        var magic = (uint)image[0] | ((uint)image[1] << 8) | ((uint)image[2] << 16) | ((uint)image[3] << 24);
        if (magic == FatBinaryWrapperMagic)
        {
            var data = *(byte**)(image + 8);
            if (data is null)
            {
                throw new CudaException(CuResult.InvalidImage, "the fat binary wrapper has no data");
            }

            return FatBinaryAt(data);
        }

        return magic == FatBinaryMagic ? FatBinaryAt(image) : MemoryMarshal.CreateReadOnlySpanFromNullTerminated(image);
    }

    private static ReadOnlySpan<byte> FatBinaryAt(byte* container)
    {
        long length;
        try
        {
            length = FatBinary.SizeFromHeader(new ReadOnlySpan<byte>(container, FatBinary.HeaderBytes));
        }
        catch (ModuleImageException ex)
        {
            throw new CudaException(CuResult.InvalidImage, $"the fat binary cannot be read: {ex.Message}");
        }

        return CopyOut(container, CheckedLength(length, "fat binary"), "fat binary");
    }

    /// <summary>
    /// Copies an image whose length its own header gave, through process_vm_readv on this process: a header that
    /// lies about the length then reads into unmapped memory as an error (EFAULT), not as a crash of the program.
    /// </summary>
    private static byte[] CopyOut(byte* source, int length, string what)
    {
        var copy = GC.AllocateUninitializedArray<byte>(length);
        var readv = (delegate* unmanaged<int, IoVec*, nuint, IoVec*, nuint, nuint, nint>)Libc.Function("process_vm_readv");
        if (readv is null)
        {
            new ReadOnlySpan<byte>(source, length).CopyTo(copy);
            return copy;
        }

        fixed (byte* target = copy)
        {
            var local = new IoVec { Base = target, Length = (nuint)length };
            var remote = new IoVec { Base = source, Length = (nuint)length };
            var read = readv(Environment.ProcessId, &local, 1, &remote, 1, 0);
            if (read < 0 && !Faulted())
            {
                // Refused for another reason (a seccomp profile without it): copy as the driver would.
                new ReadOnlySpan<byte>(source, length).CopyTo(copy);
                return copy;
            }

            if (read != length)
            {
                throw new CudaException(CuResult.InvalidImage, $"the {what}'s header says it is {length} bytes, but only {Math.Max(read, 0)} of them can be read at 0x{(nuint)source:x}: the header is wrong");
            }
        }

        return copy;
    }

    /// <summary>errno is EFAULT: the range was not all mapped.</summary>
    private static bool Faulted()
    {
        const int EFault = 14;
        var errnoLocation = (delegate* unmanaged<int*>)Libc.Function("__errno_location");
        return errnoLocation is not null && *errnoLocation() == EFault;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    private static int CheckedLength(long length, string what)
        => length is > 0 and <= MaxImageBytes
            ? (int)length
            : throw new CudaException(CuResult.InvalidImage, $"the {what}'s header gives a length of {length} bytes");

    /// <summary>A module file: a cubin or fat binary as it is, text up to its first NUL.</summary>
    private static ReadOnlySpan<byte> ModuleText(byte[] image)
    {
        if (PtxModule.Classify(image) is ImageKind.Cubin or ImageKind.FatBinary)
        {
            return image;
        }

        var end = Array.IndexOf(image, (byte)0);
        return end >= 0 ? image.AsSpan(0, end) : image;
    }

    /// <summary>A fat binary container the runtime has only a pointer to (its private table's module functions, cuModuleLoadFatBinary).</summary>
    internal static nint LoadFatBinaryAt(byte* container, string what)
    {
        var driver = Driver.Instance;
        var ctx = Driver.Current();
        var magic = *(uint*)container;
        if (magic != FatBinaryMagic && magic != FatBinaryWrapperMagic)
        {
            throw new CudaException(CuResult.InvalidImage, $"{what} starts with 0x{magic:x8}, which is neither a fat binary (0x{FatBinaryMagic:x8}) nor its wrapper (0x{FatBinaryWrapperMagic:x8})");
        }

        return Load(driver, ctx, ImageBytes(container));
    }

    /// <summary>Reads an image as the driver would judge it: malformed is INVALID_IMAGE, PTX that does not parse INVALID_PTX.</summary>
    internal static ModuleImage ReadImage(ReadOnlySpan<byte> image)
    {
        try
        {
            return ModuleImage.Read(image);
        }
        catch (ModuleImageException ex)
        {
            var result = ex.Error switch
            {
                ModuleImageError.NotSupported => CuResult.NotSupported,
                ModuleImageError.InvalidPtx => CuResult.InvalidPtx,
                _ => CuResult.InvalidImage,
            };
            throw new CudaException(result, $"the module image cannot be read: {ex.Message}");
        }
        catch (PtxFormatException ex)
        {
            throw new CudaException(ex.NotPtx ? CuResult.InvalidImage : CuResult.InvalidPtx, $"the PTX cannot be read: {ex.Message}");
        }
    }

    internal static nint Load(Driver driver, Context ctx, ReadOnlySpan<byte> image)
    {
        var parsed = ReadImage(image);
        var remote = driver.Wait(driver.Session.LoadModuleAsync(ImageForBroker(driver, parsed, image)), "cuModuleLoad");
        var module = new ModuleObject(ctx, remote, parsed.Kernels, PtxVersion(parsed));
        module.Handle = driver.Modules.Add(module);
        lock (driver.Gate)
        {
            ctx.Modules.Add(module);
        }

        return module.Handle;
    }

    /// <summary>
    /// What the broker loads: the image as the program gave it, unless it is larger than one message (a library's fat
    /// binary of many architectures: cuBLAS 11.8 has one of 23 MB). Then only the code the device uses goes if it fits
    /// in one message: the cubin for its architecture, else the PTX (the cpu backend: the PTX, which it runs).
    /// Otherwise the whole image goes, in pieces, and the broker picks from it.
    /// </summary>
    private static byte[] ImageForBroker(Driver driver, ModuleImage parsed, ReadOnlySpan<byte> image)
    {
        const int Headroom = 1024;
        var limit = driver.Session.Info.MaxMessageBytes > Headroom ? (long)driver.Session.Info.MaxMessageBytes - Headroom : long.MaxValue;
        if (image.Length <= limit || parsed.Format != ModuleFormat.FatBinary)
        {
            return image.ToArray();
        }

        var cpu = driver.Session.Info.Backend == "cpu";
        var arch = (driver.Device.ComputeMajor * 10) + driver.Device.ComputeMinor;
        var ptx = (cpu ? parsed.Ptx : parsed.PtxFor(arch)) is { } text && Encoding.UTF8.GetMaxByteCount(text.Length) < limit
            ? Encoding.UTF8.GetBytes(text + "\0") : null;
        byte[]?[] choices = cpu ? [ptx] : [parsed.CubinFor(arch)?.ToArray(), ptx];
        return choices.FirstOrDefault(c => c is not null && c.Length <= limit) ?? image.ToArray();
    }

    /// <summary>cuFuncGetAttribute's PTX_VERSION: the PTX's .version (7.8 is 78), read from its first lines, else the cubin's arch.</summary>
    private static int PtxVersion(ModuleImage image)
    {
        if (image.Ptx is { } text && PtxVersionDirective().Match(text, 0, Math.Min(text.Length, 4096)) is { Success: true } m)
        {
            return (int.Parse(m.Groups[1].ValueSpan, CultureInfo.InvariantCulture) * 10) + int.Parse(m.Groups[2].ValueSpan, CultureInfo.InvariantCulture);
        }

        return image.Entries.Where(e => e.Kind == FatBinaryEntryKind.Elf).Select(e => e.SmArch).DefaultIfEmpty(0).Max();
    }

    [GeneratedRegex(@"^\s*\.version\s+(\d{1,3})\.(\d{1,2})", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex PtxVersionDirective();

    [UnmanagedCallersOnly(EntryPoint = "cuModuleUnload")]
    internal static CuResult ModuleUnload(nint module) => Unload("cuModuleUnload", module);

    /// <summary>Forgets a module (or library) and its functions here, then unloads it on the broker.</summary>
    private static CuResult Unload(string call, nint module)
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

            driver.Wait(driver.Session.UnloadModuleAsync(m.Remote), call);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
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
            *function = FunctionOf(driver, ResolveModule(driver, module), Utf8.Read(name)).Handle;
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
            *value = FunctionAttribute(driver, ResolveFunction(driver, function), attribute);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuFuncGetAttribute", ex);
        }
    }

    internal static int FunctionAttribute(Driver driver, FunctionObject f, int attribute) => f.Attribute(attribute, driver.Device);

    /// <summary>A module's kernel by name: one handle per kernel, as the driver gives; asked of the broker the first time.</summary>
    internal static FunctionObject FunctionOf(Driver driver, ModuleObject m, string kernel)
    {
        lock (driver.Gate)
        {
            if (m.Functions.TryGetValue(kernel, out var known))
            {
                return known;
            }
        }

        if (!m.Kernels.TryGetValue(kernel, out var signature))
        {
            throw new CudaException(CuResult.NotFound, $"the module has no kernel named '{kernel}'");
        }

        var remote = driver.Wait(driver.Session.GetFunctionAsync(m.Remote, kernel), "cuModuleGetFunction");
        var f = new FunctionObject(m, remote, signature);
        lock (driver.Gate)
        {
            if (m.Functions.TryGetValue(kernel, out var raced))
            {
                return raced;
            }

            f.Handle = driver.Functions.Add(f);
            m.Functions[kernel] = f;
        }

        return f;
    }

    internal static ModuleObject ResolveModule(Driver driver, nint handle)
        => handle != 0 && driver.Modules.TryGet(handle, out var m)
            ? m
            : throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a loaded module");

    internal static FunctionObject ResolveFunction(Driver driver, nint handle)
        => handle != 0 && driver.Functions.TryGet(handle, out var f)
            ? f
            : throw new CudaException(CuResult.InvalidHandle, $"0x{(ulong)handle:x} is not a function of a loaded module");
}
