using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Hosts;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// --listen and --advertise as a user types them: a bad value is one sentence naming the option, before anything starts;
/// `gpupool up --listen 0.0.0.0` shows the address it advertises and clients of this machine use it. Real child processes.
/// </summary>
public sealed class AddressOptionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--listen 'localhost' is not an IP address", "broker", "--store", "embedded", "--scheduler-key", "/nonexistent/key.pem", "--listen", "localhost")]
    [InlineData("--listen '10.1' is not an IP address", "scheduler", "--store", "embedded", "--listen", "10.1")]
    [InlineData("--advertise '0.0.0.0' is a wildcard address", "scheduler", "--store", "embedded", "--listen", "0.0.0.0", "--advertise", "0.0.0.0")]
    [InlineData("--advertise 'http://gpu1:7071' must be a host name or an IP address, not a URL", "broker", "--store", "embedded", "--scheduler-key", "/nonexistent/key.pem", "--advertise", "http://gpu1:7071")]
    [InlineData("--advertise 'gpu1:7071' must be a host name or an IP address without a port", "up", "--advertise", "gpu1:7071")]
    public async Task A_bad_address_is_refused_with_one_sentence_naming_the_option(string says, params string[] args)
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        await using var run = await CliProcess.RunAsync(configDir, Timeout, args);

        Assert.Equal(2, run.ExitCode);
        var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.StartsWith($"error: {says}", lines[0], StringComparison.Ordinal);
        Assert.Equal($"See 'gpupool {args[0]} --help'.", lines[^1]);
    }

    [Fact]
    public async Task Up_bound_to_every_address_advertises_this_hosts_address_and_serves_clients_there()
    {
        var expected = AdvertisedAddress.Choose("0.0.0.0", null);
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        await using var up = CliProcess.Start(configDir, "up", "--listen", "0.0.0.0", "--port", "0", "--broker-port", "0", "--fast-path-port", "0");
        await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), Timeout);

        Assert.Matches($@"scheduler\s+https://{System.Text.RegularExpressions.Regex.Escape(expected.UrlHost)}:\d+\s", up.Stdout);
        Assert.Matches($@"broker\s+https://{System.Text.RegularExpressions.Regex.Escape(expected.UrlHost)}:\d+ \(id \S+\)\s", up.Stdout);
        Assert.Contains($"0.0.0.0, advertised as {expected.Host} ({expected.Reason})", up.Stdout, StringComparison.Ordinal);

        await using var check = await CliProcess.RunAsync(configDir, Timeout, "check", "--bytes", "1MiB");
        Assert.True(check.ExitCode == 0, $"gpupool check failed; stdout:\n{check.Stdout}\nstderr:\n{check.Stderr}");
        Assert.Contains("session over unix", check.Stdout, StringComparison.Ordinal);
        Assert.Contains("identical", check.Stdout, StringComparison.Ordinal);

        await up.InterruptAsync();
        Assert.True(await up.WaitForExitAsync(Timeout));
    }

    [Fact]
    public async Task Up_killed_and_started_again_on_its_kept_store_takes_over_its_own_brokers_registration()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        var first = CliProcess.Start(configDir, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0");
        await first.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), Timeout);

        // Killed: its broker's record stays in the kept store, under a session restored at the next start.
        await first.DisposeAsync();
        await using var second = CliProcess.Start(configDir, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0");
        await second.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C", StringComparison.Ordinal), Timeout);

        // Its broker registered (the record left behind was its own dead process's, so it was taken over, not refused).
        Assert.Contains($"(id {BrokerIdOf(first.Stdout)})", second.Stdout, StringComparison.Ordinal);

        // The killed scheduler's leader lock is restored with the store too, under its dead session; its owner record
        // names this machine and the killed process, so the new replica ends that session and leads before `up` says
        // it is ready: the first lease works (it waited one leader TTL before the takeover).
        await using var check = await CliProcess.RunAsync(configDir, Timeout, "check", "--bytes", "1MiB");
        Assert.True(check.ExitCode == 0, $"gpupool check right after the restart: exit {check.ExitCode}; stdout:\n{check.Stdout}\nstderr:\n{check.Stderr}\nup's stdout:\n{second.Stdout}");
        Assert.Contains("identical", check.Stdout, StringComparison.Ordinal);

        await second.InterruptAsync();
        Assert.True(await second.WaitForExitAsync(Timeout));
    }

    private static string BrokerIdOf(string upOutput)
        => System.Text.RegularExpressions.Regex.Match(upOutput, @"broker\s+https://\S+ \(id (\S+)\)").Groups[1].Value;
}
