using System.Net.Sockets;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.Transport;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Transport.FastPath;

/// <summary>
/// A connection that joined an open session: its token must be the lease's, and the session that lease's. It carries
/// chunks of striped copies both ways until it or the session closes.
/// </summary>
internal sealed class DataConnection(FastPathConnectionHandler handler, Connection connection)
{
    private static readonly TimeSpan ReplyDrainTimeout = TimeSpan.FromSeconds(5);

    public async Task ServeAsync(JoinRequest join, CancellationToken closed)
    {
        if (Refuse(join, out var session) is { } refusal)
        {
            Log.JoinRefused(handler.Logger, join.LeaseId, refusal.Message);
            await FastPathConnectionHandler.FailAsync(connection.Output, 0, refusal.Code, refusal.Message).ConfigureAwait(false);
            return;
        }

        using var writing = CancellationTokenSource.CreateLinkedTokenSource(closed);
        var replies = new FrameReplies(connection.Output, connection.Wire, handler.Blocks, writing.Token, session.Ended);
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(closed, session.Ended, replies.Failed);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var index = session.Join(replies, done.Task, out var full);
        if (index is not { } lane)
        {
            Log.JoinRefused(handler.Logger, join.LeaseId, full!);
            replies.Error(0, new Error { Code = ErrorCode.ResourceExhausted, Message = "join refused: " + full });
            replies.Complete();
            await replies.Completion.ConfigureAwait(false);
            return;
        }

        // The answer: a Reply (seq 0) whose value is this connection's index, which the session's copies name.
        replies.Reply(0, ReplyKind.Handle, (ulong)lane);
        var budget = new StagingBudget(handler.Options.FastPathStagingBytes, handler.Blocks);
        var reason = "the client closed it";
        try
        {
            if (await ReadChunksAsync(session, lane, budget, reading.Token).ConfigureAwait(false) is { } problem)
            {
                reason = "protocol error: " + problem;
                replies.Error(0, new Error { Code = ErrorCode.InvalidArgument, Message = reason });
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            reason = session.Ended.IsCancellationRequested ? "the session ended" : ex.Message;
        }
        finally
        {
            Log.DataConnectionClosed(handler.Logger, lane, session.Id, join.LeaseId, reason);
            session.LaneClosed(lane, reason);
            writing.CancelAfter(ReplyDrainTimeout);
            replies.Complete();
            await replies.Completion.ConfigureAwait(false);
            done.TrySetResult();
        }
    }

    /// <summary>Why the join is refused (null when it is not), and the session it joins.</summary>
    private (ErrorCode Code, string Message)? Refuse(JoinRequest join, out FastPathSession session)
    {
        session = null!;
        try
        {
            handler.Leases.VerifyJoin(join.LeaseId, join.Token);
        }
        catch (GpuPoolException ex)
        {
            return (ex.Code, "join refused: " + ex.Message);
        }

        if (handler.Find(join.Session) is not { } found)
        {
            return (ErrorCode.NotFound, $"join refused: no fast-path session {join.Session:x16} is open on this broker (it has ended, or never existed); open a session with a hello first");
        }

        if (!string.Equals(found.Lease.Claims.LeaseId, join.LeaseId, StringComparison.Ordinal))
        {
            return (ErrorCode.PermissionDenied, $"join refused: session {join.Session:x16} belongs to another lease; a data connection may join only a session of the lease its token was issued for ({join.LeaseId})");
        }

        session = found;
        return null;
    }

    /// <summary>Reads and lands chunks until the client closes the connection (null) or breaks the protocol (why).</summary>
    private async Task<string?> ReadChunksAsync(FastPathSession session, int lane, StagingBudget budget, CancellationToken cancellationToken)
    {
        var input = connection.Input;
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var step = FrameDecoder.DecodeChunks(result.Buffer, session, lane, budget, handler.Options.MaxMessageBytes);
            if (step.ProtocolError is { } problem)
            {
                input.AdvanceTo(step.Consumed, result.Buffer.End);
                return problem;
            }

            ChunkReceiver.ExpectRest(connection.Bounded, result.Buffer, step);
            input.AdvanceTo(step.Consumed, step.Stop != Stop.None ? step.Consumed : result.Buffer.End);
            if (step.Direct is { } receive)
            {
                await ChunkReceiver.ReceiveAsync(connection.Wire, connection.Bounded, connection.View, session, receive, cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (step.Stop == Stop.Budget)
            {
                await budget.WaitAsync(step.Charge, cancellationToken).ConfigureAwait(false);
            }
            else if (step.Stop == Stop.Announce)
            {
                // A chunk of a later copy: this connection has nothing more of the one in progress.
                session.MovedPast(lane, step.Announce);
                await session.WaitProcessedAsync(step.Announce, cancellationToken).ConfigureAwait(false);
            }

            if (result.IsCompleted && step.Stop == Stop.None)
            {
                return null;
            }
        }
    }
}
