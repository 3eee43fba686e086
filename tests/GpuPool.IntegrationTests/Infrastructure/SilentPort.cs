using System.Net;
using System.Net.Sockets;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A TCP port that takes no new connection and refuses none: a listener that never accepts, whose accept queue is
/// full, so the kernel drops every further SYN and a connect waits until its timeout, as behind a firewall that drops
/// packets. Deterministic on Linux (a full accept queue drops the SYN, whatever syncookies say).
/// </summary>
internal sealed class SilentPort : IDisposable
{
    private readonly Socket _listener;
    private readonly List<Socket> _fillers = [];

    private SilentPort(Socket listener, IPEndPoint endPoint)
    {
        _listener = listener;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>"127.0.0.1:port".</summary>
    public string Endpoint => $"{EndPoint.Address}:{EndPoint.Port}";

    /// <summary>A silent port of its own on loopback.</summary>
    public static async Task<SilentPort> StartAsync()
    {
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var port = new SilentPort(listener, (IPEndPoint)listener.LocalEndPoint!);
        await port.FillAsync();
        return port;
    }

    /// <summary>Makes <paramref name="listener"/> (listening with a backlog of 1, no longer accepting) silent.</summary>
    public static async Task<SilentPort> SilenceAsync(Socket listener)
    {
        var port = new SilentPort(listener, (IPEndPoint)listener.LocalEndPoint!);
        await port.FillAsync();
        return port;
    }

    /// <summary>Connects until a connect is not answered: from then on the queue is full and stays so.</summary>
    private async Task FillAsync()
    {
        for (var i = 0; i < 64; i++)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            try
            {
                await socket.ConnectAsync(EndPoint, timeout.Token);
                _fillers.Add(socket);
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                return;
            }
        }

        Dispose();
        Assert.Fail($"the accept queue of {Endpoint} did not fill after 64 connections: the kernel is not dropping SYNs to a full queue");
    }

    public void Dispose()
    {
        foreach (var socket in _fillers)
        {
            socket.Dispose();
        }

        _listener.Dispose();
    }
}
