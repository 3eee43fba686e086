namespace GpuPool.Cli.Hosting;

/// <summary>Where the CLI keeps its state: the scheduler key and the address of the running pool.</summary>
internal static class CliPaths
{
    public static string ConfigDir
    {
        get
        {
            var explicitDir = Environment.GetEnvironmentVariable("GPUPOOL_CONFIG_DIR");
            if (!string.IsNullOrEmpty(explicitDir))
            {
                return explicitDir;
            }

            var xdg = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
            var baseDir = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return Path.Combine(baseDir, "gpupool");
        }
    }

    public static string SchedulerKey => Path.Combine(ConfigDir, "scheduler-key.pem");

    /// <summary>The embedded store's file: quotas, priority classes and leases survive a restart of <c>gpupool up</c>.</summary>
    public static string StoreFile => Path.Combine(ConfigDir, "store", "embedded.db");

    /// <summary>The admin credential of the pool <c>gpupool up</c> runs; admin commands read it from here.</summary>
    public static string AdminTokenFile => Path.Combine(ConfigDir, "admin-token");

    /// <summary>Reads the admin credential, making a random one (readable by the owner only) when there is none.</summary>
    public static string LoadOrCreateAdminToken()
    {
        var path = AdminTokenFile;
        if (File.Exists(path))
        {
            return File.ReadAllText(path).Trim();
        }

        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var token = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(24));
        var temp = path + ".tmp";
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var writer = new StreamWriter(temp, System.Text.Encoding.ASCII, options))
        {
            writer.Write(token);
        }

        File.Move(temp, path, overwrite: true);
        return token;
    }

    /// <summary>--admin-token if given, else $GPUPOOL_ADMIN_TOKEN, else the token file of the local pool (null when none).</summary>
    public static string? ResolveAdminToken(string? option)
    {
        if (!string.IsNullOrWhiteSpace(option))
        {
            return option.Trim();
        }

        var env = Environment.GetEnvironmentVariable("GPUPOOL_ADMIN_TOKEN");
        if (!string.IsNullOrWhiteSpace(env))
        {
            return env.Trim();
        }

        try
        {
            return File.ReadAllText(AdminTokenFile).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Written by <c>gpupool up</c> so that other commands find the pool without --scheduler.</summary>
    public static string SchedulerEndpointFile => Path.Combine(ConfigDir, "scheduler-endpoint");

    public const string DefaultScheduler = "http://127.0.0.1:7070";

    /// <summary>The pool's certificates as <c>gpupool up</c> and <c>gpupool ca</c> keep them: ca.crt, and a certificate and key per identity.</summary>
    public static string PkiDir => Path.Combine(ConfigDir, "pki");

    /// <summary>
    /// A client of the scheduler <paramref name="schedulerOption"/> resolves to, with the credentials every command
    /// uses: <paramref name="tokenOption"/> (--token) when given, else
    /// <see cref="GpuPool.Client.GpuPoolClientOptions.FromEnvironment"/> over <see cref="PkiDir"/> ($GPUPOOL_TENANT_TOKEN, a
    /// client certificate); with neither a certificate nor a token, the local pool's admin credential when there is one.
    /// </summary>
    public static GpuPool.Client.GpuPoolClient Client(string? schedulerOption, Microsoft.Extensions.Logging.ILogger? logger = null, string? tokenOption = null)
    {
        var options = GpuPool.Client.GpuPoolClientOptions.FromEnvironment(PkiDir, logger);
        if (!string.IsNullOrWhiteSpace(tokenOption))
        {
            options = options with { BearerToken = tokenOption.Trim() };
        }

        if (options.Certificate is null && options.BearerToken is null)
        {
            options = options with { BearerToken = ResolveAdminToken(null) };
        }

        return new GpuPool.Client.GpuPoolClient(ResolveScheduler(schedulerOption), options);
    }

    /// <summary>
    /// The tenant a command leases for: --tenant when given; else, for an admin credential (which must name one),
    /// "default"; else empty, which the scheduler reads as the tenant the credential proves.
    /// </summary>
    public static string TenantFor(GpuPool.Client.GpuPoolClient client, string? tenantOption)
    {
        if (!string.IsNullOrWhiteSpace(tenantOption))
        {
            return tenantOption.Trim();
        }

        var options = client.Options;
        var admin = options.BearerToken is { } token
            ? !GpuPool.Protocol.Tokens.TenantToken.TryReadUnverified(token, out var claims) || claims!.Role == GpuPool.Protocol.Tokens.TenantToken.AdminRole
            : options.Certificate is { } certificate && GpuPool.Protocol.Security.PoolIdentity.FromCertificate(certificate)?.Role == GpuPool.Protocol.Security.PoolRole.Admin;
        return admin ? "default" : "";
    }

    /// <summary>--scheduler if given, else $GPUPOOL_SCHEDULER, else the running pool's address, else the default.</summary>
    public static string ResolveScheduler(string? option)
    {
        if (!string.IsNullOrWhiteSpace(option))
        {
            return option;
        }

        var env = Environment.GetEnvironmentVariable("GPUPOOL_SCHEDULER");
        if (!string.IsNullOrWhiteSpace(env))
        {
            return env;
        }

        try
        {
            var saved = File.ReadAllText(SchedulerEndpointFile).Trim();
            if (saved.Length > 0)
            {
                return saved;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return DefaultScheduler;
    }
}
