using System.Net;
using System.Net.Sockets;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A TCP proxy in front of the broker's fast path that cuts its connection (a reset on both sides) once
/// the client has sent <c>cutAfterBytes</c>: the network failing in the middle of a copy.
/// </summary>
internal sealed class CuttingProxy : IDisposable
{
    private readonly Socket _listener;
    private readonly IPEndPoint _target;
    private readonly long _cutAfterBytes;
    private readonly TaskCompletionSource<long> _cut = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private Socket? _client;
    private Socket? _upstream;

    public CuttingProxy(string targetTcp, long cutAfterBytes)
    {
        var colon = targetTcp.LastIndexOf(':');
        _target = new IPEndPoint(IPAddress.Parse(targetTcp[..colon]), int.Parse(targetTcp[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        _cutAfterBytes = cutAfterBytes;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
        Endpoint = $"127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";
        _ = Task.Run(RunAsync);
    }

    /// <summary>Where clients connect, "host:port".</summary>
    public string Endpoint { get; }

    /// <summary>Completes, with the client bytes forwarded, once the connection has been cut.</summary>
    public Task<long> Cut => _cut.Task;

    private async Task RunAsync()
    {
        try
        {
            _client = await _listener.AcceptAsync(_stop.Token);
            _upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await _upstream.ConnectAsync(_target, _stop.Token);
            var down = PumpAsync(_upstream, _client, long.MaxValue);
            var forwarded = await PumpAsync(_client, _upstream, _cutAfterBytes);
            CutBoth();
            _cut.TrySetResult(forwarded);
            await down;
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            _cut.TrySetException(ex);
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
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }

        return total;
    }

    private void CutBoth()
    {
        foreach (var socket in new[] { _client, _upstream })
        {
            if (socket is not null)
            {
                socket.LingerState = new LingerOption(true, 0);
                socket.Close();
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        _client?.Dispose();
        _upstream?.Dispose();
        _stop.Dispose();
    }
}
