using System.Text;
using GpuPool.Testing.Ptx;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// Modules on the cpu backend: the built-in library's exact image runs as C#; any other PTX module runs on the PTX engine
/// whatever its kernels are named, and one with a kernel the engine does not run is refused at its load, naming it.
/// </summary>
public sealed class ModuleTests
{
    [Fact]
    public async Task The_builtin_library_image_loads_and_its_functions_are_found()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var module = context.LoadModule(OwnKernels.BuiltinImage);

        Assert.NotEqual(context.GetFunction(module, "fill_f32"), context.GetFunction(module, "axpy_f32"));
    }

    [Fact]
    public async Task The_builtin_library_image_runs_the_builtin_kernels_as_CSharp()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(64 * 4);
        var fill = context.GetFunction(context.LoadModule(OwnKernels.BuiltinImage), "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(4.5f).Ptr(x).ToArray(), Dev.Tag("launch"));
        Assert.All(await Dev.DownloadAsync<float>(context, x, 64), v => Assert.Equal(4.5f, v));
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(65).F32(1f).Ptr(x).ToArray(), new OpTag(90, "launch"));
        await context.SynchronizeAsync();

        // The C# body checks its whole range before it writes, and names the parameter; the engine would name a thread.
        var error = context.TakeError();
        Assert.Equal((90UL, DeviceErrorCode.InvalidAddress), (error!.Op.Seq, error.Error.Code));
        Assert.Contains("kernel fill_f32 parameter y", error.Error.Message, StringComparison.Ordinal);
        Assert.All(await Dev.DownloadAsync<float>(context, x, 64), v => Assert.Equal(4.5f, v));
    }

    [Fact]
    public async Task The_builtin_library_image_with_a_comment_added_is_another_module_and_runs_on_the_PTX_engine()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(64 * 4);
        byte[] image = [.. OwnKernels.BuiltinImage.AsSpan(0, OwnKernels.BuiltinImage.Length - 1), .. "// a copy of the library\n"u8, 0];
        var fill = context.GetFunction(context.LoadModule(image), "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(4.5f).Ptr(x).ToArray(), Dev.Tag("launch"));
        Assert.All(await Dev.DownloadAsync<float>(context, x, 64), v => Assert.Equal(4.5f, v));
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(65).F32(1f).Ptr(x).ToArray(), new OpTag(91, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((91UL, DeviceErrorCode.InvalidAddress), (error!.Op.Seq, error.Error.Code));
        Assert.StartsWith("kernel fill_f32, thread ", error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_engine_kernel_launched_again_in_another_shape_runs_in_that_shape()
    {
        const string shape = """
            .visible .entry shape(.param .u64 shape_param_0)
            {
            	.reg .b32 %r<7>;
            	.reg .b64 %rd<5>;
            	ld.param.u64 %rd1, [shape_param_0];
            	cvta.to.global.u64 %rd2, %rd1;
            	mov.u32 %r1, %ctaid.x;
            	mov.u32 %r2, %ntid.x;
            	mov.u32 %r3, %tid.x;
            	mov.u32 %r4, %nctaid.x;
            	mad.lo.s32 %r5, %r1, %r2, %r3;
            	mad.lo.s32 %r6, %r4, 1000, %r2;
            	mul.wide.u32 %rd3, %r5, 4;
            	add.s64 %rd4, %rd2, %rd3;
            	st.global.u32 [%rd4], %r6;
            	ret;
            }
            """;
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var output = context.Allocate(64 * 4);
        var kernel = context.GetFunction(context.LoadModule(OwnPtx.Module(shape)), "shape");
        var args = new ParamPacker().Ptr(output).ToArray();

        context.EnqueueLaunch(0, kernel, new LaunchDims(2, 1, 1, 32, 1, 1, 0), args, Dev.Tag("launch"));
        var first = await Dev.DownloadAsync<uint>(context, output, 64);
        context.EnqueueLaunch(0, kernel, new LaunchDims(4, 1, 1, 16, 1, 1, 0), args, Dev.Tag("launch"));
        var second = await Dev.DownloadAsync<uint>(context, output, 64);

        Assert.All(first, v => Assert.Equal(2032u, v));
        Assert.All(second, v => Assert.Equal(4016u, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_kernel_with_a_builtin_name_and_its_parameters_but_another_body_runs_its_own_body()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var y = context.Allocate(64 * 4);
        var fill = context.GetFunction(context.LoadModule(OwnPtx.Module(OwnPtx.Fill(constant: 7f))), "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(4.5f).Ptr(y).ToArray(), Dev.Tag("launch"));

        Assert.All(await Dev.DownloadAsync<float>(context, y, 64), v => Assert.Equal(7f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_module_of_empty_kernels_named_like_builtins_loads_and_its_kernels_do_nothing()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var y = context.Allocate(64 * 4);
        var module = context.LoadModule(OwnPtx.Module(OwnPtx.Empty("fill_f32"), OwnPtx.Empty("axpy_f32")));
        var fill = context.GetFunction(module, "fill_f32");

        // The built-in's parameters do not fit the program's own fill_f32 (one pointer); its own do, and its body (ret)
        // writes nothing.
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(4.5f).Ptr(y).ToArray(), new OpTag(81, "launch"));
        await context.SynchronizeAsync();
        var refused = context.TakeError();
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().Ptr(y).ToArray(), new OpTag(82, "launch"));
        await context.SynchronizeAsync();

        Assert.Equal((DeviceErrorCode.InvalidArgument, "kernel fill_f32 takes 8 bytes of parameters (fill_f32(fill_f32_param_0:8)), but the launch passed 24"), (refused!.Error.Code, refused.Error.Message));
        Assert.Null(context.TakeError());
        Assert.All(await Dev.DownloadAsync<float>(context, y, 64), v => Assert.Equal(0f, v));
        Assert.NotEqual(fill, context.GetFunction(module, "axpy_f32"));
    }

    [Fact]
    public async Task A_PTX_module_with_kernels_outside_the_builtin_library_loads_and_its_kernels_are_found()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var module = context.LoadModule(OwnPtx.Module(OwnPtx.Fill(), OwnPtx.Empty("my_custom_kernel"), OwnPtx.Empty("other_kernel")));

        Assert.Equal(3, new[] { "fill_f32", "my_custom_kernel", "other_kernel" }.Select(k => context.GetFunction(module, k)).Distinct().Count());
        var e = Assert.Throws<DeviceException>(() => context.GetFunction(module, "axpy_f32"));
        Assert.Equal((DeviceErrorCode.NotFound, $"no kernel named 'axpy_f32' in module {module}"), (e.Code, e.Message));
    }

    [Fact]
    public async Task A_kernel_outside_the_builtin_library_runs_on_the_PTX_engine()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(4);
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry count_threads(.param .u64 p)\n{\n.reg .b32 %r<2>;\n.reg .b64 %rd<2>;\nld.param.u64 %rd1, [p];\natom.global.add.u32 %r1, [%rd1], 1;\nret;\n}\n");
        var custom = context.GetFunction(context.LoadModule(ptx), "count_threads");

        context.EnqueueLaunch(0, custom, new LaunchDims(3, 1, 1, 40, 1, 1, 0), new ParamPacker().Ptr(x).ToArray(), new OpTag(80, "launch"));

        var counted = await Dev.DownloadAsync<uint>(context, x, 1);
        Assert.Equal(120u, counted[0]);
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_module_with_an_instruction_the_engine_does_not_run_is_refused_at_load_with_NotSupported_naming_it()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry my_custom_kernel(.param .u64 p)\n{\nwgmma.fence.sync.aligned;\nret;\n}\n");

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(ptx));

        Assert.Equal((DeviceErrorCode.NotSupported, "kernel my_custom_kernel, line 6: the cpu backend's PTX engine does not run the instruction wgmma (`wgmma.fence.sync.aligned`)"), (e.Code, e.Message));
    }

    [Fact]
    public async Task A_refused_module_names_its_first_kernel_the_engine_does_not_run_whatever_the_checks_order()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var entries = Enumerable.Range(0, 40).Select(i => i is 23 or 31
            ? OwnPtx.Refused($"k{i}")
            : OwnPtx.Fill().Replace("fill_f32", $"k{i}", StringComparison.Ordinal)).ToArray();
        var module = OwnPtx.Module(entries);

        // Checked on every core at once; the module's first refusal is the one reported, every time.
        for (var attempt = 0; attempt < 5; attempt++)
        {
            var e = Assert.Throws<DeviceException>(() => context.LoadModule(module));
            Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
            Assert.StartsWith("kernel k23, line ", e.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_module_whose_kernel_the_engine_cannot_compile_is_refused_at_load_naming_the_kernel()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptx = OwnPtx.Module(OwnPtx.Fill(), ".visible .entry jumps_nowhere(.param .u64 p)\n{\n\tbra.uni $L__nowhere;\n\tret;\n}\n");

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(ptx));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.StartsWith("kernel jumps_nowhere", e.Message, StringComparison.Ordinal);
        Assert.Equal((0UL, 0), (context.MemoryUsed, context.Allocations.Count));
    }

    [Fact]
    public async Task A_module_whose_body_the_engine_cannot_read_is_refused_at_load_naming_the_line_and_column()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptx = OwnPtx.Module(".visible .entry garbled(.param .u64 p)\n{\n\tadd.s32 %r1, , [;\n\tret;\n}\n");

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(ptx));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.StartsWith("the cpu backend's PTX engine cannot read the module: line 8, column 15: expected an operand", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_refused_module_leaves_nothing_behind_and_the_next_load_works()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var refused = OwnPtx.WithVariables(".visible .global .align 4 .b8 table[4096];", OwnPtx.Fill(), OwnPtx.Refused("k"));

        Assert.Equal(DeviceErrorCode.NotSupported, Assert.Throws<DeviceException>(() => context.LoadModule(refused)).Code);

        Assert.Equal((0UL, 0UL, 0), (context.MemoryUsed, device.MemoryUsed, context.Allocations.Count));
        var y = context.Allocate(16 * 4);
        var fill = context.GetFunction(context.LoadModule(OwnPtx.Module(OwnPtx.Fill())), "fill_f32");
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(16).F32(2f).Ptr(y).ToArray(), Dev.Tag("launch"));
        Assert.All(await Dev.DownloadAsync<float>(context, y, 16), v => Assert.Equal(2f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_PTX_module_with_variables_and_no_kernels_loads()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .global .align 4 .u32 counter = 7;\n");

        var module = context.LoadModule(ptx);

        Assert.Equal(4UL, context.GetGlobal(module, "counter").Size);
    }

    [Fact]
    public async Task A_fat_binary_is_refused_with_NotSupported()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        byte[] fatbin = [0x50, 0xED, 0x55, 0xBA, 1, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0];

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(fatbin));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.Contains("fat binary", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PTX_that_cannot_be_read_is_refused_with_InvalidArgument_saying_why()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(".version 7.0\n.target sm_70\n.entry k(.param .u64 a, { ret; }"u8));

        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
        Assert.StartsWith("the module image cannot be read: the PTX", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cubin_cut_short_is_refused_with_InvalidArgument_naming_its_elf_header()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        byte[] elf = [0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1, 0x33, 0, 0, 0, 0, 0, 0, 0, 0];

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(elf));

        // A whole cubin holds only SASS and is NotSupported on the cpu backend (Shim/ModuleFormatTests, with nvcc's).
        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
        Assert.Contains("ELF", e.Message);
    }

    [Fact]
    public async Task An_image_that_is_neither_PTX_nor_cubin_is_refused_with_InvalidArgument()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var e = Assert.Throws<DeviceException>(() => context.LoadModule("hello"u8));

        Assert.Equal(DeviceErrorCode.InvalidArgument, e.Code);
    }

    [Fact]
    public async Task GetFunction_of_an_unknown_name_fails_with_NotFound()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var module = context.LoadBuiltinModule();

        var e = Assert.Throws<DeviceException>(() => context.GetFunction(module, "no_such_kernel"));

        Assert.Equal(DeviceErrorCode.NotFound, e.Code);
        Assert.Contains("no kernel named 'no_such_kernel'", e.Message);
    }

    [Fact]
    public async Task GetFunction_finds_only_the_entries_of_its_own_module()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var module = context.LoadModule(OwnPtx.Module(OwnPtx.Fill()));

        var e = Assert.Throws<DeviceException>(() => context.GetFunction(module, "axpy_f32"));

        Assert.Equal(DeviceErrorCode.NotFound, e.Code);
        Assert.Contains("no kernel named 'axpy_f32'", e.Message);
    }

    [Fact]
    public async Task UnloadModule_removes_its_functions()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(64 * 4);
        var module = context.LoadModule(OwnPtx.Module(OwnPtx.Fill()));
        var fill = context.GetFunction(module, "fill_f32");

        context.UnloadModule(module);
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(1f).Ptr(x).ToArray(), new OpTag(70, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((70UL, DeviceErrorCode.NotFound), (error!.Op.Seq, error.Error.Code));
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.GetFunction(module, "fill_f32")).Code);
    }

    [Fact]
    public async Task UnloadModule_leaves_the_functions_of_other_modules()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(64 * 4);
        var gone = context.LoadModule(OwnPtx.Module(OwnPtx.Fill()));
        var kept = context.LoadModule(OwnPtx.Module(OwnPtx.Fill()));
        var fill = context.GetFunction(kept, "fill_f32");
        context.GetFunction(gone, "fill_f32");

        context.UnloadModule(gone);
        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(2f).Ptr(x).ToArray(), Dev.Tag("launch"));

        Assert.All(await Dev.DownloadAsync<float>(context, x, 64), v => Assert.Equal(2f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task Unloading_a_module_twice_fails_with_NotFound()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var module = context.LoadBuiltinModule();
        context.UnloadModule(module);

        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.UnloadModule(module)).Code);
    }
}
