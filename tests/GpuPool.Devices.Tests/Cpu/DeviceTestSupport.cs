using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Contexts;
using GpuPool.Devices.Cpu;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>Packs kernel parameters as cuLaunchKernel lays them out: each value at an offset aligned to its size.</summary>
internal sealed class ParamPacker
{
    private readonly List<byte> _bytes = [];

    public List<int> Offsets { get; } = [];

    public int Length => _bytes.Count;

    public ParamPacker I32(int value) => Put(4, b => BinaryPrimitives.WriteInt32LittleEndian(b, value));

    public ParamPacker F32(float value) => Put(4, b => BinaryPrimitives.WriteSingleLittleEndian(b, value));

    public ParamPacker U64(ulong value) => Put(8, b => BinaryPrimitives.WriteUInt64LittleEndian(b, value));

    public ParamPacker Ptr(ulong address) => U64(address);

    public byte[] ToArray() => [.. _bytes];

    private ParamPacker Put(int size, SpanAction write)
    {
        while (_bytes.Count % size != 0)
        {
            _bytes.Add(0);
        }

        Offsets.Add(_bytes.Count);
        Span<byte> value = stackalloc byte[size];
        write(value);
        _bytes.AddRange(value.ToArray());
        return this;
    }

    private delegate void SpanAction(Span<byte> destination);
}

/// <summary>Collects the outcome of one device-to-host copy.</summary>
internal sealed class CopySink : ICopyToHostSink
{
    private readonly TaskCompletionSource<(byte[]? Data, StickyError? Error)> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<(byte[]? Data, StickyError? Error)> Result => _done.Task;

    public void OnData(ReadOnlySpan<byte> data) => _done.TrySetResult((data.ToArray(), null));

    public void OnError(StickyError error) => _done.TrySetResult((null, error));
}

/// <summary>
/// Holds every execution slot of a device, so device work queues behind it until the gate opens: lets a test
/// observe "not yet" without racing the workers.
/// </summary>
internal sealed class SlotGate : IDisposable
{
    private readonly FairShareDispatcher _dispatcher;
    private int _held;

    private SlotGate(FairShareDispatcher dispatcher) => _dispatcher = dispatcher;

    public static async Task<SlotGate> CloseAsync(CpuDevice device)
    {
        var gate = new SlotGate(device.Dispatcher);
        var account = new FairShareDispatcher.Account(1000);
        for (var i = 0; i < device.Dispatcher.Slots; i++)
        {
            await device.Dispatcher.AcquireAsync(account, 1);
            gate._held++;
        }

        return gate;
    }

    public void Dispose()
    {
        for (; _held > 0; _held--)
        {
            _dispatcher.Release();
        }
    }
}

/// <summary>Small helpers for driving a context the way the broker does.</summary>
internal static class Dev
{
    public const ulong MiB = 1 << 20;

    public static readonly LaunchDims Dims = new(4, 1, 1, 128, 1, 1, 0);

    private static long _seq;

    public static CpuDevice Device(ulong memory = 256 * MiB, int slots = 2) => new(0, memory, slots);

    public static DeviceContext Context(CpuDevice device, ulong limit = 16 * MiB, string lease = "lease-a", int share = 500)
        => (DeviceContext)device.CreateContext(new ContextOptions(lease, limit, share));

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
        var (data, error) = await sink.Result.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Null(error);
        return MemoryMarshal.Cast<byte, T>(data).ToArray();
    }

    public static ulong Function(IDeviceContext context, string kernel) => context.GetFunction(context.LoadBuiltinModule(), kernel);

    public static void Launch(IDeviceContext context, ulong stream, string kernel, ParamPacker args, string op = "launch")
        => context.EnqueueLaunch(stream, Function(context, kernel), Dims, args.ToArray(), Tag(op));

    public static void Fill(IDeviceContext context, ulong stream, ulong ptr, int n, float value)
        => Launch(context, stream, "fill_f32", new ParamPacker().U64((ulong)n).F32(value).Ptr(ptr));

    public static void Axpy(IDeviceContext context, ulong stream, float alpha, ulong x, ulong y, int n)
        => Launch(context, stream, "axpy_f32", new ParamPacker().U64((ulong)n).F32(alpha).Ptr(x).Ptr(y));

    public static void Scale(IDeviceContext context, ulong stream, float alpha, ulong x, int n)
        => Launch(context, stream, "scale_f32", new ParamPacker().U64((ulong)n).F32(alpha).Ptr(x));

    /// <summary>Gives queued work a chance to run (it must not have, for the assertion that follows to mean anything).</summary>
    public static Task Settle() => Task.Delay(50);

    public static async Task<T> Within<T>(Task<T> task) => await task.WaitAsync(TimeSpan.FromSeconds(10));

    public static async Task Within(Task task) => await task.WaitAsync(TimeSpan.FromSeconds(10));
}
