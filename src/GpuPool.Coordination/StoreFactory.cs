using System.Net.Security;
using GpuPool.Coordination.Consul;
using GpuPool.Coordination.Embedded;
using GpuPool.Coordination.Etcd;

namespace GpuPool.Coordination;

/// <summary>
/// Opens a store from the one-line spec the CLI takes: <c>embedded</c> (in memory), <c>embedded:PATH</c> (kept
/// in a file), <c>etcd://HOST:PORT[,HOST:PORT…][?prefix=P]</c> (<c>etcds://</c> for etcd over TLS) or
/// <c>consul://HOST:PORT[?prefix=P]</c>.
/// </summary>
public static class StoreFactory
{
    public const string Help = "embedded, embedded:PATH, etcd://HOST:PORT[,HOST:PORT...][?prefix=P] (etcds:// over TLS) or consul://HOST:PORT";

    /// <param name="security">For etcd: TLS options and a user; a store that is not etcd takes none.</param>
    public static IClusterStore Open(string spec, StoreSecurity? security = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        spec = spec.Trim();
        if (security is { IsEmpty: false } && !spec.StartsWith("etcd://", StringComparison.Ordinal) && !spec.StartsWith("etcds://", StringComparison.Ordinal))
        {
            throw new ArgumentException($"store '{spec}' is not etcd: TLS options and a user for the store (--store-ca, --store-cert, --store-user) are for etcd:// and etcds:// only");
        }

        if (spec == "embedded")
        {
            return new EmbeddedClusterStore();
        }

        if (spec.StartsWith("embedded:", StringComparison.Ordinal))
        {
            var path = spec["embedded:".Length..];
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            return EmbeddedClusterStore.Open(path);
        }

        var (scheme, rest) = spec.IndexOf("://", StringComparison.Ordinal) is var i and > 0 ? (spec[..i], spec[(i + 3)..]) : ("", spec);
        var (hosts, prefix) = rest.IndexOf("?prefix=", StringComparison.Ordinal) is var q and >= 0 ? (rest[..q], rest[(q + "?prefix=".Length)..]) : (rest, "");
        switch (scheme)
        {
            case "etcd" or "etcds":
                var web = scheme == "etcds" ? "https://" : "http://";
                var endpoints = string.Join(",", hosts.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h => web + h));
                return new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(endpoints, prefix) with
                {
                    Tls = scheme == "etcds" ? security?.Tls : null,
                    User = security?.User,
                    Password = security?.Password,
                });
            case "consul" when prefix.Length == 0 && !hosts.Contains(',', StringComparison.Ordinal):
                return new ConsulClusterStore(new ConsulStoreOptions { Address = new Uri("http://" + hosts) });
            default:
                throw new ArgumentException($"store '{spec}' is not one of {Help}");
        }
    }
}

/// <summary>
/// How a process proves itself to the store and checks it: TLS options for a member dialled at a host (etcds://),
/// and etcd's user and password. <paramref name="TlsAsked"/>: the TLS options were asked for, rather than defaults
/// taken from the daemon's own TLS (which a store that is not etcd ignores).
/// </summary>
public sealed record StoreSecurity(Func<string, SslClientAuthenticationOptions>? Tls, string? User, string? Password, bool TlsAsked = true)
{
    public bool IsEmpty => (Tls is null || !TlsAsked) && User is null && Password is null;
}
