using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using GpuPool.Broker.Leases;
using GpuPool.Broker.Sessions;
using GpuPool.Protocol.Ops;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests.Sessions;

/// <summary>
/// One session's executor on a cpu device, its replies recorded: ops are numbered and run in order, each answered with
/// its result or its own error, and the failure of fire-and-forget work surfaces once, at the next synchronizing op.
/// </summary>
public sealed class SessionExecutorTests : IAsyncLifetime
{
    private const ulong Unmapped = 0xdead0000;

    private readonly BrokerRig _rig = new();
    private readonly RecordingReplies _replies = new();
    private BrokerLease _lease = null!;
    private SessionExecutor _session = null!;

    public Task InitializeAsync()
    {
        _lease = _rig.Serve(BrokerRig.Lease("l-1"));
        _session = new SessionExecutor(_lease, _rig.Options, _replies, "test");
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _lease.Context.DisposeAsync();
        await _rig.DisposeAsync();
    }

    [Theory]
    [InlineData(5UL)]
    [InlineData(4UL)]
    public async Task An_op_whose_sequence_number_is_not_greater_than_the_last_is_refused_InvalidArgument_and_not_run(ulong seq)
    {
        await Run(5, s => s.MemAlloc(5, new MemAllocOp(256)));
        var ran = false;

        await Run(seq, s =>
        {
            ran = true;
            return s.MemAlloc(seq, new MemAllocOp(256));
        });

        Assert.False(ran, "the op was run");
        var refused = Assert.IsType<ErrorSent>(_replies.For(seq)[^1]).Error;
        Assert.Equal(ErrorCode.InvalidArgument, refused.Code);
        Assert.Equal($"sequence number {seq} is not greater than the previous one (5); the op was not run", refused.Message);
        Assert.Equal(5UL, _session.LastSeq);
        Assert.Equal(256UL, _lease.Context.MemoryUsed);
    }

    [Fact]
    public async Task MemAlloc_answers_the_allocations_device_pointer()
    {
        await Run(1, s => s.MemAlloc(1, new MemAllocOp(4096)));

        var reply = _replies.Value(1);
        Assert.Equal(ReplyKind.DevicePtr, reply.Kind);
        Assert.NotEqual(0UL, reply.Value);
        Assert.Equal(4096UL, _lease.Context.MemoryUsed);

        // The pointer names the allocation: freeing it gives the memory back.
        await Run(2, s => s.MemFree(2, new MemFreeOp(reply.Value)));
        Assert.Equal(ReplyKind.Done, _replies.Value(2).Kind);
        Assert.Equal(0UL, _lease.Context.MemoryUsed);
    }

    [Fact]
    public async Task A_failed_fire_and_forget_launch_surfaces_at_the_next_Synchronize_naming_the_launch_and_only_there()
    {
        await Run(1, s => s.ModuleLoad(1, new ModuleLoadOp(Builtin: true), ReadOnlySequence<byte>.Empty));
        await Run(2, s => s.ModuleGetFunction(2, new ModuleGetFunctionOp(_replies.Value(1).Value), Utf8("fill_f32")));
        var fill = _replies.Value(2).Value;

        await Run(3, s => s.Launch(3, new LaunchOp(fill, 0, 1, 1, 1, 32, 1, 1, 0), FillParams(256, 1f, Unmapped)));
        await Run(4, s => s.Synchronize(4, CancellationToken.None));
        await Run(5, s => s.Synchronize(5, CancellationToken.None));

        Assert.Empty(_replies.For(3));
        var sticky = _replies.Error(4);
        Assert.Equal((ErrorCode.InvalidAddress, 3UL, LaunchOp.Name), (sticky.Code, sticky.FailedSeq, sticky.FailedOp));
        Assert.StartsWith("operation #3 (launch) failed: ", sticky.Message, StringComparison.Ordinal);
        Assert.Equal(new ValueSent(5, ReplyKind.Done, 0, 0), _replies.Value(5));
    }

    [Fact]
    public async Task ModuleGetGlobal_answers_the_variables_address_and_size_or_NotFound_naming_it_and_its_module()
    {
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .global .align 4 .b8 table[16];\n");
        await Run(1, s => s.ModuleLoad(1, new ModuleLoadOp(Builtin: false), new ReadOnlySequence<byte>(ptx)));
        var module = _replies.Value(1).Value;

        await Run(2, s => s.ModuleGetGlobal(2, new ModuleGetGlobalOp(module), Utf8("table")));
        await Run(3, s => s.ModuleGetGlobal(3, new ModuleGetGlobalOp(module), Utf8("nope")));

        var global = _replies.Value(2);
        Assert.Equal((ReplyKind.Global, 16UL, 16UL), (global.Kind, global.Value2, _lease.Context.MemoryUsed));
        Assert.NotEqual(0UL, global.Value);
        var error = _replies.Error(3);
        Assert.Equal((ErrorCode.NotFound, $"no variable named 'nope' in module {module}", 0UL), (error.Code, error.Message, error.FailedSeq));
    }

    [Fact]
    public async Task A_module_image_staged_in_pieces_loads_as_a_whole()
    {
        var ptx = Encoding.UTF8.GetBytes(".version 7.0\n.target sm_70\n.address_size 64\n.visible .global .align 4 .b8 table[16];\n");
        var total = (ulong)ptx.Length;
        await Run(1, s => s.ModuleStage(1, new ModuleStageOp(0, total), new ReadOnlySequence<byte>(ptx, 0, 20)));
        await Run(2, s => s.ModuleStage(2, new ModuleStageOp(20, total), new ReadOnlySequence<byte>(ptx, 20, 30)));
        await Run(3, s => s.ModuleStage(3, new ModuleStageOp(50, total), new ReadOnlySequence<byte>(ptx, 50, ptx.Length - 50)));
        await Run(4, s => s.ModuleLoad(4, new ModuleLoadOp(Builtin: false, Staged: true), ReadOnlySequence<byte>.Empty));
        await Run(5, s => s.ModuleGetGlobal(5, new ModuleGetGlobalOp(_replies.Value(4).Value), Utf8("table")));

        Assert.All(new ulong[] { 1, 2, 3 }, seq => Assert.Equal(ReplyKind.Done, _replies.Value(seq).Kind));
        Assert.Equal((ReplyKind.Global, 16UL), (_replies.Value(5).Kind, _replies.Value(5).Value2));

        // The image is forgotten once loaded: a second staged load has nothing to load.
        await Run(6, s => s.ModuleLoad(6, new ModuleLoadOp(Builtin: false, Staged: true), ReadOnlySequence<byte>.Empty));
        Assert.Equal((ErrorCode.InvalidArgument, "no module image was staged for this load"), (_replies.Error(6).Code, _replies.Error(6).Message));
    }

    [Fact]
    public async Task A_module_piece_out_of_order_or_an_image_larger_than_the_lease_is_refused_and_the_staged_image_dropped()
    {
        var piece = new byte[100];
        await Run(1, s => s.ModuleStage(1, new ModuleStageOp(0, 300), new ReadOnlySequence<byte>(piece)));
        await Run(2, s => s.ModuleStage(2, new ModuleStageOp(200, 300), new ReadOnlySequence<byte>(piece)));
        await Run(3, s => s.ModuleLoad(3, new ModuleLoadOp(Builtin: false, Staged: true), ReadOnlySequence<byte>.Empty));
        await Run(4, s => s.ModuleStage(4, new ModuleStageOp(0, 2 * BrokerRig.MiB), new ReadOnlySequence<byte>(piece)));
        await Run(5, s => s.ModuleStage(5, new ModuleStageOp(0, 100), new ReadOnlySequence<byte>(piece)));
        await Run(6, s => s.ModuleLoad(6, new ModuleLoadOp(Builtin: false, Staged: true), ReadOnlySequence<byte>.Empty));
        await Run(7, s => s.ModuleStage(7, new ModuleStageOp(0, 100), new ReadOnlySequence<byte>(new byte[101])));

        Assert.Equal(
            (ErrorCode.InvalidArgument, "a module image piece of 100 bytes at offset 200 of 300 is out of order (expected offset 100 of 300 bytes); the staged image is dropped"),
            (_replies.Error(2).Code, _replies.Error(2).Message));
        Assert.Equal("no module image was staged for this load", _replies.Error(3).Message);
        Assert.Equal(
            (ErrorCode.OutOfMemory, $"a module image of {2 * BrokerRig.MiB} bytes is larger than the broker takes ({BrokerRig.MiB} bytes: the smaller of its module limit and the lease's memory)"),
            (_replies.Error(4).Code, _replies.Error(4).Message));

        // A whole image of zeros is staged, and the load says it is no module the backend reads.
        Assert.Equal(ReplyKind.Done, _replies.Value(5).Kind);
        Assert.Equal(ErrorCode.InvalidArgument, _replies.Error(6).Code);
        Assert.StartsWith("a module image piece of 101 bytes at offset 0 of 100 is out of order", _replies.Error(7).Message, StringComparison.Ordinal);
        Assert.Equal(0UL, _lease.Context.MemoryUsed);
    }

    [Fact]
    public async Task An_op_that_throws_a_DeviceException_is_answered_with_it_as_its_own_error()
    {
        await Run(1, s => s.MemAlloc(1, new MemAllocOp(2 * BrokerRig.MiB)));

        var error = _replies.Error(1);
        Assert.Equal(ErrorCode.OutOfMemory, error.Code);
        Assert.Equal($"cannot allocate {2 * BrokerRig.MiB} bytes: the lease's memory limit is {BrokerRig.MiB} bytes and 0 are in use ({BrokerRig.MiB} free)", error.Message);
        Assert.Equal((0UL, ""), (error.FailedSeq, error.FailedOp));
    }

    [Fact]
    public async Task An_op_that_fails_after_waiting_is_answered_with_its_own_error()
    {
        await Run(1, s => s.MemFree(1, new MemFreeOp(Unmapped)));

        var error = _replies.Error(1);
        Assert.Equal(ErrorCode.InvalidAddress, error.Code);
        Assert.Equal($"cannot free 0x{Unmapped:x}: it is not an allocation of this lease", error.Message);
        Assert.Equal((0UL, ""), (error.FailedSeq, error.FailedOp));
    }

    [Fact]
    public async Task A_4_byte_MemcpyDtoH_answers_one_Data_chunk_with_the_bytes()
    {
        await Run(1, s => s.MemAlloc(1, new MemAllocOp(256)));
        var ptr = _replies.Value(1).Value;
        await Run(2, s => s.Memset(2, new MemsetOp(ptr, 1, 0, 0x04030201, 4)));

        await Run(3, s => s.MemcpyDtoH(3, new MemcpyDtoHOp(ptr, 4, 0)));
        await Within.Bound(_replies.LastChunk, "the copy's last chunk is sent");

        Assert.Empty(_replies.For(2));
        var chunk = Assert.IsType<DataSent>(Assert.Single(_replies.For(3)));
        Assert.Equal((0UL, true), (chunk.Offset, chunk.Last));
        Assert.Equal([1, 2, 3, 4], chunk.Bytes);
    }

    /// <summary>Numbers and runs op <paramref name="seq"/> as a transport's adapter does, waiting for an op that waits.</summary>
    private Task Run(ulong seq, Func<SessionExecutor, ValueTask> op)
        => Within.Bound(_session.Run(seq, op, static (session, op) => op(session)).AsTask(), $"op #{seq} has run");

    private static ReadOnlySequence<byte> Utf8(string text) => new(Encoding.UTF8.GetBytes(text));

    /// <summary>fill_f32(n: u64, value: f32, y: ptr), laid out as cuLaunchKernel packs it.</summary>
    private static ReadOnlySequence<byte> FillParams(ulong n, float value, ulong y)
    {
        var block = new byte[24];
        BinaryPrimitives.WriteUInt64LittleEndian(block, n);
        BinaryPrimitives.WriteSingleLittleEndian(block.AsSpan(8), value);
        BinaryPrimitives.WriteUInt64LittleEndian(block.AsSpan(16), y);
        return new ReadOnlySequence<byte>(block);
    }
}
