using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Security;
using GpuPool.Protocol.Tokens;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// <c>gpupool ca init</c> and <c>ca issue</c> as an operator runs them, and daemons refused at start for want of the
/// right certificate: each bad input one sentence, exit code 2, nothing written.
/// </summary>
public sealed class CaCommandTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Init_makes_the_CA_once_issue_writes_certificates_of_it_and_bad_requests_are_refused_in_one_sentence()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        var pki = Path.Combine(configDir, "ca");
        try
        {
            await using (var early = await CliProcess.RunAsync(configDir, Timeout, "ca", "issue", "--pki", pki, "--tenant", "team-a"))
            {
                Assert.Equal(2, early.ExitCode);
                Assert.Contains($"there is no CA key at {Path.Combine(pki, "ca.key")}: make the pool's CA with `gpupool ca init`", Flat(early.Stdout), StringComparison.Ordinal);
            }

            await using (var init = await CliProcess.RunAsync(configDir, Timeout, "ca", "init", "--pki", pki, "--name", "it-pool"))
            {
                Assert.True(init.ExitCode == 0, init.Stdout + init.Stderr);
                Assert.Contains("made the pool's CA", init.Stdout, StringComparison.Ordinal);
            }

            var authority = PoolCertificates.Load(Path.Combine(pki, "ca.crt"));
            await using (var again = await CliProcess.RunAsync(configDir, Timeout, "ca", "init", "--pki", pki))
            {
                Assert.Equal(0, again.ExitCode);
                Assert.Contains("kept the pool's CA", again.Stdout, StringComparison.Ordinal);
                Assert.Equal(authority.Thumbprint, PoolCertificates.Load(Path.Combine(pki, "ca.crt")).Thumbprint);
            }

            var tenantPath = Path.Combine(configDir, "team-a.crt");
            await using (var tenant = await CliProcess.RunAsync(configDir, Timeout, "ca", "issue", "--pki", pki, "--tenant", "team-a", "--out", tenantPath))
            {
                Assert.True(tenant.ExitCode == 0, tenant.Stdout + tenant.Stderr);
            }

            var issued = PoolCertificates.Load(tenantPath, Path.ChangeExtension(tenantPath, ".key"));
            Assert.Equal(new PoolIdentity("team-a", PoolRole.Tenant), PoolIdentity.FromCertificate(issued));
            Assert.True(PoolCertificates.Verify(issued, authority, server: false, out var error), error);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.ChangeExtension(tenantPath, ".key")));
            }

            // An etcd member's certificate: a server's, naming the host it is dialled at.
            var storePath = Path.Combine(configDir, "etcd1.crt");
            await using (var store = await CliProcess.RunAsync(configDir, Timeout, "ca", "issue", "--pki", pki, "--store", "etcd1", "--host", "10.0.0.9", "--out", storePath))
            {
                Assert.True(store.ExitCode == 0, store.Stdout + store.Stderr);
                Assert.Contains("hosts 10.0.0.9", store.Stdout, StringComparison.Ordinal);
            }

            var member = PoolCertificates.Load(storePath, Path.ChangeExtension(storePath, ".key"));
            Assert.Equal(new PoolIdentity("etcd1", PoolRole.Store), PoolIdentity.FromCertificate(member));
            Assert.True(PoolCertificates.Verify(member, authority, server: true, out error), error);
            Assert.True(PoolCertificates.Verify(member, authority, server: false, out error), error);

            foreach (var (args, says) in new[]
            {
                (new[] { "--tenant", "a", "--admin", "b" }, "say whose certificate to issue with exactly one of --tenant, --admin, --scheduler, --broker or --store"),
                (new[] { "--tenant", "a", "--host", "10.0.0.1" }, "--host names a server's addresses: a tenant's or an admin's certificate has none"),
                (new[] { "--tenant", "a,O=gpupool admin" }, "'a,O=gpupool admin' cannot name a certificate's holder"),
            })
            {
                await using var refused = await CliProcess.RunAsync(configDir, Timeout, ["ca", "issue", "--pki", pki, .. args]);
                Assert.Equal(2, refused.ExitCode);
                Assert.Contains($"error: {says}", Flat(refused.Stdout), StringComparison.Ordinal);
            }

            Assert.Equal(["ca.crt", "ca.key"], Directory.GetFiles(pki).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_broker_without_its_certificate_or_with_a_tenants_is_refused_at_start_saying_what_to_make()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        using var pki = new TestPki();
        try
        {
            var keyPath = Path.Combine(configDir, "scheduler-public.pem");
            using (var key = LeaseToken.CreateKey())
            {
                await File.WriteAllTextAsync(keyPath, LeaseToken.ExportPublicPem(key));
            }

            string[] broker = ["broker", "--store", "embedded", "--port", "0", "--fast-path-port", "-1", "--scheduler-key", keyPath, "--backend", "cpu", "--device-memory", "64MiB"];
            await using (var bare = await CliProcess.RunAsync(configDir, Timeout, broker))
            {
                Assert.Equal(2, bare.ExitCode);
                Assert.Contains($"TLS is on and the pool's CA certificate (--ca) is not at {Path.Combine(configDir, "pki", "ca.crt")}: make the pool's CA with `gpupool ca init`", Flat(bare.Stdout), StringComparison.Ordinal);
            }

            var tenantCert = pki.WriteFiles("team-a", PoolRole.Tenant);
            await using (var wrong = await CliProcess.RunAsync(configDir, Timeout, [.. broker, "--ca", pki.CaPath, "--tls-cert", tenantCert, "--tls-key", Path.ChangeExtension(tenantCert, ".key")]))
            {
                Assert.Equal(2, wrong.ExitCode);
                Assert.Contains("the broker's own certificate cannot serve: the certificate of tenant team-a", Flat(wrong.Stdout), StringComparison.Ordinal);
                Assert.Contains("is not for a server", Flat(wrong.Stdout), StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    /// <summary>Console output with its line wrapping undone.</summary>
    private static string Flat(string text) => string.Join(" ", text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
