namespace GpuPool.Cli.Hosting;

/// <summary>Where <c>gpupool run</c> finds the libcuda shim that the build made.</summary>
internal static class ShimPaths
{
    public const string FileName = "libgpupool-cuda.so";

    /// <summary>Where the package (<c>./build.sh --target=Package</c>) puts the shim, relative to the CLI's binary.</summary>
    public static readonly string PackagedPath = Path.Combine("lib", "libcuda.so.1");

    /// <summary>The command that builds the shim where this finds it.</summary>
    public const string BuildCommand = "./build.sh --target=Shim";

    /// <summary>
    /// $GPUPOOL_SHIM if set; else the shim beside the CLI's binary (a published install); else lib/libcuda.so.1 beside
    /// it (the package's layout); else artifacts/shim/ of the build tree the CLI runs from (found by walking up from
    /// the CLI's folder). Null if none exists.
    /// </summary>
    public static string? Find()
    {
        if (Environment.GetEnvironmentVariable("GPUPOOL_SHIM") is { Length: > 0 } explicitPath)
        {
            return File.Exists(explicitPath) ? Path.GetFullPath(explicitPath) : null;
        }

        var beside = Path.Combine(AppContext.BaseDirectory, FileName);
        if (File.Exists(beside))
        {
            return beside;
        }

        var packaged = Path.Combine(AppContext.BaseDirectory, PackagedPath);
        if (File.Exists(packaged))
        {
            return packaged;
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var built = Path.Combine(dir.FullName, "artifacts", "shim", FileName);
            if (File.Exists(built))
            {
                return built;
            }
        }

        return null;
    }
}
