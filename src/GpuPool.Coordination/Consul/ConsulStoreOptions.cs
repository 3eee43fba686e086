namespace GpuPool.Coordination.Consul;

/// <summary>Where the Consul agent is and how the driver uses it. Unset values come from the environment, then the defaults.</summary>
public sealed class ConsulStoreOptions
{
    /// <summary>The agent's HTTP address when <see cref="Address"/> is not set: <c>http://host:port</c>, <c>https://…</c>, or <c>host:port</c>.</summary>
    public const string AddressVariable = "GPUPOOL_CONSUL_ADDR";

    /// <summary>The ACL token when <see cref="Token"/> is not set.</summary>
    public const string TokenVariable = "GPUPOOL_CONSUL_TOKEN";

    /// <summary>A Consul agent's default HTTP address.</summary>
    public static readonly Uri DefaultAddress = new("http://127.0.0.1:8500");

    /// <summary>Consul refuses session TTLs longer than a day.</summary>
    public static readonly TimeSpan MaxSessionTtl = TimeSpan.FromHours(24);

    /// <summary>The agent's HTTP API; null: <see cref="AddressVariable"/>, else <see cref="DefaultAddress"/>.</summary>
    public Uri? Address { get; init; }

    /// <summary>Sent as <c>X-Consul-Token</c>; null: <see cref="TokenVariable"/>, else no token.</summary>
    public string? Token { get; init; }

    /// <summary>The datacenter of KV, session and health calls; null: the agent's own.</summary>
    public string? Datacenter { get; init; }

    /// <summary>How long one ordinary call may take before the store counts as unavailable.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The servers' <c>session_ttl_min</c> (Consul's default: 10 s). Shorter session TTLs are rounded up to it,
    /// and every TTL to whole seconds; <see cref="StoreSession.Ttl"/> tells the TTL the session really has.
    /// </summary>
    public TimeSpan SessionTtlMin { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The lock delay of the sessions the driver creates: how long Consul refuses to bind a key again to a
    /// session after the key's session ended. 0 (the default here; Consul's is 15 s) lets a standby take a
    /// leader lock at once; the leader lock's fencing token, not a delay, keeps a deposed leader from writing.
    /// </summary>
    public TimeSpan LockDelay { get; init; } = TimeSpan.Zero;

    /// <summary>How long a watch's blocking query waits for a change before asking again (Consul's limit: 10 min).</summary>
    public TimeSpan WatchWait { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A watch's blocking queries are rate limited, as Consul asks of clients: two in a row go out at once,
    /// then no more than one per this interval while the prefix keeps changing.
    /// </summary>
    public TimeSpan WatchMinInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>When set, Consul removes a service instance whose check has been critical this long (Consul reaps every 30 s, so at least a minute makes sense).</summary>
    public TimeSpan? DeregisterCriticalServiceAfter { get; init; }

    /// <summary>The name the driver gives its sessions (shown by <c>consul</c>'s session list).</summary>
    public string SessionName { get; init; } = "gpupool";

    /// <summary>Options taken from <see cref="AddressVariable"/> and <see cref="TokenVariable"/>.</summary>
    public static ConsulStoreOptions FromEnvironment() => new();

    /// <summary>The address in force: <see cref="Address"/>, else <see cref="AddressVariable"/>, else <see cref="DefaultAddress"/>.</summary>
    public Uri ResolveAddress()
    {
        if (Address is not null)
        {
            return Address;
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(AddressVariable);
        return string.IsNullOrWhiteSpace(fromEnvironment) ? DefaultAddress : ParseAddress(fromEnvironment, AddressVariable);
    }

    /// <summary>The token in force: <see cref="Token"/>, else <see cref="TokenVariable"/>, else none.</summary>
    public string? ResolveToken()
    {
        if (!string.IsNullOrEmpty(Token))
        {
            return Token;
        }

        var fromEnvironment = Environment.GetEnvironmentVariable(TokenVariable);
        return string.IsNullOrWhiteSpace(fromEnvironment) ? null : fromEnvironment.Trim();
    }

    /// <summary>Parses <c>http://host:port</c>, <c>https://host:port</c> or <c>host:port</c> (taken as http), as Consul's own CONSUL_HTTP_ADDR does.</summary>
    public static Uri ParseAddress(string value, string what = nameof(Address))
    {
        ArgumentNullException.ThrowIfNull(value);
        var text = value.Trim();
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || string.IsNullOrEmpty(uri.Host)
            || uri.PathAndQuery != "/" || !string.IsNullOrEmpty(uri.Fragment))
        {
            throw new ArgumentException($"{what} must be http://host:port, https://host:port or host:port, not '{value}'");
        }

        return uri;
    }

    /// <summary>Refuses options the driver cannot use, naming the field.</summary>
    internal void Validate()
    {
        if (Address is not null && (!Address.IsAbsoluteUri || Address.Scheme is not ("http" or "https")))
        {
            throw new ArgumentException($"{nameof(Address)} must be an absolute http or https address, not '{Address}'");
        }

        RequirePositive(RequestTimeout, nameof(RequestTimeout));
        RequirePositive(SessionTtlMin, nameof(SessionTtlMin));
        RequirePositive(WatchWait, nameof(WatchWait));
        if (SessionTtlMin > MaxSessionTtl)
        {
            throw new ArgumentOutOfRangeException(nameof(SessionTtlMin), $"{nameof(SessionTtlMin)} must be at most {MaxSessionTtl.TotalHours} h, not {SessionTtlMin}");
        }

        if (WatchWait > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(nameof(WatchWait), $"{nameof(WatchWait)} must be at most 10 min (Consul's limit), not {WatchWait}");
        }

        if (LockDelay < TimeSpan.Zero || LockDelay > TimeSpan.FromSeconds(60))
        {
            throw new ArgumentOutOfRangeException(nameof(LockDelay), $"{nameof(LockDelay)} must be between 0 and 60 s (Consul's limit), not {LockDelay}");
        }

        if (WatchMinInterval < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(WatchMinInterval), $"{nameof(WatchMinInterval)} must not be negative, not {WatchMinInterval}");
        }

        if (DeregisterCriticalServiceAfter is { } after)
        {
            RequirePositive(after, nameof(DeregisterCriticalServiceAfter));
        }

        if (string.IsNullOrWhiteSpace(SessionName))
        {
            throw new ArgumentException($"{nameof(SessionName)} must not be empty");
        }
    }

    private static void RequirePositive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(name, $"{name} must be positive, not {value}");
        }
    }
}
