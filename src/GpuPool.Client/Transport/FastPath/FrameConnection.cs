using System.Net;
using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// One fast-path connection (TCP or Unix socket) of a session: its sender and its reply reader. The first failure,
/// from either side, is the connection's: later sends throw it and the reply target is told once.
/// </summary>
internal sealed class FrameConnection : IAsyncDisposable
{
    private readonly Socket _socket;
    private IReplyTarget _target = null!;
    private Task<GpuPoolException> _reader = Task.FromResult<GpuPoolException>(null!);

    private FrameConnection(Socket socket, string endpoint, bool unix)
    {
        _socket = socket;
        Endpoint = endpoint;
        IsUnix = unix;
        Sender = new FrameSender(this);
    }

    public string Endpoint { get; }

    public bool IsUnix { get; }

    public Socket Socket => _socket;

    public FrameSender Sender { get; }

    /// <summary>The connection's failure, once it has failed.</summary>
    public GpuPoolException? Failure => Sender.Failure;

    /// <summary>Connects to a Unix socket path or a "host:port" TCP endpoint.</summary>
    public static async Task<FrameConnection> ConnectAsync(string endpoint, bool unix, CancellationToken cancellationToken)
    {
        EndPoint target;
        Socket socket;
        if (unix)
        {
            target = new UnixDomainSocketEndPoint(endpoint);
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

            // TCP buffer sizes stay the kernel's: setting them turns off Linux's autotuning, which does better. A Unix
            // socket has no autotuning, and its default (about 200 KiB) makes a bulk copy wait on wake-ups every few hundred KiB.
            UseLargeBuffers(socket);
        }
        else
        {
            var colon = endpoint.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out var port) || !IPAddress.TryParse(endpoint.AsSpan(0, colon).Trim("[]"), out var address))
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"fast-path endpoint '{endpoint}' is not host:port");
            }

            target = new IPEndPoint(address, port);
            socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await socket.ConnectAsync(target, timeout.Token).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new FrameConnection(socket, endpoint, unix);
    }

    /// <summary>Socket buffers of a Unix-socket connection: 4 MiB each way, or the most the kernel allows (net.core.wmem_max/rmem_max).</summary>
    internal static void UseLargeBuffers(Socket socket)
    {
        try
        {
            socket.SendBufferSize = UnixBufferBytes;
            socket.ReceiveBufferSize = UnixBufferBytes;
        }
        catch (SocketException)
        {
            // The kernel's defaults then; a slower copy, not a failure.
        }
    }

    private const int UnixBufferBytes = 4 << 20;

    /// <summary>Starts the reader and the sender; replies go to <paramref name="target"/>.</summary>
    public void Start(IReplyTarget target)
    {
        _target = target;
        var reader = new ReplyReader(_socket, target);
        _reader = Task.Run(async () =>
        {
            var closed = await reader.RunAsync().ConfigureAwait(false);
            Fail(closed);
            return closed;
        });
        Sender.Start();
    }

    /// <summary>
    /// A send failed: the broker has closed the connection, and why (the lease ended, a protocol error) is in frames the
    /// reader may not have parsed yet. Lets it, so that reason wins; the connection's failure is returned.
    /// </summary>
    public async Task<GpuPoolException> SendFailedAsync(Exception ex)
    {
        await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(2))).ConfigureAwait(false);
        Fail(new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to the broker failed ({ex.Message})", inner: ex));
        return Failure!;
    }

    private void Fail(GpuPoolException error)
    {
        if (Sender.Fail(error))
        {
            _target.OnClosed(error);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Let queued frames leave, then close our side; the broker ends the session and closes too.
        await Sender.CloseAsync().ConfigureAwait(false);
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }

        await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        _socket.Dispose();
        await _reader.ConfigureAwait(false);
        await Sender.Completion.ConfigureAwait(false);
    }
}
