using Google.Protobuf;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests;

/// <summary>
/// A broker configured for 1 MiB messages ends a call that sends more, and only that call; the SDK sends what is larger
/// (copies, module images) in pieces.
/// </summary>
public sealed class MessageLimitTests(SmallMessagePoolFixture pool) : IClassFixture<SmallMessagePoolFixture>
{
    [Fact]
    public async Task Op_larger_than_the_broker_message_limit_ends_the_call_with_ResourceExhausted()
    {
        await using var lease = await pool.LeaseAsync();
        await using var raw = await RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, lease.Token);
        var ptr = (await raw.CallAsync(new OpRequest { MemAlloc = new MemAlloc { Bytes = 4 << 20 } })).DevicePtr;

        await raw.SendAsync(new OpRequest { MemcpyHtod = new MemcpyHtoD { Ptr = ptr, Data = ByteString.CopyFrom(new byte[2 << 20]) } });
        var error = await Assert.ThrowsAsync<GpuPoolException>(raw.ReadAsync);

        Assert.Equal(ErrorCode.ResourceExhausted, error.Code);
        Assert.StartsWith("raw device session: the server refused a message larger than its limit", error.Message, StringComparison.Ordinal);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Sessions_of_other_leases_keep_working_while_one_call_is_ended_for_an_oversized_message()
    {
        await using var bystander = await pool.LeaseAsync();
        await using var session = await bystander.OpenSessionAsync();
        var before = await session.AllocAsync(1024);
        await session.MemsetAsync(before, 0x5A, 1024);

        await using (var lease = await pool.LeaseAsync())
        await using (var raw = await RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, lease.Token))
        {
            await raw.SendAsync(new OpRequest { MemcpyHtod = new MemcpyHtoD { Ptr = 0x1000, Data = ByteString.CopyFrom(new byte[2 << 20]) } });
            Assert.Equal(ErrorCode.ResourceExhausted, (await Assert.ThrowsAsync<GpuPoolException>(raw.ReadAsync)).Code);
        }

        Assert.All(await session.CopyToHostAsync<byte>(before, 1024), b => Assert.Equal(0x5A, b));
    }

    [Fact]
    public async Task Lease_whose_call_was_ended_for_an_oversized_message_can_open_a_new_session()
    {
        await using var lease = await pool.LeaseAsync();
        await using (var raw = await RawSession.OpenAsync(pool.Broker.Endpoint, lease.Id, lease.Token))
        {
            await raw.SendAsync(new OpRequest { MemcpyHtod = new MemcpyHtoD { Ptr = 0x1000, Data = ByteString.CopyFrom(new byte[2 << 20]) } });
            Assert.Equal(ErrorCode.ResourceExhausted, (await Assert.ThrowsAsync<GpuPoolException>(raw.ReadAsync)).Code);
        }

        await using var session = await lease.OpenSessionAsync();
        var ptr = await session.AllocAsync(16);
        await session.MemsetAsync(ptr, 1, 16);
        Assert.Equal(Enumerable.Repeat((byte)1, 16).ToArray(), await session.CopyToHostAsync<byte>(ptr, 16));
    }

    [Theory]
    [InlineData(SessionTransportKind.Grpc)]
    [InlineData(SessionTransportKind.Tcp)]
    public async Task Module_image_larger_than_the_message_limit_goes_in_pieces_and_loads_through_the_SDK(SessionTransportKind transport)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(transport);

        // 2.5 MiB of PTX (a long comment, as libraries' PTX carries long sections), with a variable to find afterwards.
        var ptx = ".version 7.0\n.target sm_70\n.address_size 64\n" + string.Concat(Enumerable.Repeat("// padding padding padding padding padding padding padding\n", 45_000))
            + ".visible .global .align 4 .b8 table[64];\n";
        Assert.True(ptx.Length > 2 * SmallMessagePoolFixture.MaxMessageBytes);
        var module = await session.LoadModuleAsync(System.Text.Encoding.UTF8.GetBytes(ptx));
        var table = await session.GetGlobalAsync(module, "table");

        Assert.Equal(64UL, table.Size);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Theory]
    [InlineData(SessionTransportKind.Grpc)]
    [InlineData(SessionTransportKind.Tcp)]
    public async Task Module_image_in_pieces_that_the_cpu_backend_cannot_run_fails_its_load_and_the_next_image_in_pieces_loads(SessionTransportKind transport)
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync(transport);
        var before = await session.MemGetInfoAsync();
        var padding = string.Concat(Enumerable.Repeat("// padding padding padding padding padding padding padding\n", 45_000));
        var refused = System.Text.Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n" + padding
            + ".visible .global .align 4 .b8 table[64];\n.visible .entry my_kernel(.param .u64 p)\n{\n\twgmma.fence.sync.aligned;\n\tret;\n}\n");
        Assert.True(refused.Length > 2 * SmallMessagePoolFixture.MaxMessageBytes);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(refused));

        Assert.Equal(ErrorCode.NotSupported, error.Code);
        Assert.EndsWith("kernel my_kernel, line 45007: the cpu backend's PTX engine does not run the instruction wgmma (`wgmma.fence.sync.aligned`)", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, await session.MemGetInfoAsync());
        var module = await session.LoadModuleAsync(System.Text.Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n" + padding + ".visible .global .align 4 .b8 other[32];\n"));
        Assert.Equal(32UL, (await session.GetGlobalAsync(module, "other")).Size);
        await pool.AssertServesAnotherLeaseAsync();
    }

    [Fact]
    public async Task Module_image_larger_than_the_lease_fails_with_OutOfMemory_and_the_session_goes_on()
    {
        await using var lease = await pool.LeaseAsync(memoryBytes: 2 << 20);
        await using var session = await lease.OpenSessionAsync();

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => session.LoadModuleAsync(new byte[3 << 20]));

        Assert.True(error.Code == ErrorCode.OutOfMemory, error.ToString());
        Assert.Contains($"a module image of {3 << 20} bytes is larger than the broker takes", error.Message, StringComparison.Ordinal);
        var ptr = await session.AllocAsync(16);
        await session.MemsetAsync(ptr, 7, 16);
        Assert.Equal(Enumerable.Repeat((byte)7, 16).ToArray(), await session.CopyToHostAsync<byte>(ptr, 16));
    }

    [Fact]
    public async Task SDK_chunks_copies_larger_than_the_message_limit_in_both_directions()
    {
        await using var lease = await pool.LeaseAsync();
        await using var session = await lease.OpenSessionAsync();
        var data = new byte[3 * SmallMessagePoolFixture.MaxMessageBytes + 12345];
        new Random(11).NextBytes(data);
        var ptr = await session.AllocAsync((ulong)data.Length);

        await session.CopyToDeviceAsync(ptr, data);
        var back = await session.CopyToHostAsync<byte>(ptr, data.Length);

        Assert.Equal((uint)SmallMessagePoolFixture.MaxMessageBytes, session.Info.MaxMessageBytes);
        Assert.True(data.AsSpan().SequenceEqual(back), "the bytes read back differ from the bytes written");
    }
}
