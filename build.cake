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

// Every test project of the solution, against real servers and child processes. A hang is
// reported with a dump instead of eating CI's time.
Task("Test")
    .IsDependentOn("Build")
    .IsDependentOn("Clang")
    .IsDependentOn("EnsureEtcd")
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
