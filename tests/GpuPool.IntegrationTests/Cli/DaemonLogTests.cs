using System.Text.Json;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// The daemons' log: warnings always (here, the audit line of a refused credential with the peer it came from), on stderr, one line
/// each, without --verbose and without the lifecycle lines --verbose adds; one JSON object a line with --log-format json.
/// </summary>
public sealed class DaemonLogTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_refused_admin_change_is_logged_on_stderr_without_verbose_and_nothing_below_a_warning_is()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        await using var up = CliProcess.Start(configDir, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0");
        await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), Timeout);

        await using var wrong = await CliProcess.RunAsync(configDir, Timeout, "quota", "rm", "team-a", "--admin-token", "nope");

        Assert.NotEqual(0, wrong.ExitCode);
        var line = await StderrLineAsync(up, l => l.Contains("Audit: refused a credential", StringComparison.Ordinal));
        Assert.Contains("warn: ", line, StringComparison.Ordinal);
        Assert.EndsWith("Audit: refused a credential from 127.0.0.1: the bearer token is neither this pool's admin credential nor a tenant token it issued", line.TrimEnd(), StringComparison.Ordinal);
        Assert.DoesNotContain("leads the pool", up.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Audit:", up.Stdout, StringComparison.Ordinal);
        await up.InterruptAsync();
        Assert.True(await up.WaitForExitAsync(Timeout));
    }

    [Fact]
    public async Task With_log_format_json_each_line_is_one_object_with_its_level_and_message()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        await using var up = CliProcess.Start(configDir, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--log-format", "json", "--verbose");
        await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), Timeout);

        await using var wrong = await CliProcess.RunAsync(configDir, Timeout, "quota", "rm", "team-a", "--admin-token", "nope");

        var line = await StderrLineAsync(up, l => l.Contains("Audit: refused a credential", StringComparison.Ordinal));
        using var entry = JsonDocument.Parse(line);
        Assert.Equal("Warning", entry.RootElement.GetProperty("LogLevel").GetString());
        Assert.Equal("Audit: refused a credential from 127.0.0.1: the bearer token is neither this pool's admin credential nor a tenant token it issued", entry.RootElement.GetProperty("Message").GetString());
        Assert.Equal("127.0.0.1", entry.RootElement.GetProperty("State").GetProperty("Peer").GetString());
        Assert.Contains(up.Stderr.Split('\n'), l => l.Contains("leads the pool", StringComparison.Ordinal) && l.StartsWith('{'));
        await up.InterruptAsync();
        Assert.True(await up.WaitForExitAsync(Timeout));
    }

    private static async Task<string> StderrLineAsync(CliProcess process, Func<string, bool> predicate)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            if (process.Stderr.Split('\n').FirstOrDefault(predicate) is { } line)
            {
                return line;
            }

            Assert.True(DateTime.UtcNow < deadline, $"no such line on stderr within 10 s; stderr:\n{process.Stderr}");
            await Task.Delay(50);
        }
    }
}
