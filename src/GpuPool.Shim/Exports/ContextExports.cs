using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Primary and explicit contexts, current per thread as in CUDA (each thread has its own stack). All contexts
/// share the lease's one device session; each owns what was created while it was current.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxRetain")]
    internal static CuResult DevicePrimaryCtxRetain(nint* context, int device)
    {
        try
        {
            NotNull(context, "pctx");
            var driver = Driver.Instance;
            CheckDevice(device);
            lock (driver.Gate)
            {
                driver.PrimaryRefs++;
                driver.Primary.Destroyed = false;
            }

            *context = driver.Primary.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDevicePrimaryCtxRetain", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxRelease")]
    internal static CuResult DevicePrimaryCtxReleaseV1(int device) => PrimaryRelease(device);

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxRelease_v2")]
    internal static CuResult DevicePrimaryCtxRelease(int device) => PrimaryRelease(device);

    private static CuResult PrimaryRelease(int device)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            CheckDevice(device);
            bool last;
            lock (driver.Gate)
            {
                if (driver.PrimaryRefs == 0)
                {
                    throw new CudaException(CuResult.InvalidContext, "the primary context is not retained");
                }

                last = --driver.PrimaryRefs == 0;
                if (last)
                {
                    driver.Primary.Destroyed = true;
                }
            }

            if (last)
            {
                driver.Release(driver.Primary);
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDevicePrimaryCtxRelease", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxReset")]
    internal static CuResult DevicePrimaryCtxResetV1(int device) => PrimaryReset(device);

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxReset_v2")]
    internal static CuResult DevicePrimaryCtxReset(int device) => PrimaryReset(device);

    private static CuResult PrimaryReset(int device)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            CheckDevice(device);
            lock (driver.Gate)
            {
                driver.PrimaryRefs = 0;
                driver.Primary.Destroyed = true;
            }

            driver.Release(driver.Primary);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDevicePrimaryCtxReset", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxGetState")]
    internal static CuResult DevicePrimaryCtxGetState(int device, uint* flags, int* active)
    {
        try
        {
            NotNull(flags, "flags");
            NotNull(active, "active");
            var driver = Driver.Instance;
            CheckDevice(device);
            lock (driver.Gate)
            {
                *flags = driver.Primary.Flags;
                *active = driver.PrimaryRefs > 0 ? 1 : 0;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDevicePrimaryCtxGetState", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxSetFlags")]
    internal static CuResult DevicePrimaryCtxSetFlagsV1(int device, uint flags) => PrimarySetFlags(device, flags);

    [UnmanagedCallersOnly(EntryPoint = "cuDevicePrimaryCtxSetFlags_v2")]
    internal static CuResult DevicePrimaryCtxSetFlags(int device, uint flags) => PrimarySetFlags(device, flags);

    private static CuResult PrimarySetFlags(int device, uint flags)
    {
        try
        {
            var driver = Driver.Instance;
            CheckDevice(device);
            CheckContextFlags(flags);
            lock (driver.Gate)
            {
                driver.Primary.Flags = flags;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuDevicePrimaryCtxSetFlags", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxCreate_v2")]
    internal static CuResult CtxCreate(nint* context, uint flags, int device) => CreateContext("cuCtxCreate", context, flags, device);

    /// <summary>The CUDA 11.4 form, with execution-affinity parameters: the shim has no affinity to set, so it takes none.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxCreate_v3")]
    internal static CuResult CtxCreateV3(nint* context, void* affinityParams, int affinityCount, uint flags, int device)
    {
        if (affinityCount < 0 || (affinityCount > 0 && affinityParams is null))
        {
            return CuResult.InvalidValue;
        }

        return affinityCount > 0
            ? Errors.Report("cuCtxCreate_v3", new CudaException(CuResult.NotSupported, "execution affinity is not supported"))
            : CreateContext("cuCtxCreate_v3", context, flags, device);
    }

    /// <summary>The CUDA 12.5 form: CUctxCreateParams {affinity params, count, CIG params}; only an empty one is accepted.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxCreate_v4")]
    internal static CuResult CtxCreateV4(nint* context, CtxCreateParams* parameters, uint flags, int device)
    {
        if (parameters is not null && (parameters->AffinityCount != 0 || parameters->Cig is not null))
        {
            return Errors.Report("cuCtxCreate_v4", new CudaException(CuResult.NotSupported, "execution affinity and CIG contexts are not supported"));
        }

        return CreateContext("cuCtxCreate_v4", context, flags, device);
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct CtxCreateParams
    {
        public void* Affinity;
        public int AffinityCount;
        public void* Cig;
    }

    internal static CuResult CreateContext(string call, nint* context, uint flags, int device)
    {
        try
        {
            NotNull(context, "pctx");
            var driver = Driver.Instance;
            CheckDevice(device);
            CheckContextFlags(flags);
            var ctx = new Context(primary: false, flags);
            ctx.Handle = driver.Contexts.Add(ctx);
            Driver.Push(ctx);
            *context = ctx.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    private static void CheckContextFlags(uint flags)
    {
        if (flags > 0xFFF)
        {
            throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of context flags");
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxDestroy")]
    internal static CuResult CtxDestroyV1(nint context) => DestroyContext(context);

    [UnmanagedCallersOnly(EntryPoint = "cuCtxDestroy_v2")]
    internal static CuResult CtxDestroy(nint context) => DestroyContext(context);

    /// <summary>The pre-4.0 usage count (pycuda still calls it): the current context, attached once more.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxAttach")]
    internal static CuResult CtxAttach(nint* context, uint flags)
    {
        try
        {
            NotNull(context, "pctx");
            if (flags != 0)
            {
                throw new CudaException(CuResult.InvalidValue, $"flags must be 0, not {flags}");
            }

            var driver = Driver.Instance;
            var ctx = Driver.Current();
            lock (driver.Gate)
            {
                ctx.Attachments++;
            }

            *context = ctx.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxAttach", ex);
        }
    }

    /// <summary>Undoes one cuCtxAttach; without one left, destroys the context as cuCtxDestroy does (its creator's count).</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuCtxDetach")]
    internal static CuResult CtxDetach(nint context)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            var ctx = driver.ResolveContext(context);
            lock (driver.Gate)
            {
                if (ctx.Attachments > 0)
                {
                    ctx.Attachments--;
                    return CuResult.Success;
                }
            }
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxDetach", ex);
        }

        return DestroyContext(context);
    }

    private static CuResult DestroyContext(nint context)
    {
        try
        {
            if (context == 0)
            {
                throw new CudaException(CuResult.InvalidValue, "ctx is null");
            }

            var driver = Driver.InstanceForCleanup;
            var ctx = driver.ResolveContext(context);
            if (ctx.IsPrimary)
            {
                throw new CudaException(CuResult.InvalidContext, "the primary context is not destroyed with cuCtxDestroy: release it with cuDevicePrimaryCtxRelease");
            }

            driver.Contexts.Remove(context);
            lock (driver.Gate)
            {
                ctx.Destroyed = true;
            }

            Driver.Forget(ctx);
            driver.Release(ctx);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxDestroy", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxSetCurrent")]
    internal static CuResult CtxSetCurrent(nint context)
    {
        try
        {
            var driver = Driver.Instance;
            Driver.SetCurrent(context == 0 ? null : driver.ResolveContext(context));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxSetCurrent", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetCurrent")]
    internal static CuResult CtxGetCurrent(nint* context)
    {
        try
        {
            NotNull(context, "pctx");
            _ = Driver.Instance;
            *context = Driver.CurrentOrNull() is { Destroyed: false } ctx ? ctx.Handle : 0;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetCurrent", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxPushCurrent")]
    internal static CuResult CtxPushCurrentV1(nint context) => PushContext(context);

    [UnmanagedCallersOnly(EntryPoint = "cuCtxPushCurrent_v2")]
    internal static CuResult CtxPushCurrent(nint context) => PushContext(context);

    private static CuResult PushContext(nint context)
    {
        try
        {
            var driver = Driver.Instance;
            Driver.Push(driver.ResolveContext(context));
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxPushCurrent", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxPopCurrent")]
    internal static CuResult CtxPopCurrentV1(nint* context) => PopContext(context);

    [UnmanagedCallersOnly(EntryPoint = "cuCtxPopCurrent_v2")]
    internal static CuResult CtxPopCurrent(nint* context) => PopContext(context);

    private static CuResult PopContext(nint* context)
    {
        try
        {
            _ = Driver.Instance;
            var popped = Driver.Pop() ?? throw new CudaException(CuResult.InvalidContext, "no context is current on this thread");
            if (context is not null)
            {
                *context = popped.Handle;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxPopCurrent", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxSynchronize")]
    internal static CuResult CtxSynchronize()
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            driver.WaitHostCalls(null);
            driver.Wait(driver.Session.SynchronizeAsync(), "cuCtxSynchronize");
            driver.WaitPendingFrees();
            driver.WaitCopies(null);
            driver.NoteAllIdle();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxSynchronize", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetDevice")]
    internal static CuResult CtxGetDevice(int* device)
    {
        try
        {
            NotNull(device, "device");
            _ = Driver.Instance;
            _ = Driver.Current();
            *device = 0;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetDevice", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetFlags")]
    internal static CuResult CtxGetFlags(uint* flags)
    {
        try
        {
            NotNull(flags, "flags");
            _ = Driver.Instance;
            *flags = Driver.Current().Flags;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetFlags", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetApiVersion")]
    internal static CuResult CtxGetApiVersion(nint context, uint* version)
    {
        try
        {
            NotNull(version, "version");
            var driver = Driver.Instance;
            _ = context == 0 ? Driver.Current() : driver.ResolveContext(context);

            // The context API version, 3020 for every context since CUDA 3.2's _v2 ABI.
            *version = 3020;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetApiVersion", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuCtxGetStreamPriorityRange")]
    internal static CuResult CtxGetStreamPriorityRange(int* least, int* greatest)
    {
        try
        {
            _ = Driver.Instance;
            _ = Driver.Current();

            // Stream priorities are not supported: the range is [0, 0], as the driver reports for such a device.
            if (least is not null)
            {
                *least = 0;
            }

            if (greatest is not null)
            {
                *greatest = 0;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuCtxGetStreamPriorityRange", ex);
        }
    }
}
