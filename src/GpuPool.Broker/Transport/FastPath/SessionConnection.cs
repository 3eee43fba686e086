using System.Net.Sockets;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// The connection a hello opened: its session's ops run in order, decoded step by step (<see cref="FrameDecoder"/>),
/// until either side ends it. A frame the decoder rejects is answered with the session's protocol error and closes
/// this connection (and its session's data connections) only.
/// </summary>
internal sealed class SessionConnection(FastPathConnectionHandler handler, Connection connection)
{
    private static readonly TimeSpan ReplyDrainTimeout = TimeSpan.FromSeconds(5);

    public async Task ServeAsync(Hello hello, string transport, CancellationToken closed)
    {
        var options = handler.Options;
        BrokerLease lease;
        try
        {
            lease = await handler.Leases.AttachSessionAsync(hello.LeaseId, hello.Token, closed).ConfigureAwait(false);
        }
        catch (GpuPoolException ex)
        {
            Log.SessionRefused(handler.Logger, hello.LeaseId, ex.Message);
            await FastPathConnectionHandler.FailAsync(connection.Output, hello.Seq, ex.Code, ex.Message).ConfigureAwait(false);
            return;
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(closed, lease.Ended);

        // The replies outlive the lease by a little (the last one says it ended), but not a client that stops
        // reading: once the session is over, writing gets a few seconds, then the connection is dropped.
        using var writing = CancellationTokenSource.CreateLinkedTokenSource(closed);
        using var sessionEnded = new CancellationTokenSource();
        var replies = new FrameReplies(connection.Output, connection.Wire, handler.Blocks, writing.Token, linked.Token);
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(linked.Token, replies.Failed);
        var id = handler.NewSessionId();
        var executor = new SessionExecutor(lease, options, replies, transport, id, options.FastPathMaxDataConnections, handler.SessionLogger);
        var session = new FastPathSession(id, lease, executor, replies, options.FastPathMaxDataConnections, options.MaxMessageBytes, sessionEnded.Token);
        handler.Register(session);
        var budget = new StagingBudget(options.FastPathStagingBytes, handler.Blocks);
        executor.Start(hello.Seq);
        session.Processed(hello.Seq);
        Error? protocolError = null;
        try
        {
            protocolError = await ReadOpsAsync(session, budget, reading.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (lease.Ended.IsCancellationRequested)
        {
            replies.Error(0, new Error { Code = ErrorCode.LeaseEnded, Message = $"lease {lease.Claims.LeaseId} has ended ({lease.EndReason}); its device memory has been freed" });
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            Log.SessionClosed(handler.Logger, lease.Claims.LeaseId, "client disconnected");
        }
        finally
        {
            if (protocolError is not null)
            {
                replies.Error(0, protocolError);
                Log.SessionClosed(handler.Logger, lease.Claims.LeaseId, protocolError.Message);
            }

            // The data connections close with the session, and let go of the lease's memory before the next session may open.
            handler.Unregister(id);
            await sessionEnded.CancelAsync().ConfigureAwait(false);
            session.End();
            writing.CancelAfter(ReplyDrainTimeout);
            await session.WaitDataConnectionsAsync(ReplyDrainTimeout * 2).ConfigureAwait(false);
            await executor.FinishAsync().ConfigureAwait(false);
            lease.DetachSession();
        }
    }

    /// <summary>Reads and runs ops until the client closes the connection (null) or breaks the protocol (the error to answer).</summary>
    private async Task<Error?> ReadOpsAsync(FastPathSession session, StagingBudget budget, CancellationToken cancellationToken)
    {
        var input = connection.Input;
        var maxMessageBytes = handler.Options.MaxMessageBytes;
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var step = FrameDecoder.DecodeSession(result.Buffer, session, budget, maxMessageBytes, cancellationToken);
            if (step.ProtocolError is { } problem)
            {
                // Like gRPC's message limit, a message too large is ResourceExhausted; only this connection closes.
                var code = FrameDecoder.ProtocolErrorCode(result.Buffer.Slice(step.Consumed), maxMessageBytes);
                input.AdvanceTo(step.Consumed, result.Buffer.End);
                return new Error { Code = code, Message = code == ErrorCode.ResourceExhausted ? $"message larger than the broker's limit: {problem}" : "protocol error: " + problem };
            }

            // Stopped early, the rest of the buffer holds a whole frame still to handle: it is not "examined".
            ChunkReceiver.ExpectRest(connection.Bounded, result.Buffer, step);
            input.AdvanceTo(step.Consumed, step.Stop != Stop.None ? step.Consumed : result.Buffer.End);
            if (step.Stop == Stop.Pending)
            {
                await step.Pending.ConfigureAwait(false);
            }

            session.Processed(session.Executor.LastSeq);
            if (step.Direct is { } receive)
            {
                await ChunkReceiver.ReceiveAsync(connection.Wire, connection.Bounded, connection.View, session, receive, cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (step.Stop == Stop.Upload)
            {
                // This connection has moved on to the op after the copy; it waits until the copy is whole. It
                // announces every copy itself, so the one in progress is one it has moved past.
                session.MovedPast(0, ulong.MaxValue);
                await session.UploadDone.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            else if (step.Stop == Stop.Budget)
            {
                await budget.WaitAsync(step.Charge, cancellationToken).ConfigureAwait(false);
            }

            if (result.IsCompleted && step.Stop == Stop.None)
            {
                return null;
            }
        }
    }
}
