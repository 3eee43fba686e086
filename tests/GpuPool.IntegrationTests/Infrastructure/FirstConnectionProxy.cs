using System.Net;
using System.Net.Sockets;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A proxy in front of a broker's TCP fast path that forwards the first connection it takes and then goes silent
/// (<see cref="SilentPort"/>): a session opens through it, and every data connection it later opens for striping
/// waits on a connect that no one answers.
/// </summary>
internal sealed class FirstConnectionProxy : IDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly List<Socket> _sockets = [];
    private readonly Task<SilentPort> _silent;

    public FirstConnectionProxy(string targetTcp)
    {
        var colon = targetTcp.LastIndexOf(':');
        _target = new IPEndPoint(IPAddress.Parse(targetTcp[..colon]), int.Parse(targetTcp[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
        Endpoint = $"127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";
        _silent = Task.Run(ForwardFirstThenGoSilentAsync);
    }

    /// <summary>Where clients connect: "127.0.0.1:port".</summary>
    public string Endpoint { get; }

    /// <summary>Completes once the first connection is forwarded and the port has gone silent.</summary>
    public Task Silent => _silent;

    private async Task<SilentPort> ForwardFirstThenGoSilentAsync()
    {
        var client = await _listener.AcceptAsync();
        var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        client.NoDelay = true;
        lock (_sockets)
        {
            _sockets.Add(client);
            _sockets.Add(upstream);
        }

        await upstream.ConnectAsync(_target);
        _ = PumpAsync(client, upstream);
        _ = PumpAsync(upstream, client);
        return await SilentPort.SilenceAsync(_listener);
    }

    private static async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[256 * 1024];
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer, SocketFlags.None);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // One side closed: the other follows when disposed.
        }
    }

    public void Dispose()
    {
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }

        if (_silent.IsCompletedSuccessfully)
        {
            _silent.Result.Dispose();
        }

        _listener.Dispose();
    }
}
