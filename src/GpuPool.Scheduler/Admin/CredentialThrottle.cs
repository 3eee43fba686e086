using System.Collections.Concurrent;
using System.Globalization;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Scheduler.Admin;

/// <summary>
/// Credentials that do not verify (a wrong admin credential, a forged or revoked tenant token, a certificate of
/// another CA), counted per peer address: after <see cref="FreeTries"/> wrong ones a peer waits before its
/// next try is looked at (1 s, doubling to at most <see cref="LongestWait"/>), so guessing the credential from one host
/// goes at a few tries an hour, while other hosts' admins are not held up. A right credential clears the peer's count.
/// </summary>
internal sealed class CredentialThrottle(TimeProvider time)
{
    /// <summary>Wrong tries a peer may make before it waits.</summary>
    public const int FreeTries = 5;

    public static readonly TimeSpan FirstWait = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan LongestWait = TimeSpan.FromMinutes(15);

    /// <summary>How long a peer's wrong tries are remembered after its last one (or after its wait ends).</summary>
    public static readonly TimeSpan Memory = TimeSpan.FromHours(1);

    /// <summary>Peers remembered at most (addresses are cheap to an attacker): past it the forgotten-by-time go first.</summary>
    private const int MaxPeers = 10_000;

    private readonly ConcurrentDictionary<string, Entry> _peers = new(StringComparer.Ordinal);

    /// <summary>RESOURCE_EXHAUSTED, saying how long, while <paramref name="peer"/> waits; its credential is not looked at.</summary>
    public void Check(string peer)
    {
        if (_peers.TryGetValue(Key(peer), out var entry) && entry.WaitUntil > time.GetUtcNow())
        {
            var seconds = Math.Ceiling((entry.WaitUntil - time.GetUtcNow()).TotalSeconds);
            throw new GpuPoolException(ErrorCode.ResourceExhausted,
                string.Create(CultureInfo.InvariantCulture, $"too many refused credentials from {Key(peer)}: try again in {seconds:0} s"));
        }
    }

    public void Failed(string peer)
    {
        var now = time.GetUtcNow();
        if (_peers.Count >= MaxPeers)
        {
            foreach (var (key, old) in _peers)
            {
                if (old.Last + Memory < now && old.WaitUntil + Memory < now)
                {
                    _peers.TryRemove(key, out _);
                }
            }
        }

        _peers.AddOrUpdate(
            Key(peer),
            _ => new Entry(1, now, DateTimeOffset.MinValue),
            (_, e) =>
            {
                var failures = e.Last + Memory < now && e.WaitUntil + Memory < now ? 1 : e.Failures + 1;
                var wait = failures < FreeTries ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Min(LongestWait.Ticks, FirstWait.Ticks << Math.Min(failures - FreeTries, 20)));
                return new Entry(failures, now, failures < FreeTries ? DateTimeOffset.MinValue : now + wait);
            });
    }

    public void Succeeded(string peer) => _peers.TryRemove(Key(peer), out _);

    /// <summary>The peer's address without its port ("ipv4:10.0.0.5:41234" → "10.0.0.5"): each connection has a new port.</summary>
    public static string Key(string peer)
    {
        if (peer.StartsWith("ipv4:", StringComparison.Ordinal))
        {
            var address = peer[5..];
            var colon = address.LastIndexOf(':');
            return colon > 0 ? address[..colon] : address;
        }

        if (peer.StartsWith("ipv6:[", StringComparison.Ordinal) && peer.LastIndexOf(']') is var end and > 6)
        {
            return peer[6..end];
        }

        return peer;
    }

    private readonly record struct Entry(int Failures, DateTimeOffset Last, DateTimeOffset WaitUntil);
}
