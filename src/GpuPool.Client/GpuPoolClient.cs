using System.Collections.Concurrent;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Client;

/// <summary>What a client asks the scheduler for: a slice of one device.</summary>
public sealed record LeaseRequest
{
    public string Tenant { get; init; } = "default";

    /// <summary>Hard memory limit of the slice.</summary>
    public required ulong MemoryBytes { get; init; }

    /// <summary>Compute share in milli-GPU, 1..1000.</summary>
    public int ComputeShare { get; init; } = 1000;

    /// <summary>Time to live; the SDK renews it in the background. Null: the scheduler's default.</summary>
    public TimeSpan? Ttl { get; init; }

    public string PriorityClass { get; init; } = "";

    public string DeviceModel { get; init; } = "";
}

/// <summary>
/// Entry point of the SDK: talks to a pool's scheduler, hands out leases, and keeps one gRPC channel per
/// broker endpoint. Dispose it last: it closes the channels.
/// </summary>
public sealed class GpuPoolClient : IDisposable
{
    private readonly GrpcChannel _scheduler;
    private readonly ConcurrentDictionary<string, GrpcChannel> _brokers = new(StringComparer.Ordinal);

    public GpuPoolClient(string schedulerEndpoint)
    {
        if (!Uri.TryCreate(schedulerEndpoint, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
        {
            throw new ArgumentException($"scheduler endpoint '{schedulerEndpoint}' is not an http:// or https:// address", nameof(schedulerEndpoint));
        }

        SchedulerEndpoint = schedulerEndpoint;
        _scheduler = CreateChannel(schedulerEndpoint);
    }

    public string SchedulerEndpoint { get; }

    /// <summary>
    /// Asks for a lease; the returned lease renews itself until released or disposed. A request the pool
    /// refuses (malformed, or no room) throws <see cref="GpuPoolException"/>.
    /// </summary>
    public async Task<Lease> AllocateAsync(LeaseRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.ComputeShare is < 1 or > 1000)
        {
            // Checked here because the wire field is unsigned; the same code the scheduler would answer with.
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"ComputeShare must be 1..1000 milli-GPU (1000 = a whole device), not {request.ComputeShare}");
        }

        var client = new Leases.LeasesClient(_scheduler);
        AllocateReply reply;
        try
        {
            reply = await client.AllocateAsync(
                new AllocateRequest
                {
                    Tenant = request.Tenant,
                    MemoryBytes = request.MemoryBytes,
                    ComputeShare = (uint)request.ComputeShare,
                    TtlSeconds = request.Ttl is { } ttl ? (uint)Math.Max(1, Math.Ceiling(ttl.TotalSeconds)) : 0,
                    PriorityClass = request.PriorityClass,
                    DeviceModel = request.DeviceModel,
                },
                cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "allocate");
        }

        return new Lease(this, client, reply);
    }

    /// <summary>
    /// Opens a device session on a lease that someone else holds and renews (for example the parent process
    /// that ran <c>gpupool run</c>): the lease record says where the broker is, the token opens the session.
    /// Nothing here renews or releases the lease.
    /// </summary>
    public Task<DeviceSession> OpenSessionAsync(LeaseRecord lease, string token, SessionTransportKind transport = SessionTransportKind.Auto, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentException.ThrowIfNullOrEmpty(token);
        if (string.IsNullOrEmpty(lease.LeaseId) || string.IsNullOrEmpty(lease.BrokerEndpoint))
        {
            throw new ArgumentException("the lease record must name the lease and its broker's endpoint", nameof(lease));
        }

        return DeviceSession.OpenAsync(this, lease, token, transport, cancellationToken);
    }

    /// <summary>Brokers, devices with their capacity, and live leases.</summary>
    public async Task<ClusterView> ListClusterAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await new Admin.AdminClient(_scheduler).ListClusterAsync(new ListClusterRequest(), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "list cluster");
        }
    }

    internal GrpcChannel BrokerChannel(string endpoint) => _brokers.GetOrAdd(endpoint, CreateChannel);

    private static GrpcChannel CreateChannel(string endpoint) => GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = 64 << 20,
        MaxSendMessageSize = 64 << 20,
        HttpHandler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        },
    });

    public void Dispose()
    {
        _scheduler.Dispose();
        foreach (var channel in _brokers.Values)
        {
            channel.Dispose();
        }
    }
}
