using System.Net;
using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// One fast-path connection (TCP or Unix socket) of a session: its sender and its reply reader. The first failure,
/// from either side, is the connection's: later sends throw it and the reply target is told once.
/// </summary>
internal sealed class FrameConnection : IAsyncDisposable
{
    private readonly FrameWire _wire;
    private IReplyTarget _target = null!;
    private Task<GpuPoolException> _reader = Task.FromResult<GpuPoolException>(null!);

    private FrameConnection(FrameWire wire, string endpoint, bool unix, string peer, TimeSpan connectTimeout, PoolTls? tls)
    {
        _wire = wire;
        Tls = tls;
        Endpoint = endpoint;
        IsUnix = unix;
        Peer = peer;
        ConnectTimeout = connectTimeout;
        Sender = new FrameSender(this);
    }

    public string Endpoint { get; }

    public bool IsUnix { get; }

    /// <summary>Who is at the other end, for messages: "broker b1 at tcp 10.0.0.5:7072".</summary>
    public string Peer { get; }

    /// <summary>How long this connection's connect could take; the session's data connections get as long.</summary>
    public TimeSpan ConnectTimeout { get; }

    /// <summary>The connection's bytes: its socket, or TLS over it.</summary>
    public FrameWire Wire => _wire;

    /// <summary>The TLS settings this connection was made with (a TCP one to a TLS broker); the session's data connections use the same.</summary>
    public PoolTls? Tls { get; }

    public FrameSender Sender { get; }

    /// <summary>The connection's failure, once it has failed.</summary>
    public GpuPoolException? Failure => Sender.Failure;

    /// <summary>"broker b1 at tcp 10.0.0.5:7072" (or "at unix PATH"): how messages name the other end of a fast-path connection.</summary>
    public static string DescribePeer(string brokerId, string endpoint, bool unix) => $"broker {brokerId} at {(unix ? "unix" : "tcp")} {endpoint}";

    /// <summary>Like <see cref="TryConnectAsync"/>, but a connection that cannot be made is a <see cref="GpuPoolException"/> (Unavailable) naming <paramref name="peer"/>.</summary>
    public static async Task<FrameConnection> ConnectAsync(string endpoint, bool unix, string peer, TimeSpan timeout, CancellationToken cancellationToken, PoolTls? tls = null)
    {
        var (connection, failure) = await TryConnectAsync(endpoint, unix, peer, timeout, tls, cancellationToken).ConfigureAwait(false);
        return connection ?? throw new GpuPoolException(ErrorCode.Unavailable, $"cannot reach {peer}: {failure}");
    }

    /// <summary>
    /// Connects to a Unix socket path or a "host:port" TCP endpoint (the host an address or a DNS name) within
    /// <paramref name="timeout"/>, TCP with TLS when <paramref name="tls"/> is given (a Unix socket never leaves the
    /// host and stays plaintext). A connection that cannot be made (refused, no route, no answer, a TLS handshake that
    /// fails or does not finish) is no connection and a reason ("no answer within 1 s"), not an exception. A malformed
    /// endpoint throws InvalidArgument; cancelling throws.
    /// </summary>
    public static async Task<(FrameConnection? Connection, string Failure)> TryConnectAsync(string endpoint, bool unix, string peer, TimeSpan timeout, PoolTls? tls, CancellationToken cancellationToken)
    {
        var host = "";
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
            host = colon > 0 ? endpoint[..colon] : "";
            if (colon <= 0 || !int.TryParse(endpoint.AsSpan(colon + 1), out var port) || port is < 1 or > 65535 || host.Length == 0)
            {
                throw new GpuPoolException(ErrorCode.InvalidArgument, $"{peer}: the fast-path endpoint '{endpoint}' is not host:port");
            }

            if (IPAddress.TryParse(host.Trim('[', ']'), out var address))
            {
                target = new IPEndPoint(address, port);
                socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            }
            else
            {
                // A broker advertised under a DNS name: resolved as part of the connect, within its timeout.
                target = new DnsEndPoint(host, port);
                socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            }
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutCts.CancelAfter(timeout);
            await socket.ConnectAsync(target, timeoutCts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            socket.Dispose();
            return (null, $"no answer within {Seconds(timeout)}");
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            return (null, ex.Message);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var useTls = unix ? null : tls;
        FrameWire wire;
        try
        {
            // The handshake gets what is left of the connect's time, and at least a second.
            var left = timeout - System.Diagnostics.Stopwatch.GetElapsedTime(started);
            wire = await FrameWire.ConnectAsync(socket, useTls, host, left < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : left, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is System.Security.Authentication.AuthenticationException or IOException or SocketException)
        {
            socket.Dispose();
            return (null, ex is System.Security.Authentication.AuthenticationException ? ex.Message : $"TLS handshake failed ({ex.Message}); a broker run with --insecure speaks plaintext");
        }

        return (new FrameConnection(wire, endpoint, unix, peer, timeout, useTls), "");
    }

    /// <summary>A timeout as people write it: "1 s", "250 ms".</summary>
    internal static string Seconds(TimeSpan timeout)
        => timeout.TotalSeconds >= 1 ? $"{timeout.TotalSeconds:0.#} s" : $"{timeout.TotalMilliseconds:0} ms";

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
        var reader = new ReplyReader(_wire, target, Peer);
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
        Fail(new GpuPoolException(ErrorCode.Unavailable, $"device session: sending to {Peer} failed ({ex.Message})", inner: ex));
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
        await _wire.ShutdownSendAsync().ConfigureAwait(false);
        await Task.WhenAny(_reader, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        await _wire.DisposeAsync().ConfigureAwait(false);
        await _reader.ConfigureAwait(false);
        await Sender.Completion.ConfigureAwait(false);
    }
}
