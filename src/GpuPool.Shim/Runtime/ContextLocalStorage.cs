using System.Runtime.InteropServices;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Runtime;

/// <summary>
/// Values the CUDA runtime keeps per context under keys of its own (its per-context state), with a destructor it
/// wants called when the context goes: destroyed, its primary context released to zero, or reset. A null context
/// means the calling thread's current one.
/// </summary>
internal static unsafe class ContextLocalStorage
{
    [UnmanagedCallersOnly]
    public static CuResult Put(nint context, nint key, nint value, nint destructor)
    {
        try
        {
            var driver = Driver.Instance;
            var ctx = Resolve(driver, context);
            lock (driver.Gate)
            {
                ctx.LocalStorage[key] = new(value, destructor);
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("context-local storage: put", ex);
        }
    }

    [UnmanagedCallersOnly]
    public static CuResult Delete(nint context, nint key)
    {
        try
        {
            var driver = Driver.Instance;
            var ctx = Resolve(driver, context);
            lock (driver.Gate)
            {
                ctx.LocalStorage.Remove(key);
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("context-local storage: delete", ex);
        }
    }

    /// <summary>A key never put answers CUDA_ERROR_INVALID_HANDLE, and the runtime then creates its state and puts it.</summary>
    [UnmanagedCallersOnly]
    public static CuResult Get(nint* value, nint context, nint key)
    {
        try
        {
            if (value is null)
            {
                return CuResult.InvalidValue;
            }

            var driver = Driver.Instance;
            var ctx = Resolve(driver, context);
            lock (driver.Gate)
            {
                if (!ctx.LocalStorage.TryGetValue(key, out var entry))
                {
                    return CuResult.InvalidHandle;
                }

                *value = entry.Value;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("context-local storage: get", ex);
        }
    }

    /// <summary>
    /// Calls the destructors of what the runtime stored on a context that is going, before its resources are
    /// freed (a destructor may still use them), outside the shim's locks (a destructor may call the driver).
    /// </summary>
    public static void RunDestructors(Driver driver, Context ctx)
    {
        KeyValuePair<nint, StoredValue>[] entries;
        lock (driver.Gate)
        {
            entries = [.. ctx.LocalStorage];
            ctx.LocalStorage.Clear();
        }

        foreach (var (key, entry) in entries)
        {
            if (entry.Destructor != 0)
            {
                ((delegate* unmanaged<nint, nint, nint, void>)entry.Destructor)(ctx.Handle, key, entry.Value);
            }
        }
    }

    private static Context Resolve(Driver driver, nint context)
        => context == 0 ? Driver.Current() : driver.ResolveContext(context);
}

/// <summary>A value the runtime stored on a context, and the function to call when the context goes (0: none).</summary>
internal readonly record struct StoredValue(nint Value, nint Destructor);
