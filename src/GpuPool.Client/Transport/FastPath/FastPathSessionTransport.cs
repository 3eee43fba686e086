using System.Runtime.CompilerServices;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Transport.FastPath;

/// <summary>
/// The raw fast path: a session's ops written as frames straight from their values (no message objects) on one TCP or
/// Unix-socket connection (<see cref="FrameConnection"/>: a batching sender and a reply reader), and, once the session
/// says it serves them, data connections that large copies are striped over (<see cref="StripeLanes"/>).
/// </summary>
internal sealed class FastPathSessionTransport : SessionTransport
{
    private readonly FrameConnection _connection;
    private IReplyTarget _target = null!;
    private StripeLanes? _stripes;

    private FastPathSessionTransport(FrameConnection connection, int maxMessageBytes)
    {
        _connection = connection;
        UseMessageLimit(maxMessageBytes, PreferredChunk);
    }

    /// <summary>Copy chunk size when the broker allows it.</summary>
    public const int PreferredChunk = 4 << 20;

    public override string Name => _connection.IsUnix ? "unix" : "tcp";

    /// <summary>The extra data connections open now.</summary>
    public int DataConnections => _stripes?.Live ?? 0;

    /// <summary>Where this session's connections go: "host:port" or a Unix socket path.</summary>
    public string Endpoint => _connection.Endpoint;

    /// <summary>
    /// Connects to broker <paramref name="brokerId"/>'s Unix socket path or "host:port" TCP endpoint within
    /// <paramref name="timeout"/>; no transport and why ("no answer within 1 s") when it cannot.
    /// </summary>
    public static async Task<(FastPathSessionTransport? Transport, string Failure)> TryConnectAsync(string brokerId, string endpoint, bool unix, TimeSpan timeout, Protocol.Security.PoolTls? tls, int maxMessageBytes, CancellationToken cancellationToken)
    {
        var (connection, failure) = await FrameConnection.TryConnectAsync(endpoint, unix, FrameConnection.DescribePeer(brokerId, endpoint, unix), timeout, tls, cancellationToken).ConfigureAwait(false);
        return (connection is null ? null : new FastPathSessionTransport(connection, maxMessageBytes), failure);
    }

    public override void Start(IReplyTarget target)
    {
        _target = target;
        _connection.Start(target);
    }

    public override ValueTask SendOpenAsync(ulong seq, string leaseId, string token, CancellationToken cancellationToken)
        => _connection.Sender.SendHelloAsync(seq, leaseId, token, cancellationToken);

    public override ValueTask SendAsync<TOp>(ulong seq, in TOp op, ReadOnlySpan<byte> payload, CancellationToken cancellationToken)
        => _connection.Sender.SendAsync(seq, op, payload, cancellationToken);

    public override ValueTask SendCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        => _connection.Sender.SendCopyAsync(seq, new MemcpyHtoDOp(ptr, stream), data, slot: 0, cancellationToken);

    /// <summary>A copy to the device as chunk ops <paramref name="firstSeq"/>, +1, …, two in flight (<see cref="FrameSender.SendCopyInChunksAsync"/>).</summary>
    public ValueTask SendCopyInChunksAsync(ulong firstSeq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data, int chunk, StrongBox<int> sent, CancellationToken cancellationToken)
        => _connection.Sender.SendCopyInChunksAsync(firstSeq, ptr, stream, data, chunk, sent, cancellationToken);

    /// <summary>
    /// Turns striping on for copies of at least <paramref name="options"/>' threshold, over the session <paramref name="info"/>
    /// names; <paramref name="shortfall"/> hears, once, why a data connection could not be opened and how many
    /// connections copies use instead (of how many).
    /// </summary>
    public void ConfigureStriping(SessionInfo info, SessionOptions options, Func<string> token, Action<string, int, int>? shortfall = null)
    {
        var stripes = options.Stripes > 0 ? options.Stripes : _connection.IsUnix ? SessionOptions.DefaultUnixStripes : SessionOptions.DefaultTcpStripes;
        if (info.FastPathSession == 0 || info.MaxDataConnections == 0 || stripes < 2)
        {
            return;
        }

        var settings = new StripeLanes.Settings(
            info.FastPathSession,
            info.LeaseId,
            token,
            Math.Min(stripes, (int)info.MaxDataConnections + 1),
            Math.Max(options.StripeThresholdBytes, 1),
            Math.Min(options.StripeChunkBytes, MaxCopyChunk));
        if (shortfall is not null)
        {
            var wanted = settings.Stripes;
            settings = settings with { Shortfall = (reason, connections) => shortfall(reason, connections, wanted) };
        }

        _stripes = new StripeLanes(_connection, _target, settings);
    }

    /// <summary>Whether a copy of <paramref name="bytes"/> is striped (opening the data connections it needs first).</summary>
    public ValueTask<bool> PrepareStripesAsync(long bytes, CancellationToken cancellationToken)
        => _stripes is { } stripes ? stripes.PrepareAsync(bytes, cancellationToken) : ValueTask.FromResult(false);

    public ValueTask SendStripedCopyToDeviceAsync(ulong seq, ulong ptr, ulong stream, ReadOnlyMemory<byte> data)
        => _stripes!.SendCopyToDeviceAsync(seq, ptr, stream, data);

    /// <summary>Asks for a striped copy to the host; the connections its chunks come on.</summary>
    public uint SendStripedCopyToHost(ulong seq, ulong ptr, ulong bytes, ulong stream)
        => _stripes!.SendCopyToHost(seq, ptr, bytes, stream);

    public override async ValueTask DisposeAsync()
    {
        // The data connections first: they carry nothing once the copies over them are done.
        if (_stripes is { } stripes)
        {
            await stripes.DisposeAsync().ConfigureAwait(false);
        }

        await _connection.DisposeAsync().ConfigureAwait(false);
    }
}
