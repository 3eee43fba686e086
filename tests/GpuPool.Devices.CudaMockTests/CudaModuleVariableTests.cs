using System.Runtime.InteropServices;
using static GpuPool.Devices.CudaMockTests.Ops;

namespace GpuPool.Devices.CudaMockTests;

/// <summary>
/// A module's variables on the cuda backend: where the driver put them (cuModuleGetGlobal_v2), charged against the lease,
/// in its allocations for the bounds checks, and gone with the module.
/// </summary>
public sealed class CudaModuleVariableTests
{
    private const string Module = """
        .version 8.0
        .target sm_90
        .visible .global .align 4 .b8 table[16] = {1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0};
        .visible .const .align 4 .b8 scale[8];
        .visible .entry mock_scale(
        .param .u64 n, .param .f32 a, .param .u64 x)
        { ret; }

        """;

    [Fact]
    public async Task Variables_are_where_the_driver_put_them_charged_against_the_lease_and_copies_reach_them()
    {
        await using var context = Context();
        var module = context.LoadModule(System.Text.Encoding.UTF8.GetBytes(Module));

        var (table, tableSize) = context.GetGlobal(module, "table");
        var (scale, scaleSize) = context.GetGlobal(module, "scale");
        context.EnqueueCopyToDevice(0, scale, MemoryMarshal.AsBytes<float>([1.5f, 2.5f]).ToArray(), Tag("memcpy_htod"));

        Assert.Equal((16UL, 8UL, 24UL), (tableSize, scaleSize, context.MemoryUsed));
        Assert.Equal(new[] { 1, 2, 3, 4 }, MemoryMarshal.Cast<byte, int>(await DownloadAsync(context, table, 16)).ToArray());
        Assert.Equal(new[] { 1.5f, 2.5f }, await FloatsAsync(context, scale, 2));
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.GetGlobal(module, "missing")).Code);
    }

    [Fact]
    public async Task A_copy_past_a_variables_end_is_refused()
    {
        await using var context = Context();
        var module = context.LoadModule(System.Text.Encoding.UTF8.GetBytes(Module));
        var (table, _) = context.GetGlobal(module, "table");

        var past = Tag("memcpy_htod");
        context.EnqueueCopyToDevice(0, table + 8, new byte[9], past);
        await Within(context.SynchronizeAsync());

        var error = context.TakeError();
        Assert.Equal((past, DeviceErrorCode.InvalidAddress), (error?.Op, error?.Error.Code));
    }

    [Fact]
    public async Task Unloading_the_module_gives_its_variables_back_to_the_lease_and_the_driver()
    {
        await using var context = Context();
        var allocations = MockDriver.Stat("allocations");
        var module = context.LoadModule(System.Text.Encoding.UTF8.GetBytes(Module));
        Assert.Equal(allocations + 2, MockDriver.Stat("allocations"));

        context.UnloadModule(module);
        await Within(context.SynchronizeAsync());
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (MockDriver.Stat("allocations") != allocations && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Equal((allocations, 0UL), (MockDriver.Stat("allocations"), context.MemoryUsed));
        Assert.Equal(DeviceErrorCode.NotFound, Assert.Throws<DeviceException>(() => context.GetGlobal(module, "table")).Code);
    }

    [Fact]
    public async Task A_module_whose_variables_do_not_fit_is_not_loaded_at_all()
    {
        await using var context = Context(limit: 4096);
        var modules = MockDriver.Stat("modules");
        context.Allocate(4090);

        var e = Assert.Throws<DeviceException>(() => context.LoadModule(System.Text.Encoding.UTF8.GetBytes(Module)));

        Assert.Equal(DeviceErrorCode.OutOfMemory, e.Code);
        Assert.Contains("the lease's memory limit is 4096 bytes", e.Message, StringComparison.Ordinal);
        Assert.Equal((modules, 4090UL), (MockDriver.Stat("modules"), context.MemoryUsed));
    }
}
