namespace GpuPool.Devices;

/// <summary>The devices one backend serves on this host.</summary>
public interface IDeviceBackend : IDisposable
{
    /// <summary>"cpu" or "cuda".</summary>
    string Name { get; }

    IReadOnlyList<IDevice> Devices { get; }
}

/// <summary>One device. Leases get isolated contexts on it.</summary>
public interface IDevice
{
    int Index { get; }

    string Name { get; }

    string Uuid { get; }

    string Backend { get; }

    ulong MemoryTotal { get; }

    /// <summary>Bytes allocated on the device by all contexts.</summary>
    ulong MemoryUsed { get; }

    /// <summary>Sum of the memory limits of the open contexts: what is promised, not what is used.</summary>
    ulong MemoryReserved { get; }

    int MultiprocessorCount { get; }

    /// <summary>The execution slots its leases' work shares by compute share (the cpu backend's workers, the cuda backend's kernel slots).</summary>
    int ExecutionSlots { get; }

    /// <summary>The CUDA driver's version as cuDriverGetVersion gives it (12080 for 12.8); 0 where no driver runs the device.</summary>
    int DriverVersion { get; }

    /// <summary>Device attributes by CUDA attribute id (CU_DEVICE_ATTRIBUTE_*), served to clients from a cache.</summary>
    IReadOnlyDictionary<int, long> Attributes { get; }

    /// <summary>Live readings from the device's management interface (NVML on the cuda backend); null where the backend has none.</summary>
    DeviceTelemetry? ReadTelemetry() => null;

    /// <summary>
    /// Opens an isolated context for one lease. Fails with OutOfMemory when the memory limits of the
    /// open contexts would pass the device's memory: the device is never oversubscribed.
    /// </summary>
    IDeviceContext CreateContext(ContextOptions options);
}

/// <summary>
/// A device's readings at one moment: its whole memory and what every process uses of it (which includes what
/// the driver keeps per context, unlike <see cref="IDevice.MemoryUsed"/>), GPU utilization over the driver's last
/// sample period, and temperature. A reading the device did not give is null.
/// </summary>
public sealed record DeviceTelemetry(ulong? MemoryTotal, ulong? MemoryUsed, uint? UtilizationPercent, int? TemperatureC);

/// <summary>What a lease is allowed on a device: its memory limit, its compute share (1..1000) and how the share holds.</summary>
public sealed record ContextOptions(string LeaseId, ulong MemoryLimit, int ComputeShare, ShareMode ShareMode = ShareMode.WorkConserving);

/// <summary>How a lease's compute share holds when the device has time to spare.</summary>
public enum ShareMode
{
    /// <summary>A backlogged lease gets at least its share of the device's time, and the share its neighbours leave idle.</summary>
    WorkConserving = 0,

    /// <summary>Never more than its share of the device's time, even when the device is otherwise idle.</summary>
    Capped = 1,
}

/// <summary>
/// What a lease's work has taken of its device: the device time measured for it, the fraction of the device's time it
/// took over the last 10 s (1 is the whole device), and its memory in use.
/// </summary>
public readonly record struct LeaseUsage(TimeSpan DeviceTime, double RecentShare, ulong MemoryUsed);

/// <summary>Launch geometry, as cuLaunchKernel takes it.</summary>
public readonly record struct LaunchDims(uint GridX, uint GridY, uint GridZ, uint BlockX, uint BlockY, uint BlockZ, uint SharedMemBytes);

/// <summary>Names the client operation a piece of device work came from, so a failure can be reported against it.</summary>
public readonly record struct OpTag(ulong Seq, string Op);

/// <summary>The first failure of fire-and-forget work, kept until a synchronizing call reports it.</summary>
public sealed record StickyError(OpTag Op, DeviceException Error);

/// <summary>
/// One lease's view of a device: its allocations, modules, streams and events. Work enqueued on a stream
/// runs in order on that stream; different streams run concurrently. When enqueued work fails, the first
/// failure is kept (sticky), later device work of the context is skipped, and <see cref="TakeError"/>
/// hands it to the next synchronizing call, after which work runs again.
/// </summary>
public interface IDeviceContext : IAsyncDisposable
{
    string LeaseId { get; }

    ulong MemoryLimit { get; }

    ulong MemoryUsed { get; }

    int ComputeShare { get; }

    ShareMode ShareMode { get; }

    /// <summary>The device time measured for the lease's work so far, its share of the device lately, and its memory in use.</summary>
    LeaseUsage Usage { get; }

    /// <summary>Allocates device memory (256-byte aligned, zeroed so no lease sees another's data).</summary>
    ulong Allocate(ulong bytes);

    /// <summary>Waits for the context's work, then frees an allocation named by its base address.</summary>
    ValueTask FreeAsync(ulong ptr);

    ulong LoadBuiltinModule();

    /// <summary>
    /// Loads a module image (PTX or cubin) and allocates its module-scope variables, charged against the lease's limit
    /// (OutOfMemory when they do not fit); a backend that cannot load it fails with NotSupported.
    /// </summary>
    ulong LoadModule(ReadOnlySpan<byte> image);

    /// <summary>Unloads a module: its functions and variables go at once, their memory once the work queued before has run.</summary>
    void UnloadModule(ulong module);

    ulong GetFunction(ulong module, string name);

    /// <summary>
    /// The device address and size of a module-scope variable (<c>__device__</c> or <c>__constant__</c>), which the context
    /// allocated when it loaded the module; NotFound when the module has no variable of that name.
    /// </summary>
    (ulong Address, ulong Size) GetGlobal(ulong module, string name);

    /// <summary>
    /// Creates a stream. A <see cref="StreamOrder.Blocking"/> one (CUDA's default) is ordered with stream 0, the legacy
    /// default stream: work on either waits for the work queued before it on the other.
    /// </summary>
    ulong CreateStream(StreamOrder order = StreamOrder.Blocking);

    void DestroyStream(ulong stream);

    ulong CreateEvent();

    void DestroyEvent(ulong evt);

    /// <summary>
    /// Copies <paramref name="data"/> to the device when the stream reaches it. <paramref name="dataOwner"/>,
    /// if given, owns the bytes and is disposed once the copy has run, failed or been skipped.
    /// </summary>
    void EnqueueCopyToDevice(ulong stream, ulong dst, ReadOnlyMemory<byte> data, OpTag tag, IDisposable? dataOwner = null);

    /// <summary>
    /// Copies to the device at once when the stream has nothing queued or running and no error is pending,
    /// so the copy lands exactly where its place in the stream's order is, without staging. False when it
    /// cannot (busy stream, pending error, bad range, closed context): the caller then stages the bytes
    /// and enqueues the copy, which reports any error the usual way. Safe to call from several threads at
    /// once for disjoint ranges (the chunks of one striped copy).
    /// </summary>
    bool TryCopyToDeviceNow(ulong stream, ulong dst, in System.Buffers.ReadOnlySequence<byte> data);

    /// <summary>
    /// Like <see cref="TryCopyToDeviceNow"/>, for bytes still to arrive, which the caller writes itself (a large chunk
    /// received from a socket straight into device memory, with no pass through a buffer): when the stream has nothing
    /// queued or running and no error is pending and the range is valid, the host address of
    /// [<paramref name="dst"/>, <paramref name="dst"/> + <paramref name="length"/>), which the caller may write until
    /// it calls <see cref="EndDirectWrite"/> (the context is not freed before). 0 when it cannot, or when device memory
    /// is not host memory (a GPU): the caller then receives the bytes into a buffer and copies them as usual.
    /// </summary>
    nint TryBeginDirectWrite(ulong stream, ulong dst, int length);

    /// <summary>Ends a write that <see cref="TryBeginDirectWrite"/> began, whether or not all its bytes came.</summary>
    void EndDirectWrite();

    /// <summary>
    /// Copies device memory to the host when the stream reaches it: <paramref name="sink"/> is called
    /// with the bytes (valid only during the call; whole or, if it accepts them, in chunks), or with the
    /// error that stopped the copy.
    /// </summary>
    void EnqueueCopyToHost(ulong stream, ulong src, ulong bytes, ICopyToHostSink sink, OpTag tag);

    void EnqueueCopyDeviceToDevice(ulong stream, ulong dst, ulong src, ulong bytes, OpTag tag);

    /// <summary>
    /// Queues a failure in the stream's order: when the stream reaches it, <paramref name="error"/> becomes the
    /// context's sticky error for <paramref name="tag"/> (unless an earlier one is pending), as if the op had run and
    /// failed. For failures found outside the device, such as a copy whose bytes stopped arriving.
    /// </summary>
    void EnqueueFailure(ulong stream, OpTag tag, DeviceException error);

    void EnqueueMemset(ulong stream, ulong dst, uint value, int elementSize, ulong count, OpTag tag);

    /// <summary>
    /// Checks the function, geometry and parameter block now, and runs the kernel when the stream reaches it. The context
    /// copies <paramref name="parameters"/> before this returns, so the caller may reuse that memory at once (a slice of
    /// its receive buffer, say). A failed check is queued as the op's failure, in the stream's order.
    /// </summary>
    void EnqueueLaunch(ulong stream, ulong function, LaunchDims dims, ReadOnlyMemory<byte> parameters, OpTag tag);

    void EnqueueEventRecord(ulong stream, ulong evt, OpTag tag);

    void EnqueueStreamWaitEvent(ulong stream, ulong evt, OpTag tag);

    /// <summary>
    /// Waits for the work queued on the stream so far. Like every synchronize, it completes at once when there is nothing
    /// to wait for, allocates nothing in steady state, and its <see cref="ValueTask"/> must be awaited once only (call
    /// <see cref="ValueTask.AsTask"/> to hold on to it). A cancelled wait ends the wait, not the work.
    /// </summary>
    ValueTask SynchronizeStreamAsync(ulong stream, CancellationToken cancellationToken = default);

    /// <summary>Waits for the event's latest record as of this call; at once for an event never recorded.</summary>
    ValueTask SynchronizeEventAsync(ulong evt, CancellationToken cancellationToken = default);

    /// <summary>Waits for the work queued so far on every stream, destroyed streams whose work is still running included.</summary>
    ValueTask SynchronizeAsync(CancellationToken cancellationToken = default);

    bool QueryEvent(ulong evt);

    float EventElapsedMilliseconds(ulong start, ulong end);

    /// <summary>The pending sticky error, cleared by taking it; null when none.</summary>
    StickyError? TakeError();

    /// <summary>
    /// What the lease's kernels have printed (device printf) since it was last taken, in the order they printed it;
    /// null when nothing. Bounded as CUDA's printf FIFO is: what did not fit is dropped, with a line saying how much.
    /// </summary>
    string? TakeDeviceOutput() => null;
}

/// <summary>Receives the bytes of a device-to-host copy, on the device's thread.</summary>
public interface ICopyToHostSink
{
    /// <summary>
    /// Whether the sink takes a copy in pieces through <see cref="OnChunk"/>. A backend that stages copies through
    /// bounded buffers (cuda) then needs no host buffer as large as the copy; otherwise it gathers the pieces and
    /// calls <see cref="OnData"/> once.
    /// </summary>
    bool AcceptsChunks => false;

    /// <summary>The whole copy at once.</summary>
    void OnData(ReadOnlySpan<byte> data);

    /// <summary>
    /// One piece of the copy, in order: <paramref name="offset"/> is where it starts in the copy, and <paramref name="last"/>
    /// marks the final piece. Called only when <see cref="AcceptsChunks"/> is true; bytes are valid only during the call.
    /// </summary>
    void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last) => throw new NotSupportedException("this sink takes a copy only whole, through OnData");

    /// <summary>
    /// Whether the sink takes the whole copy as memory that stays valid until <see cref="OnMemoryAsync"/>'s task
    /// completes: a backend whose device memory is host memory (cpu) then lets the sink send the bytes from where they
    /// are, and waits for it without holding a thread.
    /// </summary>
    bool AcceptsMemory => false;

    /// <summary>The whole copy, <paramref name="length"/> bytes at <paramref name="bytes"/>, valid until the returned task completes.</summary>
    ValueTask OnMemoryAsync(nint bytes, int length) => throw new NotSupportedException("this sink takes a copy only as a span");

    void OnError(StickyError error);
}

/// <summary>How a stream is ordered with a context's default stream (stream 0), as CUDA's stream flags say.</summary>
public enum StreamOrder
{
    /// <summary>Work on the stream waits for the work queued before it on stream 0, and stream 0's work waits for the stream's.</summary>
    Blocking,

    /// <summary>The stream runs beside stream 0, unordered with it (CU_STREAM_NON_BLOCKING).</summary>
    NonBlocking,
}
