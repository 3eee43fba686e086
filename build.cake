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

// The CUDA 11.8 toolkit (nvcc, cudart, cuBLAS, cuFFT), NVIDIA's samples and pycuda come from Debian's contrib and
// non-free sections, which a stock bookworm image does not list: as root, the task adds them (same mirror as the
// main section) and installs the packages when nvcc is missing. Without root it says what to run; the CUDA samples'
// tests then fail saying the same.
const string CudaPackages = "nvidia-cuda-toolkit nvidia-cuda-samples python3-pycuda";
const string ContribSources = "/etc/apt/sources.list.d/gpupool-contrib.sources";

// The deb822 stanza for contrib and non-free, on the mirror the first entry of debian.sources names.
string ContribSourcesText()
{
    var mirror = "http://deb.debian.org/debian";
    var debianSources = "/etc/apt/sources.list.d/debian.sources";
    if (System.IO.File.Exists(debianSources))
    {
        var uris = System.IO.File.ReadLines(debianSources).Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("URIs:", StringComparison.Ordinal));
        var first = uris?.Substring("URIs:".Length).Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        if (!string.IsNullOrEmpty(first))
        {
            mirror = first;
        }
    }

    return "Types: deb\n"
        + $"URIs: {mirror}\n"
        + "Suites: bookworm bookworm-updates\n"
        + "Components: contrib non-free\n"
        + "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
}

bool CommandExists(string command)
    => StartProcess("sh", new ProcessSettings { Arguments = $"-c \"command -v {command}\"", RedirectStandardOutput = true }) == 0;

Task("CudaToolkit")
    .Does(() =>
{
    if (CommandExists("nvcc"))
    {
        return;
    }

    var install = $"DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {CudaPackages}";
    if (StartProcess("sh", new ProcessSettings { Arguments = "-c \"[ $(id -u) -eq 0 ]\"" }) != 0)
    {
        Warning($"nvcc is missing and installing the CUDA toolkit needs root: write {ContribSources} with Debian's contrib and non-free sections "
            + $"(see build.cake's ContribSourcesText), then `apt-get update && {install}`. The CUDA samples' tests fail until then.");
        return;
    }

    var text = ContribSourcesText();
    if (!System.IO.File.Exists(ContribSources) || System.IO.File.ReadAllText(ContribSources) != text)
    {
        Information($"nvcc is missing: adding Debian's contrib and non-free sections in {ContribSources}");
        System.IO.File.WriteAllText(ContribSources, text);
    }

    Information($"installing {CudaPackages} from Debian's packages");
    if (StartProcess("apt-get", new ProcessSettings { Arguments = "update" }) != 0
        || StartProcess("sh", new ProcessSettings { Arguments = $"-c \"{install}\"" }) != 0
        || !CommandExists("nvcc"))
    {
        throw new Exception($"the CUDA toolkit could not be installed: `apt-get update && {install}` failed (as root, with {ContribSources} in place).");
    }
});

// One output of the CudaSamples task: a program (or, with Kind -fatbin or -ptx, a kernel module a program loads at
// run time) compiled by nvcc from sources in one of NVIDIA's sample folders.
record CudaSampleBuild(string Output, string Folder, string[] Sources, string Flags = "", string Kind = "");

// NVIDIA's CUDA 11.8 samples as their Makefiles build them, for one architecture and its PTX. Programs that call the
// driver API link the toolkit's stub libcuda.so (SONAME libcuda.so.1: at run time the loader finds the shim under
// that name, or a real driver); ptxjit, vectorAddDrv and matrixMulDrv load their module from the working directory
// under the name their Makefile gives it.
const string CudaExamples = "/usr/share/doc/nvidia-cuda-toolkit/examples";
const string StubLibcuda = "/usr/lib/x86_64-linux-gnu/stubs/libcuda.so";
var cudaSampleBuilds = new[]
{
    new CudaSampleBuild("deviceQuery", "1_Utilities/deviceQuery", new[] { "deviceQuery.cpp" }),
    new CudaSampleBuild("deviceQueryDrv", "1_Utilities/deviceQueryDrv", new[] { "deviceQueryDrv.cpp" }, StubLibcuda),
    new CudaSampleBuild("bandwidthTest", "1_Utilities/bandwidthTest", new[] { "bandwidthTest.cu" }),
    new CudaSampleBuild("vectorAdd", "0_Introduction/vectorAdd", new[] { "vectorAdd.cu" }),
    new CudaSampleBuild("vectorAdd_shared", "0_Introduction/vectorAdd", new[] { "vectorAdd.cu" }, "-cudart shared"),
    new CudaSampleBuild("vectorAddDrv", "0_Introduction/vectorAddDrv", new[] { "vectorAddDrv.cpp" }, StubLibcuda),
    new CudaSampleBuild("vectorAdd_kernel64.fatbin", "0_Introduction/vectorAddDrv", new[] { "vectorAdd_kernel.cu" }, Kind: "-fatbin"),
    new CudaSampleBuild("matrixMul", "0_Introduction/matrixMul", new[] { "matrixMul.cu" }),
    new CudaSampleBuild("matrixMulDrv", "0_Introduction/matrixMulDrv", new[] { "matrixMulDrv.cpp" }, StubLibcuda),
    new CudaSampleBuild("matrixMul_kernel64.fatbin", "0_Introduction/matrixMulDrv", new[] { "matrixMul_kernel.cu" }, Kind: "-fatbin"),
    new CudaSampleBuild("asyncAPI", "0_Introduction/asyncAPI", new[] { "asyncAPI.cu" }),
    new CudaSampleBuild("simpleStreams", "0_Introduction/simpleStreams", new[] { "simpleStreams.cu" }),
    new CudaSampleBuild("clock", "0_Introduction/clock", new[] { "clock.cu" }),
    new CudaSampleBuild("simpleAtomicIntrinsics", "0_Introduction/simpleAtomicIntrinsics", new[] { "simpleAtomicIntrinsics.cu", "simpleAtomicIntrinsics_cpu.cpp" }),
    new CudaSampleBuild("simpleTemplates", "0_Introduction/simpleTemplates", new[] { "simpleTemplates.cu" }),
    new CudaSampleBuild("cppIntegration", "0_Introduction/cppIntegration", new[] { "cppIntegration.cu", "cppIntegration_gold.cpp", "main.cpp" }),
    new CudaSampleBuild("simpleCallback", "0_Introduction/simpleCallback", new[] { "multithreading.cpp", "simpleCallback.cu" }),
    new CudaSampleBuild("simpleOccupancy", "0_Introduction/simpleOccupancy", new[] { "simpleOccupancy.cu" }),
    new CudaSampleBuild("ptxjit", "3_CUDA_Features/ptxjit", new[] { "ptxjit.cpp" }, StubLibcuda),
    new CudaSampleBuild("ptxjit_kernel64.ptx", "3_CUDA_Features/ptxjit", new[] { "ptxjit_kernel.cu" }, Kind: "-ptx"),
    new CudaSampleBuild("simpleZeroCopy", "0_Introduction/simpleZeroCopy", new[] { "simpleZeroCopy.cu" }),
    new CudaSampleBuild("simpleCUBLAS", "4_CUDA_Libraries/simpleCUBLAS", new[] { "simpleCUBLAS.cpp" }, "-lcublas"),
    new CudaSampleBuild("matrixMulCUBLAS", "4_CUDA_Libraries/matrixMulCUBLAS", new[] { "matrixMulCUBLAS.cpp" }, "-lcublas"),
    new CudaSampleBuild("simpleCUFFT", "4_CUDA_Libraries/simpleCUFFT", new[] { "simpleCUFFT.cu" }, "-lcufft"),
};

// NVIDIA's samples compiled with nvcc into artifacts/cuda-samples (tests/GpuPool.IntegrationTests/Shim/CudaSamplesTests
// runs them through `gpupool run`, with the shim and the C samples this task depends on). nvcc finds no g++ it supports
// on bookworm, so clang-14 is its host compiler. An output newer than its sources is kept (from clean, one nvcc at a
// time on the 2-core development machine: 67 s, and 96 s while other builds shared it).
Task("CudaSamples")
    .IsDependentOn("Samples")
    .IsDependentOn("Clang")
    .IsDependentOn("CudaToolkit")
    .Does(() =>
{
    if (!CommandExists("nvcc"))
    {
        Warning("nvcc is missing, so NVIDIA's samples are not built: CudaSamplesTests will fail saying how to install the toolkit (the CudaToolkit task's warning above).");
        return;
    }

    const string gencode = "-gencode arch=compute_52,code=sm_52 -gencode arch=compute_52,code=compute_52";
    var outputs = MakeAbsolute(Directory("./artifacts/cuda-samples"));
    EnsureDirectoryExists(outputs);
    foreach (var build in cudaSampleBuilds)
    {
        var folder = $"{CudaExamples}/Samples/{build.Folder}";
        var sources = build.Sources.Select(s => $"{folder}/{s}").ToArray();
        var output = outputs.CombineWithFilePath(build.Output).FullPath;
        if (System.IO.File.Exists(output) && sources.All(s => System.IO.File.GetLastWriteTimeUtc(s) < System.IO.File.GetLastWriteTimeUtc(output)))
        {
            continue;
        }

        var link = build.Kind == "" ? $"{build.Flags} -lstdc++ -lm" : build.Flags;
        var args = $"-ccbin clang-14 -std=c++11 -I{CudaExamples}/Common {gencode} {build.Kind} -o {output} {string.Join(' ', sources)} {link}";
        Information($"nvcc {build.Output}");
        var exit = StartProcess("nvcc", new ProcessSettings { Arguments = args, RedirectStandardOutput = true, RedirectStandardError = true },
            out var stdout, out var stderr);
        if (exit != 0)
        {
            System.IO.File.Delete(output);
            throw new Exception($"nvcc failed on {build.Output} ({string.Join(", ", build.Sources)}):\n{string.Join('\n', stdout.Concat(stderr))}");
        }
    }
});

// The failed tests of a trx file, each with the first lines of its message, so that the end of a
// log (all that a CI summary may keep) names them.
IEnumerable<string> FailedTests(string trx)
{
    if (!System.IO.File.Exists(trx))
    {
        return new[] { $"  (no results file {trx})" };
    }

    System.Xml.Linq.XNamespace ns = "http://microsoft.com/schemas/VisualStudio/TeamTest/2010";
    return System.Xml.Linq.XDocument.Load(trx).Descendants(ns + "UnitTestResult")
        .Where(r => (string)r.Attribute("outcome") == "Failed")
        .Select(r =>
        {
            var message = (string)r.Descendants(ns + "Message").FirstOrDefault() ?? "";
            var lines = message.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).Take(6);
            return $"  FAILED {(string)r.Attribute("testName")}\n" + string.Join("\n", lines.Select(l => "    " + l));
        })
        .ToList();
}

// Every test project of the solution, against real servers and child processes. A hang is
// reported with a dump instead of eating CI's time.
Task("Test")
    .IsDependentOn("Build")
    .IsDependentOn("Clang")
    .IsDependentOn("EnsureEtcd")
    .IsDependentOn("Samples")
    .IsDependentOn("CudaSamples")
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
            failures.AddRange(FailedTests($"./artifacts/test-results/{project.GetFilenameWithoutExtension()}.trx"));
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

// The PTX engine against the built-in C# kernels (issue 15's speed targets): SAXPY, tiled SGEMM, an empty launch.
Task("PerfPtx")
    .IsDependentOn("Build")
    .Does(() =>
{
    DotNetRun("./perf/GpuPool.Perf.Ptx/GpuPool.Perf.Ptx.csproj", new ProcessArgumentBuilder().Append("--filter").Append("*").Append("--job").Append("short"), new DotNetRunSettings
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

// The package: a self-contained `gpupool` for linux-x64 (one file with the .NET runtime inside: the host needs no .NET),
// the shim beside it as lib/libcuda.so.1 (where `gpupool run` looks), the systemd units, the sysusers.d snippet and
// the example env files of packaging/, and docs/operations.md, in artifacts/package/gpupool-VERSION-linux-x64/ and a
// .tar.gz of it. Not NativeAOT: the PTX engine compiles programs' kernels to IL with DynamicMethod, which NativeAOT
// cannot run (docs/operations.md, "Install"). The units are checked with systemd-analyze, then the tarball with
// PackageSmoke's check. Not part of Test: the publish alone takes minutes.
var packageVersion = Argument("package-version", XmlPeek("./Directory.Build.props", "/Project/PropertyGroup/Version"));
var packageName = $"gpupool-{packageVersion}-linux-x64";
var packageFolder = MakeAbsolute(Directory("./artifacts/package"));
var packageRoot = packageFolder.Combine(packageName);
var packageTarball = packageFolder.CombineWithFilePath(packageName + ".tar.gz");

Task("Package")
    .IsDependentOn("Shim")
    .Does(() =>
{
    var publish = packageFolder.Combine("publish");
    CleanDirectory(publish);
    DotNetPublish("./src/GpuPool.Cli/GpuPool.Cli.csproj", new DotNetPublishSettings
    {
        Configuration = configuration,
        Runtime = "linux-x64",
        SelfContained = true,
        PublishSingleFile = true,
        PublishReadyToRun = true,
        OutputDirectory = publish,
        MSBuildSettings = new DotNetMSBuildSettings().SetVersion(packageVersion),
    });

    Run("rm", "-rf", packageRoot.FullPath);
    EnsureDirectoryExists(packageRoot);
    MoveFile(publish.CombineWithFilePath("gpupool"), packageRoot.CombineWithFilePath("gpupool"));
    Run("rm", "-rf", publish.FullPath);
    EnsureDirectoryExists(packageRoot.Combine("lib"));
    CopyFile("./artifacts/shim/libgpupool-cuda.so", packageRoot.Combine("lib").CombineWithFilePath("libcuda.so.1"));
    Run("ln", "-sfn", "libcuda.so.1", packageRoot.Combine("lib").CombineWithFilePath("libcuda.so").FullPath);
    foreach (var (from, to) in new[] { ("packaging/systemd", "systemd"), ("packaging/sysusers.d", "sysusers.d"), ("packaging/env", "env") })
    {
        CopyDirectory(from, packageRoot.Combine(to));
    }

    EnsureDirectoryExists(packageRoot.Combine("docs"));
    CopyFile("./docs/operations.md", packageRoot.Combine("docs").CombineWithFilePath("operations.md"));
    Run("chmod", "755", packageRoot.CombineWithFilePath("gpupool").FullPath, packageRoot.Combine("lib").CombineWithFilePath("libcuda.so.1").FullPath);

    VerifyUnits(packageRoot);
    Run("tar", "--owner=0", "--group=0", "--numeric-owner", "-C", packageFolder.FullPath, "-czf", packageTarball.FullPath, packageName);
    Information($"{packageTarball}: {new System.IO.FileInfo(packageTarball.FullPath).Length / 1e6:F1} MB ({DirectorySize(packageRoot) / 1e6:F1} MB unpacked)");
    SmokeTestPackage();
});

// The check the Package task ends with, alone, on the tarball it made.
Task("PackageSmoke")
    .Does(() => SmokeTestPackage());

// Runs a program, throwing with its output when it fails; returns what it wrote on stdout and stderr.
string Run(string program, params string[] args)
{
    var start = new System.Diagnostics.ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var arg in args)
    {
        start.ArgumentList.Add(arg);
    }

    var output = RunProcess(start, program, TimeSpan.FromMinutes(2), out var exit);
    return exit == 0 ? output : throw new Exception($"{program} {string.Join(' ', args)} exited with {exit}:\n{output}");
}

// Runs a process to its end (killing it past the timeout): its exit code and its stdout and stderr, interleaved.
string RunProcess(System.Diagnostics.ProcessStartInfo start, string what, TimeSpan timeout, out int exit)
{
    start.RedirectStandardOutput = start.RedirectStandardError = true;
    var output = new StringBuilder();
    using var process = new System.Diagnostics.Process { StartInfo = start };
    process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
    process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
    process.Start();
    process.BeginOutputReadLine();
    process.BeginErrorReadLine();
    if (!process.WaitForExit((int)timeout.TotalMilliseconds))
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        throw new Exception($"{what} did not end within {timeout.TotalSeconds} s:\n{output}");
    }

    process.WaitForExit();
    exit = process.ExitCode;
    lock (output)
    {
        return output.ToString();
    }
}

long DirectorySize(DirectoryPath folder)
    => new System.IO.DirectoryInfo(folder.FullPath).EnumerateFiles("*", System.IO.SearchOption.AllDirectories)
        .Where(f => f.LinkTarget is null).Sum(f => f.Length);

// `systemd-analyze verify` of the package's units in a scratch root where the package sits at /opt/gpupool (the
// binary hard-linked, so the check sees the packaged file) with the host's own units beside (sysinit.target and
// the rest that verify loads). verify exits 0 on unknown keys and values it cannot parse, only warning: any line it
// prints fails the build. systemd (for systemd-analyze) comes from Debian's packages when it is missing.
void VerifyUnits(DirectoryPath package)
{
    if (!EnsureDebianPackage("systemd-analyze", "systemd"))
    {
        throw new Exception("systemd-analyze is missing and could not be installed (apt-get install systemd, as root): the units cannot be verified.");
    }

    var root = packageFolder.Combine("verify-root");
    Run("rm", "-rf", root.FullPath);
    var units = root.Combine("etc/systemd/system");
    var opt = root.Combine("opt/gpupool");
    EnsureDirectoryExists(units);
    EnsureDirectoryExists(opt);
    EnsureDirectoryExists(root.Combine("usr/lib/systemd"));
    Run("cp", "-a", "/usr/lib/systemd/system", root.Combine("usr/lib/systemd").FullPath);
    Run("ln", package.CombineWithFilePath("gpupool").FullPath, opt.CombineWithFilePath("gpupool").FullPath);
    var files = GetFiles(package.Combine("systemd").FullPath + "/*.service").ToList();
    if (files.Count == 0)
    {
        throw new Exception($"no systemd units in {package.Combine("systemd")}");
    }

    var unitPaths = new List<string>();
    foreach (var file in files)
    {
        CopyFile(file, units.CombineWithFilePath(file.GetFilename()));
        unitPaths.Add(units.CombineWithFilePath(file.GetFilename()).FullPath);
    }

    var verify = new System.Diagnostics.ProcessStartInfo("systemd-analyze") { ArgumentList = { "verify", "--root=" + root.FullPath } };
    unitPaths.ForEach(verify.ArgumentList.Add);
    var said = RunProcess(verify, "systemd-analyze verify", TimeSpan.FromMinutes(1), out var exit).Trim();
    if (exit != 0 || said.Length > 0)
    {
        throw new Exception($"systemd-analyze verify found problems in the units (exit code {exit}):\n{said}");
    }

    foreach (var unit in unitPaths)
    {
        var security = new System.Diagnostics.ProcessStartInfo("systemd-analyze") { ArgumentList = { "security", "--offline=true", "--root=" + root.FullPath, unit } };
        var report = RunProcess(security, "systemd-analyze security", TimeSpan.FromMinutes(1), out _);
        Information(report.Split('\n').LastOrDefault(l => l.Contains("exposure level", StringComparison.Ordinal))?.Trim() ?? $"no exposure level for {unit}");
    }

    Information($"systemd-analyze verify: {string.Join(", ", files.Select(f => f.GetFilename()))} OK");
    Run("rm", "-rf", root.FullPath);
}

// The tarball on a clean host, as far as one machine allows: unpacked into a temp folder and run with an empty
// environment (PATH=/usr/bin:/bin, a fresh HOME and config dir) and, where a private mount namespace can be made
// (root, unshare), with the .NET install hidden under an empty tmpfs, so that nothing of the SDK can be found.
// `--version`; `--help` timed; `up` on free ports until "GpuPool is up"; `ls` against it; `run` through a symlink
// to the binary (as in /usr/local/bin), checking that the program's libcuda.so.1 is the package's lib/libcuda.so.1;
// then SIGINT to `up`, which must stop cleanly.
void SmokeTestPackage()
{
    if (!FileExists(packageTarball))
    {
        throw new Exception($"{packageTarball} is missing: run ./build.sh --target=Package");
    }

    var temp = new DirectoryPath(System.IO.Directory.CreateTempSubdirectory("gpupool-package-smoke-").FullName);
    System.Diagnostics.Process up = null;
    try
    {
        Run("tar", "-xzf", packageTarball.FullPath, "-C", temp.FullPath);
        var binary = temp.Combine(packageName).CombineWithFilePath("gpupool").FullPath;
        var shim = temp.Combine(packageName).Combine("lib").CombineWithFilePath("libcuda.so.1").FullPath;
        EnsureDirectoryExists(temp.Combine("bin"));
        var linked = temp.Combine("bin").CombineWithFilePath("gpupool").FullPath;
        Run("ln", "-s", binary, linked);
        var environment = new[] { "PATH=/usr/bin:/bin", $"HOME={temp.Combine("home")}", $"GPUPOOL_CONFIG_DIR={temp.Combine("config")}" };

        var dotnetRoot = Run("sh", "-c", "readlink -f \"$(command -v dotnet)\" | xargs -r dirname").Trim();
        var hidden = -1;
        if (dotnetRoot.Length > 1)
        {
            var probe = new System.Diagnostics.ProcessStartInfo("unshare") { ArgumentList = { "-m", "sh", "-c", "mount -t tmpfs tmpfs \"$0\" && ! test -e \"$0/dotnet\"", dotnetRoot } };
            RunProcess(probe, "unshare", TimeSpan.FromSeconds(30), out hidden);
        }

        var hide = hidden == 0;
        if (hide)
        {
            Information($"package check: the .NET install ({dotnetRoot}) is hidden from the packaged binary");
        }
        else
        {
            Warning($"package check: cannot hide the .NET install{(dotnetRoot.Length > 1 ? $" ({dotnetRoot})" : "")} (no private mount namespace): the check only clears the environment");
        }

        // The packaged binary (or the symlink to it) with args, in the clean environment.
        System.Diagnostics.ProcessStartInfo Packaged(string program, params string[] args)
        {
            var start = new System.Diagnostics.ProcessStartInfo(hide ? "unshare" : "env");
            var argv = new List<string>();
            if (hide)
            {
                argv.AddRange(new[] { "-m", "sh", "-c", "mount -t tmpfs tmpfs \"$0\" && exec \"$@\"", dotnetRoot, "env" });
            }

            // SIGINT back to its default: a build started in the background of a script passes it on ignored.
            argv.AddRange(new[] { "-i", "--default-signal=INT" });
            argv.AddRange(environment);
            argv.Add(program);
            argv.AddRange(args);
            argv.ForEach(start.ArgumentList.Add);
            return start;
        }

        string Expect(string what, System.Diagnostics.ProcessStartInfo start)
        {
            var output = RunProcess(start, what, TimeSpan.FromMinutes(1), out var exit);
            return exit == 0 ? output : throw new Exception($"package check: `{what}` exited with {exit}:\n{output}");
        }

        var version = Expect("gpupool --version", Packaged(binary, "--version")).Trim();
        if (!version.StartsWith(packageVersion, StringComparison.Ordinal))
        {
            throw new Exception($"package check: `gpupool --version` says '{version}', not {packageVersion}");
        }

        var times = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Expect("gpupool --help", new System.Diagnostics.ProcessStartInfo("env") { ArgumentList = { "-i", environment[0], binary, "--help" } });
            times.Add(watch.Elapsed.TotalMilliseconds);
        }

        times.Sort();
        Information($"package check: gpupool {version}; `gpupool --help` took {times[2]:F0} ms (median of 5; {times[0]:F0}-{times[4]:F0} ms)");

        var upOutput = new StringBuilder();
        var ready = new System.Threading.ManualResetEventSlim();
        var upStart = Packaged(binary, "up", "--port", "0", "--broker-port", "0", "--fast-path-port", "0", "--backend", "cpu", "--device-memory", "1GiB");
        upStart.RedirectStandardOutput = upStart.RedirectStandardError = true;
        up = new System.Diagnostics.Process { StartInfo = upStart };
        System.Diagnostics.DataReceivedEventHandler collect = (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (upOutput)
            {
                upOutput.AppendLine(e.Data);
            }

            if (e.Data.Contains("GpuPool is up", StringComparison.Ordinal))
            {
                ready.Set();
            }
        };
        up.OutputDataReceived += collect;
        up.ErrorDataReceived += collect;
        var watchUp = System.Diagnostics.Stopwatch.StartNew();
        up.Start();
        up.BeginOutputReadLine();
        up.BeginErrorReadLine();
        if (System.Threading.WaitHandle.WaitAny(new System.Threading.WaitHandle[] { ready.WaitHandle }, TimeSpan.FromSeconds(60)) != 0 || up.HasExited)
        {
            throw new Exception($"package check: `gpupool up` did not say \"GpuPool is up\" within 60 s:\n{upOutput}");
        }

        Information($"package check: `gpupool up` was up after {watchUp.Elapsed.TotalSeconds:F1} s");
        var ls = Expect("gpupool ls", Packaged(binary, "ls"));
        if (!ls.Contains("cpu", StringComparison.Ordinal))
        {
            throw new Exception($"package check: `gpupool ls` shows no cpu device:\n{ls}");
        }

        var loaded = Expect("gpupool run", Packaged(linked, "run", "--memory", "64MiB", "--", "/bin/sh", "-c", "readlink -f \"${LD_LIBRARY_PATH%%:*}/libcuda.so.1\"")).Trim();
        if (loaded != shim)
        {
            throw new Exception($"package check: under `gpupool run` libcuda.so.1 is '{loaded}', not the package's {shim}");
        }

        Run("kill", "-INT", up.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (!up.WaitForExit(30_000))
        {
            throw new Exception($"package check: `gpupool up` did not stop within 30 s of SIGINT:\n{upOutput}");
        }

        up.WaitForExit();
        if (up.ExitCode != 0 || !upOutput.ToString().Contains("Stopped.", StringComparison.Ordinal))
        {
            throw new Exception($"package check: `gpupool up` exited with {up.ExitCode} after SIGINT:\n{upOutput}");
        }

        Information($"package check: {packageTarball.GetFilename()} runs: --version, up, ls, run (libcuda.so.1 from the package) and a clean stop on SIGINT");
    }
    finally
    {
        if (up is not null && !up.HasExited)
        {
            up.Kill(entireProcessTree: true);
            up.WaitForExit();
        }

        up?.Dispose();
        Run("rm", "-rf", temp.FullPath);
    }
}

Task("Default").IsDependentOn("Test");

RunTarget(target);
