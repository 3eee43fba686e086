using System.Buffers;
using GpuPool.Client.Transport;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Tests.Sessions;

/// <summary>
/// The session's reply waiters, driven as the session drives them: a reply updates its waiter, and whoever takes a
/// decided waiter out of the table completes it. A waiter its caller has read goes back to be rented again; one taken
/// by a cancellation or the session's end never does, since a reader may still hold it.
/// </summary>
public sealed class PendingRepliesTests
{
    private readonly PendingReplies _table = new();

    [Fact]
    public async Task A_value_waiter_completes_with_its_reply_once()
    {
        var waiter = _table.RentValue();
        _table.Add(7, waiter);
        var outcome = waiter.Wait(CancellationToken.None);

        Value(7, new ReplyValue(0x7f00_0000_1000, 0, null));
        Value(7, new ReplyValue(0xbad, 0, null));

        Assert.Equal(0x7f00_0000_1000UL, (await outcome).Value);
        Assert.False(_table.TryGet(7, out _));
    }

    [Fact]
    public async Task A_value_waiter_is_rented_again_only_once_its_caller_has_read_the_outcome()
    {
        var waiter = _table.RentValue();
        _table.Add(1, waiter);
        var outcome = waiter.Wait(CancellationToken.None);
        Value(1, new ReplyValue(1, 0, null));

        Assert.NotSame(waiter, _table.RentValue());
        await outcome;
        Assert.Same(waiter, _table.RentValue());
    }

    [Fact]
    public async Task A_value_waiter_failed_by_its_ops_error_is_rented_again_once_read()
    {
        var waiter = _table.RentValue();
        _table.Add(2, waiter);
        var outcome = waiter.Wait(CancellationToken.None);
        var error = new GpuPoolException(ErrorCode.NotFound, "no kernel 'nope' in module 1");

        Assert.True(_table.TryTake(2, out var taken));
        taken.Fail(error, reusable: true);

        Assert.Same(error, await Assert.ThrowsAsync<GpuPoolException>(async () => await outcome));
        Assert.Same(waiter, _table.RentValue());
    }

    [Fact]
    public async Task A_cancelled_waiter_is_taken_out_its_late_reply_dropped_and_it_is_never_rented_again()
    {
        using var cancel = new CancellationTokenSource();
        var waiter = _table.RentValue();
        _table.Add(3, waiter);
        var outcome = waiter.Wait(cancel.Token);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await outcome);
        Assert.False(_table.TryGet(3, out _));
        Value(3, new ReplyValue(42, 0, null));

        Assert.NotSame(waiter, _table.RentValue());
    }

    [Fact]
    public async Task The_sessions_end_fails_every_waiter_and_none_is_rented_again()
    {
        var first = _table.RentValue();
        var second = _table.RentValue();
        var copy = _table.RentCopy(new byte[16], striped: false);
        _table.Add(1, first);
        _table.Add(2, second);
        _table.Add(3, copy);
        var outcomes = new Task[] { first.Wait(CancellationToken.None).AsTask(), second.Wait(CancellationToken.None).AsTask(), copy.Wait(CancellationToken.None).AsTask() };
        var ended = new GpuPoolException(ErrorCode.LeaseEnded, "lease l-1 ended: revoked by the scheduler");

        var all = _table.TakeAll();
        foreach (var pending in all)
        {
            pending.Fail(ended, reusable: false);
        }

        Assert.Equal(3, all.Count);
        foreach (var outcome in outcomes)
        {
            Assert.Same(ended, await Assert.ThrowsAsync<GpuPoolException>(() => outcome));
        }

        Assert.DoesNotContain(_table.RentValue(), new[] { first, second });
        Assert.DoesNotContain(_table.RentValue(), new[] { first, second });
        Assert.NotSame(copy, _table.RentCopy(new byte[16], striped: false));
    }

    [Fact]
    public async Task A_copy_waiter_assembles_its_chunks_at_their_offsets()
    {
        var destination = new byte[12];
        var copy = _table.RentCopy(destination, striped: false);
        _table.Add(4, copy);
        var outcome = copy.Wait(CancellationToken.None);

        Data(4, 4, [5, 6, 7, 8], last: false);
        Data(4, 0, [1, 2, 3, 4], last: false);
        Assert.False(outcome.IsCompleted, "the copy completed before its last chunk");

        // The last chunk as a large one comes: received by the reader straight into the destination.
        new byte[] { 9, 10, 11, 12 }.CopyTo(copy.Destination(8, 4));
        Received(4, 4, last: true);

        Assert.True(await outcome);
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], destination);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_striped_copy_completes_once_both_the_word_of_its_connections_and_every_byte_have_come(bool wordFirst)
    {
        var destination = new byte[8];
        var copy = _table.RentCopy(destination, striped: true);
        _table.Add(5, copy);
        var outcome = copy.Wait(CancellationToken.None);

        if (wordFirst)
        {
            Value(5, new ReplyValue(0b11, 0, null));
        }

        // Chunks of a striped copy come on several connections, in any order.
        Data(5, 4, [5, 6, 7, 8], last: true);
        Data(5, 0, [1, 2, 3], last: false);
        Assert.False(outcome.IsCompleted, "the copy completed with a byte missing");
        Data(5, 3, [4], last: false);
        Assert.Equal(wordFirst, outcome.IsCompleted);

        if (!wordFirst)
        {
            Value(5, new ReplyValue(0b11, 0, null));
        }

        Assert.True(await outcome);
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], destination);
    }

    [Fact]
    public async Task A_connection_that_carried_a_striped_copy_closing_before_its_bytes_came_fails_the_copy_naming_it()
    {
        var copy = _table.RentCopy(new byte[8], striped: true);
        _table.Add(6, copy);
        var outcome = copy.Wait(CancellationToken.None);
        Data(6, 0, [1, 2, 3, 4], last: false);
        Value(6, new ReplyValue(0b101, 0, null));

        LaneClosed(2, new GpuPoolException(ErrorCode.Unavailable, "connection reset by peer"));

        var error = await Assert.ThrowsAsync<GpuPoolException>(async () => await outcome);
        Assert.Equal(ErrorCode.Unavailable, error.Code);
        Assert.Equal((6UL, "memcpy_dtoh"), (error.FailedSeq, error.FailedOp));
        Assert.Equal("copy #6 of 8 bytes to the host failed: data connection 2 closed after 4 of 8 bytes had arrived (connection reset by peer)", error.Message);
    }

    [Fact]
    public async Task A_connection_that_carried_none_of_a_striped_copy_closing_leaves_the_copy_waiting()
    {
        var destination = new byte[8];
        var copy = _table.RentCopy(destination, striped: true);
        _table.Add(7, copy);
        var outcome = copy.Wait(CancellationToken.None);
        Value(7, new ReplyValue(0b101, 0, null));

        LaneClosed(1, new GpuPoolException(ErrorCode.Unavailable, "connection reset by peer"));
        Assert.False(outcome.IsCompleted, "a connection the copy did not use decided it");
        Data(7, 0, [1, 2, 3, 4, 5, 6, 7, 8], last: true);

        Assert.True(await outcome);
    }

    [Fact]
    public async Task A_chunk_of_a_failed_striped_copy_that_a_connection_still_held_never_lands_in_the_next_copy()
    {
        var copy = _table.RentCopy(new byte[8], striped: true);
        _table.Add(6, copy);
        var outcome = copy.Wait(CancellationToken.None);
        Value(6, new ReplyValue(0b110, 0, null));

        // Data connection 1's reader has found the copy for a chunk it is handing over when connection 2 closes, which fails the copy.
        Assert.True(_table.TryGet(6, out var held));
        LaneClosed(2, new GpuPoolException(ErrorCode.Unavailable, "connection reset by peer"));
        await Assert.ThrowsAsync<GpuPoolException>(async () => await outcome);
        var destination = new byte[4];
        var next = _table.RentCopy(destination, striped: true);
        _table.Add(9, next);
        var nextOutcome = next.Wait(CancellationToken.None);

        held.OnData(0, new ReadOnlySequence<byte>([0xee, 0xee, 0xee, 0xee]), last: false);
        Value(9, new ReplyValue(0b1, 0, null));

        Assert.Equal(new byte[4], destination);
        Assert.False(nextOutcome.IsCompleted, "the next copy completed with the failed copy's bytes");
    }

    /// <summary>A reply's value for op <paramref name="seq"/>, handled as the session's reply target does.</summary>
    private void Value(ulong seq, ReplyValue value)
    {
        if (_table.TryGet(seq, out var pending) && pending.OnValue(value))
        {
            Finish(seq, pending);
        }
    }

    private void Data(ulong seq, ulong offset, byte[] bytes, bool last)
    {
        if (_table.TryGet(seq, out var pending) && pending.OnData(offset, new ReadOnlySequence<byte>(bytes), last))
        {
            Finish(seq, pending);
        }
    }

    private void Received(ulong seq, int length, bool last)
    {
        if (_table.TryGet(seq, out var pending) && pending is CopyReply copy && copy.Received(length, last))
        {
            Finish(seq, pending);
        }
    }

    private void LaneClosed(int lane, GpuPoolException error)
    {
        foreach (var (seq, copy) in _table.StripedCopies())
        {
            if (copy.LaneClosed(lane, error))
            {
                Finish(seq, copy);
            }
        }
    }

    private void Finish(ulong seq, Pending pending)
    {
        if (_table.TryTake(seq, pending))
        {
            pending.Finish();
        }
    }
}
