using CsCheck;
using GpuPool.Devices.Contexts;

namespace GpuPool.Devices.Tests.Contexts;

/// <summary>A lease's allocations as ranges: the bounds rules every pointer of every op goes through, on every backend.</summary>
public sealed class AllocationTableTests
{
    [Fact]
    public void A_range_inside_one_allocation_passes_and_one_past_its_end_says_by_how_many_bytes()
    {
        var memory = Table((0x1000, 256), (0x2000, 256));

        memory.Check(0x1000, 256, "copy");
        memory.Check(0x10ff, 1, "copy");
        var error = Assert.Throws<DeviceException>(() => memory.Check(0x1080, 200, "copy to host source"));

        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Code);
        Assert.Equal("copy to host source: 0x1080 + 200 bytes runs past the end of its allocation (0x1000, 256 bytes) by 72 bytes", error.Message);
    }

    [Fact]
    public void A_pointer_before_after_or_between_allocations_is_not_inside_any()
    {
        var memory = Table((0x1000, 100), (0x2000, 100));

        var errors = new ulong[] { 0xfff, 0x1064, 0x1800, 0x2064, 0x10 }.Select(p => Assert.Throws<DeviceException>(() => memory.Check(p, 1, "copy source"))).ToArray();

        Assert.All(errors, e => Assert.Equal(DeviceErrorCode.InvalidAddress, e.Code));
        Assert.Equal("copy source: 0x1800 is not inside any allocation of this lease", errors[2].Message);
    }

    [Fact]
    public void A_range_that_spans_two_neighbouring_allocations_fails()
    {
        var memory = Table((0x1000, 0x100), (0x1100, 0x100));

        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x10f0, 0x20, "memset destination")).Code);
    }

    [Fact]
    public void A_huge_length_does_not_wrap_around_into_a_pass()
    {
        var memory = Table((0x1000, 0x100));

        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x1010, ulong.MaxValue - 8, "copy")).Code);
    }

    [Fact]
    public void A_zero_byte_range_must_still_start_inside_an_allocation()
    {
        var memory = Table((0x1000, 0x100));

        memory.Check(0x1000, 0, "copy");
        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x5000, 0, "copy")).Code);
    }

    [Fact]
    public void Elements_must_be_aligned_counted_from_zero_and_inside_one_allocation()
    {
        var memory = Table((0x1000, 64));

        var misaligned = Assert.Throws<DeviceException>(() => memory.CheckElements(0x1002, 1, 4, "kernel x parameter y"));
        var negative = Assert.Throws<DeviceException>(() => memory.CheckElements(0x1000, -1, 4, "kernel x parameter y"));
        var overflow = Assert.Throws<DeviceException>(() => memory.CheckElements(0x1000, long.MaxValue, 4, "kernel x parameter y"));
        var past = Assert.Throws<DeviceException>(() => memory.CheckElements(0x1000, 17, 4, "kernel x parameter y"));

        Assert.Equal(64UL, memory.CheckElements(0x1000, 16, 4, "kernel x parameter y"));
        Assert.Equal(0UL, memory.CheckElements(0xdead0000, 0, 4, "kernel x parameter y"));
        Assert.Equal((DeviceErrorCode.InvalidAddress, "kernel x parameter y: 0x1002 is not aligned to 4 bytes"), (misaligned.Code, misaligned.Message));
        Assert.Equal(DeviceErrorCode.InvalidArgument, negative.Code);
        Assert.Equal(DeviceErrorCode.InvalidArgument, overflow.Code);
        Assert.Contains("by 4 bytes", past.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Free_takes_only_the_start_of_an_allocation_and_gives_it_back()
    {
        var memory = Table((0x1000, 0x100), (0x3000, 0x40));

        var inside = Assert.Throws<DeviceException>(() => memory.Remove(0x1010));
        var unknown = Assert.Throws<DeviceException>(() => memory.Remove(0x9000));
        var removed = memory.Remove(0x1000);

        Assert.Equal("cannot free 0x1010: it points inside the allocation at 0x1000, not at its start", inside.Message);
        Assert.Equal("cannot free 0x9000: it is not an allocation of this lease", unknown.Message);
        Assert.Equal(new Allocation(0x1000, 0x100, 7), removed);
        Assert.Equal(0x40UL, memory.BytesInUse);
        Assert.Equal(DeviceErrorCode.InvalidAddress, Assert.Throws<DeviceException>(() => memory.Check(0x1000, 4, "copy")).Code);
    }

    [Fact]
    public void Taking_everything_empties_the_table()
    {
        var memory = Table((0x3000, 0x40), (0x1000, 0x100));

        var all = memory.TakeAll();

        Assert.Equal([0x1000UL, 0x3000UL], all.Select(a => a.Base));
        Assert.Equal(0UL, memory.BytesInUse);
        Assert.Equal(0, memory.Count);
    }

    [Fact]
    public void Random_adds_and_removes_keep_the_table_consistent_with_a_model()
    {
        // An op adds an allocation of `size` bytes at the start of the next free 16 KiB slot (add == true), so that
        // allocations never touch, or removes the live allocation that `size` picks.
        var op = Gen.Select(Gen.Bool, Gen.Int[1, 8192]);
        op.Array[1, 60].Sample(ops =>
        {
            var table = new AllocationTable();
            var live = new Dictionary<ulong, ulong>();
            ulong next = 0x10000;
            foreach (var (add, size) in ops)
            {
                if (add || live.Count == 0)
                {
                    table.Add(new Allocation(next, (ulong)size, 0));
                    live[next] = (ulong)size;
                    next += 16384;
                }
                else
                {
                    var ptr = live.Keys.OrderBy(p => p).ElementAt(size % live.Count);
                    Assert.Equal(live[ptr], table.Remove(ptr).Size);
                    live.Remove(ptr);
                    Assert.Throws<DeviceException>(() => table.Check(ptr, 1, "test"));
                }

                Assert.Equal(live.Values.Aggregate(0UL, (a, b) => a + b), table.BytesInUse);
                Assert.Equal(live.Count, table.Count);
                foreach (var (ptr, bytes) in live)
                {
                    table.Check(ptr, bytes, "test");
                    table.Check(ptr + bytes - 1, 1, "test");
                    Assert.Throws<DeviceException>(() => table.Check(ptr, bytes + 1, "test"));
                    Assert.Throws<DeviceException>(() => table.Check(ptr + bytes, 1, "test"));
                }
            }
        }, iter: 200);
    }

    /// <summary>
    /// Allocations added one by one and in batches (a module's variables), in any order of address: each is found from its
    /// first to its last byte, the gaps between them are in none, and the bytes in use are their sum.
    /// </summary>
    [Fact]
    public void Allocations_added_singly_and_in_batches_are_each_found_and_the_gaps_are_not()
    {
        Gen.Int[1, 40].SelectMany(n => Gen.Int[0, n].Array[1, 6], (n, cuts) => (n, cuts)).Sample(t =>
        {
            // Slot k of a shuffled order: allocation k at 0x1000 * (k + 1), 0x100 + k bytes; the cuts split them into batches.
            var (n, cuts) = t;
            var all = Enumerable.Range(0, n).Select(k => new Allocation((ulong)(0x1000 * (k + 1)), (ulong)(0x100 + k), 7)).ToArray();
            new Random(n * 31 + cuts.Sum()).Shuffle(all);
            var bounds = cuts.Append(0).Append(n).Distinct().Order().ToArray();
            var table = new AllocationTable();
            for (var b = 0; b + 1 < bounds.Length; b++)
            {
                var batch = all[bounds[b]..bounds[b + 1]];
                if (batch.Length == 1)
                {
                    table.Add(batch[0]);
                }
                else
                {
                    table.AddRange(batch);
                }
            }

            Assert.Equal(n, table.Count);
            Assert.Equal(all.Aggregate(0UL, (sum, a) => sum + a.Size), table.BytesInUse);
            foreach (var a in all)
            {
                Assert.True(table.TryFind(a.Base, out var start, out var end) && start == a.Base && end == a.Base + a.Size);
                Assert.True(table.TryFind(a.Base + a.Size - 1, out start, out _) && start == a.Base);
                Assert.False(table.TryFind(a.Base + a.Size, out _, out _));
                Assert.False(table.TryFind(a.Base - 1, out _, out _));
            }
        }, iter: 200);
    }

    private static AllocationTable Table(params (ulong Base, ulong Size)[] allocations)
    {
        var table = new AllocationTable();
        foreach (var (b, size) in allocations)
        {
            table.Add(new Allocation(b, size, 7));
        }

        return table;
    }
}
