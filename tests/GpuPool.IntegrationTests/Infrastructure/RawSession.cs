using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;
using Grpc.Net.Client;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// A device session driven through the generated gRPC client, for what the SDK will not send: no token,
/// forged tokens, oversized messages, a call dropped in the middle of a copy. Failures come back as
/// <see cref="GpuPoolException"/>, mapped the way the SDK maps them.
/// </summary>
internal sealed class RawSession : IAsyncDisposable
{
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(20);

    private readonly GrpcChannel _channel;
    private readonly CancellationTokenSource _abort = new();
    private readonly AsyncDuplexStreamingCall<OpRequest, OpReply> _call;
    private ulong _seq;

    private RawSession(string endpoint)
    {
        _channel = GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions { MaxSendMessageSize = null, MaxReceiveMessageSize = 64 << 20 });
        _call = new DeviceSession.DeviceSessionClient(_channel).Open(cancellationToken: _abort.Token);
    }

    /// <summary>Starts the call without sending anything.</summary>
    public static RawSession Connect(string endpoint) => new(endpoint);

    /// <summary>Opens a session and returns it once the broker has answered with its SessionInfo; throws the broker's refusal.</summary>
    public static async Task<RawSession> OpenAsync(string endpoint, string leaseId, string token)
    {
        var session = new RawSession(endpoint);
        try
        {
            var reply = await session.CallAsync(new OpRequest { Open = new SessionOpen { LeaseId = leaseId, Token = token } });
            Assert.NotNull(reply.Session);
            return session;
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
    }

    /// <summary>Numbers the op and writes it; returns its sequence number.</summary>
    public async Task<ulong> SendAsync(OpRequest request)
    {
        request.Seq = ++_seq;
        try
        {
            await _call.RequestStream.WriteAsync(request);
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // The broker has ended the call; its status, with the reason, comes with the next read.
        }

        return request.Seq;
    }

    /// <summary>The next reply, or the status that ended the call as a GpuPoolException.</summary>
    public async Task<OpReply> ReadAsync()
    {
        using var timeout = new CancellationTokenSource(ReplyTimeout);
        try
        {
            if (!await _call.ResponseStream.MoveNext(timeout.Token))
            {
                throw new GpuPoolException(ErrorCode.Unavailable, "the broker ended the session without a status");
            }

            return _call.ResponseStream.Current;
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, "raw device session");
        }
    }

    public async Task<OpReply> CallAsync(OpRequest request)
    {
        var seq = await SendAsync(request);
        var reply = await ReadAsync();
        Assert.Equal(seq, reply.Seq);
        return reply;
    }

    /// <summary>Drops the call as a crashing client would: a reset stream, no goodbye.</summary>
    public Task AbortAsync() => _abort.CancelAsync();

    public async ValueTask DisposeAsync()
    {
        await _abort.CancelAsync();
        _call.Dispose();
        _channel.Dispose();
        _abort.Dispose();
    }
}
