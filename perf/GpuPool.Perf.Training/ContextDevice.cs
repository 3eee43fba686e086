using System.Buffers;
using System.Runtime.InteropServices;
using GpuPool.Client;
using GpuPool.Devices;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Perf.Training;

/// <summary>
/// The tensor layer's device ops straight on a device context in this process: no session, no broker, no network.
/// It keeps a session's contract (fire-and-forget launches and copies, bytes taken on return, a failure surfacing at
/// the next synchronizing call as a <see cref="GpuPoolException"/>) so that one model runs unchanged on both.
/// </summary>
internal sealed class ContextDevice(IDeviceContext context) : IDeviceOps
{
    private long _seq;

    /// <summary>Launches so far.</summary>
    public long Launches { get; private set; }

    public Task<DevicePtr> AllocAsync(ulong bytes, CancellationToken cancellationToken = default)
    {
        try
        {
            return Task.FromResult(new DevicePtr(context.Allocate(bytes)));
        }
        catch (DeviceException ex)
        {
            return Task.FromException<DevicePtr>(ToGpuPool(ex));
        }
    }

    public async Task FreeAsync(DevicePtr ptr, CancellationToken cancellationToken = default)
    {
        try
        {
            await context.FreeAsync(ptr.Address).ConfigureAwait(false);
        }
        catch (DeviceException ex)
        {
            throw ToGpuPool(ex);
        }
    }

    public ValueTask CopyToDeviceAsync<T>(DevicePtr dst, T[] source, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);

        // Taken on return, as a session takes it; then, as the broker does, straight into device memory when the
        // stream is idle, else queued. (Only uploads of data take this path, not a training step.)
        var bytes = MemoryMarshal.AsBytes(source.AsSpan()).ToArray();
        if (!context.TryCopyToDeviceNow(stream.Id, dst.Address, new ReadOnlySequence<byte>(bytes)))
        {
            context.EnqueueCopyToDevice(stream.Id, dst.Address, bytes, Tag("memcpy_htod"));
        }

        return default;
    }

    public async Task<T[]> CopyToHostAsync<T>(DevicePtr src, int count, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        var sink = new HostSink(new byte[checked(count * Marshal.SizeOf<T>())]);
        context.EnqueueCopyToHost(stream.Id, src.Address, (ulong)sink.Bytes.Length, sink, Tag("memcpy_dtoh"));
        await sink.Done.WaitAsync(cancellationToken).ConfigureAwait(false);
        var result = new T[count];
        MemoryMarshal.Cast<byte, T>(sink.Bytes).CopyTo(result);
        return result;
    }

    public Task<DeviceModule> LoadBuiltinModuleAsync(CancellationToken cancellationToken = default)
        => Task.FromResult(new DeviceModule(context.LoadBuiltinModule()));

    public Task<KernelFunction> GetFunctionAsync(DeviceModule module, string name, CancellationToken cancellationToken = default)
    {
        try
        {
            return Task.FromResult(new KernelFunction(context.GetFunction(module.Id, name), name));
        }
        catch (DeviceException ex)
        {
            return Task.FromException<KernelFunction>(ToGpuPool(ex));
        }
    }

    public ValueTask LaunchAsync(KernelFunction function, Dim3 grid, Dim3 block, KernelArgs args, DeviceStream stream = default, uint sharedMemBytes = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        Launches++;

        // The context copies the parameter block before it returns (as the session copies it into its send buffer).
        context.EnqueueLaunch(stream.Id, function.Handle, new LaunchDims(grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMemBytes), args.Packed, Tag("launch"));
        return default;
    }

    public async ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
    {
        await context.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
        if (context.TakeError() is { } sticky)
        {
            throw ToGpuPool(sticky);
        }
    }

    private OpTag Tag(string op) => new((ulong)Interlocked.Increment(ref _seq), op);

    private static GpuPoolException ToGpuPool(DeviceException ex) => new(ErrorCode.Internal, $"{ex.Code}: {ex.Message}", inner: ex);

    private static GpuPoolException ToGpuPool(StickyError sticky)
        => new(ErrorCode.Internal, $"operation #{sticky.Op.Seq} ({sticky.Op.Op}) failed: {sticky.Error.Code}: {sticky.Error.Message}", sticky.Op.Seq, sticky.Op.Op, sticky.Error);

    /// <summary>Receives a copy to the host on the device's thread and completes <see cref="Done"/>.</summary>
    private sealed class HostSink(byte[] bytes) : ICopyToHostSink
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public byte[] Bytes => bytes;

        public Task Done => _done.Task;

        public void OnData(ReadOnlySpan<byte> data)
        {
            if (data.Length != bytes.Length)
            {
                _done.TrySetException(new GpuPoolException(ErrorCode.Internal, $"a copy of {bytes.Length} bytes to the host brought {data.Length}"));
                return;
            }

            data.CopyTo(bytes);
            _done.TrySetResult();
        }

        public void OnError(StickyError error) => _done.TrySetException(ToGpuPool(error));
    }
}
