using System.Text;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// A module's __device__ and __constant__ variables through the SDK, on each transport: the broker allocates them when it
/// loads the module, module_get_global says where they are, and they are lease memory like any allocation.
/// </summary>
public sealed class ModuleGlobalTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    /// <summary>scale = 2.5f, table = {1, 2, 3, 4} (constant), counts[256] zeroed: 1044 bytes of variables.</summary>
    private static readonly byte[] Module = Encoding.UTF8.GetBytes("""
        .version 7.0
        .target sm_70
        .address_size 64

        .visible .global .align 4 .f32 scale = 0f40200000;
        .visible .const .align 4 .b8 table[16] = {1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0};
        .visible .global .align 4 .b8 counts[1024];

        .visible .entry my_kernel(
        	.param .u64 my_kernel_param_0
        )
        {
        	ret;
        }

        """);

    public static TheoryData<SessionTransportKind> Transports => new() { SessionTransportKind.Grpc, SessionTransportKind.Tcp, SessionTransportKind.Unix };

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_variable_starts_as_the_module_initializes_it_and_takes_copies_both_ways(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var module = await session.LoadModuleAsync(Module);

        var scale = await session.GetGlobalAsync(module, "scale");
        var table = await session.GetGlobalAsync(module, "table");
        var counts = await session.GetGlobalAsync(module, "counts");

        Assert.Equal((4UL, 16UL, 1024UL), (scale.Size, table.Size, counts.Size));
        Assert.Equal(new[] { 2.5f }, await session.CopyToHostAsync<float>(scale.Address, 1));
        Assert.Equal(new[] { 1, 2, 3, 4 }, await session.CopyToHostAsync<int>(table.Address, 4));
        var values = Enumerable.Range(0, 256).ToArray();
        await session.CopyToDeviceAsync(counts.Address, values);
        await session.CopyToDeviceAsync(table.Address + 8, new[] { 30, 40 });
        Assert.Equal(values, await session.CopyToHostAsync<int>(counts.Address, 256));
        Assert.Equal(new[] { 1, 2, 30, 40 }, await session.CopyToHostAsync<int>(table.Address, 4));
        Assert.Equal(PoolFixture.DefaultLeaseMemory - 1044, (await session.MemGetInfoAsync()).Free);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_copy_past_a_variables_end_is_refused_with_InvalidAddress(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var table = await session.GetGlobalAsync(await session.LoadModuleAsync(Module), "table");

        await session.CopyToDeviceAsync(table.Address + 8, new[] { 5, 6, 7 });
        var seq = session.LastSeq;
        var sticky = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        var read = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync<int>(table.Address, 5));

        Assert.Equal((ErrorCode.InvalidAddress, seq), (sticky.Code, sticky.FailedSeq));
        Assert.Contains($"0x{table.Address.Address + 8:x} + 12 bytes runs past the end of its allocation (0x{table.Address.Address:x}, 16 bytes) by 4 bytes", sticky.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.InvalidAddress, read.Code);
        Assert.Equal(new[] { 1, 2, 3, 4 }, await session.CopyToHostAsync<int>(table.Address, 4));
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task An_unknown_variable_is_NotFound_naming_it_and_its_module(SessionTransportKind kind)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);
        var module = await session.LoadModuleAsync(Module);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetGlobalAsync(module, "no_such_variable"));

        Assert.Equal(ErrorCode.NotFound, error.Code);
        Assert.Equal($"no variable named 'no_such_variable' in module {module.Id}", error.Message);
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_module_of_another_session_is_refused_as_the_other_module_ops_refuse_it(SessionTransportKind kind)
    {
        await using var owner = await pool.LeaseAsync();
        await using var ownerSession = await owner.OpenSessionAsync(kind);
        var theirs = await ownerSession.LoadModuleAsync(Module);
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(kind);

        var global = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetGlobalAsync(theirs, "scale"));
        var function = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetFunctionAsync(theirs, "my_kernel"));

        Assert.Equal((ErrorCode.NotFound, $"module {theirs.Id} is not loaded in this lease"), (global.Code, global.Message));
        Assert.Equal((function.Code, function.Message), (global.Code, global.Message));
        Assert.Equal(4UL, (await ownerSession.GetGlobalAsync(theirs, "scale")).Size);
    }

    [Fact]
    public async Task Unloading_the_module_gives_its_variables_memory_back_and_their_addresses_stop_working()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var module = await session.LoadModuleAsync(Module);
        var counts = await session.GetGlobalAsync(module, "counts");

        await session.UnloadModuleAsync(module);

        Assert.Equal(PoolFixture.DefaultLeaseMemory, (await session.MemGetInfoAsync()).Free);
        var lookup = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetGlobalAsync(module, "counts"));
        Assert.Equal(ErrorCode.NotFound, lookup.Code);
        var read = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync<int>(counts.Address, 1));
        Assert.Equal(ErrorCode.InvalidAddress, read.Code);
    }

    [Fact]
    public async Task A_module_whose_variables_pass_the_lease_limit_fails_with_OutOfMemory_and_leaves_the_memory_as_it_was()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 1 << 20);
        await using var session = await lease.OpenSessionAsync();
        await session.AllocAsync((1 << 20) - 1000);
        var before = await session.MemGetInfoAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(Module));

        Assert.Equal(ErrorCode.OutOfMemory, error.Code);
        Assert.Contains("its 3 variable(s) take 1044 bytes, and the lease's memory limit is 1048576 bytes", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, await session.MemGetInfoAsync());
    }
}
