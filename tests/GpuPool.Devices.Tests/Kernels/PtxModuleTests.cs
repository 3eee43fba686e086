using System.Globalization;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Tests.Cpu;

namespace GpuPool.Devices.Tests.Kernels;

/// <summary>
/// The checked-in PTX module native/kernels/ptx/gpupool_kernels.ptx: it declares exactly the cpu backend's built-in
/// kernels with their parameter layouts, it is a module a driver can JIT with nothing to link, the cpu backend serves
/// it, and it is what native/kernels/build-ptx.sh makes from the sources today.
/// </summary>
public sealed class PtxModuleTests
{
    private static readonly Lazy<string> Text = new(() => File.ReadAllText(NativeToolchain.CheckedInPtxPath));

    private static readonly Lazy<PtxModule> Module = new(() => PtxModule.Parse(Text.Value));

    public static TheoryData<string> Kernels => [.. BuiltinKernels.All.Keys.Order(StringComparer.Ordinal)];

    [Fact]
    public void The_module_declares_exactly_the_builtin_kernels()
    {
        var entries = Module.Value.Entries.Select(e => e.Name).ToList();
        var builtins = BuiltinKernels.All.Keys.ToHashSet(StringComparer.Ordinal);

        Assert.Equal(entries.Count, entries.Distinct(StringComparer.Ordinal).Count());
        Assert.True(builtins.SetEquals(entries),
            $"PTX entries without a built-in kernel: [{string.Join(", ", entries.Except(builtins))}]; " +
            $"built-in kernels without a PTX entry: [{string.Join(", ", builtins.Except(entries))}]");
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Every_entry_takes_its_kernels_parameters_in_order_with_matching_PTX_types(string kernel)
    {
        var def = BuiltinKernels.All[kernel];
        var entry = Assert.Single(Module.Value.Entries, e => e.Name == kernel);

        Assert.True(entry.Params.Count == def.Params.Length,
            $"{kernel}: the PTX entry has {entry.Params.Count} parameters, the kernel {def.Signature} has {def.Params.Length}");
        for (var i = 0; i < def.Params.Length; i++)
        {
            var expected = PtxTypesOf(def.Params[i].Kind);
            Assert.True(expected.Contains(entry.Params[i].Type),
                $"{kernel} parameter {i} ({def.Params[i]}): PTX type {entry.Params[i].Type}, expected {string.Join(" or ", expected)}");
        }
    }

    [Fact]
    public void The_header_is_PTX_ISA_6_to_8_for_sm_70_with_64_bit_addresses()
    {
        var module = Module.Value;

        // sm_70 needs PTX ISA 6.0 or later; every CUDA 12 or later driver JITs ISA 8.0 and below.
        var version = Version.Parse(module.Version ?? "missing");
        Assert.InRange(version, new Version(6, 0), new Version(8, 0));
        Assert.Equal("sm_70", module.Target);
        Assert.Equal(64, module.AddressSize);
    }

    [Fact]
    public void The_module_needs_nothing_linked()
    {
        // A PTX module can only call what it defines or declares .extern; -nocudalib builds must declare nothing.
        Assert.Empty(Module.Value.Externs);
    }

    [Fact]
    public async Task The_cpu_backend_loads_the_module_and_resolves_every_kernel_by_name()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(256 * 4);

        // Drivers take PTX as a NUL-terminated string, which is how a program passes the file's bytes.
        var module = context.LoadModule([.. File.ReadAllBytes(NativeToolchain.CheckedInPtxPath), 0]);
        var functions = BuiltinKernels.All.Keys.ToDictionary(k => k, k => context.GetFunction(module, k));
        context.EnqueueLaunch(0, functions["fill_f32"], Dev.Dims, new ParamPacker().U64(256).F32(7.5f).Ptr(x).ToArray(), Dev.Tag("launch"));

        Assert.Equal(functions.Count, functions.Values.Distinct().Count());
        Assert.All(await Dev.DownloadAsync<float>(context, x, 256), v => Assert.Equal(7.5f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public void The_checked_in_module_is_what_build_ptx_sh_makes_with_clang_14()
    {
        NativeToolchain.Require("clang-14");
        var dir = Directory.CreateTempSubdirectory("gpupool-ptx-");
        try
        {
            var output = Path.Combine(dir.FullName, "gpupool_kernels.ptx");
            var (exitCode, log) = NativeToolchain.Run("bash", [Path.Combine(NativeToolchain.KernelsDirectory, "build-ptx.sh"), "--compiler", "clang", output],
                TimeSpan.FromMinutes(5));
            Assert.True(exitCode == 0, $"build-ptx.sh failed ({exitCode}): {log}");

            var fresh = File.ReadAllText(output);
            Assert.True(fresh == Text.Value,
                "native/kernels/ptx/gpupool_kernels.ptx is not what the kernel sources compile to now; regenerate it with " +
                $"`native/kernels/build-ptx.sh --compiler clang` and commit it. First difference: {FirstDifference(Text.Value, fresh)}");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void The_parser_reads_entries_parameters_and_header_and_rejects_parameter_forms_it_does_not_know()
    {
        const string ptx = """
            .version 7.0
            .target sm_70
            .address_size 64
            .extern .func (.param .b32 r) expf(.param .b32 x);
            .visible .entry none()
            {
            	ret;
            }
            .visible .entry two( // a comment
            	.param .u64 two_param_0,
            	.param .f32 two_param_1
            )
            {
            	ret;
            }
            """;

        var module = PtxModule.Parse(ptx);

        Assert.Equal(("7.0", "sm_70", 64), (module.Version, module.Target, module.AddressSize));
        Assert.Equal(["none", "two"], module.Entries.Select(e => e.Name));
        Assert.Empty(module.Entries[0].Params);
        Assert.Equal([new PtxParam(".u64", "two_param_0"), new PtxParam(".f32", "two_param_1")], module.Entries[1].Params);
        Assert.Single(module.Externs);
        Assert.Throws<FormatException>(() => PtxModule.Parse(".visible .entry s(\n\t.param .align 8 .b8 s_param_0[16]\n)\n"));
        Assert.Throws<FormatException>(() => PtxModule.Parse(".visible .entry open(\n\t.param .u64 open_param_0,\n"));
    }

    private static string[] PtxTypesOf(ParamKind kind) => kind switch
    {
        ParamKind.U64 or ParamKind.Ptr => [".u64"],
        ParamKind.I32 => [".u32", ".s32"],
        ParamKind.F32 => [".f32"],
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    private static string FirstDifference(string expected, string actual)
    {
        var a = expected.Split('\n');
        var b = actual.Split('\n');
        for (var i = 0; i < Math.Max(a.Length, b.Length); i++)
        {
            var left = i < a.Length ? a[i] : "<end of file>";
            var right = i < b.Length ? b[i] : "<end of file>";
            if (left != right)
            {
                return string.Create(CultureInfo.InvariantCulture, $"line {i + 1}: checked in '{left}', built '{right}'");
            }
        }

        return "none line by line (line endings?)";
    }
}
