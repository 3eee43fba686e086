using System.Text;
using GpuPool.Testing.Ptx;

namespace GpuPool.Devices.Tests.Cpu;

/// <summary>
/// A module's __device__ and __constant__ variables on the cpu backend: allocations of the lease that come with the
/// module, initialized from the PTX, charged against the lease's limit, bounds-checked, and gone with the module or the
/// context.
/// </summary>
public sealed class ModuleVariableTests
{
    /// <summary>y = 2.5f, x[10] zeroed, c = {1f, 2f, 3f, 4f} in constant memory: 60 bytes of variables.</summary>
    private const string Variables = """
        .visible .global .align 4 .f32 y = 0f40200000;
        .visible .global .align 4 .b8 x[40];
        .visible .const .align 4 .b8 c[16] = {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64};
        .extern .global .align 4 .u32 elsewhere;
        """;

    private static byte[] Ptx(string declarations, params string[] entries)
    {
        var text = new StringBuilder(".version 7.0\n.target sm_70\n.address_size 64\n\n").Append(declarations).Append('\n');
        foreach (var entry in entries)
        {
            text.Append(".visible .entry ").Append(entry).Append("(\n\t.param .u64 ").Append(entry).Append("_param_0\n)\n{\n\tret;\n}\n\n");
        }

        return [.. Encoding.UTF8.GetBytes(text.ToString()), 0];
    }

    [Fact]
    public async Task Loading_a_module_allocates_its_variables_initialized_from_the_PTX()
    {
        await using var context = Dev.Context(Dev.Device());

        var module = context.LoadModule(Ptx(Variables, "my_kernel"));

        var (y, ySize) = context.GetGlobal(module, "y");
        var (x, xSize) = context.GetGlobal(module, "x");
        var (c, cSize) = context.GetGlobal(module, "c");
        Assert.Equal((4UL, 40UL, 16UL), (ySize, xSize, cSize));
        Assert.Equal(new[] { 2.5f }, await Dev.DownloadAsync<float>(context, y, 1));
        Assert.Equal(new float[10], await Dev.DownloadAsync<float>(context, x, 10));
        Assert.Equal(new[] { 1f, 2f, 3f, 4f }, await Dev.DownloadAsync<float>(context, c, 4));
        Assert.Equal(3, new[] { x, y, c }.Distinct().Count());
    }

    [Fact]
    public async Task Variables_are_charged_against_the_lease_like_any_allocation()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        context.Allocate(1000);

        context.LoadModule(Ptx(Variables));

        Assert.Equal((1060UL, 1060UL), (context.MemoryUsed, device.MemoryUsed));
    }

    [Fact]
    public async Task A_module_whose_variables_do_not_fit_fails_with_OutOfMemory_naming_the_limit_and_leaves_nothing()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device, limit: 8192);
        context.Allocate(4096);
        var tables = context.Allocations.Count;

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(Ptx(".global .align 8 .b8 small[8];\n.global .align 8 .b8 big[4096] = {1};", "my_kernel")));

        Assert.Equal(DeviceErrorCode.OutOfMemory, e.Code);
        Assert.Contains("its 2 variable(s) take 4104 bytes", e.Message, StringComparison.Ordinal);
        Assert.Contains("the lease's memory limit is 8192 bytes with 4096 in use (4096 free)", e.Message, StringComparison.Ordinal);
        Assert.Equal((4096UL, 4096UL, tables), (context.MemoryUsed, device.MemoryUsed, context.Allocations.Count));
        var fits = context.LoadModule(Ptx(".global .align 8 .b8 big[4096];"));
        Assert.Equal(4096UL, context.GetGlobal(fits, "big").Size);
    }

    [Fact]
    public async Task Copies_to_and_from_a_variable_are_checked_against_its_size()
    {
        await using var context = Dev.Context(Dev.Device());
        var module = context.LoadModule(Ptx(Variables));
        var (x, _) = context.GetGlobal(module, "x");

        context.EnqueueCopyToDevice(0, x + 8, new byte[32], Dev.Tag("memcpy_htod"));
        await context.SynchronizeAsync();
        Assert.Null(context.TakeError());

        var past = new OpTag(41, "memcpy_htod");
        context.EnqueueCopyToDevice(0, x + 8, new byte[33], past);
        await context.SynchronizeAsync();

        var error = context.TakeError();
        Assert.Equal((41UL, DeviceErrorCode.InvalidAddress), (error!.Op.Seq, error.Error.Code));
        Assert.Contains($"(0x{x:x}, 40 bytes) by 1 bytes", error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_kernel_writes_a_variable_and_is_stopped_at_its_end()
    {
        await using var context = Dev.Context(Dev.Device());
        var module = context.LoadModule(OwnPtx.WithVariables(".visible .global .align 4 .b8 buf[64];", OwnPtx.Fill()));
        var fill = context.GetFunction(module, "fill_f32");
        var (buf, _) = context.GetGlobal(module, "buf");

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(16).F32(3f).Ptr(buf).ToArray(), Dev.Tag("launch"));
        Assert.All(await Dev.DownloadAsync<float>(context, buf, 16), v => Assert.Equal(3f, v));

        context.EnqueueLaunch(0, fill, Dev.Dims, new ParamPacker().U64(17).F32(3f).Ptr(buf).ToArray(), new OpTag(52, "launch"));
        await context.SynchronizeAsync();
        var error = context.TakeError();
        Assert.Equal((52UL, DeviceErrorCode.InvalidAddress), (error!.Op.Seq, error.Error.Code));
    }

    [Fact]
    public async Task Unloading_the_module_frees_its_variables_and_their_addresses()
    {
        var device = Dev.Device();
        await using var context = Dev.Context(device);
        var module = context.LoadModule(Ptx(Variables));
        var (x, _) = context.GetGlobal(module, "x");

        context.UnloadModule(module);

        Assert.Equal((0UL, 0UL, 0), (context.MemoryUsed, device.MemoryUsed, context.Allocations.Count));
        var e = Assert.Throws<DeviceException>(() => context.GetGlobal(module, "x"));
        Assert.Equal((DeviceErrorCode.NotFound, $"module {module} is not loaded in this lease"), (e.Code, e.Message));
        context.EnqueueCopyToDevice(0, x, new byte[4], new OpTag(61, "memcpy_htod"));
        await context.SynchronizeAsync();
        Assert.Equal(DeviceErrorCode.InvalidAddress, context.TakeError()!.Error.Code);
    }

    [Fact]
    public async Task Closing_the_context_frees_the_variables_of_its_modules()
    {
        var device = Dev.Device();
        var context = Dev.Context(device);
        context.LoadModule(Ptx(Variables));
        context.LoadModule(Ptx(Variables));
        Assert.Equal(120UL, device.MemoryUsed);

        await context.DisposeAsync();

        Assert.Equal((0UL, 0), (device.MemoryUsed, context.Allocations.Count));
    }

    [Fact]
    public async Task A_variable_the_module_does_not_define_is_NotFound_naming_it_and_the_module()
    {
        await using var context = Dev.Context(Dev.Device());
        var module = context.LoadModule(Ptx(Variables));

        var unknown = Assert.Throws<DeviceException>(() => context.GetGlobal(module, "nope"));
        var external = Assert.Throws<DeviceException>(() => context.GetGlobal(module, "elsewhere"));
        var builtin = Assert.Throws<DeviceException>(() => context.GetGlobal(context.LoadBuiltinModule(), "y"));

        Assert.Equal((DeviceErrorCode.NotFound, $"no variable named 'nope' in module {module}"), (unknown.Code, unknown.Message));
        Assert.Equal(DeviceErrorCode.NotFound, external.Code);
        Assert.Equal(DeviceErrorCode.NotFound, builtin.Code);
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.GetGlobal(999, "y")).Code);
    }

    [Fact]
    public async Task A_variable_cannot_be_freed_on_its_own()
    {
        await using var context = Dev.Context(Dev.Device());
        var module = context.LoadModule(Ptx(Variables));
        var (y, _) = context.GetGlobal(module, "y");

        var e = await Assert.ThrowsAsync<DeviceException>(() => context.FreeAsync(y).AsTask());

        Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code);
        Assert.Contains($"it is a variable of module {module}", e.Message, StringComparison.Ordinal);
        Assert.Equal(new[] { 2.5f }, await Dev.DownloadAsync<float>(context, y, 1));
    }

    [Fact]
    public async Task A_variable_gets_the_alignment_it_declares()
    {
        await using var context = Dev.Context(Dev.Device());

        var module = context.LoadModule(Ptx(".global .align 4096 .b8 page[16];"));

        Assert.Equal(0UL, context.GetGlobal(module, "page").Address % 4096);
    }

    [Fact]
    public async Task A_variable_initialized_with_an_address_is_refused_naming_it_and_nothing_is_loaded()
    {
        await using var context = Dev.Context(Dev.Device());

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(Ptx(".global .u32 target = 1;\n.global .align 8 .u64 ptr = generic(target);")));

        Assert.Equal(DeviceErrorCode.NotSupported, e.Code);
        Assert.Contains("module variable 'ptr'", e.Message, StringComparison.Ordinal);
        Assert.Equal((0UL, 0), (context.MemoryUsed, context.Allocations.Count));
    }
}
