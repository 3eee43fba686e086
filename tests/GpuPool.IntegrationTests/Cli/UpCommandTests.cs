using System.Text.RegularExpressions;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>A <c>gpupool up</c> child process for a test class, with its own config directory; stopped with SIGINT, killed if it will not stop.</summary>
public sealed partial class UpProcessFixture : IAsyncLifetime
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);

    private CliProcess? _up;

    public string ConfigDir { get; } = Directory.CreateTempSubdirectory("gpupool-it-").FullName;

    public string SchedulerEndpoint { get; private set; } = "";

    public string BrokerEndpoint { get; private set; } = "";

    public async Task InitializeAsync()
    {
        (_up, SchedulerEndpoint, BrokerEndpoint) = await StartUpAsync(ConfigDir);
    }

    /// <summary>A client of the pool <c>gpupool up</c> runs in <paramref name="configDir"/>, acting as its admin (the token up keeps there).</summary>
    internal static GpuPoolClient AdminClient(string configDir, string scheduler)
        => new(scheduler, TestPki.FromConfigDir(configDir));

    /// <summary>
    /// Starts <c>gpupool up</c> on free ports (with <paramref name="extraArgs"/>, such as --devices 2) and waits until
    /// it says it is up; returns the endpoints it printed.
    /// </summary>
    internal static async Task<(CliProcess Up, string Scheduler, string Broker)> StartUpAsync(string configDir, params string[] extraArgs)
    {
        string[] args = ["up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--lease-ttl", "5s", .. extraArgs];
        var up = CliProcess.Start(configDir, args);
        try
        {
            await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C to stop.", StringComparison.Ordinal), StartTimeout);
            var scheduler = Endpoint().Match(await up.WaitForLineAsync(l => l.StartsWith("scheduler ", StringComparison.Ordinal), TimeSpan.Zero)).Value;
            var broker = Endpoint().Match(await up.WaitForLineAsync(l => l.StartsWith("broker ", StringComparison.Ordinal), TimeSpan.Zero)).Value;
            return (up, scheduler, broker);
        }
        catch
        {
            await up.DisposeAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        try
        {
            if (_up is not null)
            {
                await _up.InterruptAsync();
                await _up.WaitForExitAsync(TimeSpan.FromSeconds(20));
            }
        }
        finally
        {
            if (_up is not null)
            {
                await _up.DisposeAsync();
            }

            Directory.Delete(ConfigDir, recursive: true);
        }
    }

    [GeneratedRegex(@"https://127\.0\.0\.1:\d+", RegexOptions.CultureInvariant)]
    public static partial Regex Endpoint();
}

/// <summary><c>gpupool up</c>, <c>lease</c> and <c>ls</c> as a user runs them, each a real child process.</summary>
public sealed class UpCommandTests(UpProcessFixture up) : IClassFixture<UpProcessFixture>
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Up_prints_its_endpoints_and_writes_the_scheduler_endpoint_for_other_commands()
    {
        Assert.Matches(@"^https://127\.0\.0\.1:[1-9]\d*$", up.SchedulerEndpoint);
        Assert.Matches(@"^https://127\.0\.0\.1:[1-9]\d*$", up.BrokerEndpoint);
        Assert.NotEqual(up.SchedulerEndpoint, up.BrokerEndpoint);
        Assert.Equal(up.SchedulerEndpoint, (await File.ReadAllTextAsync(Path.Combine(up.ConfigDir, "scheduler-endpoint"))).Trim());

        using var client = UpProcessFixture.AdminClient(up.ConfigDir, up.SchedulerEndpoint);
        var broker = Assert.Single((await client.ListClusterAsync()).Brokers);
        Assert.Equal(up.BrokerEndpoint, broker.Endpoint);
    }

    [Fact]
    public async Task Lease_exits_0_and_prints_the_granted_lease()
    {
        await using var lease = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "lease", "--memory", "512MiB", "--share", "250");

        Assert.True(lease.ExitCode == 0, $"exit code {lease.ExitCode}; stdout:\n{lease.Stdout}\nstderr:\n{lease.Stderr}");
        var table = SpectreTable.Parse(lease.Stdout)[0];
        var id = table.Column(0);
        Assert.Matches("^l-[0-9a-f]{12}$", id);
        Assert.Equal("normal", table.Column(2));
        Assert.Equal("512MiB", table.Column(6));
        Assert.Equal("250", table.Column(7));
        Assert.Equal(up.BrokerEndpoint, table.Column(4));

        using var client = UpProcessFixture.AdminClient(up.ConfigDir, up.SchedulerEndpoint);
        var record = Assert.Single((await client.ListClusterAsync()).Leases, l => l.LeaseId == id);
        Assert.Equal(512UL << 20, record.MemoryBytes);
        Assert.Equal(250U, record.ComputeShare);

        // The token on one line, whatever the terminal's width (a console that wraps it at 80 columns cuts it in two),
        // and whole: a session opens with it.
        var token = Assert.Single(lease.Stdout.Split('\n'), l => l.StartsWith("token: ", StringComparison.Ordinal))["token: ".Length..].TrimEnd('\r');
        Assert.True(token.Length > 80, $"a lease token is longer than a terminal line; printed: '{token}'");
        await using var session = await client.OpenSessionAsync(record, token);
        Assert.NotEqual(0UL, (await session.AllocAsync(4096)).Address);
    }

    [Fact]
    public async Task Ls_shows_the_device_and_the_live_leases()
    {
        await using (var lease = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "lease", "--memory", "256MiB", "--share", "100"))
        {
            Assert.Equal(0, lease.ExitCode);
        }

        await using var ls = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "ls");

        Assert.True(ls.ExitCode == 0, $"exit code {ls.ExitCode}; stdout:\n{ls.Stdout}\nstderr:\n{ls.Stderr}");
        using var client = UpProcessFixture.AdminClient(up.ConfigDir, up.SchedulerEndpoint);
        var view = await client.ListClusterAsync();
        var tables = SpectreTable.Parse(ls.Stdout);
        Assert.Equal(3, tables.Count);
        var (hosts, devices, leases) = (tables[0], tables[1], tables[2]);
        Assert.Equal(view.Brokers[0].BrokerId, hosts.Column(0));
        Assert.Equal("up", hosts.Column(4));
        Assert.Equal("on", hosts.Column(5));
        Assert.Contains($"scheduler {up.SchedulerEndpoint} (leader)", ls.Stdout, StringComparison.Ordinal);
        Assert.Equal(view.Brokers[0].BrokerId, devices.Column(0));
        Assert.Equal("GpuPoolCPUdevice", devices.Column(2));
        Assert.Equal("cpu", devices.Column(3));
        Assert.Equal(view.Leases.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), devices.Column(9));
        Assert.NotEmpty(view.Leases);
        Assert.Equal(string.Concat(view.Leases.OrderBy(l => l.Created.ToDateTimeOffset()).Select(l => l.LeaseId)), leases.Column(0));
    }

    [Fact]
    public async Task A_capped_lease_says_so_in_lease_and_ls_and_its_record_keeps_the_mode()
    {
        await using var lease = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "lease", "--memory", "64MiB", "--share", "250", "--share-mode", "capped");

        Assert.True(lease.ExitCode == 0, $"exit code {lease.ExitCode}; stdout:\n{lease.Stdout}\nstderr:\n{lease.Stderr}");
        var id = SpectreTable.Parse(lease.Stdout)[0].Column(0);
        Assert.Equal("250capped", SpectreTable.Parse(lease.Stdout)[0].Column(7));
        using var client = UpProcessFixture.AdminClient(up.ConfigDir, up.SchedulerEndpoint);
        Assert.Equal(GpuPool.Protocol.V1.ShareMode.Capped, Assert.Single((await client.ListClusterAsync()).Leases, l => l.LeaseId == id).ShareMode);

        await using var ls = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "ls");
        Assert.True(ls.ExitCode == 0, $"exit code {ls.ExitCode}; stdout:\n{ls.Stdout}\nstderr:\n{ls.Stderr}");
        Assert.Contains("250 capped", ls.Stdout, StringComparison.Ordinal);
        Assert.Contains("device time", ls.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("lease", "--share-mode", "sometimes")]
    [InlineData("up", "--device-slots", "0")]
    [InlineData("broker", "--device-slots", "0")]
    [InlineData("lease", "--share", "0")]
    [InlineData("lease", "--share", "1001")]
    public async Task A_bad_share_or_slot_option_exits_non_zero_with_one_line_naming_it(string command, string option, string value)
    {
        await using var run = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, command, option, value);

        Assert.True(run.ExitCode != 0, $"exit code 0; stdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        var output = run.Stdout + run.Stderr;
        var error = Assert.Single(output.Split('\n'), l => l.Contains(value, StringComparison.Ordinal) && (l.Contains(option, StringComparison.Ordinal) || l.Contains("sometimes", StringComparison.Ordinal)));
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
        Assert.NotEmpty(error.Trim());
    }

    [Fact]
    public async Task Lease_with_a_memory_size_that_is_not_a_size_exits_non_zero_with_one_line_naming_the_option()
    {
        await using var lease = await CliProcess.RunAsync(up.ConfigDir, CommandTimeout, "lease", "--memory", "banana");

        Assert.True(lease.ExitCode != 0, $"exit code 0; stdout:\n{lease.Stdout}\nstderr:\n{lease.Stderr}");
        var output = lease.Stdout + lease.Stderr;
        var error = Assert.Single(output.Split('\n'), l => l.Contains("banana", StringComparison.Ordinal));
        Assert.Matches("^(error: )?--memory 'banana' is not a size: write it like 512MiB, 2GiB or 1048576$", error.Trim());
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_stops_on_SIGINT_exits_0_and_says_Stopped()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (process, _, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (process)
            {
                await process.InterruptAsync();

                Assert.True(await process.WaitForExitAsync(TimeSpan.FromSeconds(20)), $"gpupool up still runs 20 s after SIGINT; stdout:\n{process.Stdout}");
                Assert.Equal(0, process.ExitCode);
                Assert.Contains("Stopped.", process.Stdout, StringComparison.Ordinal);
                Assert.False(File.Exists(Path.Combine(configDir, "scheduler-endpoint")), "up left its scheduler-endpoint file behind");
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Up_with_insecure_serves_plaintext_says_so_and_ls_shows_it()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            await using var up = CliProcess.Start(configDir, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--insecure");
            await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C to stop.", StringComparison.Ordinal), TimeSpan.FromSeconds(60));
            Assert.Matches(@"scheduler\s+http://127\.0\.0\.1:\d+\s", up.Stdout);
            Assert.Contains("warning: TLS is off (--insecure): lease tokens, credentials and tensors cross the network readable", up.Stderr, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(configDir, "pki")), "up --insecure made certificates");

            await using var ls = await CliProcess.RunAsync(configDir, CommandTimeout, "ls");
            Assert.True(ls.ExitCode == 0, $"exit code {ls.ExitCode}; stdout:\n{ls.Stdout}\nstderr:\n{ls.Stderr}");
            Assert.Contains(", plaintext (--insecure)", ls.Stdout.Split('\n')[0], StringComparison.Ordinal);
            Assert.Equal("off", SpectreTable.Parse(ls.Stdout)[0].Column(5));
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Up_stops_promptly_on_SIGINT_while_a_client_holds_an_open_session()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (process, scheduler, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (process)
            {
                using var client = UpProcessFixture.AdminClient(configDir, scheduler);
                await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 16 << 20, ComputeShare = 100 });
                await using var session = await lease.OpenSessionAsync();
                await session.AllocAsync(1 << 20);

                await process.InterruptAsync();

                Assert.True(await process.WaitForExitAsync(TimeSpan.FromSeconds(10)), $"gpupool up still runs 10 s after SIGINT with a session open; stdout:\n{process.Stdout}");
                Assert.Equal(0, process.ExitCode);
                Assert.Contains("Stopped.", process.Stdout, StringComparison.Ordinal);
                var error = await Assert.ThrowsAsync<Protocol.Errors.GpuPoolException>(() => session.SynchronizeAsync().AsTask());
                Assert.True(error.Code is Protocol.V1.ErrorCode.LeaseEnded or Protocol.V1.ErrorCode.Unavailable, error.ToString());
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }
}
