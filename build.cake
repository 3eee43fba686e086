// GpuPool build script (Cake 7). Run through ./build.sh, for example ./build.sh --target=Test.
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var solution = "./GpuPool.sln";

// Installs a Debian package when its command is missing (CI and developer machines run as root), running
// apt-get update once per build. True when the command is there afterwards.
var aptUpdated = false;
bool EnsureDebianPackage(string command, string package)
{
    bool Present() => StartProcess("sh", new ProcessSettings { Arguments = $"-c \"command -v {command}\"", RedirectStandardOutput = true }) == 0;
    if (Present())
    {
        return true;
    }

    if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"[ $(id -u) -eq 0 ]\"" }) != 0)
    {
        Warning($"{command} is missing and installing {package} needs root: apt-get install -y {package}");
        return false;
    }

    Information($"{command} is missing: installing {package} from Debian's packages");
    aptUpdated = aptUpdated || StartProcess("apt-get", new ProcessSettings { Arguments = "update" }) == 0;
    StartProcess("sh", new ProcessSettings { Arguments = $"-c \"DEBIAN_FRONTEND=noninteractive apt-get install -y {package}\"" });
    return Present();
}

Task("Clean")
    .Does(() =>
{
    DotNetClean(solution, new DotNetCleanSettings { Configuration = configuration });
    CleanDirectories("./artifacts");
});

Task("Restore")
    .Does(() =>
{
    DotNetRestore(solution);
});

Task("Build")
    .IsDependentOn("Restore")
    .Does(() =>
{
    DotNetBuild(solution, new DotNetBuildSettings
    {
        Configuration = configuration,
        NoRestore = true,
    });
});

// The etcd driver's tests start real etcd members; etcd comes from Debian's etcd-server when missing.
Task("EnsureEtcd")
    .Does(() =>
{
    if (!EnsureDebianPackage("etcd", "etcd-server"))
    {
        Warning("etcd is missing and could not be installed: the etcd tests will fail and say how to install it.");
    }
});

// The libcuda shim, published with NativeAOT as artifacts/shim/libgpupool-cuda.so (what `gpupool run` loads as
// libcuda.so.1), plus artifacts/shim/link/libcuda.so for linking C programs with -lcuda. NativeAOT links with
// clang, or gcc where clang is missing; when neither is there, clang comes from Debian's packages (as root).
Task("Shim")
    .Does(() =>
{
    if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"command -v clang || command -v gcc\"", RedirectStandardOutput = true }) != 0)
    {
        if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"[ $(id -u) -eq 0 ] && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y clang\"" }) != 0)
        {
            throw new Exception("NativeAOT needs clang or gcc to link the shim, and neither could be installed: apt-get install clang (as root).");
        }
    }

    DotNetPublish("./src/GpuPool.Shim/GpuPool.Shim.csproj", new DotNetPublishSettings
    {
        Configuration = configuration,
        Runtime = "linux-x64",
        OutputDirectory = "./artifacts/shim",
    });
    EnsureDirectoryExists("./artifacts/shim/link");
    if (StartProcess("ln", new ProcessSettings { Arguments = "-sfn ../libgpupool-cuda.so artifacts/shim/link/libcuda.so" }) != 0)
    {
        throw new Exception("could not link artifacts/shim/link/libcuda.so to the shim");
    }
});

// The C samples (native/samples) and the shim's test programs (tests/GpuPool.IntegrationTests/Shim/native),
// built with gcc against native/include and linked with -lcuda against the shim: unmodified CUDA programs.
Task("Samples")
    .IsDependentOn("Shim")
    .Does(() =>
{
    EnsureDirectoryExists("./artifacts/samples");
    var programs = GetFiles("./native/samples/*.c").Concat(GetFiles("./tests/GpuPool.IntegrationTests/Shim/native/*.c"));
    foreach (var source in programs)
    {
        var output = "./artifacts/samples/" + source.GetFilenameWithoutExtension();
        var args = $"-std=c11 -O2 -Wall -Wextra -Werror -Inative/include -Inative/samples -o {output} {source.FullPath} -Lartifacts/shim/link -lcuda -lm -lpthread";
        if (StartProcess("gcc", new ProcessSettings { Arguments = args }) != 0)
        {
            throw new Exception($"gcc failed on {source.GetFilename()}");
        }
    }
});

// Every test project of the solution, against real servers and child processes. A hang is
// reported with a dump instead of eating CI's time.
Task("Test")
    .IsDependentOn("Build")
    .IsDependentOn("Clang")
    .IsDependentOn("EnsureEtcd")
    .IsDependentOn("Samples")
    .Does(() =>
{
    var failures = new List<string>();
    foreach (var project in GetFiles("./tests/*/*.csproj"))
    {
        try
        {
            DotNetTest(project.FullPath, new DotNetTestSettings
            {
                Configuration = configuration,
                NoBuild = true,
                NoRestore = true,
                Loggers = { "console;verbosity=normal", $"trx;LogFileName={project.GetFilenameWithoutExtension()}.trx" },
                ResultsDirectory = "./artifacts/test-results",
                ArgumentCustomization = args => args.Append("--blame-hang").Append("--blame-hang-timeout").Append("5m"),
            });
        }
        catch (Exception ex)
        {
            failures.Add($"{project.GetFilenameWithoutExtension()}: {ex.Message}");
        }
    }

    if (failures.Count > 0)
    {
        throw new Exception("Test projects failed:\n" + string.Join("\n", failures));
    }
});

// The README's main job, in its short form.
Task("Demo")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./src/GpuPool.Cli/GpuPool.Cli.csproj", new ProcessArgumentBuilder().Append("demo").Append("--quick"), new DotNetRunSettings
    {
        Configuration = configuration,
        NoBuild = true,
    });
});

// The wire benchmark against its anchors (iperf3, raw socket echo, plain gRPC) in one run; iperf3 comes
// from Debian's packages when it is missing and we are root.
Task("Perf")
    .IsDependentOn("Build")
    .Does(() =>
{
    if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"command -v iperf3\"", RedirectStandardOutput = true }) != 0)
    {
        if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"[ $(id -u) -eq 0 ] && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y iperf3\"" }) != 0)
        {
            Warning("iperf3 is missing and could not be installed; its anchor will be recorded as missing.");
        }
    }

    DotNetRun("./perf/GpuPool.Perf/GpuPool.Perf.csproj", new ProcessArgumentBuilder().Append("--quick"), new DotNetRunSettings
    {
        Configuration = "Release",
    });
});

// The scheduler's placement benchmark on a simulated 10,000-host pool, in memory (about 20 s with --quick).
Task("PerfPlacement")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./perf/GpuPool.Perf.Scheduler/GpuPool.Perf.Scheduler.csproj", new ProcessArgumentBuilder().Append("--quick"), new DotNetRunSettings
    {
        Configuration = "Release",
    });
});

// Kernel micro-benchmarks against their naive anchors (BenchmarkDotNet; takes minutes).
Task("PerfKernels")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./perf/GpuPool.Perf.Kernels/GpuPool.Perf.Kernels.csproj", new ProcessArgumentBuilder().Append("--filter").Append("*"), new DotNetRunSettings
    {
        Configuration = "Release",
    });
});

// clang-14, which the CUDA kernel tests use to rebuild native/kernels' PTX and to run the kernels' source on the
// host (no CUDA SDK or GPU needed).
Task("Clang")
    .Does(() =>
{
    if (!EnsureDebianPackage("clang-14", "clang-14"))
    {
        throw new Exception("clang-14 is missing and could not be installed; install it with `apt-get update && apt-get install -y clang-14` as root.");
    }
});

Task("Default").IsDependentOn("Test");

RunTarget(target);
