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

        // The older ABI names stay exported for programs linked against them, but the table hands out the newer ones.
        var notServed = Exports.Where(e => !served.Contains(e)).Order(StringComparer.Ordinal).ToArray();

        string[] olderNames = ["cuCtxDestroy", "cuCtxPopCurrent", "cuCtxPushCurrent", "cuEventDestroy", "cuStreamDestroy"];
        Assert.Equal(olderNames, notServed);
    }

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
