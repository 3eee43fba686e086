namespace GpuPool.Protocol.Transport;

/// <summary>
/// What TLS runs over on a fast-path connection: the socket's stream with a read buffer and a write buffer of their
/// own, so that one reader and one writer may use it at once (as <see cref="System.Net.Security.SslStream"/> does).
/// SslStream reads and writes one record (at most 16 KiB) at a time; without these buffers each record is a system
/// call. Reads fill the buffer with one receive and hand out records from it; writes gather records until the
/// buffer is full or the writer flushes (SslStream's <c>FlushAsync</c> flushes it, and <see cref="FrameWire"/> flushes
/// after every send). Until <see cref="Buffering"/> is turned on — after the handshake, whose messages must leave when
/// written — writes go straight through.
/// </summary>
internal sealed class DuplexBufferedStream(Stream inner, int readBufferSize = 256 << 10, int writeBufferSize = 256 << 10) : Stream
{
    private readonly byte[] _read = GC.AllocateUninitializedArray<byte>(readBufferSize);
    private readonly byte[] _write = GC.AllocateUninitializedArray<byte>(writeBufferSize);
    private int _readStart;
    private int _readEnd;
    private int _written;

    /// <summary>Whether writes gather in the buffer (true after the handshake) or go straight through.</summary>
    public bool Buffering { get; set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        if (_readStart == _readEnd)
        {
            if (buffer.Length >= _read.Length)
            {
                return await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }

            _readStart = 0;
            _readEnd = await inner.ReadAsync(_read, cancellationToken).ConfigureAwait(false);
            if (_readEnd == 0)
            {
                return 0;
            }
        }

        var n = Math.Min(buffer.Length, _readEnd - _readStart);
        _read.AsSpan(_readStart, n).CopyTo(buffer.Span);
        _readStart += n;
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        if (_readStart == _readEnd)
        {
            _readStart = 0;
            _readEnd = inner.Read(_read);
            if (_readEnd == 0)
            {
                return 0;
            }
        }

        var n = Math.Min(buffer.Length, _readEnd - _readStart);
        _read.AsSpan(_readStart, n).CopyTo(buffer);
        _readStart += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (!Buffering)
        {
            await FlushAsync(cancellationToken).ConfigureAwait(false);
            await inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
            return;
        }

        while (!buffer.IsEmpty)
        {
            var n = Math.Min(buffer.Length, _write.Length - _written);
            buffer.Span[..n].CopyTo(_write.AsSpan(_written));
            _written += n;
            buffer = buffer[n..];
            if (_written == _write.Length)
            {
                await FlushAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        Flush();
        inner.Write(buffer, offset, count);
    }

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (_written > 0)
        {
            var n = _written;
            _written = 0;
            await inner.WriteAsync(_write.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
        }
    }

    public override void Flush()
    {
        if (_written > 0)
        {
            var n = _written;
            _written = 0;
            inner.Write(_write, 0, n);
        }
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
