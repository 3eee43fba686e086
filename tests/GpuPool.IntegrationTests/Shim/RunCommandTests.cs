using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>What `gpupool run` itself promises: the environment it gives the program, its exit code, the release.</summary>
public sealed class RunCommandTests(ShortLeasePoolFixture pool) : IClassFixture<ShortLeasePoolFixture>, IDisposable
{
    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-run-").FullName;

    [Fact]
    public async Task Exits_with_the_programs_exit_code_and_releases_the_lease()
    {
        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], "sh", "-c", "echo \"lease=$GPUPOOL_LEASE_ID\"; exit 7");

        Assert.True(run.ExitCode == 7, GpuPoolRun.Describe(run));
        var leaseId = run.Stdout.Split('\n').Single(l => l.StartsWith("lease=", StringComparison.Ordinal))["lease=".Length..];
        Assert.StartsWith("l-", leaseId, StringComparison.Ordinal);
        var cluster = await pool.Client.ListClusterAsync();
        Assert.DoesNotContain(cluster.Leases, l => l.LeaseId == leaseId);
    }

    [Fact]
    public async Task The_lease_is_asked_for_with_the_priority_class_ttl_and_wait_given_as_gpupool_lease_takes_them()
    {
        var run = await GpuPoolRun.RunAsync(pool, _configDir, ["--verbose", "--priority", "high", "--ttl", "7s", "--wait", "2s", "--model", "cpu"], "sh", "-c", "echo \"lease=$GPUPOOL_LEASE_ID\"");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Matches(@"gpupool run: lease l-[0-9a-f]+: 256 MiB, share 500 on \S+ device \d+, tenant default, class high, ttl 7 s", run.Stderr);
    }

    [Theory]
    [InlineData("--priority", "urgent", "priority class 'urgent'")]
    [InlineData("--wait", "soon", "--wait")]
    [InlineData("--ttl", "0s", "--ttl")]
    [InlineData("--model", "no-such-device", "no-such-device")]
    public async Task A_lease_option_that_cannot_be_met_is_one_sentence_and_the_program_never_starts(string option, string value, string named)
    {
        var run = await GpuPoolRun.RunAsync(pool, _configDir, [option, value], "sh", "-c", "echo started");

        Assert.NotEqual(0, run.ExitCode);
        Assert.DoesNotContain("started", run.Stdout, StringComparison.Ordinal);
        Assert.Contains(named, run.Stdout + run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stdout + run.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_program_finds_the_shim_as_libcuda_first_on_the_loader_path()
    {
        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], "sh", "-c",
            $"[ \"$(readlink -f \"${{LD_LIBRARY_PATH%%:*}}/libcuda.so.1\")\" = \"$(readlink -f '{ShimArtifacts.Shim}')\" ] && echo shim; " +
            "stat -c %a \"$GPUPOOL_TOKEN_FILE\"; test -s \"$GPUPOOL_TOKEN_FILE\" && echo token; echo \"$GPUPOOL_BROKER\"");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        var lines = run.Stdout.Split('\n');
        Assert.Equal("shim", lines[0]);
        Assert.Equal("600", lines[1]);
        Assert.Equal("token", lines[2]);
        Assert.Equal(pool.Broker.Endpoint, lines[3]);
    }

    [Fact]
    public async Task The_token_file_follows_the_leases_renewals()
    {
        // The pool's leases live 3 s and renew every second, each renewal with a fresh token.
        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], "sh", "-c",
            "a=$(cat \"$GPUPOOL_TOKEN_FILE\"); sleep 3; b=$(cat \"$GPUPOOL_TOKEN_FILE\"); [ -n \"$b\" ] && [ \"$a\" != \"$b\" ]");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
    }

    [Fact]
    public async Task A_program_that_starts_after_the_first_token_expired_still_opens_its_session()
    {
        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], "sh", "-c",
            $"sleep 4; exec '{ShimArtifacts.Program("vector_add")}' '{ShimArtifacts.KernelsPtx}'");

        Assert.True(run.ExitCode == 0, GpuPoolRun.Describe(run));
        Assert.Contains("PASS vector_add:", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_program_that_cannot_start_exits_127_and_releases_the_lease()
    {
        var before = (await pool.Client.ListClusterAsync()).Leases.Count;

        var run = await GpuPoolRun.RunAsync(pool, _configDir, [], "/nonexistent/program");

        Assert.True(run.ExitCode == 127, GpuPoolRun.Describe(run));
        Assert.Contains("cannot run /nonexistent/program", run.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, (await pool.Client.ListClusterAsync()).Leases.Count);
    }

    [Fact]
    public async Task Ctrl_C_is_passed_on_to_the_program_and_the_lease_is_released()
    {
        await using var run = GpuPoolRun.Start(pool, _configDir, [], ["sh", "-c", "trap 'echo interrupted; exit 42' INT; echo \"ready $GPUPOOL_LEASE_ID\"; while :; do sleep 0.1; done"]);
        var ready = await run.WaitForLineAsync(l => l.StartsWith("ready ", StringComparison.Ordinal), GpuPoolRun.Timeout);

        await run.InterruptAsync();

        Assert.True(await run.WaitForExitAsync(TimeSpan.FromSeconds(30)), $"gpupool run did not exit after Ctrl-C:\n{run.Stdout}\n{run.Stderr}");
        Assert.True(run.ExitCode == 42, GpuPoolRun.Describe(run));
        Assert.Contains("interrupted", run.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain((await pool.Client.ListClusterAsync()).Leases, l => l.LeaseId == ready["ready ".Length..]);
    }

    [Fact]
    public async Task A_missing_shim_is_one_sentence_naming_the_command_that_builds_it()
    {
        var run = GpuPoolRun.Start(pool, _configDir, [], ["sh", "-c", "exit 0"], new Dictionary<string, string?> { ["GPUPOOL_SHIM"] = "/nonexistent/libgpupool-cuda.so" });
        await using var _ = run;
        Assert.True(await run.WaitForExitAsync(GpuPoolRun.Timeout));

        Assert.Equal(1, run.ExitCode);
        Assert.Equal("error: the libcuda shim (libgpupool-cuda.so) is not built: run `./build.sh --target=Shim` first (or set GPUPOOL_SHIM to its path).\n", run.Stderr);
    }

    public void Dispose() => Directory.Delete(_configDir, recursive: true);
}
