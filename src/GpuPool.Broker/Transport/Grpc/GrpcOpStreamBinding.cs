using System.Buffers;
using Google.Protobuf;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Broker.Transport.Grpc;

/// <summary>
/// An op as the broker reads it off the gRPC op stream. A copy to the device carries its bytes in a pooled
/// block rather than a fresh array; disposing the op (which the session does once the device has taken the
/// bytes) returns the block and frees the session's staging slot.
/// </summary>
internal sealed class ReceivedOp : IDisposable
{
    private IMemoryOwner<byte>? _payload;
    private SemaphoreSlim? _slot;

    public ReceivedOp(OpRequest request, IMemoryOwner<byte>? payload)
    {
        Request = request;
        _payload = payload;
    }

    /// <summary>A copy the deserializer has already put on the device; there is nothing left to run.</summary>
    public static ReceivedOp Landed { get; } = new(new OpRequest(), null);

    public OpRequest Request { get; }

    /// <summary>Whether the op holds staged bytes (a non-empty copy to the device).</summary>
    public bool HasPayload => _payload is not null;

    /// <summary>Ties a staging slot to the payload: it is released with it.</summary>
    public void HoldSlot(SemaphoreSlim slot) => _slot = slot;

    public void Dispose()
    {
        Interlocked.Exchange(ref _payload, null)?.Dispose();
        Interlocked.Exchange(ref _slot, null)?.Release();
    }
}

/// <summary>
/// The op stream's method with the broker's own marshallers, in place of the generated ones: the bytes of a
/// copy to the device go from the request buffers into a pooled block once, and replies are serialized as
/// the generated code does. Wire-compatible with session.proto.
/// </summary>
internal static class GrpcOpStreamMethod
{
    /// <summary>
    /// Where the bytes of copies to the device are staged, for every session of the process: blocks of the
    /// client's chunk size, reused rather than allocated (a 1 MiB array per chunk is a large-object-heap
    /// allocation, zeroed, and soon a gen-2 collection). A larger chunk, from a client that chose one, is
    /// staged in an <see cref="ArrayPool{T}"/> array.
    /// </summary>
    internal static readonly BlockMemoryPool Blocks = new(1 << 20, maxRetained: 32);

    public static readonly Method<ReceivedOp, OpReply> Open = new(
        MethodType.DuplexStreaming,
        GrpcOpStream.ServiceName,
        GrpcOpStream.MethodName,
        Marshallers.Create<ReceivedOp>(static (_, _) => throw new NotSupportedException("the broker does not send ops"), Deserialize),
        Marshallers.Create<OpReply>(Serialize, static context => OpReply.Parser.ParseFrom(context.PayloadAsReadOnlySequence())));

    /// <summary>
    /// The session whose read runs the deserializer, reached through the execution context: the session's loop
    /// sets it, and the deserializer runs inside the loop's read. A copy whose stream is idle then goes from the
    /// request buffers straight to device memory, as on the fast path, and is not staged at all. The loop reads
    /// one message at a time and runs it before reading the next, so the order of ops holds. Where the context did
    /// not flow, or the stream is busy, the copy is staged.
    /// </summary>
    internal static readonly AsyncLocal<SessionExecutor?> Session = new();

    private static ReceivedOp Deserialize(DeserializationContext context)
    {
        var message = context.PayloadAsReadOnlySequence();
        if (!GrpcOpStream.TryReadCopyToDevice(message, out var seq, out var ptr, out var stream, out var data))
        {
            // Any other op, or a copy in an unusual encoding: the generated parser, which also says what is malformed.
            return new ReceivedOp(OpRequest.Parser.ParseFrom(message), null);
        }

        if (Session.Value is { } session && session.TryCopyToDeviceNow(seq, new MemcpyHtoDOp(ptr, stream), data))
        {
            return ReceivedOp.Landed;
        }

        var length = (int)data.Length;
        var payload = length == 0 ? null : Rent(length);
        var bytes = ByteString.Empty;
        if (payload is not null)
        {
            var memory = payload.Memory[..length];
            data.CopyTo(memory.Span);
            bytes = UnsafeByteOperations.UnsafeWrap(memory);
        }

        return new ReceivedOp(new OpRequest { Seq = seq, MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Stream = stream, Data = bytes } }, payload);
    }

    /// <summary>A pooled buffer of at least <paramref name="length"/> bytes, from <see cref="Blocks"/> when it fits in a block.</summary>
    internal static IMemoryOwner<byte> Rent(int length)
        => length <= Blocks.BlockSize ? Blocks.Rent(length) : new PooledArray(length);

    private static void Serialize(OpReply reply, SerializationContext context)
    {
        context.SetPayloadLength(reply.CalculateSize());
        reply.WriteTo(context.GetBufferWriter());
        context.Complete();
    }

    private sealed class PooledArray(int length) : IMemoryOwner<byte>
    {
        private byte[]? _array = ArrayPool<byte>.Shared.Rent(length);

        public Memory<byte> Memory => _array ?? throw new ObjectDisposedException(nameof(PooledArray));

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _array, null) is { } array)
            {
                ArrayPool<byte>.Shared.Return(array);
            }
        }
    }
}

/// <summary>
/// The base of the op stream's service: grpc-dotnet finds <see cref="BindService"/> through the attribute and
/// binds <see cref="Open"/> with <see cref="GrpcOpStreamMethod.Open"/>, as generated code binds its own.
/// </summary>
[BindServiceMethod(typeof(GrpcOpStreamServiceBase), nameof(BindService))]
internal abstract class GrpcOpStreamServiceBase
{
    public abstract Task Open(IAsyncStreamReader<ReceivedOp> requestStream, IServerStreamWriter<OpReply> responseStream, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, GrpcOpStreamServiceBase? service)
    {
        ArgumentNullException.ThrowIfNull(binder);
        binder.AddMethod(GrpcOpStreamMethod.Open, service is null ? null : service.Open);
    }
}
