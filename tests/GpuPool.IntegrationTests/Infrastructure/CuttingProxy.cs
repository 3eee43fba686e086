using System.Net;
using System.Net.Sockets;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>Which way a <see cref="CuttingProxy"/> counts the bytes it cuts after.</summary>
public enum CutDirection
{
    /// <summary>Bytes the client sent (a copy to the device).</summary>
    ToBroker,

    /// <summary>Bytes the broker sent (a copy to the host).</summary>
    ToClient,
}

/// <summary>
/// A proxy in front of the broker's fast path (TCP, or a Unix socket) that forwards every connection and cuts one
/// of them — the <c>cutConnection</c>-th it accepts, counting from 1 — once <c>cutAfterBytes</c> have gone the given
/// way: a reset on both sides on TCP, a close on a Unix socket. The network failing in the middle of a copy, at a
/// byte count the test chooses, on the connection it chooses (the first is a session's own, later ones its data
/// connections).
/// </summary>
internal sealed class CuttingProxy : IDisposable
{
    private readonly Socket _listener;
    private readonly EndPoint _target;
    private readonly long _cutAfterBytes;
    private readonly int _cutConnection;
    private readonly bool _andLater;
    private readonly CutDirection _direction;
    private readonly string? _unixPath;
    private readonly TaskCompletionSource<long> _cut = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = [];
    private int _accepted;

    /// <param name="andLater">Cut every connection from the <paramref name="cutConnection"/>-th on, not only that one.</param>
    public CuttingProxy(string targetTcp, long cutAfterBytes, int cutConnection = 1, CutDirection direction = CutDirection.ToBroker, bool andLater = false)
        : this(ParseTcp(targetTcp), unixPath: null, cutAfterBytes, cutConnection, direction)
    {
        _andLater = andLater;
    }

    private CuttingProxy(EndPoint target, string? unixPath, long cutAfterBytes, int cutConnection, CutDirection direction)
    {
        _target = target;
        _unixPath = unixPath;
        _cutAfterBytes = cutAfterBytes;
        _cutConnection = cutConnection;
        _direction = direction;
        if (unixPath is null)
        {
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            Endpoint = $"127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";
        }
        else
        {
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(unixPath));
            Endpoint = unixPath;
        }

        _listener.Listen(16);
        _ = Task.Run(AcceptLoopAsync);
    }

    /// <summary>A proxy in front of the broker's Unix socket, listening on a socket of its own.</summary>
    public static CuttingProxy ForUnix(string targetPath, long cutAfterBytes, int cutConnection = 1, CutDirection direction = CutDirection.ToBroker)
        => new(new UnixDomainSocketEndPoint(targetPath), Path.Combine(Path.GetTempPath(), $"gpupool-proxy-{Guid.NewGuid():N}.sock"), cutAfterBytes, cutConnection, direction);

    /// <summary>Where clients connect: "host:port", or the Unix socket's path.</summary>
    public string Endpoint { get; }

    /// <summary>Completes, with the bytes forwarded the counted way, once the chosen connection has been cut.</summary>
    public Task<long> Cut => _cut.Task;

    /// <summary>How many connections the proxy has accepted.</summary>
    public int Accepted => Volatile.Read(ref _accepted);

    private static IPEndPoint ParseTcp(string targetTcp)
    {
        var colon = targetTcp.LastIndexOf(':');
        return new IPEndPoint(IPAddress.Parse(targetTcp[..colon]), int.Parse(targetTcp[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                return;
            }

            var number = Interlocked.Increment(ref _accepted);
            _ = Task.Run(() => ForwardAsync(client, number == _cutConnection || (_andLater && number > _cutConnection)));
        }
    }

    private async Task ForwardAsync(Socket client, bool cutThis)
    {
        var upstream = _unixPath is null
            ? new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true }
            : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        lock (_sockets)
        {
            _sockets.Add(client);
            _sockets.Add(upstream);
        }

        try
        {
            if (client.AddressFamily != AddressFamily.Unix)
            {
                client.NoDelay = true;
            }

            await upstream.ConnectAsync(_target, _stop.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            client.Dispose();
            upstream.Dispose();
            return;
        }

        var toBrokerLimit = cutThis && _direction == CutDirection.ToBroker ? _cutAfterBytes : long.MaxValue;
        var toClientLimit = cutThis && _direction == CutDirection.ToClient ? _cutAfterBytes : long.MaxValue;
        var up = PumpAsync(client, upstream, toBrokerLimit);
        var down = PumpAsync(upstream, client, toClientLimit);
        var counted = cutThis ? await (_direction == CutDirection.ToBroker ? up : down) : 0;
        if (cutThis)
        {
            CutBoth(client, upstream);
            _cut.TrySetResult(counted);
        }

        await Task.WhenAll(up, down);
        if (!cutThis)
        {
            // One side ended: pass the end on, as a plain TCP path would.
            client.Dispose();
            upstream.Dispose();
        }
    }

    /// <summary>Copies bytes from one socket to the other until <paramref name="limit"/> have gone or either side ends.</summary>
    private async Task<long> PumpAsync(Socket from, Socket to, long limit)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        try
        {
            while (total < limit)
            {
                var n = await from.ReceiveAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - total)), SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    break;
                }

                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                total += n;
            }

            if (total < limit)
            {
                to.Shutdown(SocketShutdown.Send);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }

        return total;
    }

    private static void CutBoth(params Socket[] sockets)
    {
        foreach (var socket in sockets)
        {
            try
            {
                socket.LingerState = new LingerOption(true, 0);
            }
            catch (SocketException)
            {
                // Unix sockets have no reset: a close is the cut.
            }

            socket.Close();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }

        if (_unixPath is not null)
        {
            File.Delete(_unixPath);
        }

        _stop.Dispose();
    }
}
