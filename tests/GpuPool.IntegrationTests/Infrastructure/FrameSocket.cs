using System.Buffers;
using System.Net;
using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>A frame the broker sent, copied out of the receive buffer.</summary>
internal sealed record ReceivedFrame(FrameType Type, ulong Seq, byte[] Fixed, byte[] Payload)
{
    public Frame AsFrame() => new(new FrameHeader(Type, (uint)Payload.Length, Seq), new ReadOnlySequence<byte>(Fixed), new ReadOnlySequence<byte>(Payload));

    /// <summary>The error an Error frame carries; fails the test for any other frame.</summary>
    public GpuPoolException Error()
    {
        Assert.True(Type == FrameType.Error, $"expected an Error frame, got {Type} #{Seq}");
        return OpFrames.ReadError(AsFrame());
    }

    public override string ToString() => Type == FrameType.Error ? $"Error #{Seq}: {Error().Code} {Error().Message}" : $"{Type} #{Seq} ({Payload.Length} bytes)";
}

/// <summary>
/// A fast-path connection on a plain socket, for what the SDK will not send: garbage, bad headers,
/// truncated frames, forged hellos, no hello at all. Writes raw bytes or frames built with
/// <see cref="OpFrames"/>; reads the broker's frames back with <see cref="FrameCodec.TryDecode"/>, every
/// read bounded by a deadline so a broker that neither answers nor closes fails the test instead of hanging it.
/// </summary>
internal sealed class FrameSocket : IDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private byte[] _buffer = new byte[64 * 1024];
    private int _count;
    private bool _closed;

    private FrameSocket(Socket socket) => _socket = socket;

    /// <summary>Connects to the broker's TCP fast path ("host:port").</summary>
    public static async Task<FrameSocket> ConnectAsync(string tcpEndpoint)
    {
        var colon = tcpEndpoint.LastIndexOf(':');
        var endpoint = new IPEndPoint(IPAddress.Parse(tcpEndpoint[..colon]), int.Parse(tcpEndpoint[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint);
        return new FrameSocket(socket);
    }

    /// <summary>The bytes of one op frame.</summary>
    public static byte[] Encode(OpRequest op)
    {
        var writer = new ArrayBufferWriter<byte>();
        OpRequestFrames.Write(writer, op);
        return writer.WrittenSpan.ToArray();
    }

    /// <summary>The bytes of a frame with the given header fields, fixed fields and payload, valid or not.</summary>
    public static byte[] Encode(ushort magic, ushort type, uint payloadLength, ulong seq, ReadOnlySpan<byte> rest)
    {
        var bytes = new byte[FrameCodec.HeaderSize + rest.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes, magic);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2), type);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), payloadLength);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(8), seq);
        rest.CopyTo(bytes.AsSpan(FrameCodec.HeaderSize));
        return bytes;
    }

    public static byte[] Hello(string leaseId, string token, ulong seq = 1)
        => Encode(new OpRequest { Seq = seq, Open = new SessionOpen { LeaseId = leaseId, Token = token } });

    /// <summary>Writes bytes; a broker that has already closed may reset the connection, which is not an error here.</summary>
    public async Task SendAsync(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            while (!bytes.IsEmpty)
            {
                var n = await _socket.SendAsync(bytes, SocketFlags.None);
                bytes = bytes[n..];
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted)
        {
        }
    }

    public Task SendAsync(OpRequest op) => SendAsync(Encode(op));

    /// <summary>Sends a hello and returns the broker's SessionInfo; fails the test on anything else.</summary>
    public async Task<SessionInfo> HelloAsync(string leaseId, string token, ulong seq = 1)
    {
        await SendAsync(Hello(leaseId, token, seq));
        var reply = await ReadFrameAsync();
        if (reply is not { Type: FrameType.SessionInfo })
        {
            Assert.Fail($"expected a SessionInfo frame after the hello, got {reply?.ToString() ?? "a closed connection"}");
        }

        Assert.Equal(seq, reply.Seq);
        return SessionInfo.Parser.ParseFrom(reply.Payload);
    }

    /// <summary>Sends an op and reads its one reply frame.</summary>
    public async Task<ReceivedFrame> CallAsync(OpRequest op)
    {
        await SendAsync(op);
        var reply = await ReadFrameAsync();
        if (reply is null)
        {
            Assert.Fail($"the broker closed the connection instead of answering op #{op.Seq}");
        }

        Assert.Equal(op.Seq, reply.Seq);
        return reply;
    }

    /// <summary>
    /// The next frame, or null once the broker has closed the connection (a FIN, or a reset after it stopped
    /// reading). Fails the test if nothing comes within <paramref name="timeout"/> or the broker sends a malformed frame.
    /// </summary>
    public async Task<ReceivedFrame?> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? DefaultTimeout);
        while (true)
        {
            if (TryTake(out var frame))
            {
                return frame;
            }

            if (_closed)
            {
                Assert.True(_count == 0, $"the broker closed the connection in the middle of a frame ({_count} bytes of it received)");
                return null;
            }

            if (_buffer.Length - _count < 64 * 1024)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            try
            {
                var n = await _socket.ReceiveAsync(_buffer.AsMemory(_count), SocketFlags.None, deadline.Token);
                _count += n;
                _closed = n == 0;
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested)
            {
                Assert.Fail($"the broker neither sent a frame nor closed the connection within {(timeout ?? DefaultTimeout).TotalSeconds:0.#} s");
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
            {
                // A broker that closes while some of our bytes are still unread resets the connection.
                _closed = true;
            }
        }
    }

    /// <summary>Every frame until the broker closes the connection, within <paramref name="timeout"/> in all.</summary>
    public async Task<List<ReceivedFrame>> ReadToCloseAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? DefaultTimeout);
        var frames = new List<ReceivedFrame>();
        while (await ReadFrameAsync(Max(deadline - DateTime.UtcNow, TimeSpan.FromMilliseconds(1))) is { } frame)
        {
            frames.Add(frame);
        }

        return frames;
    }

    /// <summary>
    /// Reads raw bytes, frames or not, until the broker closes or resets the connection; returns how many
    /// arrived (counting what was already buffered). Fails the test if the connection is still open at the end.
    /// </summary>
    public async Task<long> DrainUntilClosedAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        long total = _count;
        _count = 0;
        var scratch = new byte[256 * 1024];
        try
        {
            while (!_closed)
            {
                var n = await _socket.ReceiveAsync(scratch, SocketFlags.None, deadline.Token);
                total += n;
                _closed = n == 0;
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            Assert.Fail($"the broker kept the connection open for more than {timeout.TotalSeconds:0.#} s ({total} bytes received)");
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
        {
            _closed = true;
        }

        return total;
    }

    /// <summary>Reads to the close and returns the one Error frame that must be the last frame; fails the test otherwise.</summary>
    public async Task<GpuPoolException> ReadErrorThenCloseAsync(TimeSpan? timeout = null)
    {
        var frames = await ReadToCloseAsync(timeout);
        Assert.True(frames.Count > 0 && frames[^1].Type == FrameType.Error, $"expected an Error frame and then the close, got [{string.Join(", ", frames)}]");
        return frames[^1].Error();
    }

    /// <summary>Ends our side of the stream: the broker sees the end of its input.</summary>
    public void ShutdownSend()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
    }

    /// <summary>Drops the connection as a crashing client would: a reset, no goodbye.</summary>
    public void Abort()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    public void Dispose() => _socket.Dispose();

    private bool TryTake(out ReceivedFrame? frame)
    {
        frame = null;
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(_buffer, 0, _count));
        var status = FrameCodec.TryDecode(ref reader, 64 << 20, out var decoded, out var error);
        Assert.True(status != DecodeStatus.Error, $"the broker sent a malformed frame: {error}");
        if (status == DecodeStatus.NeedMore)
        {
            return false;
        }

        frame = new ReceivedFrame(decoded.Type, decoded.Seq, decoded.Fixed.ToArray(), decoded.Payload.ToArray());
        var used = (int)reader.Consumed;
        Buffer.BlockCopy(_buffer, used, _buffer, 0, _count - used);
        _count -= used;
        return true;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
}
