using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// The CUDA 12 library API, which newer runtimes load their fat binaries through. A library is a module of the
/// context current when it is loaded (the driver's are context-independent and load into each context lazily;
/// a lease has one device, and a program that switches contexts loads its libraries again), so a CUlibrary is
/// the module's handle, and a CUkernel the function's: cuKernelGetFunction and cuLibraryGetModule answer the
/// same handles, and cuLaunchKernel takes a CUkernel as a CUfunction, as the driver does.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuLibraryLoadData")]
    internal static CuResult LibraryLoadData(nint* library, byte* code, int* jitOptions, nint* jitValues, uint jitCount, int* libraryOptions, nint* libraryValues, uint libraryCount)
    {
        try
        {
            NotNull(library, "library");
            NotNull(code, "code");
            CheckOptions(jitCount, jitOptions, jitValues, libraryCount, libraryOptions, libraryValues);
            var driver = Driver.Instance;
            *library = Load(driver, Driver.Current(), ImageBytes(code));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLibraryLoadData", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLibraryLoadFromFile")]
    internal static CuResult LibraryLoadFromFile(nint* library, byte* fileName, int* jitOptions, nint* jitValues, uint jitCount, int* libraryOptions, nint* libraryValues, uint libraryCount)
    {
        try
        {
            NotNull(library, "library");
            NotNull(fileName, "fileName");
            CheckOptions(jitCount, jitOptions, jitValues, libraryCount, libraryOptions, libraryValues);
            var driver = Driver.Instance;
            var ctx = Driver.Current();
            *library = Load(driver, ctx, ModuleText(ReadModuleFile(Utf8.Read(fileName))));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLibraryLoadFromFile", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLibraryUnload")]
    internal static CuResult LibraryUnload(nint library) => Unload("cuLibraryUnload", library);

    [UnmanagedCallersOnly(EntryPoint = "cuLibraryGetKernel")]
    internal static CuResult LibraryGetKernel(nint* kernel, nint library, byte* name)
    {
        try
        {
            NotNull(kernel, "pKernel");
            NotNull(name, "name");
            var driver = Driver.Instance;
            *kernel = FunctionOf(driver, ResolveModule(driver, library), Utf8.Read(name)).Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLibraryGetKernel", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuLibraryGetModule")]
    internal static CuResult LibraryGetModule(nint* module, nint library)
    {
        try
        {
            NotNull(module, "pMod");
            *module = ResolveModule(Driver.Instance, library).Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuLibraryGetModule", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuKernelGetFunction")]
    internal static CuResult KernelGetFunction(nint* function, nint kernel)
    {
        try
        {
            NotNull(function, "pFunc");
            *function = ResolveFunction(Driver.Instance, kernel).Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuKernelGetFunction", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuKernelGetAttribute")]
    internal static CuResult KernelGetAttribute(int* value, int attribute, nint kernel, int device)
    {
        try
        {
            NotNull(value, "pi");
            CheckDevice(device);
            var driver = Driver.Instance;
            *value = FunctionAttribute(driver, ResolveFunction(driver, kernel), attribute);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuKernelGetAttribute", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuKernelGetName")]
    internal static CuResult KernelGetName(byte** name, nint kernel)
    {
        try
        {
            NotNull(name, "name");
            var f = ResolveFunction(Driver.Instance, kernel);
            *name = (byte*)f.NativeName;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuKernelGetName", ex);
        }
    }

    /// <summary>JIT and library options tune code generation the broker's backend does; they are accepted, not applied.</summary>
    private static void CheckOptions(uint jitCount, int* jitOptions, nint* jitValues, uint libraryCount, int* libraryOptions, nint* libraryValues)
    {
        if ((jitCount > 0 && (jitOptions is null || jitValues is null)) || (libraryCount > 0 && (libraryOptions is null || libraryValues is null)))
        {
            throw new CudaException(CuResult.InvalidValue, "option counts without option arrays");
        }
    }
}
