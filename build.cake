// GpuPool build script (Cake 7). Run through ./build.sh, for example ./build.sh --target=Test.
var target = Argument("target", "Test");
var configuration = Argument("configuration", "Release");
var solution = "./GpuPool.sln";

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

// Every test project of the solution, against real servers and child processes. A hang is
// reported with a dump instead of eating CI's time.
Task("Test")
    .IsDependentOn("Build")
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

Task("Default").IsDependentOn("Test");

RunTarget(target);
