namespace GpuPool.Client;

/// <summary>How a device session travels, and how it stripes large copies over the fast path.</summary>
public sealed record SessionOptions
{
    /// <summary>
    /// Connections a large copy uses over TCP when <see cref="Stripes"/> is left at 0, the session's own included: the
    /// count that the wire benchmark's striping rows found faster than one connection most often on loopback (README,
    /// "Wire benchmark").
    /// </summary>
    public const int DefaultTcpStripes = 2;

    /// <summary>
    /// The same over a Unix socket: no striping, since there the benchmark measured two, three and four connections no
    /// faster than one (README, "Wire benchmark").
    /// </summary>
    public const int DefaultUnixStripes = 1;

    public SessionTransportKind Transport { get; init; } = SessionTransportKind.Auto;

    /// <summary>
    /// How long connecting to the broker's fast path (the session's connection, and each data connection of a striped
    /// copy) may take before the session gives it up: with <see cref="SessionTransportKind.Auto"/> it then runs over gRPC
    /// (or stripes over fewer connections), and says so once in the client's log.
    /// </summary>
    public TimeSpan FastPathConnectTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Connections one large copy is striped over on the fast path, the session's own included: chunks of the copy go
    /// out on all of them at once, and come back on all of them. The extra data connections are opened at the first
    /// large copy. 1 turns striping off; 0 (the default) picks <see cref="DefaultTcpStripes"/> over TCP and
    /// <see cref="DefaultUnixStripes"/> over a Unix socket. The broker may allow fewer (its FastPathMaxDataConnections).
    /// </summary>
    public int Stripes { get; init; }

    /// <summary>Copies of at least this many bytes are striped; smaller ones travel on the session's own connection.</summary>
    public long StripeThresholdBytes { get; init; } = 8 << 20;

    /// <summary>Size of the chunks a striped copy is cut into (at least 64 KiB; at most the broker's message limit allows).</summary>
    public int StripeChunkBytes { get; init; } = 1 << 20;

    internal void Validate()
    {
        if (FastPathConnectTimeout <= TimeSpan.Zero || FastPathConnectTimeout > TimeSpan.FromMinutes(1))
        {
            throw new ArgumentOutOfRangeException(nameof(FastPathConnectTimeout), FastPathConnectTimeout, "the fast path's connect timeout must be more than 0 and at most a minute");
        }

        if (Stripes is < 0 or > 32)
        {
            throw new ArgumentOutOfRangeException(nameof(Stripes), Stripes, "stripes must be between 1 (no striping) and 32, or 0 for the transport's default");
        }

        if (StripeThresholdBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(StripeThresholdBytes), StripeThresholdBytes, "the striping threshold cannot be negative");
        }

        if (StripeChunkBytes < 64 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(StripeChunkBytes), StripeChunkBytes, "striped chunks must be at least 64 KiB");
        }
    }
}
