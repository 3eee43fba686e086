using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;

namespace GpuPool.Testing.Cuda;

/// <summary>
/// Module images that nvcc builds from the sources in Cuda/ during the test run: a class fixture, so each test class
/// gets a temp folder of its own, each output is built once on first use, and the folder is deleted afterwards.
/// A missing nvcc fails the test that needs it, naming the package; nothing is skipped.
/// </summary>
public sealed class Nvcc : IDisposable
{
    public const string InstallHint = "install it with `apt-get install nvidia-cuda-toolkit` (Debian contrib/non-free; CUDA 11.8 or later), or put nvcc on PATH";

    private static readonly Lazy<(string Nvcc, string? HostCompiler)> Tools = new(FindTools);

    private readonly string _directory = Directory.CreateTempSubdirectory("gpupool-nvcc-").FullName;
    private readonly ConcurrentDictionary<string, Lazy<string>> _outputs = new(StringComparer.Ordinal);

    /// <summary>Where a source named without a folder is: the test project's Cuda/ folder (an absolute path is taken as it is).</summary>
    public static string SourceDirectory => Path.Combine(AppContext.BaseDirectory, "Cuda");

    /// <summary>The bytes of <paramref name="output"/>, built from Cuda/<paramref name="source"/> with <paramref name="options"/> the first time it is asked for.</summary>
    public byte[] Build(string output, string source, params string[] options) => File.ReadAllBytes(PathOf(output, source, options));

    /// <summary>Where <paramref name="output"/> is, built as <see cref="Build"/> does.</summary>
    public string PathOf(string output, string source, params string[] options)
        => _outputs.GetOrAdd(output, _ => new Lazy<string>(() => Compile(output, source, options))).Value;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Compile(string output, string source, string[] options)
    {
        var (nvcc, hostCompiler) = Tools.Value;
        var path = Path.Combine(_directory, output);
        List<string> arguments = hostCompiler is null ? [] : ["-ccbin", hostCompiler];
        arguments.AddRange(options);
        arguments.AddRange([Path.Combine(SourceDirectory, source), "-o", path]);
        var (exitCode, log) = Run(nvcc, arguments);
        Assert.True(exitCode == 0, $"nvcc {string.Join(' ', arguments)} failed ({exitCode}):\n{log}");
        return path;
    }

    /// <summary>
    /// nvcc from PATH or /usr/bin, and clang-14 as its host compiler where there is one: CUDA 11.8's nvcc refuses the
    /// gcc 12 that Debian 12 ships.
    /// </summary>
    private static (string, string?) FindTools()
    {
        var nvcc = OnPath("nvcc") ?? (File.Exists("/usr/bin/nvcc") ? "/usr/bin/nvcc" : null);
        Assert.True(nvcc is not null, $"nvcc was not found on PATH or at /usr/bin/nvcc, and these tests build real module images with it: {InstallHint}.");
        return (nvcc, OnPath("clang-14"));
    }

    private static string? OnPath(string program)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, program))
            .FirstOrDefault(File.Exists);

    private static (int ExitCode, string Output) Run(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        try
        {
            using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"{program} did not finish within 2 minutes");
            }

            return (process.ExitCode, stdout.Result + stderr.Result);
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"{program} could not be run ({e.Message}): {InstallHint}.");
            throw;
        }
    }
}
