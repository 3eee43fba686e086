using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// The store's TLS and user options as an operator types them: each mistake is one sentence naming the option, before
/// anything starts. Real child processes; etcd with TLS and users is EtcdSecurityTests' and MultiHostTests'.
/// </summary>
public sealed class StoreOptionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("--store-user gpupool was given without a password: put it in $GPUPOOL_STORE_PASSWORD or a file named by --store-password-file", "scheduler", "--store", "etcd://127.0.0.1:1", "--insecure", "--store-user", "gpupool")]
    [InlineData("--store-password-file names /nonexistent/password, which does not exist", "broker", "--store", "etcd://127.0.0.1:1", "--insecure", "--scheduler-key", "/nonexistent/key.pem", "--store-user", "gpupool", "--store-password-file", "/nonexistent/password")]
    [InlineData("--scheduler-key names /nonexistent/key.pem, which does not exist: copy the scheduler's public key there (gpupool scheduler export-key --public writes it)", "broker", "--store", "etcd://127.0.0.1:1", "--insecure", "--scheduler-key", "/nonexistent/key.pem")]
    [InlineData("--store-password-file was given without --store-user", "scheduler", "--store", "etcd://127.0.0.1:1", "--insecure", "--store-password-file", "/etc/hostname")]
    [InlineData("--store-key was given without --store-cert", "scheduler", "--store", "etcds://127.0.0.1:1", "--insecure", "--store-key", "/etc/hostname")]
    [InlineData("store 'embedded' is not etcd: TLS options and a user for the store (--store-ca, --store-cert, --store-user) are for etcd:// and etcds:// only", "scheduler", "--store", "embedded", "--insecure", "--store-user", "gpupool", "--store-password-file", "/etc/hostname")]
    public async Task A_store_option_that_cannot_work_is_refused_with_one_sentence(string says, params string[] args)
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            await using var run = await CliProcess.RunAsync(configDir, Timeout, args);

            Assert.True(run.ExitCode == 2, run.Stdout + run.Stderr);
            var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.StartsWith($"error: {says}", lines[0], StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }
}
