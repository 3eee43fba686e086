using System.Net.Sockets;
using Etcdserverpb;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.Coordination.Etcd.Internal;

/// <summary>
/// One etcd member: its client URL, the gRPC stubs on one channel to it (over TLS for https://), and, where etcd's
/// password authentication is on, the token this member gave the user.
/// </summary>
internal sealed class EtcdMember : IDisposable
{
    private static readonly Metadata RequireLeader = new() { { "hasleader", "true" } };

    private readonly GrpcChannel _channel;
    private readonly string? _password;
    private readonly SemaphoreSlim _authenticating = new(1, 1);

    /// <summary>The headers of a call: hasleader, and the user's token once there is one ("" inside: auth is off).</summary>
    private Metadata? _headers;

    public EtcdMember(Uri endpoint, EtcdClusterStoreOptions options)
    {
        Endpoint = endpoint.GetLeftPart(UriPartial.Authority);
        (User, _password) = (options.User, options.Password);
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
        if (endpoint.Scheme == Uri.UriSchemeHttps && options.Tls is { } tls)
        {
            var ssl = tls(endpoint.Host);
            if (ssl.RemoteCertificateValidationCallback is { } check)
            {
                // The handshake's own error says only that the callback refused: keep what it saw, for the error.
                ssl.RemoteCertificateValidationCallback = (sender, certificate, chain, errors) =>
                {
                    var ok = check(sender, certificate, chain, errors);
                    if (!ok)
                    {
                        TlsRejection = certificate is null
                            ? "it sent no certificate"
                            : $"its certificate ({certificate.Subject}) is not trusted ({errors}): give the CA that issued it (--store-ca) and a certificate that names the host dialled ({endpoint.Host})";
                    }

                    return ok;
                };
            }

            handler.SslOptions = ssl;
            ShowsCertificate = ssl.ClientCertificates is { Count: > 0 } || ssl.LocalCertificateSelectionCallback is not null;
        }

        IsTls = endpoint.Scheme == Uri.UriSchemeHttps;

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
        Auth = new Auth.AuthClient(_channel);
        _headers = User is null ? RequireLeader : null;
    }

    /// <summary>scheme://host:port, as given in the options.</summary>
    public string Endpoint { get; }

    /// <summary>The etcd user calls authenticate as; null without password authentication.</summary>
    public string? User { get; }

    public KV.KVClient Kv { get; }

    public Lease.LeaseClient Lease { get; }

    public Watch.WatchClient Watch { get; }

    public Auth.AuthClient Auth { get; }

    /// <summary>The member is dialled over TLS (https://).</summary>
    public bool IsTls { get; }

    /// <summary>This process shows the member a client certificate.</summary>
    public bool ShowsCertificate { get; }

    /// <summary>Why this process last refused the member's certificate; null when it never did.</summary>
    public string? TlsRejection { get; private set; }

    /// <summary>
    /// The headers a call to this member carries: etcd's hasleader, and where a user is configured its token, asked for
    /// once (and again after <see cref="ForgetToken"/>). A refused user or password fails with an
    /// <see cref="RpcException"/> that <see cref="EtcdMembers"/> reports as etcd's refusal.
    /// </summary>
    public async ValueTask<Metadata> HeadersAsync(DateTime? deadline, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _headers) is { } headers)
        {
            return headers;
        }

        await _authenticating.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Volatile.Read(ref _headers) is { } raced)
            {
                return raced;
            }

            Metadata made;
            try
            {
                var reply = await Auth.AuthenticateAsync(new AuthenticateRequest { Name = User, Password = _password }, new CallOptions(RequireLeader, deadline, cancellationToken));
                made = new Metadata { { "hasleader", "true" }, { "token", reply.Token } };
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition && (ex.Status.Detail ?? "").Contains("authentication is not enabled", StringComparison.Ordinal))
            {
                // A user was configured for an etcd whose auth is off: calls go without a token, as etcd wants.
                made = RequireLeader;
            }

            Volatile.Write(ref _headers, made);
            return made;
        }
        finally
        {
            _authenticating.Release();
        }
    }

    /// <summary>
    /// Waits until the channel has a connection to the member, at most until <paramref name="until"/>; false when it
    /// has none by then. A write is sent only on a connection that was there before it, so a write whose time runs out
    /// while the member cannot be reached is known not to have been applied.
    /// </summary>
    public async Task<bool> ConnectAsync(DateTime until, CancellationToken cancellationToken)
    {
        if (_channel.State == ConnectivityState.Ready)
        {
            return true;
        }

        var left = until - DateTime.UtcNow;
        if (left <= TimeSpan.Zero)
        {
            return false;
        }

        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(left);
        try
        {
            await _channel.ConnectAsync(wait.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>etcd said the token of <paramref name="headers"/> is no longer valid: the next call asks for another.</summary>
    public void ForgetToken(Metadata headers)
    {
        if (User is not null)
        {
            Interlocked.CompareExchange(ref _headers, null, headers);
        }
    }

    /// <summary>etcd's answer to a call whose token it no longer knows (expired, or the member restarted).</summary>
    public static bool IsStaleToken(RpcException ex)
        => ex.StatusCode == StatusCode.Unauthenticated && (ex.Status.Detail ?? "").Contains("invalid auth token", StringComparison.Ordinal);

    public void Dispose()
    {
        _channel.Dispose();
        _authenticating.Dispose();
    }
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
internal sealed class EtcdRefusedException(string endpoint, RpcException inner, string? user = null) : InvalidOperationException(Describe(endpoint, inner, user), inner)
{
    public StatusCode Code => ((RpcException)InnerException!).StatusCode;

    public string Detail => ((RpcException)InnerException!).Status.Detail;

    /// <summary>etcd's refusal in one sentence, saying what to change where it is about who the caller is.</summary>
    private static string Describe(string endpoint, RpcException inner, string? user)
    {
        var detail = inner.Status.Detail ?? "";
        if (detail.Contains("user name is empty", StringComparison.Ordinal))
        {
            return $"etcd at {endpoint} has authentication on and this process gave no user: give --store-user and its password (GPUPOOL_STORE_PASSWORD or --store-password-file)";
        }

        if (detail.Contains("authentication failed", StringComparison.Ordinal))
        {
            return $"etcd at {endpoint} refused user '{user}': the user does not exist or the password is wrong ({detail})";
        }

        if (detail.Contains("permission denied", StringComparison.Ordinal))
        {
            return $"etcd at {endpoint} denied {(user is null ? "this process" : $"user '{user}'")} the request ({detail}): grant its role read and write on the pool's keys (etcdctl role grant-permission ROLE --prefix readwrite PREFIX)";
        }

        return $"etcd at {endpoint} refused the request: {detail}";
    }

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
    private readonly EtcdMember[] _members;
    private readonly TimeSpan _requestTimeout;
    private readonly TimeSpan _connectTimeout;
    private int _current;

    public EtcdMembers(IReadOnlyList<Uri> endpoints, EtcdClusterStoreOptions options)
    {
        _members = [.. endpoints.Select(e => new EtcdMember(e, options))];
        _requestTimeout = options.RequestTimeout;
        _connectTimeout = options.ConnectTimeout;
        EndpointList = string.Join(", ", _members.Select(m => m.Endpoint));
    }

    /// <summary>The endpoints, for error messages.</summary>
    public string EndpointList { get; }

    public TimeSpan RequestTimeout => _requestTimeout;

    public int Count => _members.Length;

    /// <summary>The member calls go to first: the one that answered last.</summary>
    public int Current => Volatile.Read(ref _current);

    public EtcdMember this[int index] => _members[index];

    /// <summary>Headers (with the member's auth token, if any) and deadline for a call to <paramref name="member"/>; streams pass no deadline.</summary>
    public static async ValueTask<CallOptions> OptionsAsync(EtcdMember member, DateTime? deadline, CancellationToken cancellationToken)
        => new(await member.HeadersAsync(deadline, cancellationToken).ConfigureAwait(false), deadline, cancellationToken);

    /// <summary>Moves the preferred member past <paramref name="failed"/> unless another caller already did.</summary>
    public void Skip(int failed) => Interlocked.CompareExchange(ref _current, (failed + 1) % _members.Length, failed);

    public void Prefer(int index) => Volatile.Write(ref _current, index);

    /// <summary>Runs <paramref name="call"/> against the members in turn as described on the class.</summary>
    public async Task<T> CallAsync<T>(Func<EtcdMember, CallOptions, Task<T>> call, RetrySafety safety, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + _requestTimeout;
        var first = Current;
        RpcException? last = null;
        var tlsFailures = 0;
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
            CallOptions? options = null;
            try
            {
                if (safety == RetrySafety.IfNotApplied)
                {
                    // A write goes out only on a connection made before it (within a connect timeout, so the next
                    // member gets its turn): one that times out while connecting was certainly not applied.
                    var until = DateTime.UtcNow + _connectTimeout < deadline ? DateTime.UtcNow + _connectTimeout : deadline;
                    if (!await member.ConnectAsync(until, cancellationToken).ConfigureAwait(false))
                    {
                        Skip(index);
                        continue;
                    }
                }

                options = await OptionsAsync(member, deadline, cancellationToken).ConfigureAwait(false);
                var result = await call(member, options.Value).ConfigureAwait(false);
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
                if (EtcdMember.IsStaleToken(ex) && options is { Headers: { } stale })
                {
                    // etcd refuses a token before it looks at the request: the call is sent again with a new one.
                    member.ForgetToken(stale);
                    last = ex;
                    continue;
                }

                if (TlsFailure(member, ex) is { } tls)
                {
                    // A certificate that was refused is refused again: once every member has, the call fails saying why.
                    if (++tlsFailures >= _members.Length)
                    {
                        throw new StoreUnavailableException(tls, ex);
                    }

                    last = ex;
                    Skip(index);
                    continue;
                }

                switch (Classify(ex))
                {
                    case FailureKind.Refused:
                        throw new EtcdRefusedException(member.Endpoint, ex, member.User);
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

    /// <summary>One sentence on a failed TLS handshake with <paramref name="member"/>; null when the failure was not one.</summary>
    private static string? TlsFailure(EtcdMember member, RpcException ex)
    {
        if (!member.IsTls)
        {
            return null;
        }

        for (var e = ex.Status.DebugException; e is not null; e = e.InnerException)
        {
            // With TLS 1.3 a server refuses the client's certificate after the client's side of the handshake is done:
            // the client sees the connection closed before HTTP/2 starts.
            if (e is IOException io && io.Message.Contains("did not complete the HTTP/2 handshake", StringComparison.Ordinal))
            {
                return $"etcd at {member.Endpoint}: the TLS handshake failed: it closed the connection as HTTP/2 began, as etcd does when it " + (member.ShowsCertificate
                    ? "does not trust the client certificate shown: give one issued by the CA of its --trusted-ca-file (--store-cert, --store-key)"
                    : "asks for a client certificate (--client-cert-auth) and none was shown: give one its CA issued (--store-cert, --store-key)");
            }

            if (e is System.Security.Authentication.AuthenticationException auth)
            {
                var why = member.TlsRejection
                    ?? (auth.Message.Contains("CertificateRequired", StringComparison.Ordinal) || auth.Message.Contains("BadCertificate", StringComparison.Ordinal)
                        ? $"it asks for a client certificate this process did not give or it does not trust ({auth.Message.TrimEnd('.')}): give one its CA issued (--store-cert, --store-key)"
                        : auth.Message.TrimEnd('.'));
                return $"etcd at {member.Endpoint}: the TLS handshake failed: {why}";
            }
        }

        return null;
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
