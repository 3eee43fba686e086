using System.ComponentModel;
using System.Diagnostics;

namespace GpuPool.Devices.Tests.Kernels;

/// <summary>The repository's native/kernels folder and the clang-14 toolchain the kernel tests build with.</summary>
internal static class NativeToolchain
{
    public const string InstallHint = "install it with `apt-get update && apt-get install -y clang-14` (as root), or run `./build.sh --target=Test`, which installs it";

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    public static string KernelsDirectory => Path.Combine(RepositoryRoot, "native", "kernels");

    public static string CheckedInPtxPath => Path.Combine(KernelsDirectory, "ptx", "gpupool_kernels.ptx");

    /// <summary>Fails the calling test (never skips it) when <paramref name="tool"/> cannot be run.</summary>
    public static void Require(string tool)
    {
        try
        {
            var (exitCode, output) = Run(tool, ["--version"], TimeSpan.FromSeconds(30));
            Assert.True(exitCode == 0, $"{tool} --version failed ({exitCode}): {output}");
        }
        catch (Win32Exception)
        {
            Assert.Fail($"{tool} is not installed, and the CUDA kernel tests need it: {InstallHint}.");
        }
    }

    /// <summary>Runs a program to completion and returns its exit code with stdout and stderr together.</summary>
    public static (int ExitCode, string Output) Run(string program, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} did not finish within {timeout.TotalSeconds} s");
        }

        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GpuPool.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no GpuPool.sln above {AppContext.BaseDirectory}");
    }
}
