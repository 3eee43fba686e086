using System.Text;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// Modules on the cpu backend: any PTX module loads and its kernels are found; the kernels of a module whose entries are
/// all built-in run, any other kernel's launch fails with NotSupported naming it; cubins and fat binaries are refused.
/// </summary>
public sealed class ModuleTests
{
    private static byte[] Ptx(params string[] entries)
    {
        var text = new StringBuilder(".version 7.0\n.target sm_70\n.address_size 64\n\n");
        foreach (var entry in entries)
        {
            text.Append(".visible .entry ").Append(entry).Append("(\n\t.param .u64 ").Append(entry).Append("_param_0\n)\n{\n\tret;\n}\n\n");
        }

        // Drivers take PTX as a NUL-terminated string.
        return [.. Encoding.UTF8.GetBytes(text.ToString()), 0];
    }

    [Fact]
    public async Task A_PTX_module_of_builtin_kernels_loads_and_its_functions_are_found()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var module = context.LoadModule(Ptx("fill_f32", "axpy_f32"));

        Assert.NotEqual(context.GetFunction(module, "fill_f32"), context.GetFunction(module, "axpy_f32"));
    }

    [Fact]
    public async Task A_function_from_a_PTX_module_runs_the_builtin_kernel()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var x = context.Allocate(64 * 4);
        var fill = context.GetFunction(context.LoadModule(Ptx("fill_f32")), "fill_f32");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(64).F32(4.5f).Ptr(x).ToArray(), Dev.Tag("launch"));

        Assert.All(await Dev.DownloadAsync<float>(context, x, 64), v => Assert.Equal(4.5f, v));
        Assert.Null(context.TakeError());
    }

    [Fact]
    public async Task A_PTX_module_with_kernels_outside_the_builtin_library_loads_and_its_kernels_are_found()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var module = context.LoadModule(Ptx("fill_f32", "my_custom_kernel", "other_kernel"));

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
    public async Task Launching_a_kernel_with_an_instruction_the_engine_does_not_run_fails_with_NotSupported_naming_it()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry my_custom_kernel(.param .u64 p)\n{\nbar.arrive 1, 64;\nret;\n}\n");
        var custom = context.GetFunction(context.LoadModule(ptx), "my_custom_kernel");

        context.EnqueueLaunch(0, custom, Dev.Dims, new ParamPacker().U64(1).ToArray(), new OpTag(80, "launch"));
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((80UL, DeviceErrorCode.NotSupported), (error!.Op.Seq, error.Error.Code));
        Assert.Equal("kernel my_custom_kernel, line 6: the cpu backend's PTX engine does not run bar.arrive (`bar.arrive 1, 64`)", error.Error.Message);
    }

    [Fact]
    public async Task A_builtin_name_in_a_module_with_other_kernels_is_the_programs_own_kernel_and_runs_its_own_code()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var y = context.Allocate(64 * 4);
        var module = context.LoadModule(Ptx("fill_f32", "my_custom_kernel"));
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
        var module = context.LoadModule(Ptx("fill_f32"));

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
        var module = context.LoadModule(Ptx("fill_f32"));
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
        var gone = context.LoadModule(Ptx("fill_f32"));
        var kept = context.LoadModule(Ptx("fill_f32"));
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
