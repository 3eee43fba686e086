using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using GpuPool.Protocol.Security;

namespace GpuPool.Protocol.Transport;

/// <summary>
/// The bytes of one fast-path connection: the socket itself (plaintext: a Unix socket, or TCP on a pool run with
/// <c>--insecure</c>), or TLS over it. The framing above is the same either way. Plaintext TCP receives may wait in
/// poll (<see cref="SocketReceiver"/>); TLS receives go through <see cref="SslStream"/>, which decrypts into the
/// caller's buffer — device memory for a bulk copy — after reading the records into its own.
/// One reader and one writer may use a wire at the same time, as SslStream allows.
/// </summary>
internal sealed class FrameWire : IAsyncDisposable
{
    private readonly NetworkStream _network;

    private readonly DuplexBufferedStream? _buffered;

    private FrameWire(Socket socket, SslStream? tls, DuplexBufferedStream? buffered = null)
    {
        Socket = socket;
        _network = new NetworkStream(socket, ownsSocket: false);
        Tls = tls;
        _buffered = buffered;
        if (buffered is not null)
        {
            // Past the handshake: records gather into fewer writes, each send ends with a flush.
            buffered.Buffering = true;
        }
    }

    public Socket Socket { get; }

    /// <summary>The TLS layer, when the connection has one.</summary>
    public SslStream? Tls { get; }

    /// <summary>What pipes read and write: the TLS stream, or the socket's.</summary>
    public Stream Stream => Tls is null ? _network : Tls;

    /// <summary>A plaintext wire over <paramref name="socket"/>.</summary>
    public static FrameWire Plain(Socket socket) => new(socket, null);

    /// <summary>
    /// The client's end: TLS with the pool's CA when <paramref name="tls"/> is given (the server must prove it is a
    /// pool server named <paramref name="host"/>), else plaintext. The handshake must finish within
    /// <paramref name="timeout"/>; a refusal is an <see cref="AuthenticationException"/> saying why.
    /// </summary>
    public static async Task<FrameWire> ConnectAsync(Socket socket, PoolTls? tls, string host, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (tls is null)
        {
            return Plain(socket);
        }

        try
        {
            return await HandshakeAsync(socket, (stream, ct) => stream.AuthenticateAsClientAsync(tls.ClientOptions(host), ct), timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new AuthenticationException($"the TLS handshake did not finish within {timeout.TotalSeconds:0.#} s");
        }
        catch (AuthenticationException ex)
        {
            throw new AuthenticationException(tls.LastRejection.Length > 0 ? $"TLS refused: {tls.LastRejection}" : $"TLS handshake failed: {ex.Message}", ex);
        }
    }

    /// <summary>The server's end of an accepted connection: TLS when <paramref name="tls"/> is given, finished within <paramref name="timeout"/>.</summary>
    public static async Task<FrameWire> AcceptAsync(Socket socket, PoolTls? tls, TimeSpan timeout, CancellationToken cancellationToken)
        => tls is null
            ? Plain(socket)
            : await HandshakeAsync(socket, (stream, ct) => stream.AuthenticateAsServerAsync(tls.ServerOptions(), ct), timeout, cancellationToken).ConfigureAwait(false);

    /// <summary>TLS over the socket (through the record buffers), its handshake given <paramref name="timeout"/>; the streams are closed when it fails.</summary>
    private static async Task<FrameWire> HandshakeAsync(Socket socket, Func<SslStream, CancellationToken, Task> authenticate, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var buffered = new DuplexBufferedStream(new NetworkStream(socket, ownsSocket: false));
        var stream = new SslStream(buffered, leaveInnerStreamOpen: false);
        try
        {
            using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeoutCts.CancelAfter(timeout);
            await authenticate(stream, timeoutCts.Token).ConfigureAwait(false);
            return new FrameWire(socket, stream, buffered);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Receives at least one byte (0: the peer closed its side) through the socket engine or TLS.</summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> into, CancellationToken cancellationToken)
        => Tls is null ? Socket.ReceiveAsync(into, SocketFlags.None, cancellationToken) : Tls.ReadAsync(into, cancellationToken);

    /// <summary>Like <see cref="ReceiveAsync"/>, for bytes already on their way: plaintext TCP may wait for them in poll.</summary>
    public ValueTask<int> ReceiveSomeAsync(Memory<byte> into, CancellationToken cancellationToken)
        => Tls is null ? SocketReceiver.ReceiveSomeAsync(Socket, into, cancellationToken) : Tls.ReadAsync(into, cancellationToken);

    /// <summary>A blocking receive (a Stream's Read).</summary>
    public int Receive(Span<byte> into) => Tls is null ? Socket.Receive(into, SocketFlags.None) : Tls.Read(into);

    /// <summary>Fills <paramref name="into"/>; a peer (named <paramref name="peer"/> in the error) that closes first is an <see cref="IOException"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReceiveExactlyAsync(Memory<byte> into, string peer, CancellationToken cancellationToken)
    {
        if (Tls is null)
        {
            await SocketReceiver.ReceiveExactlyAsync(Socket, into, peer, cancellationToken).ConfigureAwait(false);
            return;
        }

        while (!into.IsEmpty)
        {
            var n = await Tls.ReadAsync(into, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                throw new IOException($"the {peer} closed the connection in the middle of a frame");
            }

            into = into[n..];
        }
    }

    /// <summary>Sends all of <paramref name="bytes"/>.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask SendAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        if (Tls is not null)
        {
            await Tls.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            await Tls.FlushAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        while (!bytes.IsEmpty)
        {
            var n = await Socket.SendAsync(bytes, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            bytes = bytes[n..];
        }
    }

    /// <summary>Ends our sending side: TLS says close_notify first.</summary>
    public async ValueTask ShutdownSendAsync()
    {
        try
        {
            if (Tls is not null)
            {
                await Tls.FlushAsync().ConfigureAwait(false);
                _buffered!.Buffering = false;
                await Tls.ShutdownAsync().ConfigureAwait(false);
            }

            Socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or IOException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Tls is not null)
        {
            await Tls.DisposeAsync().ConfigureAwait(false);
        }

        await _network.DisposeAsync().ConfigureAwait(false);
        Socket.Dispose();
    }
}
