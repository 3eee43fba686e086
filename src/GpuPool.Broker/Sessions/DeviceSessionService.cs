using GpuPool.Broker.Leases;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Sessions;

/// <summary>The gRPC face of device sessions: checks the opening token, then hands the stream to a <see cref="SessionExecutor"/>.</summary>
internal sealed class DeviceSessionService(LeaseTable leases, BrokerOptions options, ILogger<DeviceSessionService> logger) : DeviceSession.DeviceSessionBase
{
    public override async Task Open(IAsyncStreamReader<OpRequest> requestStream, IServerStreamWriter<OpReply> responseStream, ServerCallContext context)
    {
        var cancellationToken = context.CancellationToken;
        if (!await requestStream.MoveNext(cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        var first = requestStream.Current;
        if (first.OpCase != OpRequest.OpOneofCase.Open)
        {
            throw new GpuPoolException(ErrorCode.Unauthenticated, "a session must start with an open op carrying the lease token").ToRpcException();
        }

        BrokerLease lease;
        try
        {
            lease = await leases.AttachSessionAsync(first.Open.LeaseId, first.Open.Token, cancellationToken).ConfigureAwait(false);
        }
        catch (GpuPoolException ex)
        {
            Log.SessionRefused(logger, first.Open.LeaseId, ex.Message);
            throw ex.ToRpcException();
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, lease.Ended);
        try
        {
            var executor = new SessionExecutor(lease, options, new GrpcReplies(responseStream, linked.Token), "grpc");
            executor.Start(first.Seq);
            try
            {
                while (await requestStream.MoveNext(linked.Token).ConfigureAwait(false))
                {
                    await executor.ExecuteAsync(requestStream.Current, payloadOwner: null, linked.Token).ConfigureAwait(false);
                }
            }
            finally
            {
                await executor.FinishAsync().ConfigureAwait(false);
            }

            Log.SessionClosed(logger, lease.Claims.LeaseId, "client closed the session");
        }
        catch (OperationCanceledException) when (lease.Ended.IsCancellationRequested)
        {
            Log.SessionClosed(logger, lease.Claims.LeaseId, "lease ended");
            throw new GpuPoolException(ErrorCode.LeaseEnded, $"lease {lease.Claims.LeaseId} has ended ({lease.EndReason}); its device memory has been freed").ToRpcException();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client vanished. Its context stays until the lease ends (keepalives stop, the TTL runs out).
            Log.SessionClosed(logger, lease.Claims.LeaseId, "client disconnected");
        }
        finally
        {
            lease.DetachSession();
        }
    }
}
