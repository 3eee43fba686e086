using System.Text;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>Modules on the cpu backend: PTX whose entries are all built-in kernels loads; anything else is refused clearly.</summary>
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
    public async Task A_PTX_module_with_unknown_entries_is_refused_with_NotSupported_naming_them()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(Ptx("fill_f32", "my_custom_kernel", "other_kernel")));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.Contains("my_custom_kernel", e.Message);
        Assert.Contains("other_kernel", e.Message);
    }

    [Fact]
    public async Task A_cubin_image_is_refused_with_NotSupported()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        byte[] elf = [0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1, 0x33, 0, 0, 0, 0, 0, 0, 0, 0];

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(elf));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.Contains("cubin", e.Message);
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
