using System.CommandLine;
using System.Globalization;
using GpuPool.Protocol;
using GpuPool.Protocol.Hosts;

using GpuPool.Coordination;

namespace GpuPool.Cli.Commands;

/// <summary>Options several commands share, and parsers that reject bad values with a sentence naming the option.</summary>
internal static class CliOptions
{
    public static Option<string?> Scheduler() => new("--scheduler")
    {
        Description = "Scheduler address (default: $GPUPOOL_SCHEDULER, else the pool `gpupool up` started, else http://127.0.0.1:7070)",
    };

    /// <summary>--tenant of the commands that lease: no default, so that a tenant's credential leases for its own tenant.</summary>
    public static Option<string?> Tenant() => new("--tenant")
    {
        Description = "Tenant the lease is charged to (default: the one your tenant token or certificate names; with an admin credential, 'default')",
    };

    /// <summary>--token: the bearer token a command proves who it is with.</summary>
    public static Option<string?> Token() => new("--token")
    {
        Description = "Tenant token (from `gpupool tenant add`) or admin credential to call the scheduler with (default: $GPUPOOL_TENANT_TOKEN, else a client certificate, else the admin credential of the pool `gpupool up` runs here)",
    };

    /// <summary>--listen: an IP address of this host, or 0.0.0.0 / :: for all of them.</summary>
    public static Option<string> Listen() => new("--listen")
    {
        Description = "Address to listen on: one of this host's, or 0.0.0.0 (or ::) for all of them",
        DefaultValueFactory = _ => "127.0.0.1",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (AdvertisedAddress.TryParseListen(text, out _, out var error))
            {
                return text.Trim();
            }

            result.AddError(error);
            return "";
        },
    };

    /// <summary>--advertise: the host other machines dial (default: the listen address, or for 0.0.0.0 / :: the default route's).</summary>
    public static Option<string?> Advertise(string what) => new("--advertise")
    {
        Description = $"Host name or address {what}, as other hosts reach it (default: the --listen address; for 0.0.0.0 or ::, this host's address on the default route)",
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (AdvertisedAddress.CheckAdvertise(text) is { } error)
            {
                result.AddError(error);
                return null;
            }

            return text;
        },
    };

    /// <summary>A daemon's TLS options: --insecure, or the pool's CA and its own certificate and key (defaults in the config dir's pki).</summary>
    public sealed record Tls(Option<bool> Insecure, Option<string?> Ca, Option<string?> Cert, Option<string?> Key)
    {
        public static Tls Create(string role) => new(
            new Option<bool>("--insecure") { Description = "Serve plaintext, without TLS: only on a network you trust (gpupool ls shows it)" },
            new Option<string?>("--ca") { Description = $"The pool's CA certificate (default: {Path.Combine(Hosting.CliPaths.PkiDir, "ca.crt")})" },
            new Option<string?>("--tls-cert") { Description = $"This {role}'s certificate from the pool's CA (default: {Path.Combine(Hosting.CliPaths.PkiDir, role + ".crt")})" },
            new Option<string?>("--tls-key") { Description = "Its private key (default: the certificate's path with .key)" });

        public IEnumerable<Option> All => [Insecure, Ca, Cert, Key];

        /// <summary>The TLS these options give, for a daemon of <paramref name="role"/>; null with --insecure.</summary>
        public Protocol.Security.PoolTls? Resolve(ParseResult parse, string role)
            => Hosting.PoolPki.ForDaemon(parse.GetValue(Insecure), parse.GetValue(Ca), parse.GetValue(Cert), parse.GetValue(Key), role);
    }

    /// <summary>
    /// What a lease is asked for, as `gpupool lease` and `gpupool run` both take it: memory, share, tenant, time to live,
    /// device model, priority class and how long to wait in the queue.
    /// </summary>
    /// <param name="DefaultTtl">The time to live without --ttl; null: the pool's default (the scheduler's --lease-ttl).</param>
    public sealed record LeaseAsk(
        Option<ulong> Memory, Option<int> Share, Option<string> ShareMode, Option<string?> Tenant, Option<TimeSpan?> Ttl, Option<string> Model, Option<string> Priority, Option<string?> Wait, TimeSpan? DefaultTtl)
    {
        public static LeaseAsk Create(string memoryDescription, string ttlDescription, TimeSpan? defaultTtl) => new(
            Bytes("--memory", memoryDescription, "1GiB"),
            Ranged("--share", "Compute share in milli-GPU (1000 = a whole device)", 1000, 1, 1000),
            ShareModeOption(),
            CliOptions.Tenant(),
            OptionalDuration("--ttl", ttlDescription),
            new Option<string>("--model") { Description = "Only devices whose name contains this", DefaultValueFactory = _ => "" },
            new Option<string>("--priority") { Description = "Priority class (default: normal; see gpupool priority ls)", DefaultValueFactory = _ => "" },
            new Option<string?>("--wait") { Description = "Wait this long in the queue when nothing fits now (e.g. 30s, 5m)" },
            defaultTtl);

        public IEnumerable<Option> All => [Memory, Share, ShareMode, Tenant, Ttl, Model, Priority, Wait];

        /// <summary>The request these options ask for, for a client whose credential decides the default tenant.</summary>
        public Client.LeaseRequest Request(ParseResult parse, Client.GpuPoolClient client) => new()
        {
            MemoryBytes = parse.GetValue(Memory),
            ComputeShare = parse.GetValue(Share),
            ShareMode = parse.GetValue(ShareMode) == "capped" ? Protocol.V1.ShareMode.Capped : Protocol.V1.ShareMode.WorkConserving,
            Tenant = Hosting.CliPaths.TenantFor(client, parse.GetValue(Tenant)),
            Ttl = parse.GetValue(Ttl) ?? DefaultTtl,
            DeviceModel = parse.GetValue(Model)!,
            PriorityClass = parse.GetValue(Priority)!,
            WaitTimeout = parse.GetValue(Wait) is { } w ? ParseDuration("--wait", w) : null,
        };
    }

    /// <summary>How a daemon proves itself to etcd and checks it: TLS for etcds:// and etcd's user and password.</summary>
    public sealed record StoreAccess(Option<string?> Ca, Option<string?> Cert, Option<string?> Key, Option<string?> User, Option<string?> PasswordFile)
    {
        public static StoreAccess Create() => new(
            new Option<string?>("--store-ca") { Description = "For etcds://: the CA that issued etcd's certificates (default: the pool's CA, --ca)" },
            new Option<string?>("--store-cert") { Description = "For etcds://: the client certificate etcd's --client-cert-auth asks for (default: this daemon's own, --tls-cert)" },
            new Option<string?>("--store-key") { Description = "Its private key (default: the certificate's path with .key)" },
            new Option<string?>("--store-user") { Description = "etcd user, where etcd's authentication is on; its password from $GPUPOOL_STORE_PASSWORD or --store-password-file" },
            new Option<string?>("--store-password-file") { Description = "File holding the etcd user's password (default: $GPUPOOL_STORE_PASSWORD)" });

        public IEnumerable<Option> All => [Ca, Cert, Key, User, PasswordFile];

        /// <summary>The store access these options give a daemon whose own TLS is <paramref name="daemonTls"/> (null with --insecure).</summary>
        public StoreSecurity Resolve(ParseResult parse, Protocol.Security.PoolTls? daemonTls)
            => Hosting.PoolPki.ForStore(
                parse.GetValue(Ca), parse.GetValue(Cert), parse.GetValue(Key), parse.GetValue(User), parse.GetValue(PasswordFile),
                Environment.GetEnvironmentVariable("GPUPOOL_STORE_PASSWORD"), daemonTls);
    }

    public static Option<ulong> Bytes(string name, string description, string defaultValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => ParseBytesOrThrow(defaultValue),
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : defaultValue;
            if (Units.TryParseBytes(text, out var bytes) && bytes > 0)
            {
                return bytes;
            }

            result.AddError($"{name} '{text}' is not a size: write it like 512MiB, 2GiB or 1048576");
            return 0;
        },
    };

    public static Option<TimeSpan> Duration(string name, string description, TimeSpan defaultValue) => new(name)
    {
        Description = description + " (e.g. 30s, 5m, 2h)",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result => PositiveDuration(name, result) ?? default,
    };

    /// <summary>A duration option that may be left out (null).</summary>
    public static Option<TimeSpan?> OptionalDuration(string name, string description) => new(name)
    {
        Description = description + " (e.g. 30s, 5m, 2h)",
        CustomParser = result => PositiveDuration(name, result),
    };

    private static TimeSpan? PositiveDuration(string name, System.CommandLine.Parsing.ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (TryParseDuration(text, out var value) && value > TimeSpan.Zero)
        {
            return value;
        }

        result.AddError($"{name} '{text}' is not a duration: write it like 30s, 5m or 2h");
        return null;
    }

    private static Option<string> ShareModeOption()
    {
        var option = new Option<string>("--share-mode")
        {
            Description = "How the share holds when the device has time to spare: work-conserving (the default) also takes share others leave idle; capped never takes more than its share",
            DefaultValueFactory = _ => "work-conserving",
        };
        option.AcceptOnlyFromAmong("work-conserving", "capped");
        return option;
    }

    /// <summary>--device-slots: 0 when not given (the backend's default).</summary>
    public static Option<int> DeviceSlots() => Ranged(
        "--device-slots",
        "Execution slots per device, shared by the leases' compute shares (default: the host's cores on cpu, one kernel at a time on cuda); 1 makes every lease's work take turns",
        0,
        1,
        1024);

    public static Option<int> Ranged(string name, string description, int defaultValue, int min, int max) => new(name)
    {
        Description = $"{description} ({min}..{max})",
        DefaultValueFactory = _ => defaultValue,
        CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            {
                return value;
            }

            result.AddError($"{name} '{text}' must be a whole number from {min} to {max}");
            return defaultValue;
        },
    };

    /// <summary>Parses a duration an option gave as text, or throws a sentence naming the option.</summary>
    public static TimeSpan ParseDuration(string name, string text)
        => TryParseDuration(text, out var value) && value >= TimeSpan.Zero ? value : throw new ArgumentException($"{name} '{text}' is not a duration: write it like 30s, 5m or 2h");

    private static ulong ParseBytesOrThrow(string text)
        => Units.TryParseBytes(text, out var bytes) ? bytes : throw new ArgumentException($"bad default size {text}");

    private static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var unit = text[^1];
        var number = char.IsDigit(unit) ? text : text[..^1];
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n < 0 || n > 1e7)
        {
            return false;
        }

        value = unit switch
        {
            'h' => TimeSpan.FromHours(n),
            'm' => TimeSpan.FromMinutes(n),
            's' or >= '0' and <= '9' => TimeSpan.FromSeconds(n),
            _ => TimeSpan.MinValue,
        };
        return value != TimeSpan.MinValue;
    }
}
