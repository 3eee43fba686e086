using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using GpuPool.Client.Transport;
using GpuPool.Client.Transport.FastPath;
using GpuPool.Protocol;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client;

/// <summary>Which transport a session uses.</summary>
public enum SessionTransportKind
{
    /// <summary>The raw fast path when the broker serves one and it can be reached (Unix socket on the same host, else TCP), else gRPC.</summary>
    Auto,

    /// <summary>The gRPC op stream, the portable fallback.</summary>
    Grpc,

    /// <summary>The raw fast path over TCP.</summary>
    Tcp,

    /// <summary>The raw fast path over the broker's Unix socket (same host only).</summary>
    Unix,
}

/// <summary>
/// A device session on a lease's broker: one ordered stream of operations, over the raw fast path or
/// gRPC. Launches, memsets, copies to the device, event records and stream waits are fire-and-forget —
/// they return as soon as the op is queued for sending. A failure of such an op surfaces at the next
/// synchronizing call (<see cref="SynchronizeAsync"/>, stream or event synchronize, a copy to the host)
/// as a <see cref="GpuPoolException"/> whose FailedSeq names the op. Thread-safe.
/// </summary>
public sealed class DeviceSession : IAsyncDisposable, IReplyTarget, IDeviceOps
{
    private readonly SessionTransport _transport;
    private readonly PendingReplies _pending = new();
    private readonly SemaphoreSlim _submitGate = new(1, 1);
    private ulong _seq;
    private volatile GpuPoolException? _fatal;
    private readonly CancellationTokenSource _preempting = new();
    private int _disposed;

    private DeviceSession(SessionTransport transport)
    {
        _transport = transport;
        transport.Start(this);
    }

    /// <summary>What the broker told us at open: device, limits, attributes, transport.</summary>
    public SessionInfo Info { get; private set; } = new();

    /// <summary>"tcp", "unix" or "grpc".</summary>
    public string Transport => _transport.Name;

    /// <summary>The highest sequence number used so far.</summary>
    public ulong LastSeq => Volatile.Read(ref _seq);

    /// <summary>
    /// Cancelled when the broker tells this session that its lease is being preempted: checkpoint and close before
    /// <see cref="PreemptDeadline"/>, when the broker revokes the lease. Comes sooner than the lease's keepalive.
    /// </summary>
    public CancellationToken Preempting => _preempting.Token;

    /// <summary>When the broker revokes the lease, once it is being preempted.</summary>
    public DateTimeOffset? PreemptDeadline { get; private set; }

    /// <summary>
    /// Where what the lease's kernels print (device printf) goes: the broker sends it at the next synchronizing call,
    /// ahead of that call's answer, and it is handed here, in order, before the call returns. By default it is written
    /// to <see cref="Console.Out"/>; set another to take it (the shim writes it through the C program's stdout).
    /// </summary>
    public Action<string> DeviceOutput { get; set; } = static text =>
    {
        Console.Out.Write(text);
        Console.Out.Flush();
    };

    /// <summary>Who preempts the lease and why, once it is being preempted.</summary>
    public string? PreemptReason { get; private set; }

    /// <summary>Extra data connections a striped session has open now (0: its copies travel on its own connection).</summary>
    public int DataConnections => _transport is FastPathSessionTransport fast ? fast.DataConnections : 0;

    /// <param name="token">The lease's current token: read at open, and again when a data connection joins later.</param>
    internal static async Task<DeviceSession> OpenAsync(GpuPoolClient client, LeaseRecord lease, Func<string> token, SessionOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var transport = await ConnectAsync(client, lease, options, cancellationToken).ConfigureAwait(false);
        var session = new DeviceSession(transport);
        try
        {
            var reply = await session.CallAsync(
                (LeaseId: lease.LeaseId, Token: token()),
                static (session, open, seq, ct) => session._transport.SendOpenAsync(seq, open.LeaseId, open.Token, ct),
                cancellationToken).ConfigureAwait(false);
            session.Info = reply.Session ?? throw new GpuPoolException(ErrorCode.Internal, "the broker answered the open op without a session description");
            if (session.Info.MaxMessageBytes > 0)
            {
                transport.UseMessageLimit((int)Math.Min(session.Info.MaxMessageBytes, int.MaxValue), transport is FastPathSessionTransport ? FastPathSessionTransport.PreferredChunk : GrpcSessionTransport.PreferredChunk);
            }

            if (transport is FastPathSessionTransport fast)
            {
                var address = $"{fast.Name} {fast.Endpoint}";
                fast.ConfigureStriping(session.Info, options, token, (reason, connections, wanted) =>
                    Log.StripeFallback(client.Logger, client.FirstTime($"stripe {lease.BrokerId} {address}"), lease.BrokerId, address, reason, connections, wanted));
            }

            return session;
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Picks the transport: the Unix socket when the broker runs on this machine (its registered machine id is this
    /// machine's: host names can be shared), else its TCP fast path, else gRPC. Each fast path gets
    /// <see cref="SessionOptions.FastPathConnectTimeout"/> to connect. An asked-for fast path that cannot be reached
    /// fails with Unavailable naming the broker and the address; Auto falls back, and says so in one line of the
    /// client's log (once per broker and address).
    /// </summary>
    private static async Task<SessionTransport> ConnectAsync(GpuPoolClient client, LeaseRecord lease, SessionOptions options, CancellationToken cancellationToken)
    {
        const int maxMessageBytes = 16 << 20;
        var tls = BrokerTls(client, lease);
        var kind = options.Transport;
        var sameMachine = lease.BrokerMachineId.Length > 0 && string.Equals(lease.BrokerMachineId, MachineIdentity.Get(), StringComparison.OrdinalIgnoreCase);
        var candidates = new List<(string Endpoint, bool Unix)>();
        if ((kind is SessionTransportKind.Auto && sameMachine) || kind is SessionTransportKind.Unix)
        {
            if (lease.BrokerFastPathUnix.Length > 0 && File.Exists(lease.BrokerFastPathUnix))
            {
                candidates.Add((lease.BrokerFastPathUnix, true));
            }
        }

        if (kind is SessionTransportKind.Auto or SessionTransportKind.Tcp && lease.BrokerFastPathTcp.Length > 0)
        {
            candidates.Add((lease.BrokerFastPathTcp, false));
        }

        if (kind is SessionTransportKind.Tcp or SessionTransportKind.Unix && candidates.Count == 0)
        {
            var which = kind is SessionTransportKind.Unix && lease.BrokerFastPathUnix.Length > 0 ? $" (its Unix socket {lease.BrokerFastPathUnix} is not on this machine)" : "";
            throw new GpuPoolException(ErrorCode.Unavailable, $"broker {lease.BrokerId} serves no {kind.ToString().ToLowerInvariant()} fast path that this client can reach{which}");
        }

        var tried = new List<(string Address, string Failure)>();
        foreach (var (endpoint, unix) in candidates)
        {
            var transport = await FastPathSessionTransport.TryConnectAsync(lease.BrokerId, endpoint, unix, options.FastPathConnectTimeout, tls, maxMessageBytes, cancellationToken).ConfigureAwait(false);
            if (transport.Transport is { } connected)
            {
                if (tried.Count > 0)
                {
                    SayFallback(client, lease, tried, $"{connected.Name} {endpoint}");
                }

                return connected;
            }

            if (kind is not SessionTransportKind.Auto)
            {
                throw new GpuPoolException(ErrorCode.Unavailable, $"cannot reach broker {lease.BrokerId}'s fast path at {(unix ? "unix" : "tcp")} {endpoint}: {transport.Failure}");
            }

            tried.Add(($"{(unix ? "unix" : "tcp")} {endpoint}", transport.Failure));
        }

        if (tried.Count > 0)
        {
            SayFallback(client, lease, tried, $"gRPC ({lease.BrokerEndpoint})");
        }

        return new GrpcSessionTransport(client.BrokerChannel(lease.BrokerEndpoint), maxMessageBytes, $"broker {lease.BrokerId} at {lease.BrokerEndpoint}");
    }

    /// <summary>One line: which fast paths could not be reached, why, and what the session runs over instead.</summary>
    /// <summary>
    /// The TLS settings for a broker that registered an https:// endpoint (its TCP fast path speaks TLS too); null for
    /// a broker run with --insecure. A client given no pool CA cannot check a TLS broker: Unauthenticated, saying what to give it.
    /// </summary>
    private static Protocol.Security.PoolTls? BrokerTls(GpuPoolClient client, LeaseRecord lease)
    {
        if (!lease.BrokerEndpoint.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        return client.Tls ?? throw new GpuPoolException(ErrorCode.Unauthenticated, $"broker {lease.BrokerId} at {lease.BrokerEndpoint} speaks TLS, and this client was given no pool CA to check its certificate with: give it the pool's ca.crt (GpuPoolClientOptions.Authority, or $GPUPOOL_CA)");
    }

    private static void SayFallback(GpuPoolClient client, LeaseRecord lease, List<(string Address, string Failure)> tried, string fallback)
    {
        var address = string.Join(", then ", tried.Select(t => t.Address));
        var reason = string.Join("; ", tried.Select(t => t.Failure));
        Log.FastPathFallback(client.Logger, client.FirstTime($"fast path {lease.BrokerId} {address}"), lease.BrokerId, address, reason, fallback);
    }

    public async Task<DevicePtr> AllocAsync(ulong bytes, CancellationToken cancellationToken = default)
        => new((await CallAsync(new MemAllocOp(bytes), cancellationToken).ConfigureAwait(false)).Value);

    public async Task FreeAsync(DevicePtr ptr, CancellationToken cancellationToken = default)
        => await CallAsync(new MemFreeOp(ptr.Address), cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Copies host bytes to the device, fire-and-forget. When this returns the bytes have been taken (sent,
    /// or copied into a send buffer), so the caller may reuse its buffer at once. Large copies travel in
    /// chunks, which the broker puts on the device while the next one arrives. Like every ValueTask, await
    /// it once: its state machine is pooled, so a copy allocates nothing once the session has warmed up.
    /// </summary>
    /// <para>
    /// On the fast path a copy of at least <see cref="SessionOptions.StripeThresholdBytes"/> is striped: its chunks go
    /// out on several connections at once and land as they arrive, and the copy keeps its place in the stream's order.
    /// If a data connection fails during it, the copy fails on the broker and the next synchronizing call reports it
    /// (FailedSeq names it), as for any fire-and-forget op.
    /// </para>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask CopyToDeviceAsync(DevicePtr dst, ReadOnlyMemory<byte> source, DeviceStream stream = default, CancellationToken cancellationToken = default)
    {
        var chunk = _transport.MaxCopyChunk;
        var offset = 0;
        try
        {
            if (_transport is FastPathSessionTransport fast)
            {
                if (await fast.PrepareStripesAsync(source.Length, cancellationToken).ConfigureAwait(false))
                {
                    await SubmitAsync(
                        (Fast: fast, At: dst.Address, Stream: stream.Id, Source: source),
                        static (session, copy, seq, ct) => copy.Fast.SendStripedCopyToDeviceAsync(seq, copy.At, copy.Stream, copy.Source),
                        null,
                        cancellationToken).ConfigureAwait(false);
                    return;
                }

                if (source.Length > chunk)
                {
                    var sent = new StrongBox<int>();
                    try
                    {
                        await SubmitChunksAsync(fast, dst.Address, stream.Id, source, chunk, sent, cancellationToken).ConfigureAwait(false);
                    }
                    finally
                    {
                        offset = sent.Value;
                    }

                    return;
                }
            }

            do
            {
                var n = Math.Min(chunk, source.Length - offset);
                await SubmitCopyAsync(dst.Address + (ulong)offset, stream.Id, source.Slice(offset, n), cancellationToken).ConfigureAwait(false);
                offset += n;
            }
            while (offset < source.Length);
        }
        catch (GpuPoolException ex) when (ex.Code == ErrorCode.Unavailable)
        {
            // The connection broke under the copy: some of its chunks may have reached the device, so the copy
            // as a whole failed. Say which copy, not only that the connection is gone.
            throw new GpuPoolException(ex.Code, $"copy of {source.Length} bytes to the device at 0x{dst.Address:x} failed after {offset} bytes were sent: {ex.Message}", ex.FailedSeq, MemcpyHtoDOp.Name, ex);
        }
    }

    /// <summary>Copies an array of values to the device, fire-and-forget, like the byte overload.</summary>
    public ValueTask CopyToDeviceAsync<T>(DevicePtr dst, T[] source, DeviceStream stream = default, CancellationToken cancellationToken = default)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(source);

        // Bytes are their own view; other values are viewed as bytes through a small wrapper, one per copy.
        ReadOnlyMemory<byte> bytes = source is byte[] array ? array : new ByteView<T>(source).Memory;
        return CopyToDeviceAsync(dst, bytes, stream, cancellationToken);
    }

    /// <summary>
    /// Copies device bytes into <paramref name="destination"/>; completes when they have all arrived. Await it once: the
    /// waiter is reused, so a copy to the host allocates nothing once the session has warmed up.
    /// </summary>
    /// <remarks>
    /// On the fast path a copy of at least <see cref="SessionOptions.StripeThresholdBytes"/> comes back striped over
    /// several connections. If one of them fails during it, the copy fails with an error naming it.
    /// </remarks>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask CopyToHostAsync(DevicePtr src, Memory<byte> destination, DeviceStream stream = default, CancellationToken cancellationToken = default)
    {
        if (_transport is FastPathSessionTransport fast && await fast.PrepareStripesAsync(destination.Length, cancellationToken).ConfigureAwait(false))
        {
            var striped = _pending.RentCopy(destination, striped: true);
            await SubmitAsync(
                (Fast: fast, Ptr: src.Address, Bytes: (ulong)destination.Length, Stream: stream.Id),
                static (session, copy, seq, ct) =>
                {
                    copy.Fast.SendStripedCopyToHost(seq, copy.Ptr, copy.Bytes, copy.Stream);
                    return default;
                },
                striped,
                cancellationToken).ConfigureAwait(false);
            await striped.Wait(cancellationToken).ConfigureAwait(false);
            return;
        }

        var pending = _pending.RentCopy(destination, striped: false);
        await SendAsync(new MemcpyDtoHOp(src.Address, (ulong)destination.Length, stream.Id), ReadOnlyMemory<byte>.Empty, pending, cancellationToken).ConfigureAwait(false);
        await pending.Wait(cancellationToken).ConfigureAwait(false);
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
        => SendAsync(new MemcpyDtoDOp(dst.Address, src.Address, bytes, stream.Id), cancellationToken);

    /// <summary>Sets <paramref name="count"/> elements of <paramref name="elementSize"/> bytes (1, 2 or 4) to <paramref name="value"/>; fire-and-forget.</summary>
    public ValueTask MemsetAsync(DevicePtr dst, uint value, ulong count, int elementSize = 1, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => SendAsync(new MemsetOp(dst.Address, count, stream.Id, value, (uint)elementSize), cancellationToken);

    public async Task<DeviceModule> LoadBuiltinModuleAsync(CancellationToken cancellationToken = default)
        => new((await CallAsync(new ModuleLoadOp(Builtin: true), cancellationToken).ConfigureAwait(false)).Value);

    /// <summary>
    /// Loads a module image (PTX, cubin or fat binary). One larger than a message goes in pieces that the broker puts
    /// together (up to its module limit, and no more than the lease's memory), then loads.
    /// </summary>
    public async Task<DeviceModule> LoadModuleAsync(ReadOnlyMemory<byte> image, CancellationToken cancellationToken = default)
    {
        var piece = _transport.MaxMessageBytes - 1024;
        if (image.Length <= piece)
        {
            return new((await CallAsync(new ModuleLoadOp(Builtin: false), image, cancellationToken).ConfigureAwait(false)).Value);
        }

        for (var offset = 0; offset < image.Length; offset += piece)
        {
            var data = image.Slice(offset, Math.Min(piece, image.Length - offset));
            await CallAsync(new ModuleStageOp((ulong)offset, (ulong)image.Length), data, cancellationToken).ConfigureAwait(false);
        }

        return new((await CallAsync(new ModuleLoadOp(Builtin: false, Staged: true), cancellationToken).ConfigureAwait(false)).Value);
    }

    public async Task UnloadModuleAsync(DeviceModule module, CancellationToken cancellationToken = default)
        => await CallAsync(new ModuleUnloadOp(module.Id), cancellationToken).ConfigureAwait(false);

    public async Task<KernelFunction> GetFunctionAsync(DeviceModule module, string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        var reply = await CallAsync(new ModuleGetFunctionOp(module.Id), SymbolBytes(name, "kernel"), cancellationToken).ConfigureAwait(false);
        return new(reply.Value, name);
    }

    /// <summary>
    /// Where a module-scope variable (<c>__device__</c> or <c>__constant__</c>) of a loaded module lives: its device
    /// address, which copies and kernels may use like an allocation's, and its size. NotFound when the module has no
    /// variable of that name.
    /// </summary>
    public async Task<DeviceGlobal> GetGlobalAsync(DeviceModule module, string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(name);
        var reply = await CallAsync(new ModuleGetGlobalOp(module.Id), SymbolBytes(name, "variable"), cancellationToken).ConfigureAwait(false);
        return new(new DevicePtr(reply.Value), reply.Value2, name);
    }

    /// <summary>A name to look up, refused here when longer than any broker takes (the broker would end the session).</summary>
    private static byte[] SymbolBytes(string name, string what)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(name);
        return bytes.Length <= FrameCodec.MaxSymbolBytes
            ? bytes
            : throw new GpuPoolException(ErrorCode.InvalidArgument, $"a {what} name of {bytes.Length} bytes is longer than the {FrameCodec.MaxSymbolBytes} bytes a lookup carries");
    }

    /// <summary>Launches a kernel, fire-and-forget. <paramref name="args"/> may be changed or reused once the returned task completes.</summary>
    public ValueTask LaunchAsync(KernelFunction function, Dim3 grid, Dim3 block, KernelArgs args, DeviceStream stream = default, uint sharedMemBytes = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        return LaunchAsync(function, grid, block, args.Packed, stream, sharedMemBytes, cancellationToken);
    }

    /// <summary>
    /// Launches a kernel with its parameters already packed the cuLaunchKernel way (a C program's parameter buffer),
    /// fire-and-forget; the bytes have been taken once the returned task completes.
    /// </summary>
    public ValueTask LaunchAsync(KernelFunction function, Dim3 grid, Dim3 block, ReadOnlyMemory<byte> packedArgs, DeviceStream stream = default, uint sharedMemBytes = 0, CancellationToken cancellationToken = default)
        => SendAsync(new LaunchOp(function.Handle, stream.Id, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMemBytes), packedArgs, null, cancellationToken);

    /// <summary>
    /// Creates a stream. As in CUDA, a stream is blocking unless <paramref name="flags"/> says otherwise: its work waits
    /// for the work queued before it on the default stream, and the default stream's work for its.
    /// </summary>
    public async Task<DeviceStream> CreateStreamAsync(StreamFlags flags = StreamFlags.Default, CancellationToken cancellationToken = default)
        => new((await CallAsync(new StreamCreateOp(flags), cancellationToken).ConfigureAwait(false)).Value);

    public async Task DestroyStreamAsync(DeviceStream stream, CancellationToken cancellationToken = default)
        => await CallAsync(new StreamDestroyOp(stream.Id), cancellationToken).ConfigureAwait(false);

    /// <summary>Waits for the stream's work; throws the sticky error of a failed fire-and-forget op. Await it once.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SynchronizeStreamAsync(DeviceStream stream, CancellationToken cancellationToken = default)
        => await CallAsync(new StreamSynchronizeOp(stream.Id), cancellationToken).ConfigureAwait(false);

    public ValueTask StreamWaitEventAsync(DeviceStream stream, DeviceEvent evt, CancellationToken cancellationToken = default)
        => SendAsync(new StreamWaitEventOp(stream.Id, evt.Id), cancellationToken);

    public async Task<DeviceEvent> CreateEventAsync(CancellationToken cancellationToken = default)
        => new((await CallAsync(default(EventCreateOp), cancellationToken).ConfigureAwait(false)).Value);

    public async Task DestroyEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => await CallAsync(new EventDestroyOp(evt.Id), cancellationToken).ConfigureAwait(false);

    public ValueTask RecordEventAsync(DeviceEvent evt, DeviceStream stream = default, CancellationToken cancellationToken = default)
        => SendAsync(new EventRecordOp(stream.Id, evt.Id), cancellationToken);

    /// <summary>Waits for the event's latest record; throws the sticky error of a failed fire-and-forget op. Await it once.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SynchronizeEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => await CallAsync(new EventSynchronizeOp(evt.Id), cancellationToken).ConfigureAwait(false);

    public async Task<bool> QueryEventAsync(DeviceEvent evt, CancellationToken cancellationToken = default)
        => (await CallAsync(new EventQueryOp(evt.Id), cancellationToken).ConfigureAwait(false)).Value != 0;

    public async Task<float> ElapsedMillisecondsAsync(DeviceEvent start, DeviceEvent end, CancellationToken cancellationToken = default)
        => BitConverter.UInt32BitsToSingle((uint)(await CallAsync(new EventElapsedTimeOp(start.Id, end.Id), cancellationToken).ConfigureAwait(false)).Value);

    /// <summary>
    /// Waits for all work of the session; throws the sticky error of a failed fire-and-forget op. Await it once: the
    /// waiter is reused, so a synchronize allocates nothing once the session has warmed up.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SynchronizeAsync(CancellationToken cancellationToken = default)
        => await CallAsync(default(SynchronizeOp), cancellationToken).ConfigureAwait(false);

    public async Task<(ulong Free, ulong Total)> MemGetInfoAsync(CancellationToken cancellationToken = default)
    {
        var info = await CallAsync(default(MemGetInfoOp), cancellationToken).ConfigureAwait(false);
        return (info.Value, info.Value2);
    }

    /// <summary>
    /// What the lease's work has taken of its device, as the broker measured it: its device time so far, the fraction of
    /// the device's time it took over the last 10 s (1 is the whole device), and its memory in use.
    /// </summary>
    public async Task<DeviceUsage> GetUsageAsync(CancellationToken cancellationToken = default)
    {
        // Both go out before either answer is awaited: one round trip.
        var usage = CallAsync(default(UsageOp), cancellationToken).AsTask();
        var memory = CallAsync(default(MemGetInfoOp), cancellationToken).AsTask();
        var time = await usage.ConfigureAwait(false);
        var info = await memory.ConfigureAwait(false);
        return new DeviceUsage(Units.FromNanoseconds(time.Value), Units.FromPpm(time.Value2), info.Value2 - info.Value, info.Value2);
    }

    /// <summary>Sends an op and waits for its reply; an error reply becomes a GpuPoolException.</summary>
    private ValueTask<ReplyValue> CallAsync<TOp>(TOp op, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>
        => CallAsync(op, ReadOnlyMemory<byte>.Empty, cancellationToken);

    private ValueTask<ReplyValue> CallAsync<TOp>(TOp op, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>
        => CallAsync(
            (Op: op, Payload: payload),
            static (session, call, seq, ct) => session._transport.SendAsync(seq, call.Op, call.Payload.Span, ct),
            cancellationToken);

    /// <summary>Submits what <paramref name="send"/> sends as one op and waits for its one reply.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReplyValue> CallAsync<TState>(TState state, Func<DeviceSession, TState, ulong, CancellationToken, ValueTask> send, CancellationToken cancellationToken)
    {
        var pending = _pending.RentValue();
        await SubmitAsync(state, send, pending, cancellationToken).ConfigureAwait(false);
        return await pending.Wait(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>A fire-and-forget op with no payload.</summary>
    private ValueTask SendAsync<TOp>(TOp op, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>
        => SendAsync(op, ReadOnlyMemory<byte>.Empty, null, cancellationToken);

    /// <summary>An op and its payload, waited for by <paramref name="pending"/> (null: fire-and-forget).</summary>
    private ValueTask SendAsync<TOp>(TOp op, ReadOnlyMemory<byte> payload, Pending? pending, CancellationToken cancellationToken)
        where TOp : struct, IOp<TOp>
        => SubmitAsync(
            (Op: op, Payload: payload),
            static (session, call, seq, ct) => session._transport.SendAsync(seq, call.Op, call.Payload.Span, ct),
            pending,
            cancellationToken);

    /// <summary>One chunk of a copy to the device; its bytes go to the transport as they are, not in a message.</summary>
    private ValueTask SubmitCopyAsync(ulong at, ulong stream, ReadOnlyMemory<byte> part, CancellationToken cancellationToken)
        => SubmitAsync(
            (At: at, Stream: stream, Part: part),
            static (session, copy, seq, ct) => session._transport.SendCopyToDeviceAsync(seq, copy.At, copy.Stream, copy.Part, ct),
            null,
            cancellationToken);

    /// <summary>
    /// A copy to the device on the fast path's one connection, chunk by chunk with two in flight: each chunk is an op
    /// of its own, numbered here all at once, and the gate is held until the last has been sent, so nothing comes between.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SubmitChunksAsync(FastPathSessionTransport fast, ulong at, ulong stream, ReadOnlyMemory<byte> source, int chunk, StrongBox<int> sent, CancellationToken cancellationToken)
    {
        ThrowIfFatal();
        await _submitGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFatal();
            var first = _seq + 1;
            _seq += (ulong)((source.Length + chunk - 1) / chunk);
            await fast.SendCopyInChunksAsync(first, at, stream, source, chunk, sent, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _submitGate.Release();
        }
    }

    /// <summary>
    /// Numbers an op, registers who waits for its reply (if anyone), and hands it to the transport, one at
    /// a time so that the broker sees ops in sequence order. The send is a static delegate over
    /// <paramref name="state"/>, and the state machine of a submit that has to wait (a large copy chunk
    /// waits until its bytes are sent) is pooled, so nothing is allocated per op or per chunk; uncontended,
    /// a small op completes synchronously.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask SubmitAsync<TState>(TState state, Func<DeviceSession, TState, ulong, CancellationToken, ValueTask> send, Pending? pending, CancellationToken cancellationToken)
    {
        ThrowIfFatal();
        await _submitGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ThrowIfFatal();
            var seq = ++_seq;
            if (pending is not null)
            {
                _pending.Add(seq, pending);
            }

            try
            {
                await send(this, state, seq, cancellationToken).ConfigureAwait(false);
            }
            catch when (pending is not null)
            {
                // Not sent: nobody will answer it, and its caller does not wait for it.
                _pending.TryTake(seq, pending);
                throw;
            }
        }
        catch (System.Threading.Channels.ChannelClosedException)
        {
            throw _fatal ?? Closed();
        }
        finally
        {
            _submitGate.Release();
        }
    }

    void IReplyTarget.OnValue(ulong seq, in ReplyValue value)
    {
        if (_pending.TryGet(seq, out var pending) && pending.OnValue(value))
        {
            Finish(seq, pending);
        }
    }

    void IReplyTarget.OnData(ulong seq, ulong offset, in ReadOnlySequence<byte> bytes, bool last)
    {
        if (_pending.TryGet(seq, out var pending) && pending.OnData(offset, bytes, last))
        {
            Finish(seq, pending);
        }
    }

    Memory<byte> IReplyTarget.DataDestination(ulong seq, ulong offset, int length)
        => _pending.TryGet(seq, out var pending) && pending is CopyReply copy ? copy.Destination(offset, length) : Memory<byte>.Empty;

    void IReplyTarget.OnDataReceived(ulong seq, ulong offset, int length, bool last)
    {
        if (_pending.TryGet(seq, out var pending) && pending is CopyReply copy && copy.Received(length, last))
        {
            Finish(seq, pending);
        }
    }

    void IReplyTarget.OnError(ulong seq, GpuPoolException error)
    {
        if (seq == 0)
        {
            Fail(error);
        }
        else if (_pending.TryTake(seq, out var pending))
        {
            // The error comes on the first connection; a striped copy's other connections may still hold its waiter.
            pending.Fail(error, reusable: pending is not CopyReply { Striped: true });
        }
    }

    void IReplyTarget.OnClosed(GpuPoolException error) => Fail(error);

    void IReplyTarget.OnLaneClosed(int lane, GpuPoolException error)
    {
        foreach (var (seq, copy) in _pending.StripedCopies())
        {
            if (copy.LaneClosed(lane, error))
            {
                Finish(seq, copy);
            }
        }
    }

    /// <summary>An op's reply decided it: whoever takes it out of the table completes it.</summary>
    private void Finish(ulong seq, Pending pending)
    {
        if (_pending.TryTake(seq, pending))
        {
            pending.Finish();
        }
    }

    void IReplyTarget.OnNotice(Notice notice)
    {
        if (notice.Kind == "device_output")
        {
            // On the reader, before the reply that follows it: the text is out before the synchronize returns.
            DeviceOutput(notice.Message);
            return;
        }

        if (notice.Kind != "preempting" || PreemptDeadline is not null)
        {
            return;
        }

        PreemptReason = notice.Message;
        PreemptDeadline = DateTimeOffset.FromUnixTimeMilliseconds(notice.DeadlineUnixMs);

        // On the transport's reader thread: the callbacks must not hold it up.
        ThreadPool.UnsafeQueueUserWorkItem(static cts => cts.Cancel(), _preempting, preferLocal: false);
    }

    /// <summary>The session is over: every waiter and every later call gets <paramref name="error"/>.</summary>
    private void Fail(GpuPoolException error)
    {
        _fatal ??= error;
        foreach (var pending in _pending.TakeAll())
        {
            pending.Fail(_fatal, reusable: false);
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

        await _transport.DisposeAsync().ConfigureAwait(false);
        Fail(Closed());
    }

    /// <summary>The bytes of an array of unmanaged values as Memory, without copying them.</summary>
    private sealed class ByteView<T>(T[] array) : MemoryManager<byte>
        where T : unmanaged
    {
        private GCHandle _handle;

        public override Span<byte> GetSpan() => MemoryMarshal.AsBytes(array.AsSpan());

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            if (!_handle.IsAllocated)
            {
                _handle = GCHandle.Alloc(array, GCHandleType.Pinned);
            }

            return new MemoryHandle((byte*)_handle.AddrOfPinnedObject() + elementIndex);
        }

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
            if (_handle.IsAllocated)
            {
                _handle.Free();
            }
        }
    }
}
