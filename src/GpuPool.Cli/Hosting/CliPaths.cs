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

    /// <summary>Written by <c>gpupool up</c> so that other commands find the pool without --scheduler.</summary>
    public static string SchedulerEndpointFile => Path.Combine(ConfigDir, "scheduler-endpoint");

    public const string DefaultScheduler = "http://127.0.0.1:7070";

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
