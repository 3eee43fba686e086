using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// A connection's reply reader: parses the broker's frames with a PipeReader and hands each to the session's reply
/// target on this thread. A large Data frame whose copy has a destination is not waited for in the pipe: its payload is
/// received from the socket straight into the caller's buffer.
/// </summary>
internal sealed class ReplyReader
{
    /// <summary>Data frames at least this large whose payload is still arriving are received straight into the copy's destination.</summary>
    private const int DirectReceiveThreshold = 128 * 1024;

    /// <summary>Largest frame the reader takes from a broker (Data frames are at most the broker's reply chunk).</summary>
    private const int MaxPayload = 64 << 20;

    private const int ReadBufferSize = 256 * 1024;

    /// <summary>
    /// The reply readers' buffers, shared by every session of the process: reused blocks rather than ArrayPool
    /// rentals, which a reader thread that is not the returning one misses now and then.
    /// </summary>
    private static readonly BlockMemoryPool ReadBuffers = new(ReadBufferSize, maxRetained: 64);

    private readonly FrameWire _wire;
    private readonly PipeReader _input;
    private readonly IReplyTarget _target;
    private readonly string _peer;

    /// <param name="peer">Who is at the other end, for messages: "broker b1 at tcp 10.0.0.5:7072".</param>
    public ReplyReader(FrameWire wire, IReplyTarget target, string peer)
    {
        _wire = wire;
        _target = target;
        _peer = peer;
        _input = PipeReader.Create(wire.Stream, new StreamPipeReaderOptions(ReadBuffers, bufferSize: ReadBufferSize, minimumReadSize: 64 * 1024));
    }

    /// <summary>A Data frame being received straight into its copy's destination: what is still to come.</summary>
    private readonly record struct DirectReceive(ulong Seq, ulong Offset, Memory<byte> Rest, int Length, bool Last);

    /// <summary>Reads until the connection closes or breaks; returns why it ended.</summary>
    public async Task<GpuPoolException> RunAsync()
    {
        GpuPoolException closed = new(ErrorCode.Unavailable, $"{_peer} closed the fast-path connection");
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync().ConfigureAwait(false);
                var consumed = Dispatch(result.Buffer, out var protocolError, out var direct);
                _input.AdvanceTo(consumed, direct is null ? result.Buffer.End : consumed);
                if (protocolError is not null)
                {
                    closed = new GpuPoolException(ErrorCode.Internal, $"{_peer} sent a malformed frame: {protocolError}");
                    break;
                }

                if (direct is { } receive)
                {
                    // The pipe holds nothing more and reads nothing until asked: the rest of the payload is read from the
                    // socket into the copy's destination, then the pipe goes on from the next frame.
                    await _wire.ReceiveExactlyAsync(receive.Rest, "broker", CancellationToken.None).ConfigureAwait(false);
                    _target.OnDataReceived(receive.Seq, receive.Offset, receive.Length, receive.Last);
                    continue;
                }

                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            closed = new GpuPoolException(ErrorCode.Unavailable, $"device session: the connection to {_peer} failed ({ex.Message})", inner: ex);
        }

        await _input.CompleteAsync().ConfigureAwait(false);
        return closed;
    }

    /// <summary>
    /// Hands the whole frames in the buffer to the target. A large Data frame whose payload has only begun to arrive
    /// is not waited for in the pipe: what has come is copied into its copy's destination now, and
    /// <paramref name="direct"/> says where the rest goes, straight from the socket.
    /// </summary>
    private SequencePosition Dispatch(ReadOnlySequence<byte> buffer, out string? protocolError, out DirectReceive? direct)
    {
        protocolError = null;
        direct = null;
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            var status = FrameCodec.TryDecode(ref reader, MaxPayload, out var frame, out var error);
            if (status == DecodeStatus.NeedMore)
            {
                direct = StartDirectReceive(ref reader);
                return reader.Position;
            }

            if (status != DecodeStatus.Frame)
            {
                protocolError = error;
                return reader.Position;
            }

            switch (frame.Type)
            {
                case FrameType.Reply:
                    var (value, value2) = OpFrames.ReadReply(frame);
                    _target.OnValue(frame.Seq, new ReplyValue(value, value2, null));
                    break;
                case FrameType.Data:
                    var (offset, last) = OpFrames.ReadData(frame.Fixed);
                    _target.OnData(frame.Seq, offset, frame.Payload, last);
                    break;
                case FrameType.Error:
                    _target.OnError(frame.Seq, OpFrames.ReadError(frame));
                    break;
                case FrameType.SessionInfo:
                    _target.OnValue(frame.Seq, new ReplyValue(0, 0, SessionInfo.Parser.ParseFrom(frame.Payload)));
                    break;
                case FrameType.Notice:
                    _target.OnNotice(OpFrames.ReadNotice(frame));
                    break;
                default:
                    protocolError = $"frame #{frame.Seq} is a {frame.Type} frame, which a broker does not send";
                    return reader.Position;
            }
        }
    }

    /// <summary>
    /// When the reader is at a large Data frame whose copy has a destination for it, copies the payload that has come
    /// into it and moves the reader past everything; null (the reader unmoved) otherwise, and the frame waits whole.
    /// </summary>
    private DirectReceive? StartDirectReceive(ref SequenceReader<byte> reader)
    {
        if (FrameCodec.TryDecodeHeader(reader, MaxPayload, out var header, out var fixedFields, out _) != DecodeStatus.Frame
            || header.Type != FrameType.Data || header.PayloadLength < DirectReceiveThreshold)
        {
            return null;
        }

        var (offset, last) = OpFrames.ReadData(fixedFields);
        var length = (int)header.PayloadLength;
        var destination = _target.DataDestination(header.Seq, offset, length);
        if (destination.IsEmpty)
        {
            return null;
        }

        reader.Advance(FrameCodec.HeaderSize + fixedFields.Length);
        var arrived = (int)reader.Remaining;
        reader.UnreadSequence.CopyTo(destination.Span);
        reader.Advance(arrived);
        return new DirectReceive(header.Seq, offset, destination[arrived..], length, last);
    }
}
