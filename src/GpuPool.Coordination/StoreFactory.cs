using GpuPool.Coordination.Consul;
using GpuPool.Coordination.Embedded;
using GpuPool.Coordination.Etcd;

namespace GpuPool.Coordination;

/// <summary>
/// Opens a store from the one-line spec the CLI takes: <c>embedded</c> (in memory), <c>embedded:PATH</c> (kept
/// in a file), <c>etcd://HOST:PORT[,HOST:PORT…][?prefix=P]</c> or <c>consul://HOST:PORT[?prefix=P]</c>.
/// </summary>
public static class StoreFactory
{
    public const string Help = "embedded, embedded:PATH, etcd://HOST:PORT[,HOST:PORT...][?prefix=P] or consul://HOST:PORT";

    public static IClusterStore Open(string spec)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(spec);
        spec = spec.Trim();
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
            case "etcd":
                var endpoints = string.Join(",", hosts.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h => "http://" + h));
                return new EtcdClusterStore(EtcdClusterStoreOptions.FromEndpoints(endpoints, prefix));
            case "consul" when prefix.Length == 0 && !hosts.Contains(',', StringComparison.Ordinal):
                return new ConsulClusterStore(new ConsulStoreOptions { Address = new Uri("http://" + hosts) });
            default:
                throw new ArgumentException($"store '{spec}' is not one of {Help}");
        }
    }
}
