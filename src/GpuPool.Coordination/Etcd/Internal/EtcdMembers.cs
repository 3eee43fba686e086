using System.Net.Sockets;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Coordination.Etcd.Internal;

/// <summary>One etcd member: its client URL and the gRPC stubs on one channel to it.</summary>
internal sealed class EtcdMember : IDisposable
{
    private readonly GrpcChannel _channel;

    public EtcdMember(Uri endpoint, EtcdClusterStoreOptions options)
    {
        Endpoint = endpoint.GetLeftPart(UriPartial.Authority);
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = options.ConnectTimeout,

            // Pings find a member that stopped answering on a connection that is still open (a watch would wait forever).
            KeepAlivePingDelay = TimeSpan.FromSeconds(5),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(5),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        };
        _channel = GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = null,

            // A member that comes back is used again within a second, not after the default two-minute backoff.
            InitialReconnectBackoff = TimeSpan.FromMilliseconds(200),
            MaxReconnectBackoff = TimeSpan.FromSeconds(1),
        });
        Kv = new KV.KVClient(_channel);
        Lease = new Lease.LeaseClient(_channel);
        Watch = new Watch.WatchClient(_channel);
    }

    /// <summary>scheme://host:port, as given in the options.</summary>
    public string Endpoint { get; }

    public KV.KVClient Kv { get; }

    public Lease.LeaseClient Lease { get; }

    public Watch.WatchClient Watch { get; }

    public void Dispose() => _channel.Dispose();
}

/// <summary>Whether a call may be sent again to another member after a failure that may have reached etcd.</summary>
internal enum RetrySafety
{
    /// <summary>Reads and idempotent writes (keepalive, revoke, lease grant: a stray lease expires by itself).</summary>
    Always,

    /// <summary>Writes: retried only when etcd certainly did not apply them (no connection, or the member had no leader).</summary>
    IfNotApplied,
}

/// <summary>What a failed call tells about the request.</summary>
internal enum FailureKind
{
    /// <summary>The member never took the request (no connection, no leader, throttled): any call may go to another member.</summary>
    NotApplied,

    /// <summary>The connection or the member failed while the request was in flight: it may have been applied.</summary>
    MaybeApplied,

    /// <summary>etcd answered with an error that another member would repeat.</summary>
    Refused,
}

/// <summary>A refusal the driver turns into its own error (an unknown lease, a compacted revision).</summary>
internal sealed class EtcdRefusedException(string endpoint, RpcException inner) : InvalidOperationException($"etcd at {endpoint} refused the request: {inner.Status.Detail}", inner)
{
    public StatusCode Code => ((RpcException)InnerException!).StatusCode;

    public string Detail => ((RpcException)InnerException!).Status.Detail;

    /// <summary>etcd's answer to a put or a keepalive that names a lease that does not exist.</summary>
    public bool IsLeaseNotFound => Code == StatusCode.NotFound && Detail.Contains("lease not found", StringComparison.Ordinal);
}

/// <summary>
/// The cluster's members and the failover rule: a call goes to the member that answered last, and on a failure to
/// the next, round the list, until <see cref="EtcdClusterStoreOptions.RequestTimeout"/> has passed; then it fails
/// with <see cref="StoreUnavailableException"/>. Every call carries etcd's <c>hasleader</c> header, so a member cut
/// off from its leader refuses at once (and a write is known not to be applied) instead of timing out.
/// </summary>
internal sealed class EtcdMembers : IDisposable
{
    private static readonly Metadata RequireLeader = new() { { "hasleader", "true" } };

    private readonly EtcdMember[] _members;
    private readonly TimeSpan _requestTimeout;
    private int _current;

    public EtcdMembers(IReadOnlyList<Uri> endpoints, EtcdClusterStoreOptions options)
    {
        _members = [.. endpoints.Select(e => new EtcdMember(e, options))];
        _requestTimeout = options.RequestTimeout;
        EndpointList = string.Join(", ", _members.Select(m => m.Endpoint));
    }

    /// <summary>The endpoints, for error messages.</summary>
    public string EndpointList { get; }

    public TimeSpan RequestTimeout => _requestTimeout;

    public int Count => _members.Length;

    /// <summary>The member calls go to first: the one that answered last.</summary>
    public int Current => Volatile.Read(ref _current);

    public EtcdMember this[int index] => _members[index];

    /// <summary>Headers and deadline for a call; streams pass no deadline.</summary>
    public static CallOptions Options(DateTime? deadline, CancellationToken cancellationToken) => new(RequireLeader, deadline, cancellationToken);

    /// <summary>Moves the preferred member past <paramref name="failed"/> unless another caller already did.</summary>
    public void Skip(int failed) => Interlocked.CompareExchange(ref _current, (failed + 1) % _members.Length, failed);

    public void Prefer(int index) => Volatile.Write(ref _current, index);

    /// <summary>Runs <paramref name="call"/> against the members in turn as described on the class.</summary>
    public async Task<T> CallAsync<T>(Func<EtcdMember, CallOptions, Task<T>> call, RetrySafety safety, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _requestTimeout;
        var first = Current;
        RpcException? last = null;
        for (var attempt = 0; ; attempt++)
        {
            if (attempt > 0 && attempt % _members.Length == 0)
            {
                // Every member failed once: give a leader election or a restart a moment before the next round.
                var pause = TimeSpan.FromMilliseconds(Math.Min(100 * (attempt / _members.Length), 1000));
                var left = deadline - DateTime.UtcNow;
                if (left > TimeSpan.Zero)
                {
                    await Task.Delay(pause < left ? pause : left, cancellationToken).ConfigureAwait(false);
                }
            }

            if (DateTime.UtcNow >= deadline)
            {
                throw Unreachable(last);
            }

            var index = (first + attempt) % _members.Length;
            var member = _members[index];
            try
            {
                var result = await call(member, Options(deadline, cancellationToken)).ConfigureAwait(false);
                if (attempt > 0)
                {
                    Prefer(index);
                }

                return result;
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }
            catch (Exception e) when (e is RpcException or OperationCanceledException)
            {
                // A cancellation we did not ask for is a stream torn down under the call.
                var ex = e as RpcException ?? new RpcException(new Status(StatusCode.Cancelled, "the call was torn down", e));
                switch (Classify(ex))
                {
                    case FailureKind.Refused:
                        throw new EtcdRefusedException(member.Endpoint, ex);
                    case FailureKind.MaybeApplied when safety == RetrySafety.IfNotApplied:
                        Skip(index);
                        throw new StoreUnavailableException(
                            $"etcd at {member.Endpoint} failed while a write was in flight ({Describe(ex)}); the write may or may not have been applied: read before retrying", ex);
                }

                last = ex;
                Skip(index);
            }
        }
    }

    /// <summary>The error for a call that no member answered in time.</summary>
    public StoreUnavailableException Unreachable(RpcException? last) => new(
        $"etcd did not answer at {EndpointList} within {_requestTimeout.TotalSeconds:0.###} s{(last is null ? "" : $" (last error: {Describe(last)})")}; check that its members are running and reachable",
        last);

    public static FailureKind Classify(RpcException ex)
    {
        var detail = ex.Status.Detail ?? "";
        return ex.StatusCode switch
        {
            StatusCode.Unavailable when detail.Contains("no leader", StringComparison.Ordinal) || IsConnectFailure(ex) => FailureKind.NotApplied,
            StatusCode.ResourceExhausted when detail.Contains("too many requests", StringComparison.Ordinal) => FailureKind.NotApplied,
            StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled or StatusCode.Aborted => FailureKind.MaybeApplied,

            // The connection broke under the call (a member killed mid-request).
            StatusCode.Internal or StatusCode.Unknown when HasInChain<IOException>(ex.Status.DebugException) || HasInChain<HttpRequestException>(ex.Status.DebugException) => FailureKind.MaybeApplied,
            _ => FailureKind.Refused,
        };
    }

    /// <summary>True when the request never left this process: no connection to the member could be made.</summary>
    private static bool IsConnectFailure(RpcException ex)
    {
        if ((ex.Status.Detail ?? "").StartsWith("Error connecting to subchannel", StringComparison.Ordinal))
        {
            return true;
        }

        for (var e = ex.Status.DebugException; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError })
            {
                return true;
            }

            if (e is SocketException { SocketErrorCode: SocketError.ConnectionRefused or SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.HostNotFound or SocketError.AddressNotAvailable })
            {
                return true;
            }
        }

        return false;
    }

    private static bool HasInChain<TException>(Exception? e)
        where TException : Exception
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is TException)
            {
                return true;
            }
        }

        return false;
    }

    private static string Describe(RpcException ex) => $"{ex.StatusCode}: {ex.Status.Detail}";

    public void Dispose()
    {
        foreach (var member in _members)
        {
            member.Dispose();
        }
    }
}
