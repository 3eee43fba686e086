using System.Buffers;
using GpuPool.Broker.Transport.FastPath;
using GpuPool.Protocol.Transport;

namespace GpuPool.Broker.Tests.Transport;

/// <summary>
/// A fast-path connection's staging budget: what a payload costs, when a reservation fits, that waiting ends when
/// staged pieces go to the device, and that a piece given back serves the next payload.
/// </summary>
public sealed class StagingBudgetTests : IDisposable
{
    private const int Block = 1 << 20;

    private readonly BlockMemoryPool _blocks = new(Block, maxRetained: 8);

    public void Dispose() => _blocks.Dispose();

    [Theory]
    [InlineData(Block / 2 + 1, Block)]
    [InlineData(Block, Block)]
    [InlineData(Block + 1, 2 * Block)]
    [InlineData(5 * Block / 2, 3 * Block)]
    public void A_large_payload_is_charged_whole_blocks(long length, long charge)
        => Assert.Equal(charge, new StagingBudget(64 * Block, _blocks).ChargeFor(length));

    [Theory]
    [InlineData(0, 256)]
    [InlineData(1, 256)]
    [InlineData(256, 256)]
    [InlineData(257, 512)]
    [InlineData(3000, 4096)]
    [InlineData(Block / 2, Block / 2)]
    public void A_small_payload_is_charged_a_power_of_two_of_at_least_256_bytes(long length, long charge)
        => Assert.Equal(charge, new StagingBudget(64 * Block, _blocks).ChargeFor(length));

    [Fact]
    public void A_charge_past_the_limit_is_refused_while_something_is_staged()
    {
        var budget = new StagingBudget(4096, _blocks);
        Assert.True(budget.TryReserve(4096));

        Assert.False(budget.TryReserve(256));
        Assert.Equal(4096, budget.Staged);
    }

    [Fact]
    public void A_charge_larger_than_the_whole_budget_is_admitted_when_nothing_is_staged()
    {
        var budget = new StagingBudget(4096, _blocks);

        Assert.True(budget.TryReserve(2 * Block));
        Assert.Equal(2 * Block, budget.Staged);
    }

    [Fact]
    public async Task Waiting_for_room_ends_when_the_staged_pieces_are_given_back()
    {
        var budget = new StagingBudget(2 * Block, _blocks);
        var pieces = Stage(budget, new byte[(2 * Block) - 10]);
        var waiting = budget.WaitAsync(Block, CancellationToken.None);
        Assert.False(waiting.IsCompleted, "room was found with the budget spent");

        pieces[0].Owner.Dispose();

        await Within.Bound(waiting, "the wait for room ends");
        Assert.Equal(Block, budget.Staged);
    }

    [Fact]
    public void A_large_payload_is_staged_in_block_pieces_at_their_offsets()
    {
        var budget = new StagingBudget(8 * Block, _blocks);
        var payload = new byte[(2 * Block) + 100];
        Random.Shared.NextBytes(payload);

        var pieces = Stage(budget, payload);

        Assert.Equal([0, Block, 2 * Block], pieces.Select(p => p.Offset));
        Assert.Equal(payload, pieces.SelectMany(p => p.Bytes));
    }

    [Fact]
    public void A_piece_given_back_stages_the_next_payload()
    {
        var budget = new StagingBudget(8 * Block, _blocks);
        var first = Assert.Single(Stage(budget, [1, 2, 3]));
        first.Owner.Dispose();

        var next = Assert.Single(Stage(budget, [4, 5, 6, 7]));

        Assert.Same(first.Owner, next.Owner);
        Assert.Equal([4, 5, 6, 7], next.Bytes);
    }

    /// <summary>Reserves a payload's charge and stages it, as the connection's reader does; the pieces it was handed, bytes copied out.</summary>
    private static List<(int Offset, byte[] Bytes, IDisposable Owner)> Stage(StagingBudget budget, byte[] payload)
    {
        var charge = budget.ChargeFor(payload.Length);
        Assert.True(budget.TryReserve(charge));
        var pieces = new List<(int Offset, byte[] Bytes, IDisposable Owner)>();
        budget.Stage(new ReadOnlySequence<byte>(payload), charge, pieces, static (list, offset, bytes, owner) => list.Add((offset, bytes.ToArray(), owner)));
        return pieces;
    }
}
