using Google.Protobuf;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Transport.Grpc;

/// <summary>
/// The gRPC face of device sessions: checks the opening token, then hands the stream to a <see cref="SessionExecutor"/>.
/// A copy to the device whose stream is idle lands while it is read (<see cref="GrpcOpStreamMethod.Session"/>); at most <see cref="StagedCopies"/> copies to the device wait for their stream at a time; past that the session
/// stops reading, so HTTP/2 flow control holds the client back instead of the broker buffering without bound.
/// </summary>
internal sealed class DeviceSessionService(LeaseTable leases, BrokerOptions options, ILogger<DeviceSessionService> logger, ILogger<SessionExecutor> sessionLogger) : GrpcOpStreamServiceBase
{
    /// <summary>Copy chunks a session may have staged and not yet on the device (8 MiB at the client's 1 MiB chunks).</summary>
    internal const int StagedCopies = 8;

    public override async Task Open(IAsyncStreamReader<ReceivedOp> requestStream, IServerStreamWriter<OpReply> responseStream, ServerCallContext context)
    {
        var cancellationToken = context.CancellationToken;
        try
        {
            if (!await requestStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                return;
            }
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw NotAnOp(ex);
        }

        var first = requestStream.Current.Request;
        requestStream.Current.Dispose();
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
            var executor = new SessionExecutor(lease, options, new GrpcReplies(responseStream, linked.Token), "grpc", logger: sessionLogger);
            executor.Start(first.Seq);

            // Not disposed: a device thread may release a slot after the session has ended.
            var staging = new SemaphoreSlim(StagedCopies, StagedCopies);
            GrpcOpStreamMethod.Session.Value = executor;
            try
            {
                while (await requestStream.MoveNext(linked.Token).ConfigureAwait(false))
                {
                    var op = requestStream.Current;
                    if (op == ReceivedOp.Landed)
                    {
                        continue;
                    }

                    if (op.HasPayload)
                    {
                        try
                        {
                            await staging.WaitAsync(linked.Token).ConfigureAwait(false);
                        }
                        catch
                        {
                            op.Dispose();
                            throw;
                        }

                        op.HoldSlot(staging);
                    }

                    // The op owns its staged bytes; the executor disposes it once the device has taken them.
                    await GrpcOps.Run(executor, op.Request, op, linked.Token).ConfigureAwait(false);
                }
            }
            catch (InvalidProtocolBufferException ex)
            {
                throw NotAnOp(ex);
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

    private static RpcException NotAnOp(InvalidProtocolBufferException ex)
        => new GpuPoolException(ErrorCode.InvalidArgument, $"the op stream carried a message that is not a valid OpRequest ({ex.Message}); the session is closed").ToRpcException();
}
