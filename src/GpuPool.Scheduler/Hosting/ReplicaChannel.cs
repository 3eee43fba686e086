using Grpc.Net.Client;

namespace GpuPool.Scheduler.Hosting;

/// <summary>
/// The channel a scheduler replica forwards calls to the leader on: over TLS (an https:// endpoint) it checks the
/// leader's certificate against the pool's CA and presents its own scheduler certificate.
/// </summary>
internal static class ReplicaChannel
{
    public static GrpcChannel Create(string endpoint, SchedulerOptions options)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        };
        var uri = new Uri(endpoint);
        if (uri.Scheme == "https" && options.Tls is { } tls)
        {
            handler.SslOptions = tls.ClientOptions(uri.Host);
        }

        return GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions { HttpHandler = handler });
    }
}
