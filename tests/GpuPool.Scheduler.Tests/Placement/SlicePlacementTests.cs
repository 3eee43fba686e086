using CsCheck;
using GpuPool.Scheduler.Placement;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>A slice goes to the device it fits most tightly: the least free memory left after it.</summary>
public sealed class SlicePlacementTests
{
    [Fact]
    public void A_slice_goes_to_the_device_with_the_least_free_memory_that_holds_it()
    {
        var model = Model(
            [Broker("b0", Device(0, 80), Device(1, 40)), Broker("b1", Device(0, 24), Device(1, 16))],
            [Lease("l0", "b0", 0, 60, 100)]);

        // b0/0 has 20 GiB free, b1/0 24, b0/1 40: b1/1 (16) is too small.
        Assert.Equal(new[] { ("b0", 0u) }, Where(model.TryPlace(PlacementAsk.Slice(18 * GiB, 100))));
        Assert.Equal(new[] { ("b1", 0u) }, Where(model.TryPlace(PlacementAsk.Slice(21 * GiB, 100))));
        Assert.Equal(new[] { ("b0", 1u) }, Where(model.TryPlace(PlacementAsk.Slice(25 * GiB, 100))));
    }

    [Fact]
    public void A_device_with_room_for_the_memory_but_not_the_share_is_passed_over()
    {
        var model = Model(
            [Broker("b0", Device(0, 80), Device(1, 40))],
            [Lease("l0", "b0", 1, 1, 900)]);

        Assert.Equal(new[] { ("b0", 0u) }, Where(model.TryPlace(PlacementAsk.Slice(8 * GiB, 200))));
    }

    [Fact]
    public void The_model_filter_is_a_case_insensitive_part_of_the_device_name()
    {
        var model = Model([Broker("b0", Device(0, 16, name: "NVIDIA L4"), Device(1, 80, name: "NVIDIA H100 80GB HBM3"))], []);

        Assert.Equal(new[] { ("b0", 1u) }, Where(model.TryPlace(PlacementAsk.Slice(8 * GiB, 100, "h100"))));
        Assert.Null(model.TryPlace(PlacementAsk.Slice(8 * GiB, 100, "A100")));
    }

    [Fact]
    public void Draining_and_drained_brokers_take_no_slices()
    {
        var model = Model([Broker("b0", draining: true, Device(0, 80)), Broker("b1", Device(0, 80))], [], drained: ["b1"]);

        Assert.Null(model.TryPlace(PlacementAsk.Slice(GiB, 1)));

        model.SetDrained("b1", false);
        Assert.Equal(new[] { ("b1", 0u) }, Where(model.TryPlace(PlacementAsk.Slice(GiB, 1))));
    }

    [Fact]
    public void A_broker_that_does_not_answer_takes_no_slices_until_it_answers_again()
    {
        var model = Model([Broker("b0", Device(0, 16)), Broker("b1", Device(0, 80))], []);

        model.SetUnanswering("b0", true);
        var whileSilent = Where(model.TryPlace(PlacementAsk.Slice(GiB, 1)));
        model.SetUnanswering("b0", false);

        Assert.Equal(new[] { ("b1", 0u) }, whileSilent);
        Assert.Equal(new[] { ("b0", 0u) }, Where(model.TryPlace(PlacementAsk.Slice(GiB, 1))));
        Assert.Empty(model.Unanswering);
    }

    [Fact]
    public void A_slice_is_best_fit_against_a_brute_force_search_of_random_pools()
    {
        Gen.Select(AnyPool(AnyBroker, maxLeases: 14), AnySliceAsk).Sample((pool, ask) =>
        {
            var model = pool.Model();
            var feasible = pool.Shadow().FeasibleForSlice(ask);

            var site = model.TryPlace(ask);

            if (feasible.Count == 0)
            {
                Assert.Null(site);
                return;
            }

            Assert.NotNull(site);
            var chosen = Assert.Single(feasible, d => d.BrokerId == site.BrokerId && d.Info.Index == Assert.Single(site.DeviceIndexes));
            Assert.Equal(feasible.Min(d => d.FreeMemory), chosen.FreeMemory);
        }, iter: 3_000);
    }

    internal static (string, uint)[] Where(Site? site) => site is null ? [] : [.. site.DeviceIndexes.Select(i => (site.BrokerId, i))];
}
