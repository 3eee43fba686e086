using System.Buffers;
using System.Net;
using System.Net.Sockets;
using GpuPool.Client.Transport.FastPath;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;

namespace GpuPool.Client.Tests.Transport;

/// <summary>
/// Connections to a TCP listener on 127.0.0.1, no broker: the test plays the broker on the accepted socket, writing
/// and reading raw frames.
/// </summary>
internal static class Loopback
{
    /// <summary>A plain socket pair: the broker's end and the client's.</summary>
    public static async Task<(Socket Broker, Socket Client)> PairAsync()
    {
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var broker = await AcceptAsync(null, listener => client.ConnectAsync(listener.LocalEndpoint));
        return (broker, client);
    }

    /// <summary>
    /// A fast-path connection and the broker's end of it. <paramref name="smallBuffers"/> keeps what the kernel holds
    /// between the two ends to a few hundred KiB, so a payload of a few MiB cannot have left until the broker reads it.
    /// </summary>
    public static async Task<(Socket Broker, FrameConnection Client)> ConnectAsync(bool smallBuffers = false)
    {
        FrameConnection? client = null;
        var broker = await AcceptAsync(
            smallBuffers ? SmallBuffer : null,
            async listener => client = await FrameConnection.ConnectAsync($"127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}", unix: false, "broker b0 at tcp loopback", TimeSpan.FromSeconds(5), CancellationToken.None));
        if (smallBuffers)
        {
            client!.Wire.Socket.SendBufferSize = SmallBuffer;
        }

        return (broker, client!);
    }

    private const int SmallBuffer = 64 * 1024;

    private static async Task<Socket> AcceptAsync(int? receiveBuffer, Func<TcpListener, Task> connect)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        if (receiveBuffer is { } size)
        {
            // Set before listening, so the accepted socket has it from the start (and the kernel does not autotune it).
            listener.Server.ReceiveBufferSize = size;
        }

        listener.Start();
        try
        {
            var accepted = listener.AcceptSocketAsync();
            await connect(listener);
            return await accepted;
        }
        finally
        {
            listener.Stop();
        }
    }
}

/// <summary>Reads frames off the broker's end of a connection as they come.</summary>
internal sealed class FrameInbox(Socket socket)
{
    private byte[] _buffer = new byte[1 << 20];
    private int _filled;

    /// <summary>The next <paramref name="count"/> frames, waiting for their bytes.</summary>
    public async Task<List<ReceivedFrame>> ReadAsync(int count)
    {
        var frames = new List<ReceivedFrame>();
        while (true)
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(_buffer, 0, _filled));
            while (frames.Count < count)
            {
                var status = FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out var frame, out var error);
                if (status == DecodeStatus.NeedMore)
                {
                    break;
                }

                Assert.True(status == DecodeStatus.Frame, $"frame {frames.Count + 1} is malformed: {error}");
                frames.Add(new ReceivedFrame(frame.Type, frame.Seq, frame.Fixed.ToArray(), frame.Payload.ToArray()));
            }

            var consumed = (int)reader.Consumed;
            _buffer.AsSpan(consumed, _filled - consumed).CopyTo(_buffer);
            _filled -= consumed;
            if (frames.Count == count)
            {
                return frames;
            }

            if (_filled == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            var n = await socket.ReceiveAsync(_buffer.AsMemory(_filled), SocketFlags.None);
            if (n == 0)
            {
                throw new EndOfStreamException($"the connection closed after {frames.Count} of {count} frames");
            }

            _filled += n;
        }
    }
}

/// <summary>A frame as it came off the wire, copied out of the receive buffer.</summary>
internal sealed record ReceivedFrame(FrameType Type, ulong Seq, byte[] Fixed, byte[] Payload)
{
    public TOp Op<TOp>()
        where TOp : struct, IOp<TOp>
    {
        Assert.Equal(TOp.Type, Type);
        return OpFrames.Read<TOp>(new Frame(new FrameHeader(Type, (uint)Payload.Length, Seq), new ReadOnlySequence<byte>(Fixed), new ReadOnlySequence<byte>(Payload)));
    }

    public override string ToString() => $"{Type} #{Seq}";
}
