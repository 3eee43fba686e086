using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Google.Protobuf;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Client;

/// <summary>
/// A device session on a lease's broker: one bidirectional stream of operations. Launches, memsets,
/// copies to the device, event records and stream waits are fire-and-forget — they return as soon as
/// the op is queued for sending. A failure of such an op surfaces at the next synchronizing call
/// (<see cref="SynchronizeAsync"/>, stream or event synchronize, a copy to the host) as a
/// <see cref="GpuPoolException"/> whose FailedSeq names the op. Thread-safe.
/// </summary>
public sealed class DeviceSession : IAsyncDisposable
{
    private const int DefaultChunkBytes = 1 << 20;

    private readonly AsyncDuplexStreamingCall<OpRequest, OpReply> _call;
    private readonly Channel<OpRequest> _outgoing = Channel.CreateBounded<OpRequest>(new BoundedChannelOptions(256) { SingleReader = true });
    private readonly ConcurrentDictionary<ulong, Pending> _pending = new();
    private readonly SemaphoreSlim _submitGate = new(1, 1);
    private readonly CancellationTokenSource _callCts = new();
    private readonly Task _writer;
    private readonly Task _reader;
    private ulong _seq;
    private volatile GpuPoolException? _fatal;
    private int _chunkBytes = DefaultChunkBytes;
    private int _disposed;

    private DeviceSession(AsyncDuplexStreamingCall<OpRequest, OpReply> call)
    {
        _call = call;

        // The reader first: a writer whose write fails waits for it.
        _reader = Task.Run(ReadLoopAsync);
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>What the broker told us at open: device, limits, attributes.</summary>
    public SessionInfo Info { get; private set; } = new();

    /// <summary>The highest sequence number used so far.</summary>
    public ulong LastSeq => Volatile.Read(ref _seq);

    internal static async Task<DeviceSession> OpenAsync(GrpcChannel channel, string leaseId, string token, CancellationToken cancellationToken)
    {
        var cts = new CancellationTokenSource();
        var call = new Protocol.V1.DeviceSession.DeviceSessionClient(channel).Open(cancellationToken: cts.Token);
        var session = new DeviceSession(call);
        session._callCts.Token.Register(cts.Cancel);
        try
        {
            var reply = await session.CallAsync(new OpRequest { Open = new SessionOpen { LeaseId = leaseId, Token = token } }, cancellationToken).ConfigureAwait(false);
            session.Info = reply.Session;
            if (session.Info.MaxMessageBytes > 0)
            {
                session._chunkBytes = (int)Math.Clamp(session.Info.MaxMessageBytes - (64u * 1024), 4096u, DefaultChunkBytes);
            }

            return session;
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async Task<DevicePtr> AllocAsync(ulong bytes, CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { MemAlloc = new MemAlloc { Bytes = bytes } }, cancellationToken).ConfigureAwait(false)).DevicePtr);

    public Task FreeAsync(DevicePtr ptr, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { MemFree = new MemFree { Ptr = ptr.Address } }, cancellationToken);

    /// <summary>
    /// Copies host bytes to the device, fire-and-forget. The bytes are staged before this returns, so the
    /// caller may reuse its buffer at once. Large copies travel in chunks.
    /// </summary>
    public ValueTask CopyToDeviceAsync(DevicePtr dst, ReadOnlyMemory<byte> source, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => CopyChunksAsync(dst, source.Length, (offset, n) => ByteString.CopyFrom(source.Span.Slice(offset, n)), stream, cancellationToken);

    /// <summary>Copies an array of values to the device, fire-and-forget, like the byte overload.</summary>
    public ValueTask CopyToDeviceAsync<T>(DevicePtr dst, T[] source, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);
        return CopyChunksAsync(dst, checked(source.Length * Marshal.SizeOf<T>()), (offset, n) => ByteString.CopyFrom(MemoryMarshal.AsBytes(source.AsSpan()).Slice(offset, n)), stream, cancellationToken);
    }

    private async ValueTask CopyChunksAsync(DevicePtr dst, int length, Func<int, int, ByteString> slice, DeviceStream stream, CancellationToken cancellationToken)
    {
        var offset = 0;
        do
        {
            var n = Math.Min(_chunkBytes, length - offset);
            var op = new MemcpyHtoD { Ptr = dst.Address + (ulong)offset, Data = slice(offset, n), Stream = stream.Id };
            await SendAsync(new OpRequest { MemcpyHtod = op }, cancellationToken).ConfigureAwait(false);
            offset += n;
        }
        while (offset < length);
    }

    /// <summary>Copies device bytes into <paramref name="destination"/>; completes when they have all arrived.</summary>
    public async Task CopyToHostAsync(DevicePtr src, Memory<byte> destination, DeviceStream stream = default, CancellationToken cancellationToken = default)
    {
        var pending = new CopyPending(destination);
        await SendAsync(new OpRequest { MemcpyDtoh = new MemcpyDtoH { Ptr = src.Address, Bytes = (ulong)destination.Length, Stream = stream.Id } }, cancellationToken, pending).ConfigureAwait(false);
        await pending.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<T[]> CopyToHostAsync<T>(DevicePtr src, int count, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        var result = new T[count];
        var bytes = new byte[checked(count * Marshal.SizeOf<T>())];
        await CopyToHostAsync(src, bytes, stream, cancellationToken).ConfigureAwait(false);
        MemoryMarshal.Cast<byte, T>(bytes).CopyTo(result);
        return result;
    }

    public ValueTask CopyDeviceToDeviceAsync(DevicePtr dst, DevicePtr src, ulong bytes, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => SendAsync(new OpRequest { MemcpyDtod = new MemcpyDtoD { Dst = dst.Address, Src = src.Address, Bytes = bytes, Stream = stream.Id } }, cancellationToken);

    /// <summary>Sets <paramref name="count"/> elements of <paramref name="elementSize"/> bytes (1, 2 or 4) to <paramref name="value"/>; fire-and-forget.</summary>
    public ValueTask MemsetAsync(DevicePtr dst, uint value, ulong count, int elementSize = 1, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => SendAsync(new OpRequest { Memset = new Memset { Ptr = dst.Address, Value = value, Count = count, ElementSize = (uint)elementSize, Stream = stream.Id } }, cancellationToken);

    public async Task<DeviceModule> LoadBuiltinModuleAsync(CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { ModuleLoad = new ModuleLoad { Builtin = true } }, cancellationToken).ConfigureAwait(false)).Handle);

    /// <summary>Loads a PTX or cubin image.</summary>
    public async Task<DeviceModule> LoadModuleAsync(ReadOnlyMemory<byte> image, CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { ModuleLoad = new ModuleLoad { Image = ByteString.CopyFrom(image.Span) } }, cancellationToken).ConfigureAwait(false)).Handle);

    public Task UnloadModuleAsync(DeviceModule module, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { ModuleUnload = new ModuleUnload { Module = module.Id } }, cancellationToken);

    public async Task<KernelFunction> GetFunctionAsync(DeviceModule module, string name, CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { ModuleGetFunction = new ModuleGetFunction { Module = module.Id, Name = name } }, cancellationToken).ConfigureAwait(false)).Handle, name);

    /// <summary>Launches a kernel, fire-and-forget.</summary>
    public ValueTask LaunchAsync(KernelFunction function, Dim3 grid, Dim3 block, KernelArgs args, DeviceStream stream = default, uint sharedMemBytes = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        return SendAsync(
            new OpRequest
            {
                Launch = new Launch
                {
                    Function = function.Handle,
                    GridX = grid.X, GridY = grid.Y, GridZ = grid.Z,
                    BlockX = block.X, BlockY = block.Y, BlockZ = block.Z,
                    SharedMemBytes = sharedMemBytes,
                    Stream = stream.Id,
                    Params = args.ToByteString(),
                },
            },
            cancellationToken);
    }

    public async Task<DeviceStream> CreateStreamAsync(CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { StreamCreate = new StreamCreate() }, cancellationToken).ConfigureAwait(false)).Handle);

    public Task DestroyStreamAsync(DeviceStream stream, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { StreamDestroy = new StreamDestroy { Stream = stream.Id } }, cancellationToken);

    public Task SynchronizeStreamAsync(DeviceStream stream, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { StreamSynchronize = new StreamSynchronize { Stream = stream.Id } }, cancellationToken);

    public ValueTask StreamWaitEventAsync(DeviceStream stream, DeviceEvent evt, CancellationToken cancellationToken = default)
        => SendAsync(new OpRequest { StreamWaitEvent = new StreamWaitEvent { Stream = stream.Id, Event = evt.Id } }, cancellationToken);

    public async Task<DeviceEvent> CreateEventAsync(CancellationToken cancellationToken = default)
        => new((await CallAsync(new OpRequest { EventCreate = new EventCreate() }, cancellationToken).ConfigureAwait(false)).Handle);

    public Task DestroyEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { EventDestroy = new EventDestroy { Event = evt.Id } }, cancellationToken);

    public ValueTask RecordEventAsync(DeviceEvent evt, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => SendAsync(new OpRequest { EventRecord = new EventRecord { Event = evt.Id, Stream = stream.Id } }, cancellationToken);

    public Task SynchronizeEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { EventSynchronize = new EventSynchronize { Event = evt.Id } }, cancellationToken);

    public async Task<bool> QueryEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => (await CallAsync(new OpRequest { EventQuery = new EventQuery { Event = evt.Id } }, cancellationToken).ConfigureAwait(false)).Ready;

    public async Task<float> ElapsedMillisecondsAsync(DeviceEvent start, DeviceEvent end, CancellationToken cancellationToken = default)
        => (await CallAsync(new OpRequest { EventElapsedTime = new EventElapsedTime { Start = start.Id, End = end.Id } }, cancellationToken).ConfigureAwait(false)).ElapsedMs;

    /// <summary>Waits for all work of the session; throws the sticky error of a failed fire-and-forget op.</summary>
    public Task SynchronizeAsync(CancellationToken cancellationToken = default)
        => CallAsync(new OpRequest { Synchronize = new CtxSynchronize() }, cancellationToken);

    public async Task<(ulong Free, ulong Total)> MemGetInfoAsync(CancellationToken cancellationToken = default)
    {
        var info = (await CallAsync(new OpRequest { MemGetInfo = new MemGetInfo() }, cancellationToken).ConfigureAwait(false)).MemInfo;
        return (info.FreeBytes, info.TotalBytes);
    }

    /// <summary>Sends an op and waits for its reply; an error reply becomes a GpuPoolException.</summary>
    private async Task<OpReply> CallAsync(OpRequest request, CancellationToken cancellationToken)
    {
        var pending = new ReplyPending();
        await SendAsync(request, cancellationToken, pending).ConfigureAwait(false);
        return await pending.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Numbers the op, registers who waits for its reply (if anyone), and queues it for the writer.</summary>
    private async ValueTask SendAsync(OpRequest request, CancellationToken cancellationToken, Pending? pending = null)
    {
        ThrowIfFatal();
        await _submitGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFatal();
            request.Seq = ++_seq;
            if (pending is not null)
            {
                _pending[request.Seq] = pending;
            }

            if (!_outgoing.Writer.TryWrite(request))
            {
                await _outgoing.Writer.WriteAsync(request, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (ChannelClosedException)
        {
            throw _fatal ?? Closed();
        }
        finally
        {
            _submitGate.Release();
        }
    }

    private async Task WriteLoopAsync()
    {
        try
        {
            await foreach (var request in _outgoing.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                await _call.RequestStream.WriteAsync(request).ConfigureAwait(false);
            }

            await _call.RequestStream.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            // A write fails once the broker has ended the call, and then only says "cancelled"; the status the
            // broker ended it with (lease ended, message too large) reaches the reader, which fails the session
            // with it. Ours is the fallback for a reader that does not finish.
            await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            Fail(ex is RpcException rpc
                ? FromCall(rpc)
                : new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to the broker failed ({ex.Message})", inner: ex));
        }
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            await foreach (var reply in _call.ResponseStream.ReadAllAsync().ConfigureAwait(false))
            {
                if (_pending.TryGetValue(reply.Seq, out var pending) && pending.OnReply(reply))
                {
                    _pending.TryRemove(reply.Seq, out _);
                }
            }

            Fail(Closed());
        }
        catch (RpcException ex)
        {
            Fail(FromCall(ex));
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or OperationCanceledException)
        {
            Fail(new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to the broker failed ({ex.Message})", inner: ex));
        }
    }

    /// <summary>
    /// The error a failed call stands for. A connection the broker closed under the call (it stopped, or the
    /// network broke) comes out of grpc-dotnet as Internal; it is Unavailable, not a bug of ours.
    /// </summary>
    private static GpuPoolException FromCall(RpcException ex)
        => ex.StatusCode == StatusCode.Internal && ex.Trailers.GetValueBytes(GpuPoolException.TrailerKey) is null && ex.Status.DebugException is IOException
            ? new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to the broker was closed ({ex.Status.DebugException.Message})", inner: ex)
            : GpuPoolException.FromRpc(ex, "device session");

    /// <summary>The session is over: every waiter and every later call gets <paramref name="error"/>.</summary>
    private void Fail(GpuPoolException error)
    {
        _fatal ??= error;
        _outgoing.Writer.TryComplete();
        foreach (var seq in _pending.Keys)
        {
            if (_pending.TryRemove(seq, out var pending))
            {
                pending.Fail(_fatal);
            }
        }
    }

    private void ThrowIfFatal()
    {
        if (_fatal is { } fatal)
        {
            throw new GpuPoolException(fatal.Code, fatal.Message, fatal.FailedSeq, fatal.FailedOp, fatal);
        }
    }

    private static GpuPoolException Closed() => new(ErrorCode.Unavailable, "the device session is closed");

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _outgoing.Writer.TryComplete();
        try
        {
            await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            await _reader.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The broker did not close its side in time; cancel the call below.
        }

        Fail(Closed());
        await _callCts.CancelAsync().ConfigureAwait(false);
        _call.Dispose();
        _callCts.Dispose();
    }

    private abstract class Pending
    {
        /// <summary>Takes a reply for this op; true when no more replies are expected.</summary>
        public abstract bool OnReply(OpReply reply);

        public abstract void Fail(GpuPoolException error);
    }

    private sealed class ReplyPending : Pending
    {
        private readonly TaskCompletionSource<OpReply> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<OpReply> Task => _tcs.Task;

        public override bool OnReply(OpReply reply)
        {
            if (reply.Error is { } error)
            {
                _tcs.TrySetException(GpuPoolException.FromProto(error));
            }
            else
            {
                _tcs.TrySetResult(reply);
            }

            return true;
        }

        public override void Fail(GpuPoolException error) => _tcs.TrySetException(error);
    }

    /// <summary>Assembles the chunks of a device-to-host copy into the caller's buffer.</summary>
    private sealed class CopyPending(Memory<byte> destination) : Pending
    {
        private readonly TaskCompletionSource _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _received;

        public Task Task => _tcs.Task;

        public override bool OnReply(OpReply reply)
        {
            if (reply.Error is { } error)
            {
                _tcs.TrySetException(GpuPoolException.FromProto(error));
                return true;
            }

            var chunk = reply.Data;
            if (chunk is null || chunk.Offset + (ulong)chunk.Bytes.Length > (ulong)destination.Length)
            {
                _tcs.TrySetException(new GpuPoolException(ErrorCode.Internal, "the broker sent copy data outside the requested range"));
                return true;
            }

            chunk.Bytes.Span.CopyTo(destination.Span[(int)chunk.Offset..]);
            _received += chunk.Bytes.Length;
            if (!chunk.LastChunk)
            {
                return false;
            }

            if (_received != destination.Length)
            {
                _tcs.TrySetException(new GpuPoolException(ErrorCode.Internal, $"the copy ended after {_received} of {destination.Length} bytes"));
            }
            else
            {
                _tcs.TrySetResult();
            }

            return true;
        }

        public override void Fail(GpuPoolException error) => _tcs.TrySetException(error);
    }
}
