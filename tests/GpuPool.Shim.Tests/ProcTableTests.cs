using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using GpuPool.Shim.Exports;

namespace GpuPool.Shim.Tests;

/// <summary>The entry points: what cuGetProcAddress hands out, what the library exports, what the C header declares.</summary>
public sealed partial class ProcTableTests
{
    private static readonly HashSet<string> Exports = typeof(Cuda)
        .GetMethods(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)
        .Select(m => m.GetCustomAttribute<UnmanagedCallersOnlyAttribute>()?.EntryPoint)
        .OfType<string>()
        .ToHashSet(StringComparer.Ordinal);

    [Fact]
    public void Every_symbol_in_the_table_is_an_export()
    {
        var missing = Cuda.ProcTable.Values.SelectMany(v => v).Select(v => v.Symbol).Where(s => !Exports.Contains(s)).ToArray();

        Assert.Empty(missing);
    }

    [Fact]
    public void Every_export_can_be_looked_up()
    {
        var served = Cuda.ProcTable.Values.SelectMany(v => v).Select(v => v.Symbol).ToHashSet(StringComparer.Ordinal);

        // The older ABI names stay exported for programs linked against them, but the table hands out the newer ones;
        // the per-thread default stream names are for linking only (cuGetProcAddress takes a flag instead).
        var notServed = Exports.Where(e => !served.Contains(e) && !IsPerThreadAlias(e)).Order(StringComparer.Ordinal).ToArray();

        string[] olderNames = ["cuCtxDestroy", "cuCtxPopCurrent", "cuCtxPushCurrent", "cuEventDestroy", "cuStreamDestroy"];
        Assert.Equal(olderNames, notServed);
    }

    [Fact]
    public void Every_per_thread_stream_name_is_an_alias_of_a_served_export()
    {
        var aliases = Exports.Where(IsPerThreadAlias).ToArray();

        Assert.NotEmpty(aliases);
        Assert.All(aliases, alias => Assert.Contains(alias[..^5], Exports));
    }

    [Theory]
    [InlineData("cuMemcpy2D_v2_ptds")]
    [InlineData("cuMemcpy3DAsync_v2_ptsz")]
    [InlineData("cuMemsetD2D32Async_ptsz")]
    [InlineData("cuLaunchHostFunc_ptsz")]
    [InlineData("cuStreamAddCallback_ptsz")]
    [InlineData("cuMemAllocAsync_ptsz")]
    [InlineData("cuMemFreeAsync_ptsz")]
    [InlineData("cuLaunchKernelEx_ptsz")]
    [InlineData("cuLaunchKernel_ptsz")]
    [InlineData("cuMemcpyHtoDAsync_v2_ptsz")]
    [InlineData("cuStreamSynchronize_ptsz")]
    public void A_program_built_for_the_per_thread_default_stream_links(string symbol)
        => Assert.Contains(symbol, Exports);

    [Theory]
    [InlineData("cuMemcpy2D", 11080, "cuMemcpy2D_v2")]
    [InlineData("cuMemHostRegister", 6000, "cuMemHostRegister")]
    [InlineData("cuMemHostRegister", 11080, "cuMemHostRegister_v2")]
    [InlineData("cuIpcOpenMemHandle", 11080, "cuIpcOpenMemHandle_v2")]
    [InlineData("cuMemAdvise", 11080, "cuMemAdvise")]
    [InlineData("cuMemAdvise", 12080, "cuMemAdvise_v2")]
    [InlineData("cuLaunchKernelEx", 11080, "cuLaunchKernelEx")]
    [InlineData("cuGraphicsResourceSetMapFlags", 11080, "cuGraphicsResourceSetMapFlags_v2")]
    public void The_table_hands_out_the_abi_of_the_version_asked(string name, int version, string symbol)
        => Assert.Equal(symbol, Cuda.ProcTable[name].Last(v => v.Version <= version).Symbol);

    [Theory]
    [InlineData("cuMemAllocAsync", 11010)]
    [InlineData("cuLaunchKernelEx", 11050)]
    [InlineData("cuCtxGetId", 11080)]
    public void A_name_older_than_its_first_abi_is_not_found(string name, int version)
        => Assert.DoesNotContain(Cuda.ProcTable[name], v => v.Version <= version);

    private static bool IsPerThreadAlias(string export) => export.EndsWith("_ptds", StringComparison.Ordinal) || export.EndsWith("_ptsz", StringComparison.Ordinal);

    [Fact]
    public void Versions_of_a_name_are_in_order_and_newer_than_the_base_api()
    {
        foreach (var (name, versions) in Cuda.ProcTable)
        {
            Assert.True(versions.Select(v => v.Version).SequenceEqual(versions.Select(v => v.Version).Order()), name);
            Assert.All(versions, v => Assert.InRange(v.Version, 2000, Internal.Driver.Version));
            Assert.All(versions, v => Assert.StartsWith(name, v.Symbol, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Every_function_the_header_declares_is_exported_under_its_abi_name()
    {
        var header = File.ReadAllText(RepoFiles.Path("native/include/gpupool_cuda.h"));
        var aliases = Define().Matches(header).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value, StringComparer.Ordinal);
        var declared = Declaration().Matches(header).Select(m => m.Groups[1].Value).ToArray();

        Assert.True(declared.Length > 75, $"only {declared.Length} declarations found");
        var missing = declared.Select(d => aliases.GetValueOrDefault(d, d)).Where(d => !Exports.Contains(d)).ToArray();
        Assert.Empty(missing);
        Assert.All(aliases.Values, abi => Assert.Contains(abi, Exports));
    }

    [GeneratedRegex(@"^#define\s+(cu\w+)\s+(cu\w+)\s*$", RegexOptions.Multiline)]
    private static partial Regex Define();

    [GeneratedRegex(@"^CUresult CUDAAPI (cu\w+)\(", RegexOptions.Multiline)]
    private static partial Regex Declaration();
}
