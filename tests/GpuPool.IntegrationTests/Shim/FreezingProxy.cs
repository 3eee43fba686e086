using System.Net;
using System.Net.Sockets;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// A TCP proxy in front of the broker's fast path that, once frozen, stops forwarding in both directions but
/// keeps both connections open: a broker (or network) that stops answering without closing anything.
/// </summary>
internal sealed class FreezingProxy : IDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _frozen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Socket> _sockets = [];

    public FreezingProxy(string targetTcp)
    {
        var colon = targetTcp.LastIndexOf(':');
        _target = new IPEndPoint(IPAddress.Parse(targetTcp[..colon]), int.Parse(targetTcp[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(4);
        Endpoint = $"127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";
        _ = Task.Run(AcceptAsync);
    }

    public string Endpoint { get; }

    public void Freeze() => _frozen.TrySetResult();

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptAsync(_stop.Token);
                var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await upstream.ConnectAsync(_target, _stop.Token);
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(upstream);
                }

                _ = PumpAsync(client, upstream);
                _ = PumpAsync(upstream, client);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    private async Task PumpAsync(Socket from, Socket to)
    {
        var buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                var n = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (n == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                if (_frozen.Task.IsCompleted)
                {
                    // Frozen: drop what arrived, read no more, send nothing, close nothing.
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                }

                await to.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
            }
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (var s in _sockets)
            {
                s.Dispose();
            }
        }

        _stop.Dispose();
    }
}
