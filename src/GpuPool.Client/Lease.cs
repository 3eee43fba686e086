using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Client;

/// <summary>
/// A granted lease: a slice of one device on one broker. It renews itself at a third of its TTL until
/// released or disposed; if a renewal finds the lease gone, <see cref="Lost"/> fires and sessions fail
/// with LeaseEnded.
/// </summary>
public sealed class Lease : IAsyncDisposable
{
    private readonly GpuPoolClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _lost = new();
    private readonly Task _keepAlive;
    private int _released;
    private int _disposed;

    private readonly CancellationTokenSource _preempting = new();

    internal Lease(GpuPoolClient client, LeaseRecord record, string token, Google.Protobuf.WellKnownTypes.Timestamp expires)
    {
        _client = client;
        Record = record;
        Token = token;
        Expires = expires.ToDateTimeOffset();
        _keepAlive = Task.Run(() => KeepAliveLoopAsync(_stop.Token));
    }

    public LeaseRecord Record { get; }

    public string Id => Record.LeaseId;

    /// <summary>The current session token (refreshed by each keepalive).</summary>
    public string Token { get; private set; }

    public DateTimeOffset Expires { get; private set; }

    /// <summary>Cancelled when the lease is found to have ended without being released by this client.</summary>
    public CancellationToken Lost => _lost.Token;

    /// <summary>Why the lease was lost, once it has been.</summary>
    public GpuPoolException? LostReason { get; private set; }

    /// <summary>
    /// Cancelled when a keepalive learns that a higher-priority request is preempting this lease: checkpoint
    /// and release before <see cref="PreemptDeadline"/>, when the pool revokes it.
    /// </summary>
    public CancellationToken Preempting => _preempting.Token;

    /// <summary>When the pool revokes this lease, once it is being preempted.</summary>
    public DateTimeOffset? PreemptDeadline { get; private set; }

    /// <summary>Who preempts it and why, once it is being preempted.</summary>
    public string? PreemptReason { get; private set; }

    /// <summary>Opens a device session on the lease's broker, over the fast path when it can be reached.</summary>
    public Task<DeviceSession> OpenSessionAsync(CancellationToken cancellationToken = default)
        => OpenSessionAsync(SessionTransportKind.Auto, cancellationToken);

    /// <summary>Opens a device session over the given transport.</summary>
    public Task<DeviceSession> OpenSessionAsync(SessionTransportKind transport, CancellationToken cancellationToken = default)
        => OpenSessionAsync(new SessionOptions { Transport = transport }, cancellationToken);

    /// <summary>Opens a device session with the given transport and striping.</summary>
    public Task<DeviceSession> OpenSessionAsync(SessionOptions options, CancellationToken cancellationToken = default)
        => DeviceSession.OpenAsync(_client, Record, () => Token, options, cancellationToken);

    /// <summary>Gives the capacity back now; the broker frees everything the lease held.</summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await _keepAlive.ConfigureAwait(false);
        try
        {
            await _client.CallSchedulerAsync(channel => new Leases.LeasesClient(channel).ReleaseAsync(new ReleaseRequest { LeaseId = Id, Token = Token }, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            var error = GpuPoolException.FromRpc(ex, $"release lease {Id}", _client.SchedulerName);
            if (error.Code != ErrorCode.LeaseEnded)
            {
                throw error;
            }
        }
    }

    /// <summary>
    /// Stops renewing without releasing, as a crashed client would: the lease ends when its TTL runs out.
    /// </summary>
    public async Task AbandonAsync()
    {
        Interlocked.Exchange(ref _released, 1);
        await _stop.CancelAsync().ConfigureAwait(false);
        await _keepAlive.ConfigureAwait(false);
    }

    private async Task KeepAliveLoopAsync(CancellationToken cancellationToken)
    {
        var period = TimeSpan.FromSeconds(Math.Max(0.2, Record.TtlSeconds / 3.0));
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, cancellationToken).ConfigureAwait(false);
                var reply = await _client.CallSchedulerAsync(channel => new Leases.LeasesClient(channel).KeepAliveAsync(new KeepAliveRequest { LeaseId = Id, Token = Token }, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false);
                Token = reply.Token;
                Expires = reply.Expires.ToDateTimeOffset();
                if (reply.PreemptDeadline is not null && PreemptDeadline is null)
                {
                    PreemptDeadline = reply.PreemptDeadline.ToDateTimeOffset();
                    PreemptReason = reply.PreemptReason;
                    await _preempting.CancelAsync().ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (cancellationToken.IsCancellationRequested && ex is OperationCanceledException or RpcException { StatusCode: StatusCode.Cancelled })
            {
                // Released or abandoned; a renewal in flight ends as a cancelled call, which is no failure.
                return;
            }
            catch (RpcException ex)
            {
                var error = GpuPoolException.FromRpc(ex, $"keepalive of lease {Id}", _client.SchedulerName);
                if (error.Code is ErrorCode.LeaseEnded or ErrorCode.Unauthenticated or ErrorCode.PermissionDenied)
                {
                    LostReason = error;
                    await _lost.CancelAsync().ConfigureAwait(false);
                    return;
                }

                // A transient failure: try again at the next period, while the TTL still covers us.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await ReleaseAsync().ConfigureAwait(false);
        }
        catch (GpuPoolException)
        {
            // Disposal must not throw; the lease ends by TTL if the release did not reach the scheduler.
        }

        _stop.Dispose();
        _lost.Dispose();
    }
}
