using System.Globalization;
using System.Text.RegularExpressions;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary><c>gpupool demo</c> as a user runs it: a child process that starts its own pool and trains on it.</summary>
public sealed partial class DemoCommandTests : IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;

    [Fact]
    public async Task Demo_quick_exits_0_and_its_loss_falls_from_the_first_epoch_to_the_last()
    {
        await using var demo = await CliProcess.RunAsync(_configDir, TimeSpan.FromSeconds(60), "demo", "--quick");

        Assert.True(demo.ExitCode == 0, $"exit code {demo.ExitCode}; stdout:\n{demo.Stdout}\nstderr:\n{demo.Stderr}");
        var losses = EpochLine().Matches(demo.Stdout).Select(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(8, losses.Length);
        Assert.True(losses[^1] < losses[0], $"the loss went from {losses[0]} to {losses[^1]}");
        Assert.Contains("released l-", demo.Stdout, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);

    [GeneratedRegex(@"^epoch\s+(\d+)\s+loss (\d+\.\d{4})", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex EpochLine();
}
