using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>Accepts fast-path connections on one TCP port or Unix socket and serves each with the handler.</summary>
internal sealed class FastPathListener : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly FastPathConnectionHandler _handler;
    private readonly string _transport;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<Socket, Task> _connections = new();
    private readonly Task _accepting;

    private FastPathListener(Socket listener, FastPathConnectionHandler handler, string transport)
    {
        _listener = listener;
        _handler = handler;
        _transport = transport;
        _accepting = Task.Run(AcceptLoopAsync);
    }

    /// <summary>The bound endpoint (the real port when 0 was asked for).</summary>
    public EndPoint LocalEndPoint => _listener.LocalEndPoint!;

    public static FastPathListener StartTcp(IPAddress address, int port, FastPathConnectionHandler handler)
    {
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (address.Equals(IPAddress.IPv6Any))
        {
            // Bound to every address: IPv4 clients too, as Kestrel takes them on its port.
            socket.DualMode = true;
        }

        return Start(socket, new IPEndPoint(address, port), handler, "tcp");
    }

    public static FastPathListener StartUnix(string path, FastPathConnectionHandler handler)
    {
        if (File.Exists(path))
        {
            if (Owned(path))
            {
                throw new IOException($"the fast path's Unix socket {path} is in use by another process: give this broker another path");
            }

            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        return Start(socket, new UnixDomainSocketEndPoint(path), handler, "unix");
    }

    /// <summary>
    /// Removes the Unix sockets that earlier brokers of this id left in <paramref name="directory"/> (a broker that was
    /// killed cannot remove its own), those no live process listens on; their names are this broker's, so nothing
    /// else's is touched. Returns the paths removed.
    /// </summary>
    public static IReadOnlyList<string> RemoveStaleSockets(string directory, string brokerId)
    {
        var removed = new List<string>();
        foreach (var path in Directory.EnumerateFiles(directory, $"gpupool-{brokerId}-*.sock"))
        {
            // Only names this broker makes (its id, then 32 hex digits): another id that starts with this one is not ours.
            var rest = Path.GetFileNameWithoutExtension(path)[$"gpupool-{brokerId}-".Length..];
            if (rest.Length != 32 || !rest.All(char.IsAsciiHexDigitLower) || Owned(path))
            {
                continue;
            }

            try
            {
                File.Delete(path);
                removed.Add(path);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return removed;
    }

    /// <summary>Whether a process listens on the Unix socket at <paramref name="path"/> (a connection to it is accepted).</summary>
    private static bool Owned(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static FastPathListener Start(Socket socket, EndPoint endPoint, FastPathConnectionHandler handler, string transport)
    {
        try
        {
            socket.Bind(endPoint);
            socket.Listen(512);
            return new FastPathListener(socket, handler, transport);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (_transport == "tcp")
            {
                socket.NoDelay = true;
            }
            else
            {
                // A Unix socket has no autotuning: its default buffers (about 200 KiB) make a bulk copy wait on
                // wake-ups every few hundred KiB. 4 MiB each way, or the most the kernel allows.
                try
                {
                    socket.SendBufferSize = 4 << 20;
                    socket.ReceiveBufferSize = 4 << 20;
                }
                catch (SocketException)
                {
                }
            }

            // Registered before it may run, so a connection that ends at once is not left in the table.
            var registered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _connections[socket] = Task.Run(async () =>
            {
                await registered.Task.ConfigureAwait(false);
                try
                {
                    if (await OpenAsync(socket).ConfigureAwait(false) is { } wire)
                    {
                        await _handler.RunAsync(wire, _transport, _stop.Token).ConfigureAwait(false);
                    }
                }
                finally
                {
                    _connections.TryRemove(socket, out _);
                }
            });
            registered.SetResult();
        }
    }

    /// <summary>
    /// The accepted connection's wire: over TCP with the broker's TLS settings, TLS, whose handshake must finish within
    /// the hello timeout; else the socket itself. A client that sends plaintext to a TLS port is answered, in plaintext,
    /// with an error frame saying so, and closed; a handshake that fails is logged with the peer and closed.
    /// </summary>
    private async Task<FrameWire?> OpenAsync(Socket socket)
    {
        var tls = _transport == "tcp" ? _handler.Options.Tls : null;
        if (tls is null)
        {
            return FrameWire.Plain(socket);
        }

        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        var timeout = _handler.Options.FastPathHelloTimeout;
        try
        {
            // A TLS connection starts with a handshake record (0x16); anything else is a client speaking plaintext.
            var first = new byte[1];
            using (var peekCts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                peekCts.CancelAfter(timeout);
                if (await socket.ReceiveAsync(first, SocketFlags.Peek, peekCts.Token).ConfigureAwait(false) == 0)
                {
                    socket.Dispose();
                    return null;
                }
            }

            if (first[0] != 0x16)
            {
                Log.FastPathRefused(_handler.Logger, peer, "it sent plaintext to a TLS port");
                await using (var plain = FrameWire.Plain(socket))
                {
                    var output = System.IO.Pipelines.PipeWriter.Create(plain.Stream);
                    await FastPathConnectionHandler.FailAsync(output, 0, GpuPool.Protocol.V1.ErrorCode.Unauthenticated, "this broker's fast path speaks TLS: connect with TLS and the pool's CA").ConfigureAwait(false);
                    await plain.ShutdownSendAsync().ConfigureAwait(false);
                }

                return null;
            }

            return await FrameWire.AcceptAsync(socket, tls, timeout, _stop.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException or System.Security.Authentication.AuthenticationException or ObjectDisposedException)
        {
            if (!_stop.IsCancellationRequested)
            {
                Log.FastPathRefused(_handler.Logger, peer, ex is OperationCanceledException ? $"no TLS handshake within {timeout.TotalSeconds:0.#} s" : $"TLS handshake failed ({ex.Message})");
            }

            socket.Dispose();
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        await _accepting.ConfigureAwait(false);
        foreach (var (socket, _) in _connections)
        {
            // Unblocks a handler waiting on a read.
            socket.Dispose();
        }

        // A connection that ends with an error has nothing left to report at shutdown; stopping must not fail on it.
        try
        {
            await Task.WhenAll(_connections.Values).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or SocketException or TimeoutException)
        {
        }
        _stop.Dispose();
    }
}
