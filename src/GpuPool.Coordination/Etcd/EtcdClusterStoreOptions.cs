using System.Net.Security;

namespace GpuPool.Coordination.Etcd;

/// <summary>How <see cref="EtcdClusterStore"/> reaches etcd. Checked up front by <see cref="Validate"/>, with errors that name the bad field.</summary>
public sealed record EtcdClusterStoreOptions
{
    /// <summary>The client URLs of the cluster's members (http:// or https://); calls go to one member and fail over to the others.</summary>
    public IReadOnlyList<string> Endpoints { get; init; } = ["http://127.0.0.1:2379"];

    /// <summary>
    /// Put before every key in etcd (for example <c>gpupool/</c>), so one etcd cluster can hold several pools. Keys
    /// passed to and returned by the store never show it.
    /// </summary>
    public string KeyPrefix { get; init; } = "";

    /// <summary>How long one call may take, failing over between members included, before it fails with <see cref="StoreUnavailableException"/>.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long to wait for a TCP connection to one member before trying the next.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// TLS for https:// members: the client's options for a member dialled at a host (the CA its certificate must chain
    /// to, the client certificate etcd's <c>--client-cert-auth</c> asks for). Null: the system's roots and no client
    /// certificate.
    /// </summary>
    public Func<string, SslClientAuthenticationOptions>? Tls { get; init; }

    /// <summary>
    /// etcd's user for its password authentication (<c>etcdctl auth enable</c>): every call carries a token etcd gave
    /// this user, renewed when etcd says it has expired. Null: no password authentication.
    /// </summary>
    public string? User { get; init; }

    /// <summary>The password of <see cref="User"/>.</summary>
    public string? Password { get; init; }

    /// <summary>Options from a comma-separated endpoint list, as given on a command line (<c>http://10.0.0.1:2379,http://10.0.0.2:2379</c>).</summary>
    public static EtcdClusterStoreOptions FromEndpoints(string endpoints, string keyPrefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        return new EtcdClusterStoreOptions
        {
            Endpoints = endpoints.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
            KeyPrefix = keyPrefix,
        };
    }

    /// <summary>Checks every field and returns the endpoints as URIs; throws <see cref="ArgumentException"/> naming the first bad one.</summary>
    public IReadOnlyList<Uri> Validate()
    {
        if (Endpoints is null || Endpoints.Count == 0)
        {
            throw new ArgumentException("etcd endpoints: give at least one member's client URL, for example http://127.0.0.1:2379", nameof(Endpoints));
        }

        var uris = new List<Uri>(Endpoints.Count);
        foreach (var endpoint in Endpoints)
        {
            var text = endpoint?.Trim() ?? "";
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri)
                || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
                || string.IsNullOrEmpty(uri.Host)
                || uri.AbsolutePath != "/" || uri.Query.Length > 0 || uri.Fragment.Length > 0 || uri.UserInfo.Length > 0)
            {
                throw new ArgumentException($"etcd endpoint '{endpoint}' is not a member's client URL: write it as http://host:port or https://host:port (for example http://127.0.0.1:2379)", nameof(Endpoints));
            }

            if (uris.Any(u => u.Authority == uri.Authority))
            {
                throw new ArgumentException($"etcd endpoint '{endpoint}' is listed twice", nameof(Endpoints));
            }

            uris.Add(uri);
        }

        if (KeyPrefix is null || KeyPrefix.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("etcd key prefix must be a string without NUL characters (for example gpupool/)", nameof(KeyPrefix));
        }

        if (Tls is not null && uris.All(u => u.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException("etcd TLS options were given but every endpoint is http://: write the members as https://host:port (etcds:// in a store spec)", nameof(Tls));
        }

        if (User is not null && (User.Length == 0 || Password is null))
        {
            throw new ArgumentException(User.Length == 0 ? "etcd user must not be empty" : $"etcd user '{User}' was given without a password", nameof(User));
        }

        if (User is null && Password is not null)
        {
            throw new ArgumentException("an etcd password was given without a user", nameof(Password));
        }

        if (RequestTimeout <= TimeSpan.Zero || RequestTimeout > TimeSpan.FromHours(1))
        {
            throw new ArgumentOutOfRangeException(nameof(RequestTimeout), RequestTimeout, "etcd request timeout must be positive and at most an hour");
        }

        if (ConnectTimeout <= TimeSpan.Zero || ConnectTimeout > TimeSpan.FromHours(1))
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "etcd connect timeout must be positive and at most an hour");
        }

        return uris;
    }
}
