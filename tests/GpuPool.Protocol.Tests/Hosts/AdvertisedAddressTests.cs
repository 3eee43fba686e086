using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using GpuPool.Protocol.Hosts;

namespace GpuPool.Protocol.Tests.Hosts;

/// <summary>
/// What a server bound to an address advertises: --advertise when given, a specific listen address as is, and for a
/// wildcard the default route's interface address, else the first interface up, else loopback with a warning.
/// </summary>
public sealed class AdvertisedAddressTests
{
    // /proc/net/route as Linux writes it: a header, then one route a line (hex, little-endian addresses).
    private const string Routes =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
        "eth1\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
        "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
        "eth0\t000200C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";

    private static readonly AdvertisedAddress.Nic Loopback = new("lo", true, true, [IPAddress.Loopback, IPAddress.IPv6Loopback]);
    private static readonly AdvertisedAddress.Nic Eth0 = new("eth0", true, false, [IPAddress.Parse("fe80::1"), IPAddress.Parse("192.0.2.7")]);
    private static readonly AdvertisedAddress.Nic Eth1 = new("eth1", true, false, [IPAddress.Parse("10.0.0.9")]);
    private static readonly AdvertisedAddress.Nic Wlan0 = new("wlan0", true, false, [IPAddress.Parse("192.168.1.20")]);

    [Fact]
    public void The_default_route_is_the_one_with_destination_and_mask_zero_and_the_lowest_metric()
        => Assert.Equal("eth0", AdvertisedAddress.DefaultRouteInterface(Routes));

    [Fact]
    public void A_route_table_without_a_default_route_or_with_it_down_names_no_interface()
    {
        Assert.Null(AdvertisedAddress.DefaultRouteInterface("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth1\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"));
        Assert.Null(AdvertisedAddress.DefaultRouteInterface("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"));
        Assert.Null(AdvertisedAddress.DefaultRouteInterface(""));
    }

    [Fact]
    public void Bound_to_every_address_the_default_route_interfaces_IPv4_address_is_advertised()
    {
        var chosen = AdvertisedAddress.ChooseForWildcard(IPAddress.Any, Routes, [Loopback, Eth1, Eth0, Wlan0]);

        Assert.Equal(("192.0.2.7", null), (chosen.Host, chosen.Warning));
        Assert.Equal("eth0's address: the default route's interface", chosen.Reason);
    }

    [Fact]
    public void Without_a_default_route_the_first_interface_up_that_is_not_loopback_is_advertised()
    {
        var down = Eth1 with { Up = false };

        var chosen = AdvertisedAddress.ChooseForWildcard(IPAddress.Any, routeTable: null, [Loopback, down, Wlan0, Eth0]);

        Assert.Equal(("192.168.1.20", null), (chosen.Host, chosen.Warning));
    }

    [Fact]
    public void A_host_with_only_loopback_advertises_loopback_and_says_only_this_machine_can_reach_it()
    {
        var chosen = AdvertisedAddress.ChooseForWildcard(IPAddress.Any, Routes, [Loopback, Eth0 with { Up = false, Addresses = [] }]);

        Assert.Equal("127.0.0.1", chosen.Host);
        Assert.Contains("only clients on this machine can reach", chosen.Warning, StringComparison.Ordinal);
        Assert.Contains("--advertise", chosen.Warning, StringComparison.Ordinal);
    }

    [Fact]
    public void Bound_to_IPv4s_wildcard_an_IPv6_only_interface_is_not_advertised_but_bound_to_IPv6s_it_is()
    {
        var v6 = new AdvertisedAddress.Nic("eth0", true, false, [IPAddress.Parse("fe80::1"), IPAddress.Parse("2001:db8::5")]);

        Assert.Equal("127.0.0.1", AdvertisedAddress.ChooseForWildcard(IPAddress.Any, null, [Loopback, v6]).Host);
        var chosen = AdvertisedAddress.ChooseForWildcard(IPAddress.IPv6Any, null, [Loopback, v6]);
        Assert.Equal(("2001:db8::5", "[2001:db8::5]"), (chosen.Host, chosen.UrlHost));
    }

    [Fact]
    public void An_explicit_advertise_wins_over_every_listen_address()
    {
        Assert.Equal("gpu7.example.org", AdvertisedAddress.Choose("0.0.0.0", "gpu7.example.org").Host);
        Assert.Equal("10.1.2.3", AdvertisedAddress.Choose("127.0.0.1", "10.1.2.3").Host);
        Assert.Equal("[2001:db8::1]", AdvertisedAddress.Choose("::", "2001:db8::1").UrlHost);
    }

    [Fact]
    public void A_specific_listen_address_is_advertised_as_it_is()
    {
        Assert.Equal(("127.0.0.1", "the address it listens on"), (AdvertisedAddress.Choose("127.0.0.1", null).Host, AdvertisedAddress.Choose("127.0.0.1", null).Reason));
        Assert.Equal("::1", AdvertisedAddress.Choose("::1", null).Host);
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    public void A_wildcard_listen_address_is_never_advertised_on_this_host(string listen)
    {
        var chosen = AdvertisedAddress.Choose(listen, null);

        Assert.True(IPAddress.TryParse(chosen.Host, out var address), chosen.Host);
        Assert.False(AdvertisedAddress.IsWildcard(address));

        // Whatever this machine has: when any interface other than loopback is up with an IPv4 address, it is not loopback.
        var others = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.NetworkInterfaceType != NetworkInterfaceType.Loopback && n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Any(u => u.Address.AddressFamily == AddressFamily.InterNetwork);
        Assert.Equal(others, !IPAddress.IsLoopback(address));
        Assert.Equal(others, chosen.Warning is null);
    }

    [Theory]
    [InlineData("0.0.0.0", "is a wildcard address")]
    [InlineData("::", "is a wildcard address")]
    [InlineData("http://10.0.0.5", "not a URL")]
    [InlineData("10.0.0.5:7071", "without a port")]
    [InlineData("10.1", "four numbers")]
    [InlineData("", "host name or an IP address")]
    [InlineData(" gpu1", "without spaces")]
    [InlineData("gpu_1!", "neither an IP address nor a host name")]
    public void A_bad_advertise_value_is_refused_with_a_sentence_naming_it(string value, string says)
    {
        var error = AdvertisedAddress.CheckAdvertise(value);

        Assert.NotNull(error);
        Assert.StartsWith($"--advertise '{value}'", error, StringComparison.Ordinal);
        Assert.Contains(says, error, StringComparison.Ordinal);
        var thrown = Assert.Throws<ArgumentException>(() => AdvertisedAddress.Choose("0.0.0.0", value.Length == 0 ? " " : value));
        Assert.Contains("--advertise", thrown.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gpu1")]
    [InlineData("gpu-17.pool.example.org")]
    [InlineData("10.0.0.5")]
    [InlineData("2001:db8::1")]
    [InlineData("[2001:db8::1]")]
    public void Host_names_and_addresses_are_good_advertise_values(string value)
        => Assert.Null(AdvertisedAddress.CheckAdvertise(value));

    [Theory]
    [InlineData("localhost")]
    [InlineData("10.1")]
    [InlineData("7")]
    [InlineData("")]
    [InlineData("0.0.0.0:7070")]
    public void A_listen_address_must_be_an_IP_address(string value)
    {
        Assert.False(AdvertisedAddress.TryParseListen(value, out _, out var error));
        Assert.StartsWith($"--listen '{value}' is not an IP address", error, StringComparison.Ordinal);
        Assert.Contains("0.0.0.0", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    [InlineData("[::]")]
    [InlineData("127.0.0.1")]
    [InlineData("10.77.3.2")]
    public void Wildcards_and_specific_addresses_are_good_listen_addresses(string value)
        => Assert.True(AdvertisedAddress.TryParseListen(value, out _, out _));
}
