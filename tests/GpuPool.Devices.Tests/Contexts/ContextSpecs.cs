using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Tests.Contexts;

/// <summary>
/// What the specifications of the shared context core stand on, for any backend: a device to open contexts on, the
/// dispatcher whose slots a test can hold shut, and small helpers that drive a context the way the broker does. Only
/// the built-in kernels fill_f32 and axpy_f32 are used, which every backend (the mock driver too) runs. This file is
/// compiled into GpuPool.Devices.Tests (the cpu backend) and GpuPool.Devices.CudaMockTests (the cuda backend).
/// </summary>
public abstract class ContextSpecs((IDevice Device, FairShareDispatcher Dispatcher) target)
{
    protected const ulong MiB = 1 << 20;

    protected IDeviceContext Context(ulong limit = 16 * MiB) => target.Device.CreateContext(new ContextOptions($"lease-{ContextOps.Tag("lease").Seq}", limit, 500));

    /// <summary>Holds every kernel slot of the device, so kernels queue behind it until it is disposed.</summary>
    protected Task<SlotGate> HoldSlotsAsync() => SlotGate.CloseAsync(target.Dispatcher);

    /// <summary>A memset that fails when the stream reaches it (elements of 3 bytes): the simplest failure on every backend.</summary>
    protected static void FailingMemset(IDeviceContext context, ulong stream, ulong ptr, OpTag tag) => context.EnqueueMemset(stream, ptr, 0, 3, 16, tag);

    /// <summary>Gives queued work a chance to run (it must not have, for the assertion that follows to mean anything).</summary>
    protected static Task Settle() => Task.Delay(50);
}

/// <summary>Drives a context the way the broker does, for the specifications and the backends' own tests.</summary>
internal static class ContextOps
{
    public static readonly LaunchDims Dims = new(4, 1, 1, 128, 1, 1, 0);

    private static long _seq;

    public static OpTag Tag(string op) => new((ulong)Interlocked.Increment(ref _seq), op);

    public static ulong Upload<T>(IDeviceContext context, T[] values, ulong stream = 0)
        where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var ptr = context.Allocate((ulong)bytes.Length);
        context.EnqueueCopyToDevice(stream, ptr, bytes, Tag("memcpy_htod"));
        return ptr;
    }

    public static async Task<T[]> DownloadAsync<T>(IDeviceContext context, ulong ptr, int count, ulong stream = 0)
        where T : unmanaged
    {
        var sink = new CopySink();
        context.EnqueueCopyToHost(stream, ptr, (ulong)(count * Marshal.SizeOf<T>()), sink, Tag("memcpy_dtoh"));
        var (data, error) = await Within(sink.Result);
        Assert.True(error is null, error?.Error.Message);
        return MemoryMarshal.Cast<byte, T>(data).ToArray();
    }

    public static ulong Function(IDeviceContext context, string kernel) => context.GetFunction(context.LoadBuiltinModule(), kernel);

    /// <summary>The parameter block of fill_f32(n, value, y) (whose first two parameters axpy_f32 shares).</summary>
    public static byte[] FillParams(ulong n, float value, ulong y)
    {
        var block = new byte[24];
        BinaryPrimitives.WriteUInt64LittleEndian(block, n);
        BinaryPrimitives.WriteSingleLittleEndian(block.AsSpan(8), value);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(16), y);
        return block;
    }

    public static void Fill(IDeviceContext context, ulong stream, ulong y, int n, float value, OpTag? tag = null)
        => context.EnqueueLaunch(stream, Function(context, "fill_f32"), Dims, FillParams((ulong)n, value, y), tag ?? Tag("launch"));

    /// <summary>The parameter block of axpy_f32(n, alpha, x, y): y += alpha * x.</summary>
    public static byte[] AxpyParams(ulong n, float alpha, ulong x, ulong y)
    {
        var block = new byte[32];
        FillParams(n, alpha, x).CopyTo(block, 0);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(24), y);
        return block;
    }

    /// <summary>y += alpha * x over n floats.</summary>
    public static void Axpy(IDeviceContext context, ulong stream, float alpha, ulong x, ulong y, int n)
        => context.EnqueueLaunch(stream, Function(context, "axpy_f32"), Dims, AxpyParams((ulong)n, alpha, x, y), Tag("launch"));

    public static async Task<T> Within<T>(Task<T> task) => await task.WaitAsync(TimeSpan.FromSeconds(10));

    public static async Task Within(Task task) => await task.WaitAsync(TimeSpan.FromSeconds(10));

    /// <summary>A synchronize's wait, which may be awaited once only, held as a task.</summary>
    public static Task Within(ValueTask wait) => Within(wait.AsTask());
}

/// <summary>Collects the outcome of one device-to-host copy, taken whole.</summary>
internal sealed class CopySink : ICopyToHostSink
{
    private readonly TaskCompletionSource<(byte[]? Data, StickyError? Error)> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<(byte[]? Data, StickyError? Error)> Result => _done.Task;

    public void OnData(ReadOnlySpan<byte> data) => _done.TrySetResult((data.ToArray(), null));

    public void OnError(StickyError error) => _done.TrySetResult((null, error));
}

/// <summary>
/// Holds every execution slot of a device, so device work that takes a slot queues behind it until the gate opens:
/// lets a test observe "not yet" without racing the workers.
/// </summary>
public sealed class SlotGate : IDisposable
{
    private readonly FairShareDispatcher _dispatcher;
    private readonly FairShareDispatcher.Account _account;
    private int _held;

    private SlotGate(FairShareDispatcher dispatcher)
    {
        _dispatcher = dispatcher;
        _account = dispatcher.Open(1000);
    }

    public static async Task<SlotGate> CloseAsync(FairShareDispatcher dispatcher)
    {
        var gate = new SlotGate(dispatcher);
        for (var i = 0; i < dispatcher.Slots; i++)
        {
            await dispatcher.AcquireAsync(gate._account);
            gate._held++;
        }

        return gate;
    }

    public void Dispose()
    {
        for (; _held > 0; _held--)
        {
            _dispatcher.Release(_account, TimeSpan.Zero);
        }
    }
}
