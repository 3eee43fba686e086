using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary><c>gpupool tenant add|ls|revoke</c> against a real <c>gpupool up</c>, a tenant leasing with its token, and the audit lines up writes.</summary>
public sealed class TenantCommandTests
{
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_token_from_tenant_add_leases_as_its_tenant_shows_in_ls_and_is_refused_once_revoked_with_audit_lines()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, _, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (up)
            {
                await using var add = await CliProcess.RunAsync(configDir, CommandTimeout, "tenant", "add", "team-a");
                Assert.True(add.ExitCode == 0, add.Stdout + add.Stderr);
                var token = Assert.Single(add.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
                Assert.StartsWith("gpt1.", token, StringComparison.Ordinal);

                var asTeamA = new Dictionary<string, string?> { ["GPUPOOL_TENANT_TOKEN"] = token };
                await using (var lease = await RunAsync(configDir, asTeamA, "lease", "--memory", "16MiB", "--share", "10"))
                {
                    Assert.True(lease.ExitCode == 0, lease.Stdout + lease.Stderr);
                    Assert.Equal("team-a", SpectreTable.Parse(lease.Stdout)[0].Column(1));
                }

                await using var other = await RunAsync(configDir, asTeamA, "lease", "--tenant", "team-b", "--memory", "16MiB", "--share", "10");
                Assert.NotEqual(0, other.ExitCode);
                Assert.Contains("tenant team-a's credential cannot allocate for tenant team-b", other.Stdout + other.Stderr, StringComparison.Ordinal);

                await using var ls = await CliProcess.RunAsync(configDir, CommandTimeout, "tenant", "ls");
                Assert.True(ls.ExitCode == 0, ls.Stdout + ls.Stderr);
                var row = Assert.Single(SpectreTable.Parse(ls.Stdout));
                Assert.Equal("team-a", row.Column(0));
                var id = row.Column(1);
                Assert.StartsWith("tk-", id, StringComparison.Ordinal);
                Assert.Equal("tenant", row.Column(2));
                Assert.DoesNotContain(token, ls.Stdout, StringComparison.Ordinal);

                await using var notAdmin = await RunAsync(configDir, asTeamA, "tenant", "ls", "--admin-token", token);
                Assert.NotEqual(0, notAdmin.ExitCode);
                Assert.Contains("that needs the admin role", notAdmin.Stdout + notAdmin.Stderr, StringComparison.Ordinal);

                await using var revoke = await CliProcess.RunAsync(configDir, CommandTimeout, "tenant", "revoke", "team-a", "--token", id);
                Assert.True(revoke.ExitCode == 0, revoke.Stdout + revoke.Stderr);
                Assert.Contains($"revoked {id} of team-a", revoke.Stdout, StringComparison.Ordinal);

                await using var refused = await RunAsync(configDir, asTeamA, "lease", "--memory", "16MiB", "--share", "10");
                Assert.NotEqual(0, refused.ExitCode);
                Assert.Contains($"tenant token {id} of tenant team-a is revoked", refused.Stdout + refused.Stderr, StringComparison.Ordinal);

                await using var unknown = await CliProcess.RunAsync(configDir, CommandTimeout, "tenant", "revoke", "team-a", "--token", id);
                Assert.NotEqual(0, unknown.ExitCode);
                Assert.Contains($"tenant team-a has no token {id}", unknown.Stdout + unknown.Stderr, StringComparison.Ordinal);

                // The audit: who changed what, from where; each refused credential and access with its reason.
                await Poll.UntilAsync(() => up.Stderr.Contains("Audit: refused a credential", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "the refusal is logged");
                var audit = up.Stderr.Split('\n').Where(l => l.Contains("Audit:", StringComparison.Ordinal)).ToArray();
                Assert.Contains(audit, l => l.Contains($"Audit: admin admin (admin token) from 127.0.0.1: added a token for tenant team-a: {id}", StringComparison.Ordinal));
                Assert.Contains(audit, l => l.Contains($"Audit: admin admin (admin token) from 127.0.0.1: revoked tenant team-a's token {id}", StringComparison.Ordinal));
                Assert.Contains(audit, l => l.Contains("Audit: refused tenant team-a (tenant token", StringComparison.Ordinal) && l.Contains("cannot allocate for tenant team-b", StringComparison.Ordinal));
                Assert.Contains(audit, l => l.Contains($"Audit: refused a credential from 127.0.0.1: tenant token {id} of tenant team-a is revoked", StringComparison.Ordinal));

                await up.InterruptAsync();
                Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop");
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Tenant_commands_refuse_bad_names_with_one_sentence()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var (up, _, _) = await UpProcessFixture.StartUpAsync(configDir);
            await using (up)
            {
                await using var add = await CliProcess.RunAsync(configDir, CommandTimeout, "tenant", "add", "no/slash");
                Assert.NotEqual(0, add.ExitCode);
                Assert.Contains("tenant 'no/slash' must be 1-64 letters, digits, '-', '_' or '.'", add.Stdout + add.Stderr, StringComparison.Ordinal);

                await up.InterruptAsync();
                Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop");
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    private static async Task<CliProcess> RunAsync(string configDir, IReadOnlyDictionary<string, string?> environment, params string[] args)
    {
        var process = CliProcess.Start(configDir, environment, args);
        Assert.True(await process.WaitForExitAsync(CommandTimeout), $"gpupool {string.Join(' ', args)} did not exit");
        return process;
    }
}
