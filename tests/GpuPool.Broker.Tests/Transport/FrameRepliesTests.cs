using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using GpuPool.Broker.Transport.FastPath;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests.Transport;

/// <summary>
/// The fast path's reply writer over a real loopback connection: the session's own error (seq 0) is the last frame
/// of the session, whatever other threads queue after it, and what they queued is given back; replies that pile up
/// while a flush is in flight leave together.
/// </summary>
public sealed class FrameRepliesTests : IAsyncLifetime
{
    /// <summary>More copy chunks than the writer stages at once (16): were a dropped chunk's staging kept, the later ones would wait for ever.</summary>
    private const int ManyChunks = 40;

    private static readonly Error SessionError = new() { Code = ErrorCode.LeaseEnded, Message = "lease l-1 ended: revoked by the scheduler" };

    private readonly BlockMemoryPool _blocks = new(64 * 1024, maxRetained: 64);
    private readonly CancellationTokenSource _writing = new();
    private readonly CancellationTokenSource _session = new();
    private readonly byte[] _deviceBytes = GC.AllocateArray<byte>(128 * 1024, pinned: true);
    private Loopback _pair = null!;
    private PipeWriter _output = null!;

    public async Task InitializeAsync() => _pair = await Loopback.OpenAsync();

    public Task DisposeAsync()
    {
        // Lets a thread still waiting on the writer go (a test that failed).
        _session.Cancel();
        _writing.Cancel();
        _pair.Dispose();
        _blocks.Dispose();
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Nothing_queued_after_the_sessions_error_is_sent()
    {
        var replies = Start();
        var reading = _pair.ReadToCloseAsync();

        replies.Error(0, SessionError);
        await Within.Bound(Task.WhenAll(
            Task.Run(() => replies.Reply(1, ReplyKind.Done)),
            Task.Run(() => replies.Error(2, new Error { Code = ErrorCode.InvalidAddress, Message = "0xdead0000 is not inside any allocation of this lease", FailedSeq = 2, FailedOp = "launch" })),
            Task.Run(() => replies.Data(3, 0, [1, 2, 3, 4], last: true)),
            Task.Run(() => SendDirect(replies, seq: 4))), "every reply queued after the error has been taken");
        await CloseAsync(replies);

        var frames = await Within.Bound(reading, "the broker's end closes");
        var last = Assert.Single(frames);
        Assert.Equal((FrameType.Error, 0UL), (last.Type, last.Seq));
        Assert.Equal((SessionError.Code, SessionError.Message), (last.Error().Code, last.Error().Message));
    }

    [Fact]
    public async Task A_direct_chunk_posted_after_the_sessions_error_is_given_back_unsent()
    {
        var replies = Start();
        var reading = _pair.ReadToCloseAsync();

        replies.Error(0, SessionError);
        var sent = await Within.Bound(Task.Run(() => SendDirect(replies, seq: 4)), "the direct chunk is sent or given back");
        await CloseAsync(replies);

        Assert.False(sent, "the direct chunk was sent after the session's error");
        Assert.Single(await Within.Bound(reading, "the broker's end closes"));
    }

    [Fact]
    public async Task Chunks_queued_after_the_sessions_error_give_their_staging_back()
    {
        var replies = Start();

        replies.Error(0, SessionError);
        var queued = Task.Run(() =>
        {
            for (var i = 0; i < ManyChunks; i++)
            {
                replies.Data(3, (ulong)i * 100, new byte[100], last: i == ManyChunks - 1);
            }
        });

        await Within.Bound(queued, $"{ManyChunks} chunks are queued, which needs the staging of those dropped given back");
        await CloseAsync(replies);
    }

    [Fact]
    public async Task Replies_queued_while_a_flush_is_in_flight_leave_in_one_write_in_order()
    {
        var wire = new HeldFirstWrite(new NetworkStream(_pair.Broker));
        var replies = Start(wire);
        var reading = _pair.ReadToCloseAsync();

        replies.Reply(1, ReplyKind.DevicePtr, 0x7f00_0000_1000);
        await Within.Bound(wire.FirstWriteStarted, "the first reply's flush starts");
        replies.Reply(2, ReplyKind.Handle, 7);
        replies.Error(3, new Error { Code = ErrorCode.NotFound, Message = "no kernel 'nope' in module 1" });
        replies.Data(4, 0, [9, 8, 7], last: true);
        replies.Reply(5, ReplyKind.MemInfo, 100, 200);
        wire.Release();
        await CloseAsync(replies);

        var frames = await Within.Bound(reading, "the broker's end closes");
        Assert.Equal([1UL, 2, 3, 4, 5], frames.Select(f => f.Seq));
        Assert.Equal([frames[0].Size, frames.Skip(1).Sum(f => f.Size)], wire.Writes);
    }

    private FrameReplies Start(Stream? wire = null)
    {
        _output = PipeWriter.Create(wire ?? new NetworkStream(_pair.Broker), new StreamPipeWriterOptions(leaveOpen: true));
        return new FrameReplies(_output, GpuPool.Protocol.Transport.FrameWire.Plain(_pair.Broker), _blocks, _writing.Token, _session.Token);
    }

    /// <summary>Sends a copy chunk straight from "device" memory, as a device stream does; whether it was sent.</summary>
    private bool SendDirect(FrameReplies replies, ulong seq)
    {
        Assert.True(replies.AcquireDirect());
        try
        {
            replies.PostDirect(0, seq, 0, Marshal.UnsafeAddrOfPinnedArrayElement(_deviceBytes, 0), _deviceBytes.Length, last: true);
            return replies.WaitDirect(0);
        }
        finally
        {
            replies.ReleaseDirect();
        }
    }

    /// <summary>Ends the session's replies as the connection does, then closes the broker's end.</summary>
    private async Task CloseAsync(FrameReplies replies)
    {
        replies.Complete();
        await Within.Bound(replies.Completion, "the reply writer ends");
        await _output.CompleteAsync();
        _pair.Broker.Shutdown(SocketShutdown.Both);
    }

    /// <summary>The connection as a stream that records each write's length and holds the first until released, as a slow client holds a flush.</summary>
    private sealed class HeldFirstWrite(Stream inner) : Stream
    {
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly List<int> _writes = [];

        public Task FirstWriteStarted => _started.Task;

        public IReadOnlyList<int> Writes
        {
            get
            {
                lock (_writes)
                {
                    return [.. _writes];
                }
            }
        }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public void Release() => _released.TrySetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            int count;
            lock (_writes)
            {
                _writes.Add(buffer.Length);
                count = _writes.Count;
            }

            if (count == 1)
            {
                _started.TrySetResult();
                await _released.Task.WaitAsync(cancellationToken);
            }

            await inner.WriteAsync(buffer, cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
            => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("the reply writer writes asynchronously");

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

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
}
