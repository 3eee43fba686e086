using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Protocol.Ops;
using GpuPool.Shim.Internal;

namespace GpuPool.Shim.Exports;

/// <summary>
/// Streams and events. Event records and stream waits are fire-and-forget; synchronize calls wait for the
/// broker and report the sticky error of an earlier fire-and-forget op; queries never block.
/// </summary>
internal static unsafe partial class Cuda
{
    [UnmanagedCallersOnly(EntryPoint = "cuStreamCreate")]
    internal static CuResult StreamCreate(nint* stream, uint flags) => CreateStream("cuStreamCreate", stream, flags);

    /// <summary>Priorities are not supported (the range is [0, 0]): any priority is clamped to 0, as the driver clamps out-of-range ones.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuStreamCreateWithPriority")]
    internal static CuResult StreamCreateWithPriority(nint* stream, uint flags, int priority)
    {
        _ = priority;
        return CreateStream("cuStreamCreateWithPriority", stream, flags);
    }

    private static CuResult CreateStream(string call, nint* stream, uint flags)
    {
        try
        {
            NotNull(stream, "phStream");
            if (flags > 1)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of stream flags");
            }

            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var remote = driver.Wait(driver.Session.CreateStreamAsync((StreamFlags)flags), call);
            var s = new StreamObject(ctx, remote, flags, priority: 0);
            s.Handle = driver.Streams.Add(s);
            lock (driver.Gate)
            {
                ctx.Streams.Add(s);
            }

            *stream = s.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamDestroy")]
    internal static CuResult StreamDestroyV1(nint stream) => DestroyStream(stream);

    [UnmanagedCallersOnly(EntryPoint = "cuStreamDestroy_v2")]
    internal static CuResult StreamDestroy(nint stream) => DestroyStream(stream);

    private static CuResult DestroyStream(nint stream)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            if (stream is 0 or 1 or 2)
            {
                throw new CudaException(CuResult.InvalidHandle, "the default stream cannot be destroyed");
            }

            var s = driver.ResolveStreamObject(stream);
            driver.WaitHostCalls(s.Remote);
            driver.Streams.Remove(stream);
            lock (driver.Gate)
            {
                s.Context.Streams.Remove(s);
            }

            driver.Wait(driver.Session.DestroyStreamAsync(s.Remote), "cuStreamDestroy");
            if (driver.ForgetStream(s.Remote) is { } q)
            {
                driver.Wait(driver.Session.DestroyEventAsync(q), "cuStreamDestroy");
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamDestroy", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamSynchronize")]
    internal static CuResult StreamSynchronize(nint stream) => SynchronizeStream(stream);

    private static CuResult SynchronizeStream(nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStream(stream);
            driver.Wait(driver.Session.SynchronizeStreamAsync(s), "cuStreamSynchronize");
            driver.WaitCopies(s);
            driver.NoteIdle(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamSynchronize", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamQuery")]
    internal static CuResult StreamQuery(nint stream) => QueryStream(stream);

    private static CuResult QueryStream(nint stream)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            var s = driver.ResolveStreamNoWait(stream);
            if (driver.HostCallsPending(s) || !driver.QueryStream(s))
            {
                return CuResult.NotReady;
            }

            driver.ThrowFailedCopy();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamQuery", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamWaitEvent")]
    internal static CuResult StreamWaitEvent(nint stream, nint evt, uint flags) => WaitEvent(stream, evt, flags);

    private static CuResult WaitEvent(nint stream, nint evt, uint flags)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            if (flags > 1)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of event wait flags");
            }

            var s = driver.ResolveStream(stream);
            var e = driver.ResolveEvent(evt);
            driver.Wait(driver.Session.StreamWaitEventAsync(s, e.Remote), "cuStreamWaitEvent");
            driver.NoteWork(s);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamWaitEvent", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamGetPriority")]
    internal static CuResult StreamGetPriority(nint stream, int* priority) => GetStreamPriority(stream, priority);

    private static CuResult GetStreamPriority(nint stream, int* priority)
    {
        try
        {
            NotNull(priority, "priority");
            var driver = Driver.Instance;
            *priority = stream is 0 or 1 or 2 ? 0 : driver.ResolveStreamObject(stream).Priority;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamGetPriority", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuStreamGetFlags")]
    internal static CuResult StreamGetFlags(nint stream, uint* flags) => GetStreamFlags(stream, flags);

    private static CuResult GetStreamFlags(nint stream, uint* flags)
    {
        try
        {
            NotNull(flags, "flags");
            var driver = Driver.Instance;
            *flags = stream is 0 or 1 or 2 ? 0 : driver.ResolveStreamObject(stream).Flags;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuStreamGetFlags", ex);
        }
    }

    // ---- Events ----

    [UnmanagedCallersOnly(EntryPoint = "cuEventCreate")]
    internal static CuResult EventCreate(nint* evt, uint flags)
    {
        try
        {
            NotNull(evt, "phEvent");
            if (flags > 0x7)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of event flags");
            }

            if ((flags & 0x4) != 0)
            {
                throw new CudaException(CuResult.NotSupported, "CU_EVENT_INTERPROCESS: events cannot be shared between processes");
            }

            var driver = Driver.Instance;
            var ctx = Driver.Current();
            var remote = driver.Wait(driver.Session.CreateEventAsync(), "cuEventCreate");
            var e = new EventObject(ctx, remote, flags);
            e.Handle = driver.Events.Add(e);
            lock (driver.Gate)
            {
                ctx.Events.Add(e);
            }

            *evt = e.Handle;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuEventCreate", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuEventDestroy")]
    internal static CuResult EventDestroyV1(nint evt) => DestroyEvent(evt);

    [UnmanagedCallersOnly(EntryPoint = "cuEventDestroy_v2")]
    internal static CuResult EventDestroy(nint evt) => DestroyEvent(evt);

    private static CuResult DestroyEvent(nint evt)
    {
        try
        {
            var driver = Driver.InstanceForCleanup;
            var e = driver.ResolveEvent(evt);
            driver.Events.Remove(evt);
            lock (driver.Gate)
            {
                e.Context.Events.Remove(e);
            }

            driver.Wait(driver.Session.DestroyEventAsync(e.Remote), "cuEventDestroy");
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuEventDestroy", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuEventRecord")]
    internal static CuResult EventRecord(nint evt, nint stream) => Record("cuEventRecord", evt, stream, 0);

    [UnmanagedCallersOnly(EntryPoint = "cuEventRecordWithFlags")]
    internal static CuResult EventRecordWithFlags(nint evt, nint stream, uint flags) => Record("cuEventRecordWithFlags", evt, stream, flags);

    private static CuResult Record(string call, nint evt, nint stream, uint flags)
    {
        try
        {
            var driver = Driver.Instance;
            _ = Driver.Current();
            if (flags > 1)
            {
                throw new CudaException(CuResult.InvalidValue, $"0x{flags:x} is not a set of event record flags");
            }

            var e = driver.ResolveEvent(evt);
            var s = driver.ResolveStream(stream);
            driver.Wait(driver.Session.RecordEventAsync(e.Remote, s), call);
            driver.NoteWork(s);
            e.Recorded = true;
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuEventSynchronize")]
    internal static CuResult EventSynchronize(nint evt)
    {
        try
        {
            var driver = Driver.Instance;
            var e = driver.ResolveEvent(evt);
            driver.Wait(driver.Session.SynchronizeEventAsync(e.Remote), "cuEventSynchronize");
            driver.WaitCopies(null);
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuEventSynchronize", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuEventQuery")]
    internal static CuResult EventQuery(nint evt)
    {
        try
        {
            var driver = Driver.Instance;
            var e = driver.ResolveEvent(evt);
            if (!driver.Wait(driver.Session.QueryEventAsync(e.Remote), "cuEventQuery"))
            {
                return CuResult.NotReady;
            }

            // The broker answers in order, so a copy to the host queued before the event has its answer by now.
            driver.ThrowFailedCopy();
            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report("cuEventQuery", ex);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "cuEventElapsedTime")]
    internal static CuResult EventElapsedTime(float* milliseconds, nint start, nint end) => ElapsedTime("cuEventElapsedTime", milliseconds, start, end);

    /// <summary>CUDA 12.8's name for the same call.</summary>
    [UnmanagedCallersOnly(EntryPoint = "cuEventElapsedTime_v2")]
    internal static CuResult EventElapsedTimeV2(float* milliseconds, nint start, nint end) => ElapsedTime("cuEventElapsedTime_v2", milliseconds, start, end);

    private static CuResult ElapsedTime(string call, float* milliseconds, nint start, nint end)
    {
        try
        {
            NotNull(milliseconds, "pMilliseconds");
            var driver = Driver.Instance;
            var a = driver.ResolveEvent(start);
            var b = driver.ResolveEvent(end);
            if (((a.Flags | b.Flags) & EventObject.DisableTiming) != 0)
            {
                throw new CudaException(CuResult.InvalidHandle, "an event created with CU_EVENT_DISABLE_TIMING has no time");
            }

            if (!a.Recorded || !b.Recorded)
            {
                throw new CudaException(CuResult.InvalidHandle, "both events must have been recorded");
            }

            try
            {
                *milliseconds = driver.Wait(driver.Session.ElapsedMillisecondsAsync(a.Remote, b.Remote), call);
            }
            catch (Protocol.Errors.GpuPoolException ex) when (ex.Code == Protocol.V1.ErrorCode.FailedPrecondition)
            {
                // The broker's "not completed yet".
                return CuResult.NotReady;
            }

            return CuResult.Success;
        }
        catch (Exception ex)
        {
            return Errors.Report(call, ex);
        }
    }
}
