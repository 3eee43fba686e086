using System.ComponentModel;
using System.Diagnostics;

namespace GpuPool.Ptx.Tests.Syntax;

/// <summary>
/// PTX that clang-14 writes from the sources in Cuda/: a class fixture with a temp folder of its own, deleted afterwards.
/// clang 14 looks for a CUDA installation laid out as NVIDIA ships it (bin/, include/, lib64/, nvvm/libdevice/); Debian's
/// toolkit spreads those over /usr, so the folder holds links that put them together. clang 14 knows CUDA up to 11.5
/// and would target PTX 6.x without its sync intrinsics, hence the +ptx75 feature.
/// </summary>
public sealed class ClangCuda : IDisposable
{
    private const string ToolkitRoot = "/usr/lib/nvidia-cuda-toolkit";

    private readonly string _directory = Directory.CreateTempSubdirectory("gpupool-clang-").FullName;
    private readonly Lazy<string> _cudaPath;

    public ClangCuda() => _cudaPath = new Lazy<string>(LayOutToolkit);

    /// <summary>The PTX text of Cuda/<paramref name="source"/> built for <paramref name="arch"/> with <paramref name="options"/>.</summary>
    public string Build(string source, string arch, params string[] options)
    {
        var output = Path.Combine(_directory, $"{Path.GetFileNameWithoutExtension(source)}-{arch}-{string.Join("", options).Replace('-', '_').Replace('/', '_')}.ptx");
        List<string> arguments =
        [
            "--cuda-device-only", "-S", $"--cuda-gpu-arch={arch}", "-nocudalib", $"--cuda-path={_cudaPath.Value}",
            "-Xclang", "-target-feature", "-Xclang", "+ptx75", "-Wno-unknown-cuda-version",
        ];
        arguments.AddRange(options);
        arguments.AddRange([Path.Combine(Nvcc.SourceDirectory, source), "-o", output]);
        var (exitCode, log) = Run("clang-14", arguments);
        Assert.True(exitCode == 0, $"clang-14 {string.Join(' ', arguments)} failed ({exitCode}):\n{log}");
        return File.ReadAllText(output);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string LayOutToolkit()
    {
        Assert.True(Directory.Exists(ToolkitRoot), $"the CUDA toolkit is not at {ToolkitRoot}: {Nvcc.InstallHint}.");
        var root = Directory.CreateDirectory(Path.Combine(_directory, "cuda")).FullName;
        Directory.CreateSymbolicLink(Path.Combine(root, "bin"), Path.Combine(ToolkitRoot, "bin"));
        Directory.CreateSymbolicLink(Path.Combine(root, "include"), "/usr/include");
        Directory.CreateSymbolicLink(Path.Combine(root, "lib64"), "/usr/lib/x86_64-linux-gnu");
        Directory.CreateDirectory(Path.Combine(root, "nvvm"));
        Directory.CreateSymbolicLink(Path.Combine(root, "nvvm", "libdevice"), Path.Combine(ToolkitRoot, "libdevice"));
        return root;
    }

    private static (int ExitCode, string Output) Run(string program, List<string> arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        arguments.ForEach(start.ArgumentList.Add);
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
            Assert.Fail($"{program} could not be run ({e.Message}): install it with `apt-get install clang-14`.");
            throw;
        }
    }
}
