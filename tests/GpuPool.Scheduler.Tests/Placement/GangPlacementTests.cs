using CsCheck;
using GpuPool.Scheduler.Placement;
using static GpuPool.Scheduler.Tests.Placement.Pools;

namespace GpuPool.Scheduler.Tests.Placement;

/// <summary>A gang takes N wholly free devices of one host: the host with the fewest wholly free devices that still has N.</summary>
public sealed class GangPlacementTests
{
    [Fact]
    public void A_gang_goes_to_the_host_with_the_fewest_wholly_free_devices_that_has_enough()
    {
        var model = Model(
            [
                Broker("b0", Device(0, 80), Device(1, 80), Device(2, 80), Device(3, 80)),
                Broker("b1", Device(0, 80), Device(1, 80), Device(2, 80), Device(3, 80)),
                Broker("b2", Device(0, 80), Device(1, 80)),
            ],
            [Lease("l0", "b1", 2, 1, 1)]);

        // Wholly free: b0 4, b1 3 (a small slice holds device 2), b2 2.
        var site = model.TryPlace(PlacementAsk.Gang(3));

        Assert.NotNull(site);
        Assert.Equal("b1", site.BrokerId);
        Assert.Equal(new uint[] { 0, 1, 3 }, site.DeviceIndexes.Order());
        Assert.Equal("b2", model.TryPlace(PlacementAsk.Gang(2))?.BrokerId);
        Assert.Equal("b0", model.TryPlace(PlacementAsk.Gang(4))?.BrokerId);
        Assert.Null(model.TryPlace(PlacementAsk.Gang(5)));
    }

    [Fact]
    public void A_gang_never_spans_hosts()
    {
        var model = Model([Broker("b0", Device(0, 80), Device(1, 80)), Broker("b1", Device(0, 80), Device(1, 80))], []);

        Assert.Null(model.TryPlace(PlacementAsk.Gang(3)));
    }

    [Fact]
    public void A_model_filtered_gang_goes_to_the_host_with_the_fewest_wholly_free_devices_of_any_model_among_those_with_enough_of_its_model()
    {
        // The host index orders hosts by all their wholly free devices; the filter then asks for N of the model
        // on the host. b1 has fewer H100s free (2) but more devices free in all (5) than b0 (3 and 3).
        var model = Model(
            [
                Broker("b0", Device(0, 80), Device(1, 80), Device(2, 80)),
                Broker("b1", Device(0, 80), Device(1, 80), Device(2, 16, name: "NVIDIA L4"), Device(3, 16, name: "NVIDIA L4"), Device(4, 16, name: "NVIDIA L4")),
            ],
            []);

        Assert.Equal("b0", model.TryPlace(PlacementAsk.Gang(2, "h100"))?.BrokerId);
        Assert.Equal("b1", model.TryPlace(PlacementAsk.Gang(2, "l4"))?.BrokerId);
    }

    [Fact]
    public void A_gang_is_best_fit_against_a_brute_force_search_of_random_pools()
    {
        Gen.Select(AnyPool(Gen.OneOf(AnyBroker, UniformBroker), maxLeases: 10), AnyGangAsk).Sample((pool, ask) =>
        {
            var model = pool.Model();
            var shadow = pool.Shadow();
            var feasible = shadow.FeasibleForGang(ask);

            var site = model.TryPlace(ask);

            AssertBestFitGang(shadow, ask, feasible, site);
        }, iter: 3_000);
    }

    /// <summary>
    /// The gang's site: N distinct wholly free devices of the model on one placeable host that has at least N of
    /// them, and no such host has fewer wholly free devices. Without a model filter that is the fewest wholly free
    /// devices of the model; with one, of any model (see the test above). Null exactly when no host has N.
    /// </summary>
    internal static void AssertBestFitGang(ShadowPool shadow, PlacementAsk ask, IReadOnlyList<(Protocol.V1.BrokerRecord Broker, int Matching, int WhollyFree)> feasible, Site? site)
    {
        if (feasible.Count == 0)
        {
            Assert.Null(site);
            return;
        }

        Assert.NotNull(site);
        var host = Assert.Single(feasible, b => b.Broker.BrokerId == site.BrokerId);
        Assert.Equal(feasible.Min(b => b.WhollyFree), host.WhollyFree);
        if (string.IsNullOrEmpty(ask.DeviceModel))
        {
            Assert.Equal(feasible.Min(b => b.Matching), host.Matching);
        }

        Assert.Equal((int)ask.WholeDevices, site.DeviceIndexes.Distinct().Count());
        Assert.Equal((int)ask.WholeDevices, site.DeviceIndexes.Count);
        foreach (var index in site.DeviceIndexes)
        {
            var device = shadow.Device(site.BrokerId, index);
            Assert.NotNull(device);
            Assert.True(device.WhollyFree, $"{device} is not wholly free");
            Assert.True(device.Matches(ask.DeviceModel), $"{device} is not of model '{ask.DeviceModel}'");
        }
    }
}
