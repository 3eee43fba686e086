using System.Diagnostics;
using System.Security.Cryptography;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>
/// Hosts on a virtual network, for tests that need several machines: one network namespace per host, each with a veth
/// (eth0, 10.77.N.i/24, a default route) on a bridge of its own, and a machine id of its own (/etc/netns/NS/machine-id,
/// which <c>ip netns exec</c> mounts over /etc/machine-id). The bridge has 10.77.N.254 in this (the test's) namespace,
/// so the test can reach every host. Names carry a random id, so parallel runs do not collide; disposing removes every
/// namespace, veth, bridge and file this made, also after a failure half way through making them. Needs root and
/// iproute2: without root, <see cref="CreateAsync"/> fails the test saying so.
/// </summary>
internal sealed class VirtualNetwork : IAsyncDisposable
{
    private readonly string _id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
    private readonly List<string> _namespaces = [];
    private readonly List<string> _links = [];
    private readonly List<string> _etcDirs = [];
    private readonly Dictionary<string, Host> _hosts = new(StringComparer.Ordinal);
    private string _subnet = "";

    private VirtualNetwork()
    {
    }

    /// <summary>A host of the network: its name in the test, its namespace, its address and its machine id.</summary>
    public sealed record Host(string Name, string Namespace, string Address, string MachineId);

    public Host this[string name] => _hosts[name];

    /// <summary>The test's own address on the bridge.</summary>
    public string Gateway => $"{_subnet}.254";

    /// <summary>Makes the hosts, named in the test by <paramref name="names"/>, addressed 10.77.N.1, .2, … in that order.</summary>
    public static async Task<VirtualNetwork> CreateAsync(params string[] names)
    {
        if (EffectiveUserId() != 0)
        {
            Assert.Fail("this test makes network namespaces, veths and a bridge, which needs root: run the tests as root (CI does); it does not skip, so that a run without root cannot pass it by leaving it out");
        }

        var network = new VirtualNetwork();
        try
        {
            await network.BuildAsync(names);
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    private async Task BuildAsync(string[] names)
    {
        _subnet = await FreeSubnetAsync();
        var bridge = $"gpb{_id}";
        await IpAsync("link", "add", "name", bridge, "type", "bridge");
        _links.Add(bridge);
        await IpAsync("addr", "add", $"{Gateway}/24", "dev", bridge);
        await IpAsync("link", "set", bridge, "up");

        for (var i = 0; i < names.Length; i++)
        {
            var ns = $"gpt-{_id}-{names[i]}";
            var outside = $"gpv{_id}{i:x}";
            var inside = $"gpp{_id}{i:x}";
            await IpAsync("netns", "add", ns);
            _namespaces.Add(ns);

            var machineId = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            var etc = Path.Combine("/etc/netns", ns);
            _etcDirs.Add(etc);
            Directory.CreateDirectory(etc);
            await File.WriteAllTextAsync(Path.Combine(etc, "machine-id"), machineId + "\n");

            await IpAsync("link", "add", outside, "type", "veth", "peer", "name", inside);
            _links.Add(outside);
            await IpAsync("link", "set", inside, "netns", ns);
            await IpAsync("link", "set", outside, "master", bridge);
            await IpAsync("link", "set", outside, "up");
            var address = $"{_subnet}.{i + 1}";
            await IpAsync("-n", ns, "link", "set", "lo", "up");
            await IpAsync("-n", ns, "link", "set", inside, "name", "eth0");
            await IpAsync("-n", ns, "addr", "add", $"{address}/24", "dev", "eth0");
            await IpAsync("-n", ns, "link", "set", "eth0", "up");
            await IpAsync("-n", ns, "route", "add", "default", "via", Gateway);
            _hosts[names[i]] = new Host(names[i], ns, address, machineId);
        }
    }

    /// <summary>A 10.77.N subnet no route of this machine mentions yet.</summary>
    private static async Task<string> FreeSubnetAsync()
    {
        var routes = await IpAsync("-4", "route", "show");
        for (var attempt = 0; attempt < 64; attempt++)
        {
            var subnet = $"10.77.{RandomNumberGenerator.GetInt32(1, 254)}";
            if (!routes.Contains(subnet + ".", StringComparison.Ordinal))
            {
                return subnet;
            }
        }

        throw new InvalidOperationException("no free 10.77.N.0/24 subnet for a virtual network: remove stale gpb* bridges (ip link show type bridge)");
    }

    /// <summary>Runs <c>ip</c> with <paramref name="args"/>; its stdout, or an exception with its stderr when it fails.</summary>
    public static async Task<string> IpAsync(params string[] args)
    {
        var (code, stdout, stderr) = await RunAsync("ip", args);
        return code == 0 ? stdout : throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({code}): {stderr.Trim()}");
    }

    /// <summary>Runs a program in host <paramref name="host"/>'s namespace to completion.</summary>
    public static Task<(int Code, string Stdout, string Stderr)> RunInAsync(Host host, string program, params string[] args)
        => RunAsync("ip", ["netns", "exec", host.Namespace, program, .. args]);

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string program, string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Names of this run's namespaces and links that still exist: what disposing left behind (none, when it worked).</summary>
    public async Task<IReadOnlyList<string>> LeftoversAsync()
    {
        var namespaces = await IpAsync("netns", "list");
        var links = await IpAsync("-o", "link", "show");
        return [.. _namespaces.Where(n => namespaces.Contains(n, StringComparison.Ordinal)), .. _links.Where(l => links.Contains($" {l}:", StringComparison.Ordinal) || links.Contains($" {l}@", StringComparison.Ordinal)), .. _etcDirs.Where(Directory.Exists)];
    }

    /// <summary>Removes everything this made, in reverse order, going on past what fails (processes in the namespaces must have ended).</summary>
    public async ValueTask DisposeAsync()
    {
        var failures = new List<string>();
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            // Deleting a namespace deletes the veth end inside it, and with it its peer on the bridge.
            await TryAsync(failures, () => IpAsync("netns", "del", ns));
        }

        foreach (var link in Enumerable.Reverse(_links))
        {
            var (code, _, stderr) = await RunAsync("ip", ["link", "del", link]);
            if (code != 0 && !stderr.Contains("Cannot find device", StringComparison.Ordinal))
            {
                failures.Add($"ip link del {link}: {stderr.Trim()}");
            }
        }

        foreach (var dir in _etcDirs.Where(Directory.Exists))
        {
            await TryAsync(failures, () => Task.Run(() => Directory.Delete(dir, recursive: true)));
        }

        if (failures.Count > 0)
        {
            throw new InvalidOperationException("the virtual network was not wholly removed: " + string.Join("; ", failures));
        }
    }

    private static async Task TryAsync(List<string> failures, Func<Task> step)
    {
        try
        {
            await step();
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            failures.Add(ex.Message);
        }
    }

    /// <summary>The effective user id, from /proc/self/status ("Uid: real effective saved filesystem").</summary>
    private static int EffectiveUserId()
        => File.ReadLines("/proc/self/status").Where(l => l.StartsWith("Uid:", StringComparison.Ordinal)).Select(l => int.Parse(l.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[2], System.Globalization.CultureInfo.InvariantCulture)).First();
}
