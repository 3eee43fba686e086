using System.Diagnostics;
using System.Text.RegularExpressions;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Cli;

/// <summary>
/// `gpupool up --backend cuda` on the mock driver (tests/GpuPool.Devices.CudaMockTests/native/mock_cuda.c): the broker,
/// the cuda backend and the SDK together, with NVML telemetry reaching `gpupool ls`. What the mock cannot show (real
/// kernels, real timing) is for tests/GpuPool.Devices.GpuTests on a GPU.
/// </summary>
public sealed partial class CudaBackendEndToEndTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Up_on_the_cuda_backend_serves_a_lease_and_ls_shows_the_gpus_utilization_and_temperature()
    {
        var configDir = Directory.CreateTempSubdirectory("gpupool-it-").FullName;
        try
        {
            var driver = BuildMockDriver(configDir);
            var environment = new Dictionary<string, string?> { ["GPUPOOL_CUDA_DRIVER"] = driver, ["GPUPOOL_NVML_LIBRARY"] = driver };
            await using var up = CliProcess.Start(configDir, environment, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--backend", "cuda");
            await up.WaitForLineAsync(l => l.StartsWith("Press Ctrl-C to stop.", StringComparison.Ordinal), Timeout);
            var scheduler = UpProcessFixture.Endpoint().Match(await up.WaitForLineAsync(l => l.StartsWith("scheduler ", StringComparison.Ordinal), TimeSpan.Zero)).Value;
            Assert.Contains("backend cuda backend (1 GPU, driver for CUDA 12.4), as asked", Spaces().Replace(up.Stdout, " "), StringComparison.Ordinal);
            Assert.Contains("GpuPool Mock GPU (cuda, 6 GiB", up.Stdout, StringComparison.Ordinal);

            using var client = UpProcessFixture.AdminClient(configDir, scheduler);
            await using (var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 64 << 20, ComputeShare = 500 }))
            await using (var session = await lease.OpenSessionAsync())
            {
                // Larger than the broker's reply chunks and the backend's staging buffers, and not a multiple of either.
                var data = new byte[(9 << 20) + 5];
                new Random(7).NextBytes(data);
                var pointer = await session.AllocAsync((ulong)data.Length);
                await session.CopyToDeviceAsync(pointer, data);
                // Striped over the session's two TCP connections and sent straight from the backend's staging
                // buffers, whose slots the stream reuses piece after piece: a slot reposted while the writer was
                // still finishing the last send of it once cut the connection, so the copy runs several times.
                for (var round = 0; round < 8; round++)
                {
                    var back = new byte[data.Length];
                    await session.CopyToHostAsync(pointer, back);
                    Assert.True(data.AsSpan().SequenceEqual(back), $"round {round}: the copy to the host differs");
                }

                var y = await session.AllocAsync(4096);
                var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");
                await session.LaunchAsync(fill, new Dim3(4), new Dim3(256), new KernelArgs().U64(1024).F32(2.5f).Ptr(y));
                Assert.All(await session.CopyToHostAsync<float>(y, 1024), v => Assert.Equal(2.5f, v));

                await session.LaunchAsync(fill, new Dim3(4), new Dim3(256), new KernelArgs().U64(1025).F32(1f).Ptr(y));
                var error = await Assert.ThrowsAsync<Protocol.Errors.GpuPoolException>(() => session.SynchronizeAsync().AsTask());
                Assert.Equal(Protocol.V1.ErrorCode.InvalidAddress, error.Code);
            }

            // The broker's heartbeat carries NVML's readings to the store; ls shows the latest.
            await using var ls = await CliProcess.RunAsync(configDir, Timeout, "ls");
            Assert.True(ls.ExitCode == 0, $"ls failed: {ls.Stdout}{ls.Stderr}");
            var devices = SpectreTable.Parse(ls.Stdout)[1];
            Assert.Equal("GpuPoolMockGPU", devices.Column(2));
            Assert.Equal("cuda", devices.Column(3));
            Assert.Equal("42%", devices.Column(10));
            Assert.Equal("55°C", devices.Column(11));

            await up.InterruptAsync();
            Assert.True(await up.WaitForExitAsync(TimeSpan.FromSeconds(20)), "gpupool up did not stop on SIGINT");
            Assert.Equal(0, up.ExitCode);
        }
        finally
        {
            Directory.Delete(configDir, recursive: true);
        }
    }

    private static string BuildMockDriver(string folder)
    {
        var library = Path.Combine(folder, "libcuda.so.1");
        var source = Path.Combine(AppContext.BaseDirectory, "native", "mock_cuda.c");
        using var gcc = Process.Start(new ProcessStartInfo("gcc", ["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-pthread", "-o", library, source])
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        var errors = gcc.StandardError.ReadToEnd();
        gcc.WaitForExit();
        Assert.True(gcc.ExitCode == 0, $"gcc could not build the mock driver (apt-get install -y gcc): {errors}");
        return library;
    }

    [GeneratedRegex(@"\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Spaces();
}
