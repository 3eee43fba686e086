using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Cryptography;
using GpuPool.Broker.Leases;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// Serves accepted fast-path sockets (TCP or Unix). The first frame decides what a connection is: a hello with the
/// lease token opens a session (<see cref="SessionConnection"/>); a join, with the token and a session's id, adds a
/// data connection to an open session of the same lease (<see cref="DataConnection"/>), over which large copies are
/// striped. Anything else is answered with an error and closed.
/// </summary>
internal sealed class FastPathConnectionHandler(LeaseTable leases, BrokerOptions options, ILogger logger, ILogger? sessionLogger = null)
{
    /// <summary>
    /// The connections' pipe buffers and staging, shared by every connection of this broker: 1 MiB blocks, reused
    /// rather than rented from ArrayPool.Shared, which misses now and then when a buffer is returned on another
    /// thread than the one that rents the next. Up to 64 MiB stays pooled.
    /// </summary>
    private readonly BlockMemoryPool _blocks = new(1 << 20, maxRetained: 64);

    /// <summary>The open fast-path sessions by id, for data connections to join.</summary>
    private readonly ConcurrentDictionary<ulong, FastPathSession> _sessions = new();

    public LeaseTable Leases => leases;

    public BrokerOptions Options => options;

    public ILogger Logger => logger;

    /// <summary>The sessions' own debug log (allocations, launches), under the SessionExecutor category.</summary>
    public ILogger? SessionLogger => sessionLogger;

    public BlockMemoryPool Blocks => _blocks;

    /// <summary>
    /// Serves one accepted socket until either side closes it. Reads go through a PipeReader with large
    /// buffers, so a bulk frame arrives in a few reads rather than thousands of 4 KiB ones.
    /// </summary>
    public async Task RunAsync(FrameWire wire, string transport, CancellationToken closed)
    {
        await using var owned = wire;
        var connection = new Connection(wire, new BoundedReadStream(wire), _blocks);
        var output = connection.Output = PipeWriter.Create(wire.Stream, new StreamPipeWriterOptions(_blocks, minimumBufferSize: 256 << 10, leaveOpen: true));
        try
        {
            var (hello, join, error) = await ReadFirstFrameAsync(connection.Input, closed).ConfigureAwait(false);
            if (join is not null)
            {
                await new DataConnection(this, connection).ServeAsync(join, closed).ConfigureAwait(false);
            }
            else if (hello is { } opening)
            {
                await new SessionConnection(this, connection).ServeAsync(opening, transport, closed).ConfigureAwait(false);
            }
            else
            {
                await FailAsync(output, 0, error.Code, error.Message).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            // The peer went away before or during the first frame.
        }
        finally
        {
            try
            {
                // Completing the writer flushes what is left; the socket may already be gone (the client hung
                // up, or the broker is stopping and closed it).
                await output.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
            }

            await connection.Input.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A fresh id for a session: random, so that a data connection cannot guess another session's.</summary>
    public ulong NewSessionId()
    {
        Span<byte> bytes = stackalloc byte[8];
        while (true)
        {
            RandomNumberGenerator.Fill(bytes);
            var id = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (id != 0 && !_sessions.ContainsKey(id))
            {
                return id;
            }
        }
    }

    /// <summary>Makes a session findable by the data connections that name it.</summary>
    public void Register(FastPathSession session) => _sessions[session.Id] = session;

    public void Unregister(ulong id) => _sessions.TryRemove(id, out _);

    public FastPathSession? Find(ulong id) => _sessions.TryGetValue(id, out var session) ? session : null;

    private readonly record struct Refusal(ErrorCode Code, string Message);

    /// <summary>Reads the first frame: a hello, a join, or neither (with the error to answer).</summary>
    private async Task<(Hello? Hello, JoinRequest? Join, Refusal Error)> ReadFirstFrameAsync(PipeReader input, CancellationToken closed)
    {
        var none = new Refusal(ErrorCode.Unauthenticated, "a fast-path connection must start with a hello frame carrying the lease token");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closed);
        timeout.CancelAfter(options.FastPathHelloTimeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(timeout.Token).ConfigureAwait(false);
                var first = DecodeFirstFrame(result.Buffer, none, out var consumed, out var done);
                input.AdvanceTo(consumed, result.Buffer.End);
                if (done || result.IsCompleted)
                {
                    return first;
                }
            }
        }
        catch (OperationCanceledException) when (!closed.IsCancellationRequested)
        {
            return (null, null, none);
        }
    }

    private static (Hello?, JoinRequest?, Refusal) DecodeFirstFrame(ReadOnlySequence<byte> buffer, Refusal none, out SequencePosition consumed, out bool done)
    {
        var reader = new SequenceReader<byte>(buffer);
        var status = FrameCodec.TryDecode(ref reader, FrameCodec.MaxPayload(FrameType.Hello, 0), out var frame, out _);
        consumed = reader.Position;
        done = status != DecodeStatus.NeedMore;
        if (status != DecodeStatus.Frame)
        {
            return (null, null, none);
        }

        string? error;
        switch (frame.Type)
        {
            case FrameType.Join:
                var join = StripeFrames.ReadJoin(frame, out error);
                return (null, join, new Refusal(ErrorCode.Unauthenticated, "join refused: " + error));
            case FrameType.Hello or FrameType.HelloVersion1:
                // A client of another version is told both versions; a hello whose lengths do not add up is no hello.
                var hello = OpFrames.ReadHello(frame, out error);
                return (hello, null, OpFrames.HelloVersion(frame) != OpFrames.Version ? new Refusal(ErrorCode.NotSupported, error!) : none);
            default:
                return (null, null, none);
        }
    }

    public static async Task FailAsync(PipeWriter output, ulong seq, ErrorCode code, string message)
    {
        OpFrames.WriteError(output, seq, code, message);
        await output.FlushAsync().ConfigureAwait(false);
    }
}

/// <summary>One accepted connection, with the pipe it is read through and the writer it is answered on.</summary>
internal sealed class Connection
{
    public Connection(FrameWire wire, BoundedReadStream bounded, BlockMemoryPool blocks)
    {
        Wire = wire;
        Bounded = bounded;
        Input = PipeReader.Create(bounded, new StreamPipeReaderOptions(blocks, bufferSize: blocks.BlockSize, minimumReadSize: 256 << 10, leaveOpen: true));
    }

    /// <summary>The connection's bytes: its socket, or TLS over it.</summary>
    public FrameWire Wire { get; }

    /// <summary>What <see cref="Input"/> reads from: the socket, with reads that can be held short or wait in poll.</summary>
    public BoundedReadStream Bounded { get; }

    public PipeReader Input { get; }

    public PipeWriter Output { get; set; } = null!;

    /// <summary>Reused for every chunk this connection receives straight into device memory.</summary>
    public PointerMemory View { get; } = new();
}
