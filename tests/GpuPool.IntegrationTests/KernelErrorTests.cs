using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Testing.Ptx;
using DeviceSession = GpuPool.Client.DeviceSession;

namespace GpuPool.IntegrationTests;

/// <summary>Kernels that do not exist, launches that do not fit their kernel, and modules and kernels the cpu backend cannot run.</summary>
public sealed class KernelErrorTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const string FillSignature = "fill_f32(n:u64, value:f32, y:ptr)";

    [Fact]
    public async Task Getting_an_unknown_kernel_fails_with_NotFound_naming_it()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var module = await session.LoadBuiltinModuleAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetFunctionAsync(module, "x"));

        Assert.Equal(ErrorCode.NotFound, error.Code);
        Assert.Equal($"no kernel named 'x' in module {module.Id}", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Launch_with_a_parameter_block_of_the_wrong_size_fails_with_InvalidArgument_naming_the_signature_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(32), new KernelArgs().U64(4).F32(1));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Equal("launch", error.FailedOp);
        Assert.Equal($"operation #{seq} (launch) failed: kernel fill_f32 takes 24 bytes of parameters ({FillSignature}), but the launch passed 12", error.Message);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Theory]
    [InlineData(0u, 1u, 1u)]
    [InlineData(32u, 0u, 1u)]
    [InlineData(32u, 1u, 0u)]
    public async Task Launch_with_a_zero_block_dimension_fails_with_InvalidArgument_at_the_next_sync(uint x, uint y, uint z)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var (fill, ptr) = await FillAndBufferAsync(session);

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(x, y, z), new KernelArgs().U64(4).F32(1).Ptr(ptr));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.EndsWith("launch of fill_f32: grid and block dimensions must all be at least 1", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Launch_with_a_zero_grid_dimension_fails_with_InvalidArgument_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var (fill, ptr) = await FillAndBufferAsync(session);

        await session.LaunchAsync(fill, new Dim3(0), new Dim3(32), new KernelArgs().U64(4).F32(1).Ptr(ptr));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.EndsWith("grid and block dimensions must all be at least 1", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Theory]
    [InlineData(1025u, 1u, 1u)]
    [InlineData(32u, 32u, 2u)]
    public async Task Launch_with_more_than_1024_threads_per_block_fails_with_InvalidArgument_at_the_next_sync(uint x, uint y, uint z)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var (fill, ptr) = await FillAndBufferAsync(session);

        await session.LaunchAsync(fill, new Dim3(1), new Dim3(x, y, z), new KernelArgs().U64(4).F32(1).Ptr(ptr));
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.Contains($"launch of fill_f32: block {x}x{y}x{z} / grid 1x1x1 is past the device's limits (1024 threads per block", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Launch_of_a_function_handle_the_lease_never_got_fails_with_NotFound_at_the_next_sync()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();

        await session.LaunchAsync(new KernelFunction(999, "ghost"), new Dim3(1), new Dim3(32), new KernelArgs());
        var seq = session.LastSeq;

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.NotFound, error.Code);
        Assert.Equal(seq, error.FailedSeq);
        Assert.EndsWith("function 999 does not exist in this lease (get it from a loaded module first)", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_module_with_a_kernel_the_cpu_backend_cannot_run_fails_its_load_with_NotSupported_naming_it_and_leaves_nothing()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var before = await session.MemGetInfoAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(
            OwnPtx.WithVariables(".visible .global .align 4 .b8 table[4096];", OwnPtx.Fill(), OwnPtx.Refused("my_kernel"))));

        Assert.Equal(ErrorCode.NotSupported, error.Code);
        Assert.EndsWith("kernel my_kernel, line 42: the cpu backend's PTX engine does not run the instruction wgmma (`wgmma.fence.sync.aligned`)", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, await session.MemGetInfoAsync());
        var fill = await session.GetFunctionAsync(await session.LoadModuleAsync(OwnPtx.Module(OwnPtx.Fill())), "fill_f32");
        var ptr = await session.AllocAsync(64);
        await session.LaunchAsync(fill, new Dim3(1), new Dim3(16), new KernelArgs().U64(16).F32(2.5f).Ptr(ptr));
        Assert.All(await session.CopyToHostAsync<float>(ptr, 16), v => Assert.Equal(2.5f, v));
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Loading_an_elf_header_with_no_cubin_behind_it_fails_with_InvalidArgument()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1, 0 }));

        Assert.Equal(ErrorCode.InvalidArgument, error.Code);
        Assert.StartsWith("the module image cannot be read: ", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task A_module_of_a_programs_own_kernel_named_like_a_builtin_offers_only_its_own_entries_and_runs_its_own_body()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();

        var module = await session.LoadModuleAsync(OwnPtx.Module(OwnPtx.Fill(constant: 7f)));
        var fill = await session.GetFunctionAsync(module, "fill_f32");
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.GetFunctionAsync(module, "axpy_f32"));

        Assert.Equal(ErrorCode.NotFound, error.Code);
        var ptr = await session.AllocAsync(64);
        await session.LaunchAsync(fill, new Dim3(1), new Dim3(16), new KernelArgs().U64(16).F32(2.5f).Ptr(ptr));
        Assert.All(await session.CopyToHostAsync<float>(ptr, 16), v => Assert.Equal(7f, v));
    }

    [Fact]
    public async Task The_builtin_library_image_loaded_as_a_module_runs_the_builtin_kernels()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var image = await File.ReadAllBytesAsync(Path.Combine(GpuPool.IntegrationTests.Shim.ShimArtifacts.RepoRoot, "native", "kernels", "ptx", "gpupool_kernels.ptx"));

        var fill = await session.GetFunctionAsync(await session.LoadModuleAsync(image), "fill_f32");
        var ptr = await session.AllocAsync(64);
        await session.LaunchAsync(fill, new Dim3(1), new Dim3(1), new KernelArgs().U64(16).F32(2.5f).Ptr(ptr));
        Assert.All(await session.CopyToHostAsync<float>(ptr, 16), v => Assert.Equal(2.5f, v));

        // One thread filled all 16: the C# body, which ignores the launch's shape; and it checks its range before it writes.
        await session.LaunchAsync(fill, new Dim3(1), new Dim3(1), new KernelArgs().U64(17).F32(1f).Ptr(ptr));
        var refused = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
        Assert.Equal(ErrorCode.InvalidAddress, refused.Code);
        Assert.Contains("kernel fill_f32 parameter y", refused.Message, StringComparison.Ordinal);
    }

    private static async Task<(KernelFunction Fill, DevicePtr Buffer)> FillAndBufferAsync(DeviceSession session)
        => (await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32"), await session.AllocAsync(256));
}
