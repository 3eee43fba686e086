using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace GpuPool.Protocol.Hosts;

/// <summary>
/// The host part a server puts in the addresses it registers or publishes (a broker's gRPC URL and fast path, a
/// scheduler replica's endpoint), how it was chosen, and a warning when other hosts will not reach it.
/// </summary>
/// <param name="Host">An IP address or a DNS name; never a wildcard address.</param>
/// <param name="Reason">How it was chosen, for the server's start-up lines ("given by --advertise", "eth0's address: the default route's interface").</param>
/// <param name="Warning">Set when only this machine can reach <paramref name="Host"/> (a loopback address chosen for lack of any other).</param>
public sealed record AdvertisedAddress(string Host, string Reason, string? Warning)
{
    /// <summary>The host as it goes into a URL or a "host:port" endpoint: an IPv6 address in brackets.</summary>
    public string UrlHost => IPAddress.TryParse(Host, out var ip) && ip.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{ip}]" : Host;

    /// <summary>
    /// What a server bound to <paramref name="listenAddress"/> advertises: <paramref name="advertise"/> when given; the
    /// listen address itself when it is a specific one; for a wildcard (0.0.0.0, ::) the host's address on the default
    /// route (<c>/proc/net/route</c>'s default route's interface, its IPv4 address), else the first address of an
    /// interface that is up and not loopback, else the loopback address, with a warning. Throws an ArgumentException
    /// naming the bad value when either is malformed.
    /// </summary>
    public static AdvertisedAddress Choose(string listenAddress, string? advertise)
    {
        var listen = ParseListen(listenAddress);
        if (!string.IsNullOrEmpty(advertise))
        {
            if (CheckAdvertise(advertise) is { } error)
            {
                throw new ArgumentException(error, nameof(advertise));
            }

            return new AdvertisedAddress(TryParseIp(advertise, out var ip) ? ip.ToString() : advertise.ToLowerInvariant(), "given by --advertise", null);
        }

        if (!IsWildcard(listen))
        {
            return new AdvertisedAddress(listen.ToString(), "the address it listens on", null);
        }

        return ChooseForWildcard(listen, ReadRouteTable(), Interfaces());
    }

    /// <summary>Parses a listen address (an IP address, 0.0.0.0 or :: for every address), or throws a sentence naming it.</summary>
    public static IPAddress ParseListen(string listenAddress)
        => TryParseListen(listenAddress, out var address, out var error) ? address : throw new ArgumentException(error, nameof(listenAddress));

    /// <summary>Whether <paramref name="text"/> is an address a server can listen on; <paramref name="error"/> says why not.</summary>
    public static bool TryParseListen(string? text, out IPAddress address, out string error)
    {
        address = IPAddress.None;
        error = "";
        var trimmed = text?.Trim() ?? "";
        if (!TryParseIp(trimmed, out var parsed))
        {
            error = $"--listen '{text}' is not an IP address: give one of this host's addresses (four numbers like 10.0.0.5, or an IPv6 address), or 0.0.0.0 (or ::) to listen on all of them";
            return false;
        }

        address = parsed;
        return true;
    }

    /// <summary>
    /// An IPv4 address written as four numbers or an IPv6 address (brackets allowed); IPAddress.TryParse alone also
    /// takes "10.1" or "7" as IPv4 addresses, which nobody means.
    /// </summary>
    private static bool TryParseIp(string text, out IPAddress address)
    {
        var bare = text.StartsWith('[') && text.EndsWith(']') ? text[1..^1] : text;
        address = IPAddress.None;
        return bare.Length > 0
            && IPAddress.TryParse(bare, out address!)
            && (address.AddressFamily == AddressFamily.InterNetworkV6 ? bare.Contains(':', StringComparison.Ordinal) : bare.Count(c => c == '.') == 3);
    }

    /// <summary>Null when <paramref name="advertise"/> is a host other machines can be told to dial; else a sentence saying what is wrong.</summary>
    public static string? CheckAdvertise(string advertise)
    {
        var text = advertise.Trim();
        if (text.Length == 0 || text != advertise)
        {
            return $"--advertise '{advertise}' must be a host name or an IP address, without spaces";
        }

        if (text.Contains("://", StringComparison.Ordinal) || text.Contains('/', StringComparison.Ordinal))
        {
            return $"--advertise '{advertise}' must be a host name or an IP address, not a URL: the scheme and port come from the server";
        }

        if (TryParseIp(text, out var ip))
        {
            return IsWildcard(ip)
                ? $"--advertise '{advertise}' is a wildcard address, which no client can dial: give this host's address or name as the other hosts reach it"
                : null;
        }

        if (text.All(c => char.IsAsciiDigit(c) || c == '.'))
        {
            return $"--advertise '{advertise}' is not an IP address: write IPv4 addresses as four numbers (10.0.0.5)";
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            return $"--advertise '{advertise}' must be a host name or an IP address without a port: the ports are --port and --fast-path-port";
        }

        return Uri.CheckHostName(text) == UriHostNameType.Dns && text.Length <= 253
            ? null
            : $"--advertise '{advertise}' is neither an IP address nor a host name";
    }

    /// <summary>0.0.0.0 or :: (the IPv4-mapped form of 0.0.0.0 too).</summary>
    public static bool IsWildcard(IPAddress address)
        => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) || (address.IsIPv4MappedToIPv6 && address.MapToIPv4().Equals(IPAddress.Any));

    /// <summary>An interface as the choice needs it: its name, whether it is up, whether it is loopback, and its addresses.</summary>
    internal sealed record Nic(string Name, bool Up, bool Loopback, IReadOnlyList<IPAddress> Addresses);

    /// <summary>The choice for a wildcard listen address, from a route table's text (null: none) and the interfaces.</summary>
    internal static AdvertisedAddress ChooseForWildcard(IPAddress listen, string? routeTable, IReadOnlyList<Nic> nics)
    {
        // A server bound to 0.0.0.0 takes IPv4 only; one bound to :: takes both (dual mode), IPv4 first.
        var ipv6 = listen.AddressFamily == AddressFamily.InterNetworkV6 && !listen.IsIPv4MappedToIPv6;
        if (routeTable is not null && DefaultRouteInterface(routeTable) is { } name
            && nics.FirstOrDefault(n => n.Name == name && !n.Loopback) is { } routed
            && routed.Addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) is { } routedAddress)
        {
            return new AdvertisedAddress(routedAddress.ToString(), $"{name}'s address: the default route's interface", null);
        }

        foreach (var family in ipv6 ? new[] { AddressFamily.InterNetwork, AddressFamily.InterNetworkV6 } : [AddressFamily.InterNetwork])
        {
            foreach (var nic in nics.Where(n => n.Up && !n.Loopback))
            {
                if (nic.Addresses.FirstOrDefault(a => a.AddressFamily == family && !IPAddress.IsLoopback(a) && !a.IsIPv6LinkLocal) is { } address)
                {
                    return new AdvertisedAddress(address.ToString(), $"{nic.Name}'s address: no default route, the first interface that is up", null);
                }
            }
        }

        var loopback = ipv6 && !nics.Any(n => n.Loopback && n.Addresses.Any(a => a.AddressFamily == AddressFamily.InterNetwork)) ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        return new AdvertisedAddress(
            loopback.ToString(),
            "loopback: this host has no other address",
            $"listening on every address ({listen}), but this host has no address other than loopback up: advertising {loopback}, which only clients on this machine can reach; give --advertise with the address other hosts should dial");
    }

    /// <summary>
    /// The interface of the IPv4 default route in <c>/proc/net/route</c>'s text (destination and mask 0, the route up;
    /// the lowest metric when there are several), or null when there is none.
    /// </summary>
    internal static string? DefaultRouteInterface(string routeTable)
    {
        string? best = null;
        var bestMetric = long.MaxValue;
        foreach (var line in routeTable.Split('\n').Skip(1))
        {
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            var fields = line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 8
                || fields[1] != "00000000"
                || fields[7] != "00000000"
                || !int.TryParse(fields[3], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var flags)
                || (flags & 1) == 0
                || !long.TryParse(fields[6], NumberStyles.Integer, CultureInfo.InvariantCulture, out var metric))
            {
                continue;
            }

            if (metric < bestMetric)
            {
                best = fields[0];
                bestMetric = metric;
            }
        }

        return best;
    }

    private static string? ReadRouteTable()
    {
        try
        {
            return File.ReadAllText("/proc/net/route");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static List<Nic> Interfaces()
    {
        var nics = new List<Nic>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            IReadOnlyList<IPAddress> addresses;
            try
            {
                addresses = [.. nic.GetIPProperties().UnicastAddresses.Select(u => u.Address)];
            }
            catch (NetworkInformationException)
            {
                continue;
            }

            nics.Add(new Nic(nic.Name, nic.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown, nic.NetworkInterfaceType == NetworkInterfaceType.Loopback, addresses));
        }

        return nics;
    }
}
