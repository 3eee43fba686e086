using System.Buffers.Binary;
using System.Text.RegularExpressions;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Shim;

/// <summary>
/// NVIDIA's CUDA 11.8 samples as nvcc builds them (`./build.sh --target=CudaSamples`), and a pycuda script, each run
/// unmodified through `gpupool run` on a pool with a cpu-backend broker whose session log records every allocation and
/// launch it receives. <see cref="Table"/> says what each program does today; a run that does worse OR better than its
/// row fails, naming the row to change, so the table stays true (docs/shim.md, "NVIDIA's samples").
/// </summary>
public sealed partial class CudaSamplesTests(SessionLogPoolFixture pool) : IClassFixture<SessionLogPoolFixture>, IDisposable
{
    /// <summary>How far a program gets today, from worst to best.</summary>
    public enum Today
    {
        /// <summary>It does not start: the loader (or Python's import) needs a driver function the shim does not export.</summary>
        FailsToLoad,

        /// <summary>The CUDA runtime's first call fails: it asks cuGetExportTable for a private table the shim does not know, which the shim says.</summary>
        FailsAtFirstCall,

        /// <summary>CUDA calls work until one fails, before any kernel launch reaches the broker.</summary>
        FailsBeforeLaunch,

        /// <summary>
        /// Its first kernel launch reaches the broker, which cannot run the kernel on the cpu backend yet (no PTX engine):
        /// the program exits non-zero with one sentence naming the kernel.
        /// </summary>
        ReachesLaunch,

        /// <summary>It declines to run, with one sentence on stderr saying why, and exits with <see cref="Row.WaiveExit"/>.</summary>
        Waive,

        /// <summary>It exits 0 and prints its pass line.</summary>
        Pass,
    }

    /// <summary>
    /// One program and what it must do today. <paramref name="PassLine"/> is what it prints when its own check passes (null
    /// where its exit code is its only verdict). <paramref name="Evidence"/> is, for a failing row, today's first failure
    /// exactly as printed (the sample's or the shim's sentence; for <see cref="Today.ReachesLaunch"/>, the sentence naming
    /// <paramref name="Kernel"/>), and for <see cref="Today.Waive"/> the sentence on stderr. <paramref name="Kernel"/> is
    /// the first kernel it launches, as the broker names it.
    /// </summary>
    public sealed record Row(string Name, string[] Args, string? PassLine, Today Today, string Evidence = "", string? Kernel = null, int WaiveExit = 2);

    /// <summary>Where cuBLAS's GEMM stops: a slot of the tools context table, which the shim serves with every slot undescribed.</summary>
    private const string ToolsContextSlot51 = "the program calls slot 51 of the private table tools context {21318C60-9714-3248-8CA6-41FF7324C8F2}";

    /// <summary>What the shim says (always, once per table) when a CUDA runtime asks for a private table it does not know.</summary>
    public const string RuntimeTablesRefused = "cuGetExportTable: no private table";

    /// <summary>
    /// What each program does today on this branch. When a change makes a program get further, its test fails saying
    /// so: set its row to what it does now (the state, and the first failure it prints, or its pass line).
    /// </summary>
    public static readonly Row[] Table =
    [
        new("deviceQuery", [], "Result = PASS", Today.Pass),
        new("deviceQueryDrv", [], "Result = PASS", Today.Pass),
        new("bandwidthTest", ["--mode=range", "--start=1048576", "--end=1048576", "--increment=1048576"], "Result = PASS", Today.Pass),
        new("vectorAdd", [], "Test PASSED", Today.Pass),
        new("vectorAdd_shared", [], "Test PASSED", Today.Pass),
        new("vectorAddDrv", [], "Result = PASS", Today.Pass),
        new("matrixMul", ["-wA=32", "-hA=32", "-wB=32", "-hB=32"], "Result = PASS", Today.Pass),
        new("matrixMulDrv", [], "Result = PASS", Today.Pass),
        new("asyncAPI", [], null, Today.Pass),
        new("simpleStreams", ["--use_cuda_malloc_host"], null, Today.Pass),
        new("clock", [], "Average clocks/block", Today.Pass),
        new("simpleAtomicIntrinsics", [], "simpleAtomicIntrinsics completed, returned OK", Today.Pass),
        new("simpleTemplates", [], "[simpleTemplates] -> Test Results: 0 Failures", Today.Pass),
        new("cppIntegration", [], "Hello World.", Today.Pass),
        new("simpleCallback", [], "Success", Today.Pass),
        new("simpleOccupancy", [], "Test PASSED", Today.Pass),
        new("ptxjit", [], "CUDA kernel launched", Today.Pass),

        // Mapped host memory has no meaning across the network: the device says it cannot map host memory, and the
        // sample says so on stderr and exits 0 (its way of waiving).
        new("simpleZeroCopy", [], "> Releasing CPU memory...", Today.Waive, "Device 0 does not support mapping CPU host memory!", WaiveExit: 0),

        // cuBLAS 11.8 registers its modules at cublasCreate (one of 23 MB, sent to the broker in pieces), and the cpu
        // backend checks every kernel of each at its load (half precision, fp8 conversions and dp4a included) and
        // cublasCreate succeeds. Its GEMM then calls slots of the tools context table, which nobody has described:
        // slot 4, then slot 51, whose NOT_SUPPORTED ends simpleCUBLAS's GEMM before any launch. matrixMulCUBLAS's
        // GEMM goes on past them and launches the kernel cuBLAS picks for compute capability 7.0, which cuBLAS carries
        // as Volta SASS only (its PTX is sm_90's, of other kernels): the cpu backend cannot run it. cuFFT 11.8 registers relocatable
        // device code (a fat binary wrapper of version 2), which needs a device linker the shim does not have.
        new("simpleCUBLAS", [], "simpleCUBLAS test passed.", Today.FailsBeforeLaunch, ToolsContextSlot51),
        new("matrixMulCUBLAS", ["-sizemult=1"], "Comparing CUBLAS Matrix Multiply with CPU results: PASS", Today.ReachesLaunch,
            "the cpu backend cannot run kernel volta_sgemm_32x32_sliced1x4_nn: its module carries SASS only", "volta_sgemm_32x32_sliced1x4_nn"),
        new("simpleCUFFT", [], "Transforming signal back cufftExecC2C", Today.FailsBeforeLaunch,
            "code=5(CUFFT_INTERNAL_ERROR) \"cufftPlan1d(&plan, new_size, CUFFT_C2C, 1)\""),

        // pycuda compiles its kernel to a cubin (SASS only) and launches it with the pre-4.0 API (cuParamSetv, cuLaunchGrid).
        new(PycudaScript, [], "PASS pycuda_elementwise:", Today.ReachesLaunch, "the cpu backend cannot run kernel scaled_add: its module carries SASS only", "scaled_add"),
    ];

    private const string PycudaScript = "pycuda_elementwise.py";

    /// <summary>Debian's python3-pycuda is installed for the system interpreter (a pyenv python3 first on PATH would not see it).</summary>
    private const string SystemPython = "/usr/bin/python3";

    /// <summary>
    /// A run's bound: past it the program is killed and the test fails as a hang. Only a bound on a hang:
    /// matrixMulCUBLAS loads cuBLAS's and cuBLASLt's modules (a 23 MB fat binary, 75 MB of PTX, for cuBLAS alone) in
    /// about 43 s on the 2-core development machine beside one other build, and the suite runs test classes side by side.
    /// </summary>
    private static readonly TimeSpan RunTimeout = TimeSpan.FromSeconds(180);

    private readonly string _configDir = Directory.CreateTempSubdirectory("gpupool-it-cuda-samples-").FullName;

    public static TheoryData<string> Names => [.. Table.Select(r => r.Name)];

    [Theory]
    [MemberData(nameof(Names))]
    public async Task Program_does_what_its_row_says(string name)
    {
        var row = Table.Single(r => r.Name == name);

        var run = await RunAsync(Command(row));

        var verdict = Judge(row, run);
        Assert.True(verdict is null, $"{row.Name} (row: {row.Today}): {verdict}\n{Describe(run)}");
    }

    /// <summary>
    /// vectorAdd's one launch as the broker received it: the kernel, block 256, grid ceil(50000 / 256), and a 28-byte
    /// parameter block of three distinct device pointers, each the base of an allocation the program made, and the int
    /// 50000 at offset 24. Until vectorAdd's row says it reaches its launch, this checks that no launch arrived, so the
    /// test fails (asking for the row to flip) the day one does.
    /// </summary>
    [Fact]
    public async Task VectorAdd_launch_reaches_the_broker_with_its_geometry_and_parameter_block()
    {
        var row = Table.Single(r => r.Name == "vectorAdd");

        var run = await RunAsync(Command(row));

        if (row.Today < Today.ReachesLaunch)
        {
            Assert.True(run.Launches.Count == 0, $"a launch reached the broker: set vectorAdd's row to ReachesLaunch (or Pass), and this test checks its bytes\n{Describe(run)}");
            Assert.True(Judge(row, run) is null, $"vectorAdd: {Judge(row, run)}\n{Describe(run)}");
            return;
        }

        const int n = 50000;
        var launch = AssertLaunch(run, "_Z9vectorAddPKfS0_Pfi", grid: (n + 255) / 256, block: 256, parameterBytes: 28, pointerOffsets: [0, 8, 16]);
        Assert.Equal(n, BinaryPrimitives.ReadInt32LittleEndian(launch.Parameters.AsSpan(24)));
    }

    /// <summary>The session log itself, on a driver API program that runs today (the C sample vector_add's add_f32 launch), over either transport.</summary>
    [Theory]
    [InlineData("auto")]
    [InlineData("grpc")]
    public async Task The_broker_logs_a_launch_with_its_kernel_geometry_and_parameter_bytes(string transport)
    {
        const ulong n = 1000003;

        var run = await RunAsync([ShimArtifacts.Program("vector_add"), ShimArtifacts.KernelsPtx], "--transport", transport);

        Assert.True(run.ExitCode == 0, Describe(run));
        var launch = AssertLaunch(run, "add_f32", grid: (uint)((n + 255) / 256), block: 256, parameterBytes: 32, pointerOffsets: [8, 16, 24]);
        Assert.Equal(n, BinaryPrimitives.ReadUInt64LittleEndian(launch.Parameters));
        Assert.All(run.Allocations, a => Assert.Equal(n * sizeof(float), a.Bytes));
    }

    /// <summary>Every program the CudaSamples task builds has its row, and every row can be judged.</summary>
    [Fact]
    public void The_table_has_a_well_formed_row_for_every_program_built()
    {
        _ = ShimArtifacts.CudaSample("vectorAdd");
        var built = Directory.GetFiles(ShimArtifacts.CudaSamples).Select(f => Path.GetFileName(f)).Where(f => !Path.HasExtension(f)).Order();
        var rows = Table.Select(r => r.Name).Where(n => n != PycudaScript).Order();
        Assert.Equal(built, rows);
        Assert.Equal(Table.Length, Table.DistinctBy(r => r.Name).Count());
        foreach (var row in Table)
        {
            Assert.True(row.Today == Today.Pass || row.Evidence.Length > 0, $"{row.Name}: a {row.Today} row names its evidence");
            Assert.True(row.Today != Today.ReachesLaunch || (row.Kernel is not null && row.Evidence.Contains(row.Kernel, StringComparison.Ordinal)),
                $"{row.Name}: a ReachesLaunch row names its first kernel, and its sentence names it too");
        }
    }

    /// <summary>
    /// Null when the run does what its row says; otherwise what it did instead, and whether that is worse (a regression)
    /// or better (the row must be changed).
    /// </summary>
    private static string? Judge(Row row, SampleRun run)
    {
        var output = run.Stdout + run.Stderr;
        if (run.ExitCode >= 128 || output.Contains("core dumped", StringComparison.Ordinal))
        {
            return $"crashed (exit {run.ExitCode}, signal {run.ExitCode - 128}); a program must fail with a CUDA error, never a signal";
        }

        var passed = run.ExitCode == 0 && (row.PassLine is null || run.Stdout.Contains(row.PassLine, StringComparison.Ordinal));
        var firstKernel = run.Launches.Count > 0 ? run.Launches[0].Function : null;
        var refusedTables = run.Stderr.Contains(RuntimeTablesRefused, StringComparison.Ordinal);
        switch (row.Today)
        {
            case Today.Pass:
                return passed ? null : $"does not pass (exit {run.ExitCode}, pass line '{row.PassLine}'): worse than its row";
            case Today.Waive when passed:
                return "passes now, better than its row: set its row to Pass";
            case Today.Waive:
                return run.ExitCode == row.WaiveExit && run.Stderr.Contains(row.Evidence, StringComparison.Ordinal)
                    ? null
                    : $"does not waive as its row says (exit {row.WaiveExit}, '{row.Evidence}' on stderr)";
            case Today.ReachesLaunch:
                if (passed)
                {
                    return "passes now, better than its row: set its row to Pass";
                }

                if (!run.Launches.Any(l => l.Function == row.Kernel))
                {
                    return $"no launch of {row.Kernel} reached the broker (first launch: {firstKernel ?? "none"}): worse than its row";
                }

                return run.ExitCode != 0 && output.Contains(row.Evidence, StringComparison.Ordinal)
                    ? null
                    : $"reached its launch but did not exit non-zero with its row's sentence '{row.Evidence}'";
        }

        // A failing row: better is a pass, a launch, or (from FailsAtFirstCall) getting past the runtime's first call.
        if (passed)
        {
            return $"passes now, better than its row ({row.Today}): set its row to Pass";
        }

        if (run.ExitCode == 0)
        {
            return "exits 0 without its pass line: if it waived, set its row to Waive (WaiveExit 0) with the sentence it printed on stderr";
        }

        if (firstKernel is not null)
        {
            return $"a launch of {firstKernel} reached the broker, better than its row: set its row to ReachesLaunch with the sentence it now fails with (or to Pass)";
        }

        if (row.Today == Today.FailsAtFirstCall && !refusedTables)
        {
            return "the runtime's first call no longer fails on cuGetExportTable, better than its row: set its row to what it does now (its new first failure)";
        }

        if (row.Today > Today.FailsAtFirstCall && refusedTables)
        {
            return "fails at the runtime's first call again (cuGetExportTable refused): worse than its row";
        }

        return output.Contains(row.Evidence, StringComparison.Ordinal)
            ? null
            : $"does not fail with its row's first failure '{row.Evidence}': it fails elsewhere now; set its row to what it does";
    }

    /// <summary>
    /// The launch of <paramref name="function"/> as the broker received it: one-dimensional geometry, no shared memory,
    /// a parameter block of the given size whose pointers are distinct and each the base of an allocation of this run.
    /// </summary>
    private static RecordedLaunch AssertLaunch(SampleRun run, string function, uint grid, uint block, int parameterBytes, int[] pointerOffsets)
    {
        var launch = Assert.Single(run.Launches, l => l.Function == function);
        Assert.Equal((grid, 1u, 1u), launch.Grid);
        Assert.Equal((block, 1u, 1u), launch.Block);
        Assert.Equal(0u, launch.SharedBytes);
        Assert.Equal(parameterBytes, launch.Parameters.Length);
        var pointers = pointerOffsets.Select(o => BinaryPrimitives.ReadUInt64LittleEndian(launch.Parameters.AsSpan(o))).ToArray();
        Assert.Equal(pointers.Length, pointers.Distinct().Count());
        foreach (var pointer in pointers)
        {
            Assert.Contains(run.Allocations, a => a.Address == pointer);
        }

        return launch;
    }

    /// <summary>The command line of a row: a sample from artifacts/cuda-samples, or the pycuda script under Debian's python3.</summary>
    private static string[] Command(Row row)
    {
        if (row.Name != PycudaScript)
        {
            return [ShimArtifacts.CudaSample(row.Name), .. row.Args];
        }

        Assert.True(Directory.Exists("/usr/lib/python3/dist-packages/pycuda"),
            $"pycuda is not installed for {SystemPython}: run `{ShimArtifacts.CudaSamplesBuildCommand}` as root (it installs python3-pycuda from Debian's contrib section).");
        return [SystemPython, Path.Combine(ShimArtifacts.RepoRoot, "tests", "GpuPool.IntegrationTests", "Shim", "python", PycudaScript), .. row.Args];
    }

    /// <summary>
    /// Runs a program through `gpupool run --verbose --memory 1GiB` in artifacts/cuda-samples (where the samples look for the
    /// modules they load), and collects what the broker's session log recorded for its lease.
    /// </summary>
    private async Task<SampleRun> RunAsync(string[] command, params string[] options)
    {
        await using var run = GpuPoolRun.Start(pool, _configDir, ["--verbose", .. options], command, memory: "1GiB", workingDirectory: ShimArtifacts.CudaSamples);
        if (!await run.WaitForExitAsync(RunTimeout))
        {
            Assert.Fail($"{string.Join(' ', command)} did not exit within {RunTimeout.TotalSeconds:0} s (a hang); killed.\nstdout:\n{run.Stdout}\nstderr:\n{Quiet(run.Stderr)}");
        }

        var lease = LeaseLine().Match(run.Stderr);
        Assert.True(lease.Success, $"gpupool run named no lease:\n{GpuPoolRun.Describe(run)}");
        var leaseId = lease.Groups[1].Value;
        return new SampleRun(run.ExitCode, run.Stdout, run.Stderr, pool.Launches(leaseId), pool.Allocations(leaseId));
    }

    private static string Describe(SampleRun run)
        => $"exit {run.ExitCode}; launches the broker received: {(run.Launches.Count == 0 ? "none" : string.Join(", ", run.Launches.Select(l => l.Function)))}\n"
            + $"stdout:\n{run.Stdout}\nstderr:\n{Quiet(run.Stderr)}";

    /// <summary>Stderr without the shim's lines about entry points it was asked for and does not serve (the runtime probes hundreds).</summary>
    private static string Quiet(string stderr)
    {
        var lines = stderr.Split('\n');
        var kept = lines.Where(l => !l.EndsWith(" is not served by the shim", StringComparison.Ordinal)).ToArray();
        return string.Join('\n', kept) + (kept.Length < lines.Length ? $"\n({lines.Length - kept.Length} lines about entry points the shim does not serve left out)" : "");
    }

    [GeneratedRegex(@"^gpupool run: lease (l-[0-9a-f]+):", RegexOptions.Multiline)]
    private static partial Regex LeaseLine();

    public void Dispose() => Directory.Delete(_configDir, recursive: true);

    /// <summary>A finished run: its exit code and output, and what the broker recorded for its lease.</summary>
    private sealed record SampleRun(int ExitCode, string Stdout, string Stderr, IReadOnlyList<RecordedLaunch> Launches, IReadOnlyList<RecordedAllocation> Allocations);
}
