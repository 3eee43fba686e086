using System.Collections.Concurrent;
using GpuPool.Client.Internal;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace GpuPool.Client;

/// <summary>What a client asks the scheduler for: a slice of one device, or whole devices on one host.</summary>
public sealed record LeaseRequest
{
    /// <summary>
    /// The tenant the lease is charged to. Empty (the default): the tenant the client's credential proves (its tenant
    /// token or certificate). A tenant's credential may name only its own tenant; the admin credential must name one.
    /// </summary>
    public string Tenant { get; init; } = "";

    /// <summary>Hard memory limit of the slice (0 with <see cref="WholeDevices"/>).</summary>
    public ulong MemoryBytes { get; init; }

    /// <summary>Compute share in milli-GPU, 1..1000.</summary>
    public int ComputeShare { get; init; } = 1000;

    /// <summary>
    /// How the share holds when the device has time to spare: work-conserving (the default) lends the lease idle share
    /// of its neighbours; capped never gives it more than its share.
    /// </summary>
    public ShareMode ShareMode { get; init; } = ShareMode.WorkConserving;

    /// <summary>Time to live; the SDK renews it in the background. Null: the scheduler's default.</summary>
    public TimeSpan? Ttl { get; init; }

    public string PriorityClass { get; init; } = "";

    public string DeviceModel { get; init; } = "";

    /// <summary>How long to wait in the scheduler's queue when nothing fits now. Null: answer at once.</summary>
    public TimeSpan? WaitTimeout { get; init; }

    /// <summary>N whole devices on one host instead of a slice (see <see cref="GpuPoolClient.AllocateGangAsync"/>).</summary>
    public int WholeDevices { get; init; }
}

/// <summary>
/// Entry point of the SDK: talks to a pool's scheduler, hands out leases, and keeps one gRPC channel per
/// broker endpoint. Dispose it last: it closes the channels.
/// </summary>
public sealed class GpuPoolClient : IDisposable
{
    private readonly GrpcChannel[] _schedulers;
    private int _current;
    private readonly ConcurrentDictionary<string, GrpcChannel> _brokers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _said = new(StringComparer.Ordinal);

    /// <param name="schedulerEndpoint">
    /// The scheduler's address, or the addresses of a pool's scheduler replicas separated by commas: calls go to
    /// one and move to the next when it cannot be reached or is between leaders.
    /// </param>
    /// <param name="logger">
    /// Where the client says what it fell back to (a fast path it could not reach, fewer striping connections), once
    /// per broker and address as a warning, later times at debug level. Null: warnings go to stderr, one line each.
    /// </param>
    public GpuPoolClient(string schedulerEndpoint, ILogger? logger = null)
        : this(schedulerEndpoint, new GpuPoolClientOptions { Logger = logger })
    {
    }

    /// <param name="schedulerEndpoint">As in the other constructor; https:// endpoints need <see cref="GpuPoolClientOptions.Authority"/>.</param>
    /// <param name="options">The CA this client trusts and the credential it proves its tenant with.</param>
    public GpuPoolClient(string schedulerEndpoint, GpuPoolClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        Tls = options.Tls;
        Logger = options.Logger ?? StderrLogger.Instance;
        ArgumentException.ThrowIfNullOrWhiteSpace(schedulerEndpoint);
        var endpoints = schedulerEndpoint.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var endpoint in endpoints)
        {
            if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            {
                throw new ArgumentException($"scheduler endpoint '{endpoint}' is not an http:// or https:// address", nameof(schedulerEndpoint));
            }
        }

        SchedulerEndpoint = schedulerEndpoint;
        _schedulers = [.. endpoints.Select(e => CreateChannel(e, options.BearerToken))];
    }

    /// <summary>The CA and credential this client was given.</summary>
    public GpuPoolClientOptions Options { get; }

    /// <summary>TLS with the pool's CA (for https:// endpoints and TLS fast paths); null when no CA was given.</summary>
    internal Protocol.Security.PoolTls? Tls { get; }

    public string SchedulerEndpoint { get; }

    /// <summary>The scheduler as an error that could not reach it names it: its address, or its replicas' addresses.</summary>
    internal string SchedulerName => _schedulers.Length == 1
        ? $"the scheduler at {SchedulerEndpoint}"
        : $"any of the scheduler replicas ({SchedulerEndpoint})";

    /// <summary>The client's log (see the constructor).</summary>
    internal ILogger Logger { get; }

    /// <summary>Warning the first time something is said about <paramref name="key"/> (a broker and address), debug after.</summary>
    internal LogLevel FirstTime(string key) => _said.TryAdd(key, 0) ? LogLevel.Warning : LogLevel.Debug;

    /// <summary>
    /// Asks for a lease; the returned lease renews itself until released or disposed. A request the pool
    /// refuses (malformed, or no room) throws <see cref="GpuPoolException"/>.
    /// </summary>
    public async Task<Lease> AllocateAsync(LeaseRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.WholeDevices != 0)
        {
            throw new ArgumentException("a request for whole devices returns several leases: use AllocateGangAsync", nameof(request));
        }

        var reply = await RequestAsync(request, cancellationToken).ConfigureAwait(false);
        return new Lease(this, reply.Lease, reply.Token, reply.Expires);
    }

    /// <summary>
    /// Asks for <see cref="LeaseRequest.WholeDevices"/> whole devices on one host: one lease per device. The
    /// members live and end together: a keepalive of any renews all, and releasing one releases all.
    /// </summary>
    public async Task<IReadOnlyList<Lease>> AllocateGangAsync(LeaseRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.WholeDevices < 1)
        {
            throw new ArgumentException("WholeDevices must be at least 1 for a gang", nameof(request));
        }

        var reply = await RequestAsync(request, cancellationToken).ConfigureAwait(false);
        return reply.Gang.Count == 0
            ? [new Lease(this, reply.Lease, reply.Token, reply.Expires)]
            : [.. reply.Gang.Select(m => new Lease(this, m.Lease, m.Token, reply.Expires))];
    }

    private async Task<AllocateReply> RequestAsync(LeaseRequest request, CancellationToken cancellationToken)
    {
        var gang = request.WholeDevices > 0;
        if (!gang && request.ComputeShare is < 1 or > 1000)
        {
            // Checked here because the wire field is unsigned; the same code the scheduler would answer with.
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"ComputeShare must be 1..1000 milli-GPU (1000 = a whole device), not {request.ComputeShare}");
        }

        if (request.WaitTimeout is { } wait && (wait < TimeSpan.Zero || wait.TotalMilliseconds > uint.MaxValue))
        {
            throw new GpuPoolException(ErrorCode.InvalidArgument, $"WaitTimeout {wait} is out of range");
        }

        try
        {
            var reply = await CallSchedulerAsync(channel => new Leases.LeasesClient(channel).AllocateAsync(
                new AllocateRequest
                {
                    Tenant = request.Tenant,
                    MemoryBytes = gang ? 0 : request.MemoryBytes,
                    ComputeShare = gang ? 0 : (uint)request.ComputeShare,
                    TtlSeconds = request.Ttl is { } ttl ? (uint)Math.Max(1, Math.Ceiling(ttl.TotalSeconds)) : 0,
                    PriorityClass = request.PriorityClass,
                    DeviceModel = request.DeviceModel,
                    WaitTimeoutMs = request.WaitTimeout is { } w ? (uint)Math.Ceiling(w.TotalMilliseconds) : 0,
                    WholeDevices = (uint)Math.Max(0, request.WholeDevices),
                    ShareMode = request.ShareMode,
                },
                cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
            return reply;
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "allocate", SchedulerName);
        }
    }

    /// <summary>
    /// Opens a device session on a lease that someone else holds and renews (for example the parent process
    /// that ran <c>gpupool run</c>): the lease record says where the broker is, the token opens the session.
    /// Nothing here renews or releases the lease.
    /// </summary>
    public Task<DeviceSession> OpenSessionAsync(LeaseRecord lease, string token, SessionTransportKind transport = SessionTransportKind.Auto, CancellationToken cancellationToken = default)
        => OpenSessionAsync(lease, token, new SessionOptions { Transport = transport }, cancellationToken);

    /// <summary>Like the overload with a transport, with the transport and striping given in <paramref name="options"/>.</summary>
    public Task<DeviceSession> OpenSessionAsync(LeaseRecord lease, string token, SessionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(lease);
        ArgumentException.ThrowIfNullOrEmpty(token);
        if (string.IsNullOrEmpty(lease.LeaseId) || string.IsNullOrEmpty(lease.BrokerEndpoint))
        {
            throw new ArgumentException("the lease record must name the lease and its broker's endpoint", nameof(lease));
        }

        return DeviceSession.OpenAsync(this, lease, () => token, options, cancellationToken);
    }

    /// <summary>Brokers, devices with their capacity, and live leases.</summary>
    public async Task<ClusterView> ListClusterAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await CallSchedulerAsync(channel => new Protocol.V1.Admin.AdminClient(channel).ListClusterAsync(new ListClusterRequest(), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "list cluster", SchedulerName);
        }
    }

    /// <summary>
    /// Runs a scheduler call, moving on to the next replica when one cannot be reached or answers that it is
    /// between leaders; every other answer (and the last replica's) is the caller's.
    /// </summary>
    internal async Task<T> CallSchedulerAsync<T>(Func<GrpcChannel, Task<T>> call)
    {
        var start = Volatile.Read(ref _current);
        for (var attempt = 0; ; attempt++)
        {
            var index = (start + attempt) % _schedulers.Length;
            try
            {
                var result = await call(_schedulers[index]).ConfigureAwait(false);
                Volatile.Write(ref _current, index);
                return result;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && attempt + 1 < _schedulers.Length)
            {
                // Try the next replica.
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.Internal && ExplainTls(ex, _schedulers[index].Target) is { } why)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, why, ex.Status.DebugException));
            }
        }
    }

    /// <summary>
    /// Why a call could not connect, when TLS is why: the server's certificate refused (and the reason), a TLS client at
    /// a plaintext server, or a plaintext client at a TLS server. Null when the failure is something else.
    /// </summary>
    internal string? ExplainTls(RpcException ex, string target)
    {
        var secure = target.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || (!target.Contains("://", StringComparison.Ordinal) && SchedulerEndpoint.StartsWith("https://", StringComparison.OrdinalIgnoreCase));
        var refused = false;
        for (var inner = ex.Status.DebugException; inner is not null; inner = inner.InnerException)
        {
            // Nobody listening, no route: not a matter of TLS.
            refused |= inner is System.Net.Sockets.SocketException;
            if (inner is System.Security.Authentication.AuthenticationException auth)
            {
                return Tls?.LastRejection is { Length: > 0 } rejection
                    ? $"TLS with {target} refused: {rejection}"
                    : $"TLS with {target} failed ({auth.Message}); a server run with --insecure speaks plaintext: dial it at http://";
            }
        }

        return !secure && !refused && ex.Status.DebugException is HttpRequestException or IOException
            ? $"{ex.Status.Detail} (if the server speaks TLS, as a pool does unless run with --insecure, dial it at https:// with the pool's CA)"
            : null;
    }

    internal GrpcChannel BrokerChannel(string endpoint) => _brokers.GetOrAdd(endpoint, e => CreateChannel(e, bearerToken: null));

    /// <summary>
    /// A channel to a scheduler (which gets the bearer token, when there is one, on every call that carries no
    /// authorization of its own) or a broker (which gets none: lease tokens open its sessions). An https:// endpoint is
    /// dialled with TLS and the pool's CA, presenting the client certificate when there is one.
    /// </summary>
    private GrpcChannel CreateChannel(string endpoint, string? bearerToken)
    {
        var sockets = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            KeepAlivePingDelay = TimeSpan.FromSeconds(20),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };
        var uri = new Uri(endpoint);
        if (uri.Scheme == "https" && Tls is { } tls)
        {
            sockets.SslOptions = tls.ClientOptions(uri.Host);
        }

        return GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = 64 << 20,
            MaxSendMessageSize = 64 << 20,
            HttpHandler = bearerToken is null ? sockets : new BearerHandler(sockets, bearerToken),
        });
    }

    /// <summary>Adds "authorization: Bearer TOKEN" to every request that has no authorization header of its own.</summary>
    private sealed class BearerHandler(HttpMessageHandler inner, string token) : DelegatingHandler(inner)
    {
        private readonly System.Net.Http.Headers.AuthenticationHeaderValue _value = new("Bearer", token);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Authorization ??= _value;
            return base.SendAsync(request, cancellationToken);
        }
    }

    public void Dispose()
    {
        foreach (var channel in _schedulers)
        {
            channel.Dispose();
        }
        foreach (var channel in _brokers.Values)
        {
            channel.Dispose();
        }
    }
}
