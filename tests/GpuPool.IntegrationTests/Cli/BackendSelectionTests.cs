using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// `--backend cuda` and `--backend auto` where the cuda backend cannot start, as a user sees them: real child processes.
/// Most tests point GPUPOOL_CUDA_DRIVER at a driver library that does not exist, so they mean the same on a machine
/// with a GPU; the one that relies on this machine having no NVIDIA driver is skipped where it has one.
/// </summary>
public sealed partial class BackendSelectionTests
{
    private const string MissingDriver = "/nonexistent/libcuda.so.1";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly Dictionary<string, string?> NoDriver = new() { ["GPUPOOL_CUDA_DRIVER"] = MissingDriver };

    [Fact]
    public async Task Up_with_backend_cuda_and_no_driver_exits_non_zero_with_one_line_naming_the_problem()
    {
        await using var run = await RunAsync(NoDriver, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--backend", "cuda");

        Assert.True(run.ExitCode != 0, $"gpupool up --backend cuda exited 0 without a driver; stdout:\n{run.Stdout}");
        var output = run.Stdout + run.Stderr;
        var line = Assert.Single(output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Equal($"error: --backend cuda cannot start: no NVIDIA driver: {MissingDriver} could not be loaded (cannot open shared object file: No such file or directory)", line);
    }

    [Fact]
    public async Task Up_with_backend_auto_and_no_driver_runs_on_the_cpu_backend_and_says_why()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            await using var up = CliProcess.Start(configDir, NoDriver, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--backend", "auto");
            await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C to stop.", StringComparison.Ordinal), Timeout);

            var text = Spaces().Replace(up.Stdout, " ");
            Assert.Contains($"backend cpu backend, because the cuda backend cannot start: no NVIDIA driver: {MissingDriver} could not be loaded (cannot open shared object file: No such file or directory)", text, StringComparison.Ordinal);
            Assert.Contains("(cpu, ", text, StringComparison.Ordinal);

            await up.InterruptAsync();
            Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop on SIGINT");
            Assert.Equal(0, up.ExitCode);
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [Fact]
    public async Task Broker_with_backend_cuda_and_no_driver_exits_non_zero_with_the_same_sentence()
    {
        await using var run = await RunAsync(NoDriver, "broker", "--store", "embedded", "--port", "0", "--fast-path-port", "-1", "--scheduler-key", "/nonexistent/scheduler.pem", "--backend", "cuda");

        Assert.True(run.ExitCode != 0, $"gpupool broker --backend cuda exited 0 without a driver; stdout:\n{run.Stdout}");
        var line = Assert.Single((run.Stdout + run.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.StartsWith($"error: --backend cuda cannot start: no NVIDIA driver: {MissingDriver} could not be loaded (", line, StringComparison.Ordinal);
    }

    [FactWithoutNvidiaDriver]
    public async Task Up_with_backend_cuda_on_this_machine_without_a_driver_names_libcuda()
    {
        await using var run = await RunAsync(new Dictionary<string, string?> { ["GPUPOOL_CUDA_DRIVER"] = null }, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--backend", "cuda");

        Assert.True(run.ExitCode != 0, $"gpupool up --backend cuda exited 0; stdout:\n{run.Stdout}");
        var line = Assert.Single((run.Stdout + run.Stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Equal("error: --backend cuda cannot start: no NVIDIA driver: libcuda.so.1 could not be loaded (cannot open shared object file: No such file or directory)", line);
    }

    private static async Task<CliProcess> RunAsync(IReadOnlyDictionary<string, string?> environment, params string[] args)
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        var cli = CliProcess.Start(configDir, environment, args);
        try
        {
            Assert.True(await cli.WaitForExitAsync(Timeout), $"gpupool {string.Join(' ', args)} still runs after {Timeout.TotalSeconds:0} s; stdout:\n{cli.Stdout}");
            return cli;
        }
        catch
        {
            await cli.DisposeAsync();
            throw;
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    [GeneratedRegex(@"\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Spaces();
}

/// <summary>A fact about a machine with no NVIDIA driver; skipped (not passed) where libcuda.so.1 loads.</summary>
public sealed class FactWithoutNvidiaDriverAttribute : FactAttribute
{
    public FactWithoutNvidiaDriverAttribute()
    {
        if (NativeLibrary.TryLoad("libcuda.so.1", out var handle))
        {
            NativeLibrary.Free(handle);
            Skip = "this machine has an NVIDIA driver (libcuda.so.1 loads), so it cannot show the no-driver message";
        }
    }
}
