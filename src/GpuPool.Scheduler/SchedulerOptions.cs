using System.Security.Cryptography;

namespace GpuPool.Scheduler;

/// <summary>How the scheduler runs: where it listens, the key it signs tokens with, and lease defaults.</summary>
public sealed class SchedulerOptions
{
    public string ListenAddress { get; set; } = "127.0.0.1";

    /// <summary>Port 0 picks a free port.</summary>
    public int Port { get; set; } = 7070;

    /// <summary>Signs lease tokens; brokers verify with its public half.</summary>
    public required ECDsa SigningKey { get; set; }

    public TimeSpan DefaultLeaseTtl { get; set; } = TimeSpan.FromSeconds(30);

    public TimeSpan MaxLeaseTtl { get; set; } = TimeSpan.FromHours(24);

    /// <summary>How long a token opens sessions; keepalives hand out fresh ones.</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromHours(1);

    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    internal void Validate()
    {
        if (DefaultLeaseTtl < TimeSpan.FromSeconds(1) || DefaultLeaseTtl > MaxLeaseTtl)
        {
            throw new ArgumentException($"DefaultLeaseTtl {DefaultLeaseTtl} must be at least 1 s and at most MaxLeaseTtl {MaxLeaseTtl}", nameof(DefaultLeaseTtl));
        }

        if (TokenLifetime < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentException($"TokenLifetime {TokenLifetime} must be at least 1 s", nameof(TokenLifetime));
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentException($"Port {Port} is not a TCP port", nameof(Port));
        }
    }
}
