using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// What a fast-path connection's <see cref="System.IO.Pipelines.PipeReader"/> reads from: the socket, where the next
/// read can be held to a few bytes. After a chunk was received straight into device memory the connection reads only
/// the next frame's header and fixed fields through the pipe, so that a bulk payload after it goes straight to the
/// device too instead of into the pipe's buffer first (which would cost a memcpy per byte).
/// </summary>
internal sealed class BoundedReadStream(FrameWire wire) : Stream
{
    private int _nextReadLimit = int.MaxValue;
    private bool _restComing;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    /// <summary>Holds the next read (only) to at most <paramref name="bytes"/>.</summary>
    public void LimitNextRead(int bytes) => _nextReadLimit = bytes;

    /// <summary>The next read (only) continues a frame whose start has arrived: its bytes are on their way.</summary>
    public void RestIsComing() => _restComing = true;

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        buffer = buffer[..Take(buffer.Length)];
        if (_restComing)
        {
            _restComing = false;
            return wire.ReceiveSomeAsync(buffer, cancellationToken);
        }

        return wire.ReceiveAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => wire.Receive(buffer.AsSpan(offset, Take(count)));

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    private int Take(int length)
    {
        var limit = _nextReadLimit;
        _nextReadLimit = int.MaxValue;
        return Math.Min(length, limit);
    }
}
