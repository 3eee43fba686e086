using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using DeviceSession = GpuPool.Client.DeviceSession;

namespace GpuPool.IntegrationTests;

/// <summary>One lease's pointers mean nothing in another lease's session: every use is InvalidAddress, and the owner's bytes stay as they were.</summary>
public sealed class CrossLeaseIsolationTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const int Size = 4096;
    private static readonly byte[] Pattern = Enumerable.Range(0, Size).Select(i => (byte)(i * 7)).ToArray();

    [Fact]
    public async Task Copy_to_another_lease_pointer_fails_with_InvalidAddress_and_leaves_its_data_untouched()
    {
        var (owner, ownerSession, ptr) = await OwnerWithPatternAsync();
        await using (owner)
        await using (ownerSession)
        {
            await using var intruder = await pool.LeaseAsync();
            await using var session = await intruder.OpenSessionAsync();
            await session.AllocAsync(Size);

            await session.CopyToDeviceAsync(ptr, new byte[Size]);
            var seq = session.LastSeq;

            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
            Assert.Equal(ErrorCode.InvalidAddress, error.Code);
            Assert.Equal(seq, error.FailedSeq);
            Assert.Contains($"copy to device destination: 0x{ptr.Address:x} is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
            Assert.Equal(Pattern, await ownerSession.CopyToHostAsync<byte>(ptr, Size));
            await pool.AssertServesAnotherLeaseAsync();
        }
    }

    [Fact]
    public async Task Launch_on_another_lease_pointer_fails_with_InvalidAddress_and_leaves_its_data_untouched()
    {
        var (owner, ownerSession, ptr) = await OwnerWithPatternAsync();
        await using (owner)
        await using (ownerSession)
        {
            await using var intruder = await pool.LeaseAsync();
            await using var session = await intruder.OpenSessionAsync();
            var fill = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "fill_f32");

            await session.LaunchAsync(fill, new Dim3(4), new Dim3(256), new KernelArgs().U64(Size / 4).F32(0).Ptr(ptr));
            var seq = session.LastSeq;

            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
            Assert.Equal(ErrorCode.InvalidAddress, error.Code);
            Assert.Equal(seq, error.FailedSeq);
            Assert.Contains($"kernel fill_f32 parameter y: 0x{ptr.Address:x} is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
            Assert.Equal(Pattern, await ownerSession.CopyToHostAsync<byte>(ptr, Size));
            await pool.AssertServesAnotherLeaseAsync();
        }
    }

    [Fact]
    public async Task Device_to_device_copy_out_of_another_lease_pointer_fails_with_InvalidAddress()
    {
        var (owner, ownerSession, ptr) = await OwnerWithPatternAsync();
        await using (owner)
        await using (ownerSession)
        {
            await using var intruder = await pool.LeaseAsync();
            await using var session = await intruder.OpenSessionAsync();
            var mine = await session.AllocAsync(Size);

            await session.CopyDeviceToDeviceAsync(mine, ptr, Size);
            var seq = session.LastSeq;

            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.SynchronizeAsync().AsTask());
            Assert.Equal(ErrorCode.InvalidAddress, error.Code);
            Assert.Equal(seq, error.FailedSeq);
            Assert.Contains($"device copy source: 0x{ptr.Address:x} is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
            Assert.Equal(new byte[Size], await session.CopyToHostAsync<byte>(mine, Size));
            await pool.AssertServesAnotherLeaseAsync();
        }
    }

    [Fact]
    public async Task Reading_another_lease_pointer_fails_with_InvalidAddress()
    {
        var (owner, ownerSession, ptr) = await OwnerWithPatternAsync();
        await using (owner)
        await using (ownerSession)
        {
            await using var intruder = await pool.LeaseAsync();
            await using var session = await intruder.OpenSessionAsync();

            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.CopyToHostAsync(ptr, new byte[Size]).AsTask());

            Assert.Equal(ErrorCode.InvalidAddress, error.Code);
            Assert.Contains($"copy to host source: 0x{ptr.Address:x} is not inside any allocation of this lease", error.Message, StringComparison.Ordinal);
            await pool.AssertServesAnotherLeaseAsync();
        }
    }

    [Fact]
    public async Task Freeing_another_lease_pointer_fails_with_InvalidAddress_and_keeps_its_memory()
    {
        var (owner, ownerSession, ptr) = await OwnerWithPatternAsync();
        await using (owner)
        await using (ownerSession)
        {
            await using var intruder = await pool.LeaseAsync();
            await using var session = await intruder.OpenSessionAsync();

            var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.FreeAsync(ptr));

            Assert.Equal(ErrorCode.InvalidAddress, error.Code);
            Assert.Contains($"cannot free 0x{ptr.Address:x}: it is not an allocation of this lease", error.Message, StringComparison.Ordinal);
            Assert.Equal(Pattern, await ownerSession.CopyToHostAsync<byte>(ptr, Size));
            await pool.AssertServesAnotherLeaseAsync();
        }
    }

    private async Task<(Lease Lease, DeviceSession Session, DevicePtr Ptr)> OwnerWithPatternAsync()
    {
        var lease = await pool.LeaseAsync();
        var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(Size);
        await session.CopyToDeviceAsync(ptr, Pattern);
        await session.SynchronizeAsync();
        return (lease, session, ptr);
    }
}
