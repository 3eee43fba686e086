using System.Buffers;
using System.Net;
using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Tests.Transport;

/// <summary>
/// A connected TCP socket pair on 127.0.0.1, no broker: the broker's end, which a test writes replies on, and the
/// client's end, which it reads them back from.
/// </summary>
internal sealed class Loopback : IDisposable
{
    private Loopback(Socket broker, Socket client)
    {
        Broker = broker;
        Client = client;
    }

    public Socket Broker { get; }

    public Socket Client { get; }

    public static async Task<Loopback> OpenAsync()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var accepted = listener.AcceptSocketAsync();
            await client.ConnectAsync(listener.LocalEndpoint);
            return new Loopback(await accepted, client);
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>Reads the client's end until the broker's end closes, and decodes every frame that came.</summary>
    public async Task<IReadOnlyList<SentFrame>> ReadToCloseAsync()
    {
        using var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int n;
        while ((n = await Client.ReceiveAsync(buffer, SocketFlags.None)) > 0)
        {
            received.Write(buffer, 0, n);
        }

        return SentFrame.DecodeAll(received.ToArray());
    }

    public void Dispose()
    {
        Broker.Dispose();
        Client.Dispose();
    }
}

/// <summary>A frame as it came off the wire, copied out of the receive buffer.</summary>
internal sealed record SentFrame(FrameType Type, ulong Seq, byte[] Fixed, byte[] Payload)
{
    public int Size => FrameCodec.HeaderSize + Fixed.Length + Payload.Length;

    /// <summary>The frames of <paramref name="bytes"/>, which must be whole frames and nothing else.</summary>
    public static List<SentFrame> DecodeAll(byte[] bytes)
    {
        var frames = new List<SentFrame>();
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(bytes));
        while (!reader.End)
        {
            var status = FrameCodec.TryDecode(ref reader, FrameCodec.DefaultMaxPayload, out var frame, out var error);
            Assert.True(status == DecodeStatus.Frame, $"after {frames.Count} frames, bytes {reader.Consumed} to {bytes.Length} are not a whole frame: {status} {error}");
            frames.Add(new SentFrame(frame.Type, frame.Seq, frame.Fixed.ToArray(), frame.Payload.ToArray()));
        }

        return frames;
    }

    public GpuPoolException Error()
    {
        Assert.Equal(FrameType.Error, Type);
        return OpFrames.ReadError(new Frame(new FrameHeader(Type, (uint)Payload.Length, Seq), new ReadOnlySequence<byte>(Fixed), new ReadOnlySequence<byte>(Payload)));
    }

    public override string ToString() => $"{Type} #{Seq}";
}
