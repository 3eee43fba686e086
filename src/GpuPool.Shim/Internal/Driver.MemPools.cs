using GpuPool.Client;
using GpuPool.Protocol.Errors;

namespace GpuPool.Shim.Internal;

/// <summary>Stream-ordered frees (cuMemFreeAsync) still on their way.</summary>
internal sealed partial class Driver
{
    private readonly List<Task> _pendingFrees = [];

    /// <summary>
    /// Frees <paramref name="ptr"/> without waiting. The broker frees like cuMemFree: only once the work queued
    /// before the free (on every stream) has completed, so a kernel queued before it never loses its memory. The
    /// program's next cuCtxSynchronize waits for it, and reports its failure.
    /// </summary>
    public void FreeInStreamOrder(ulong ptr)
    {
        var free = Session.FreeAsync(new DevicePtr(ptr));
        lock (_pendingFrees)
        {
            _pendingFrees.RemoveAll(static f => f.IsCompletedSuccessfully);
            _pendingFrees.Add(free);
        }
    }

    /// <summary>Whether a stream-ordered free has yet to complete.</summary>
    public bool FreesPending()
    {
        lock (_pendingFrees)
        {
            _pendingFrees.RemoveAll(static f => f.IsCompletedSuccessfully);
            return _pendingFrees.Count > 0;
        }
    }

    /// <summary>Waits for the stream-ordered frees sent so far; throws the first one's failure.</summary>
    public void WaitPendingFrees()
    {
        Task[] waiting;
        lock (_pendingFrees)
        {
            waiting = [.. _pendingFrees];
            _pendingFrees.Clear();
        }

        foreach (var free in waiting)
        {
            Wait(free, "a stream-ordered free");
        }
    }

    /// <summary>
    /// An allocation for cuMemAllocAsync: memory a stream-ordered free has yet to give back to the lease is waited
    /// for once, as the driver reuses it, before the allocation fails with CUDA_ERROR_OUT_OF_MEMORY.
    /// </summary>
    public ulong AllocateFromPool(ulong bytes, string call)
    {
        try
        {
            return Wait(Session.AllocAsync(bytes), call).Address;
        }
        catch (GpuPoolException ex) when (Errors.Map(ex) == CuResult.OutOfMemory && FreesPending())
        {
            WaitPendingFrees();
            return Wait(Session.AllocAsync(bytes), call).Address;
        }
    }
}
