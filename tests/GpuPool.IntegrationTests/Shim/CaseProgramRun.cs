using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// A pool on which a case program (Shim/native: its lines "case NAME: ... ok" or "... MISMATCH", native/case_common.h)
/// has run once through `gpupool run`, with each case's line by name.
/// </summary>
public abstract class CaseProgramRun(string program) : PoolFixture, IAsyncLifetime
{
    private readonly string _configDir = Directory.CreateTempSubdirectory($"gpupool-it-{program}-").FullName;

    internal CliProcess Run { get; private set; } = null!;

    /// <summary>Each case's line, by case name.</summary>
    public Dictionary<string, string> Cases { get; } = new(StringComparer.Ordinal);

    public new async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Run = await GpuPoolRun.RunAsync(this, _configDir, [], ShimArtifacts.Program(program), ShimArtifacts.KernelsPtx);
        foreach (var line in Run.Stdout.Split('\n').Where(l => l.StartsWith("case ", StringComparison.Ordinal)))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            Cases[line[5..colon]] = line;
        }
    }

    public new async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Directory.Delete(_configDir, recursive: true);
    }
}
