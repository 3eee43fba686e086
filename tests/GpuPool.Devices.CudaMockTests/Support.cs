using System.Buffers.Binary;
using System.Runtime.InteropServices;
using GpuPool.Devices.Cuda;
using GpuPool.Devices.Scheduling;

namespace GpuPool.Devices.CudaMockTests;

/// <summary>Driving a cuda context the way the broker does.</summary>
internal static class Ops
{
    public const ulong MiB = 1 << 20;

    public static readonly LaunchDims Dims = new(4, 1, 1, 128, 1, 1, 0);

    private static long _seq;

    public static IDeviceContext Context(ulong limit = 16 * MiB, string lease = "lease-a", int share = 500)
        => MockDriver.Device.CreateContext(new ContextOptions(lease, limit, share));

    public static OpTag Tag(string op) => new((ulong)Interlocked.Increment(ref _seq), op);

    public static ulong Upload(IDeviceContext context, float[] values, ulong stream = 0)
    {
        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var pointer = context.Allocate((ulong)bytes.Length);
        context.EnqueueCopyToDevice(stream, pointer, bytes, Tag("memcpy_htod"));
        return pointer;
    }

    public static async Task<byte[]> DownloadAsync(IDeviceContext context, ulong pointer, int bytes, ulong stream = 0, bool chunks = true)
    {
        var sink = new Sink(bytes, chunks);
        context.EnqueueCopyToHost(stream, pointer, (ulong)bytes, sink, Tag("memcpy_dtoh"));
        var (data, error) = await sink.Result.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(error is null, error?.Error.Message);
        return data!;
    }

    public static async Task<float[]> FloatsAsync(IDeviceContext context, ulong pointer, int count, ulong stream = 0)
        => MemoryMarshal.Cast<byte, float>(await DownloadAsync(context, pointer, count * 4, stream)).ToArray();

    public static byte[] Params(ulong n, float value, ulong pointer)
    {
        var block = new byte[24];
        BinaryPrimitives.WriteUInt64LittleEndian(block, n);
        BinaryPrimitives.WriteSingleLittleEndian(block.AsSpan(8), value);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(16), pointer);
        return block;
    }

    public static byte[] AxpyParams(ulong n, float alpha, ulong x, ulong y)
    {
        var block = new byte[32];
        BinaryPrimitives.WriteUInt64LittleEndian(block, n);
        BinaryPrimitives.WriteSingleLittleEndian(block.AsSpan(8), alpha);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(16), x);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(24), y);
        return block;
    }

    public static ulong Function(IDeviceContext context, string kernel) => context.GetFunction(context.LoadBuiltinModule(), kernel);

    public static void Fill(IDeviceContext context, ulong stream, ulong pointer, int n, float value)
        => context.EnqueueLaunch(stream, Function(context, "fill_f32"), Dims, Params((ulong)n, value, pointer), Tag("launch"));

    public static async Task Within(Task task) => await task.WaitAsync(TimeSpan.FromSeconds(10));

    /// <summary>Collects a device-to-host copy, whole or in chunks.</summary>
    internal sealed class Sink(int length, bool chunks) : ICopyToHostSink
    {
        private readonly byte[] _data = new byte[length];
        private readonly TaskCompletionSource<(byte[]? Data, StickyError? Error)> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private ulong _next;

        public Task<(byte[]? Data, StickyError? Error)> Result => _done.Task;

        public int Chunks { get; private set; }

        public bool AcceptsChunks => chunks;

        public void OnData(ReadOnlySpan<byte> data)
        {
            Assert.Equal(length, data.Length);
            data.CopyTo(_data);
            _done.TrySetResult((_data, null));
        }

        public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
        {
            Assert.Equal(_next, offset);
            data.CopyTo(_data.AsSpan((int)offset));
            _next += (ulong)data.Length;
            Chunks++;
            if (last)
            {
                _done.TrySetResult((_next == (ulong)length ? _data : null, null));
            }
        }

        public void OnError(StickyError error) => _done.TrySetResult((null, error));
    }
}

/// <summary>Holds every kernel slot of the device, so kernels queue behind it until it opens.</summary>
internal sealed class SlotGate : IDisposable
{
    private readonly FairShareDispatcher _dispatcher;
    private int _held;

    private SlotGate(FairShareDispatcher dispatcher) => _dispatcher = dispatcher;

    public static async Task<SlotGate> CloseAsync(CudaDevice device)
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
