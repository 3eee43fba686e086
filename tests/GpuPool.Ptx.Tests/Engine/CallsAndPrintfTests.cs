using System.Diagnostics;
using System.Text;
using GpuPool.Ptx.Engine;
using GpuPool.Ptx.Tests.Syntax;

namespace GpuPool.Ptx.Tests.Engine;

/// <summary>
/// Kernels of Cuda/calls_kernels.cu, compiled by nvcc and by clang 14, that call functions through PTX's parameter ABI
/// (recursion, a callee's local array, pointer arguments) and print with device printf, whose text must be what the
/// host's C library prints for the same format and arguments (Cuda/printf_reference.c, built with gcc during the run).
/// </summary>
public sealed class CallsAndPrintfTests(Nvcc nvcc, ClangCuda clang) : IClassFixture<Nvcc>, IClassFixture<ClangCuda>
{
    private const string Source = "calls_kernels.cu";

    public static TheoryData<string> Compilers => new() { "nvcc", "clang" };

    private string Text(string compiler) => compiler == "nvcc"
        ? Encoding.UTF8.GetString(nvcc.Build("calls_kernels.ptx", Source, "-ptx", "-arch=sm_70", "-I", Nvcc.SourceDirectory))
        : clang.Build(Source, "sm_70", "-O2", "-I", Nvcc.SourceDirectory);

    private PtxModuleProgram Module(string compiler) => PtxModuleProgram.Compile(Text(compiler));

    private static PtxLaunch Launch(HostMemory memory, uint grid, uint block)
        => new(grid, 1, 1, block, 1, 1, 0, memory) { Parallelism = 2, Deadline = TimeSpan.FromSeconds(60) };

    [Theory]
    [MemberData(nameof(Compilers))]
    public void A_recursive_function_returns_what_the_host_computes_for_every_thread(string compiler)
    {
        using var memory = new HostMemory();
        var rng = new Random(15);
        var n = Enumerable.Range(0, 300).Select(_ => (uint)rng.Next(0, 18)).ToArray();
        var pn = memory.Upload(n);
        var pout = memory.Upload(Enumerable.Repeat(0xCDCDCDCDu, n.Length).ToArray());

        Module(compiler).Kernels["fib_kernel"].Launch(Launch(memory, 5, 64), new Params().Add(pn).Add(pout).Add(n.Length).ToArray(), []);

        static uint Fib(uint k) => k < 2 ? k : Fib(k - 1) + Fib(k - 2);
        Assert.Equal(n.Select(Fib), memory.Download<uint>(pout, n.Length));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Functions_with_a_local_array_and_pointer_arguments_compute_and_store_as_the_host_does(string compiler)
    {
        using var memory = new HostMemory();
        const int count = 200;
        var rng = new Random(16);
        var x = Enumerable.Range(0, count).Select(_ => rng.NextSingle() * 10 - 5).ToArray();
        var (px, py) = (memory.Upload(x), memory.Upload(Enumerable.Repeat(float.NaN, count).ToArray()));
        var pairs = memory.Upload(Enumerable.Repeat(int.MinValue, (2 * count) + 2).ToArray());

        Module(compiler).Kernels["calls_kernel"].Launch(Launch(memory, 4, 64), new Params().Add(px).Add(py).Add(pairs).Add(count).ToArray(), []);

        var expected = x.Select((v, i) => (v * ((i & 7) + 1)) - (v * (((i + 3) & 7) + 1))).ToArray();
        Assert.Equal(expected, memory.Download<float>(py, count));
        Assert.Equal(Enumerable.Range(0, count).SelectMany(i => new[] { i + 1, -2 * (i + 1) }).Append(int.MinValue).Append(int.MinValue), memory.Download<int>(pairs, (2 * count) + 2));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Recursion_with_a_frame_per_level_keeps_each_levels_locals(string compiler)
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(0u, 65).ToArray());

        Module(compiler).Kernels["nest_kernel"].Launch(Launch(memory, 1, 32), new Params().Add(20u).Add(pout).ToArray(), []);

        Assert.Equal(Enumerable.Range(20, 32).Select(d => (uint)(d * (d + 1) / 2)), memory.Download<uint>(pout, 32));
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Recursion_past_the_threads_stack_fails_the_launch_naming_the_stack(string compiler)
    {
        using var memory = new HostMemory();
        var pout = memory.Upload(Enumerable.Repeat(0u, 65).ToArray());

        var fault = Assert.Throws<PtxFault>(() => Module(compiler).Kernels["nest_kernel"].Launch(Launch(memory, 1, 32), new Params().Add(100_000u).Add(pout).ToArray(), []));

        Assert.Equal(PtxFaultKind.IllegalAddress, fault.Kind);
        Assert.Contains("kernel nest_kernel, thread (0,0,0) of block (0,0,0), function nest", fault.Message, StringComparison.Ordinal);
        Assert.Contains("call stack", fault.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Compilers))]
    public void Device_printf_prints_what_the_host_C_library_prints_block_after_block(string compiler)
    {
        using var memory = new HostMemory();
        string? printed = null;
        var calls = 0;
        var launch = Launch(memory, 3, 40) with { Printf = text => (printed, calls) = (text, calls + 1) };

        var module = Module(compiler);
        module.Kernels["hello"].Launch(launch, new Params().Add(7).ToArray(), ModuleSymbols.Place(Text(compiler), module, memory));

        Assert.Equal(1, calls);
        Assert.Equal(HostPrintf(3, 40, 7), printed);
    }

    [Fact]
    public void A_launch_that_prints_nothing_hands_over_no_text()
    {
        using var memory = new HostMemory();
        var calls = 0;
        var pout = memory.Upload(new uint[65]);
        var launch = Launch(memory, 1, 1) with { Printf = _ => calls++ };

        Module("nvcc").Kernels["nest_kernel"].Launch(launch, new Params().Add(1u).Add(pout).ToArray(), []);

        Assert.Equal(0, calls);
    }

    /// <summary>What printf_reference.c, built here with gcc, prints for <paramref name="blocks"/> × <paramref name="threads"/>.</summary>
    private static string HostPrintf(int blocks, int threads, int n)
    {
        var directory = Directory.CreateTempSubdirectory("gpupool-printf-").FullName;
        try
        {
            var program = Path.Combine(directory, "printf_reference");
            Run("gcc", "-I", Nvcc.SourceDirectory, Path.Combine(Nvcc.SourceDirectory, "printf_reference.c"), "-o", program);
            return Run(program, $"{blocks}", $"{threads}", $"{n}");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static string Run(string program, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        arguments.ToList().ForEach(start.ArgumentList.Add);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), $"{program} did not finish");
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', arguments)} failed ({process.ExitCode}): {stderr}");
        return stdout.Result;
    }
}
