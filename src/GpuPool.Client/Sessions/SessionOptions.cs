namespace GpuPool.Client;

/// <summary>How a device session travels, and how it stripes large copies over the fast path.</summary>
public sealed record SessionOptions
{
    /// <summary>Connections a large copy uses by default, the session's own included. Chosen by the wire benchmark on loopback (see the README).</summary>
    public const int DefaultStripes = 2;

    public SessionTransportKind Transport { get; init; } = SessionTransportKind.Auto;

    /// <summary>
    /// Connections one large copy is striped over on the fast path, the session's own included: chunks of the copy go
    /// out on all of them at once, and come back on all of them. The extra data connections are opened at the first
    /// large copy. 1 turns striping off; the broker may allow fewer (its FastPathMaxDataConnections).
    /// </summary>
    public int Stripes { get; init; } = DefaultStripes;

    /// <summary>Copies of at least this many bytes are striped; smaller ones travel on the session's own connection.</summary>
    public long StripeThresholdBytes { get; init; } = 8 << 20;

    /// <summary>Size of the chunks a striped copy is cut into (at least 64 KiB; at most the broker's message limit allows).</summary>
    public int StripeChunkBytes { get; init; } = 1 << 20;

    internal void Validate()
    {
        if (Stripes is < 1 or > 32)
        {
            throw new ArgumentOutOfRangeException(nameof(Stripes), Stripes, "stripes must be between 1 (no striping) and 32");
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
