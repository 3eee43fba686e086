using System.Runtime.InteropServices;
using GpuPool.Devices.Tests.Contexts;

namespace GpuPool.Devices.CudaMockTests;

/// <summary>Driving a cuda context the way the broker does.</summary>
internal static class Ops
{
    public const ulong MiB = 1 << 20;

    public static readonly LaunchDims Dims = ContextOps.Dims;

    public static IDeviceContext Context(ulong limit = 16 * MiB, string lease = "lease-a", int share = 500)
        => MockDriver.Device.CreateContext(new ContextOptions(lease, limit, share));

    public static OpTag Tag(string op) => ContextOps.Tag(op);

    public static ulong Upload(IDeviceContext context, float[] values, ulong stream = 0) => ContextOps.Upload(context, values, stream);

    /// <summary>Takes the copy in chunks (as the broker's reply writer does) or whole.</summary>
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

    public static byte[] Params(ulong n, float value, ulong pointer) => ContextOps.FillParams(n, value, pointer);

    public static byte[] AxpyParams(ulong n, float alpha, ulong x, ulong y) => ContextOps.AxpyParams(n, alpha, x, y);

    public static ulong Function(IDeviceContext context, string kernel) => ContextOps.Function(context, kernel);

    public static void Fill(IDeviceContext context, ulong stream, ulong pointer, int n, float value) => ContextOps.Fill(context, stream, pointer, n, value);

    public static Task Within(Task task) => ContextOps.Within(task);

    public static Task Within(ValueTask wait) => ContextOps.Within(wait);

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
