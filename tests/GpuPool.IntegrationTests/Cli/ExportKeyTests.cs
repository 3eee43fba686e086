using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Tokens;

namespace GpuPool.IntegrationTests.Cli;

/// <summary><c>gpupool scheduler export-key --public</c>: the public half of the scheduler's key, what a broker is given, and never the private one.</summary>
public sealed class ExportKeyTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task It_writes_the_public_half_of_the_key_and_refuses_without_public_or_without_a_key()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        var keyPath = Path.Combine(configDir, "signing.pem");
        using var pair = LeaseToken.CreateKey();
        await File.WriteAllTextAsync(keyPath, pair.ExportPkcs8PrivateKeyPem());

        await using var exported = await CliProcess.RunAsync(configDir, Timeout, "scheduler", "export-key", "--public", "--key", keyPath);
        await using var withoutPublic = await CliProcess.RunAsync(configDir, Timeout, "scheduler", "export-key", "--key", keyPath);
        await using var missing = await CliProcess.RunAsync(configDir, Timeout, "scheduler", "export-key", "--public", "--key", keyPath + ".missing");

        Assert.True(exported.ExitCode == 0, exported.Stdout + exported.Stderr);
        Assert.Equal(LeaseToken.ExportPublicPem(pair), exported.Stdout.Trim());
        Assert.DoesNotContain("PRIVATE", exported.Stdout, StringComparison.Ordinal);
        Assert.Equal(2, withoutPublic.ExitCode);
        Assert.Contains("give --public", withoutPublic.Stderr, StringComparison.Ordinal);
        Assert.Equal("", withoutPublic.Stdout.Trim());
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains($"no scheduler key at {keyPath}.missing", missing.Stderr, StringComparison.Ordinal);
    }
}
