using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.Anchors;

/// <summary>
/// What the wire itself does: iperf3 over loopback with 128 KiB and 1 MiB writes, a one-off server
/// (iperf3 -s -1) per run as a child process that is always killed. Installs iperf3 from Debian's
/// packages when missing and running as root; otherwise the figures are recorded as missing.
/// </summary>
public sealed class IperfAnchor(TextWriter log) : IBenchmark
{
    private static readonly (string Length, long Bytes, string Name)[] Writes =
    [
        ("128K", 128 << 10, AnchorNames.Iperf128K),
        ("1M", 1 << 20, AnchorNames.Iperf1M),
    ];

    public string Name => "iperf3 anchor";

    public async Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken)
    {
        if (options.SkipIperf)
        {
            return Missing("skipped with --skip-iperf");
        }

        var (iperf, reason) = await EnsureInstalledAsync(cancellationToken).ConfigureAwait(false);
        if (iperf is null)
        {
            log.WriteLine($"  iperf3 anchor skipped: {reason}");
            return Missing(reason!);
        }

        var seconds = options.Quick ? 2 : 3;
        var results = new List<Measurement>();
        foreach (var (length, bytes, name) in Writes)
        {
            var runs = new List<double>();
            for (var i = 0; i < options.BandwidthRepetitions; i++)
            {
                runs.Add(await RunOnceAsync(iperf, length, seconds, cancellationToken).ConfigureAwait(false));
            }

            var runList = string.Join(", ", runs.Select(r => r.ToString("F2", System.Globalization.CultureInfo.InvariantCulture)));
            results.Add(new Measurement(
                Groups.Bandwidth,
                name,
                Stats.Median(runs),
                Units.GBps,
                SizeBytes: bytes,
                Note: $"median of {runs.Count} runs of -t {seconds} after a 1 s warm-up (-O 1): {runList}"));
        }

        return results;
    }

    /// <summary>
    /// One run of 1 MiB writes for <paramref name="seconds"/> s (after a 1 s warm-up), for a suite that takes turns with
    /// it; null when iperf3 is not installed (this anchor installs it, and runs first).
    /// </summary>
    public static async Task<double?> RunTurnAsync(int seconds, CancellationToken cancellationToken)
        => ChildProcess.FindOnPath("iperf3") is { } iperf ? await RunOnceAsync(iperf, "1M", seconds, cancellationToken).ConfigureAwait(false) : null;

    /// <summary>One client run against a fresh one-off server; GB/s received.</summary>
    private static async Task<double> RunOnceAsync(string iperf, string length, int seconds, CancellationToken cancellationToken)
    {
        var port = FreeTcpPort();
        var serverOutput = new StringBuilder();
        using var server = ChildProcess.StartBackground(iperf, ["-s", "-1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture)], serverOutput);
        try
        {
            await WaitForListenerAsync(server, port, serverOutput, cancellationToken).ConfigureAwait(false);
            var client = await ChildProcess.RunAsync(
                iperf,
                ["-c", "127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-l", length, "-t", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "-O", "1", "-J"],
                TimeSpan.FromSeconds(seconds + 30),
                cancellationToken).ConfigureAwait(false);
            return ParseReceivedGigabytesPerSecond(client.StandardOutput, client.StandardError);
        }
        finally
        {
            ChildProcess.KillTree(server);
        }
    }

    /// <summary>end.sum_received.bits_per_second of iperf3's -J output, in 10^9 bytes per second.</summary>
    public static double ParseReceivedGigabytesPerSecond(string json, string stderr)
    {
        using var doc = JsonDocument.Parse(string.IsNullOrWhiteSpace(json) ? "{}" : json);
        var root = doc.RootElement;
        if (root.TryGetProperty("error", out var error))
        {
            throw new InvalidOperationException($"iperf3 failed: {error.GetString()}");
        }

        if (!root.TryGetProperty("end", out var end)
            || !end.TryGetProperty("sum_received", out var received)
            || !received.TryGetProperty("bits_per_second", out var bps))
        {
            throw new InvalidOperationException($"iperf3 gave no end.sum_received.bits_per_second. {stderr.Trim()}");
        }

        return bps.GetDouble() / 8 / 1e9;
    }

    private static async Task WaitForListenerAsync(System.Diagnostics.Process server, int port, StringBuilder output, CancellationToken cancellationToken)
    {
        // A probe connection would use up the one-off server, so watch the listener table instead.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            if (server.HasExited)
            {
                throw new InvalidOperationException($"iperf3 server exited with {server.ExitCode}: {output}");
            }

            if (IPGlobalProperties.GetIPGlobalProperties().GetActiveTcpListeners().Any(e => e.Port == port))
            {
                return;
            }

            await Task.Delay(20, cancellationToken).ConfigureAwait(false);
        }

        throw new TimeoutException($"iperf3 server did not listen on port {port} within 10 s.");
    }

    private static int FreeTcpPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private async Task<(string? Path, string? Reason)> EnsureInstalledAsync(CancellationToken cancellationToken)
    {
        if (ChildProcess.FindOnPath("iperf3") is { } found)
        {
            return (found, null);
        }

        if (!Environment.IsPrivilegedProcess || ChildProcess.FindOnPath("apt-get") is not { } aptGet)
        {
            return (null, "iperf3 is not installed (install it with: apt-get install -y iperf3)");
        }

        log.WriteLine("  iperf3 not found; installing it from Debian's packages (apt-get update; apt-get install -y iperf3)");
        var env = new Dictionary<string, string> { ["DEBIAN_FRONTEND"] = "noninteractive" };
        var update = await ChildProcess.RunAsync(aptGet, ["update", "-qq"], TimeSpan.FromMinutes(5), cancellationToken, env).ConfigureAwait(false);
        var install = await ChildProcess.RunAsync(aptGet, ["install", "-y", "-qq", "iperf3"], TimeSpan.FromMinutes(5), cancellationToken, env).ConfigureAwait(false);
        if (ChildProcess.FindOnPath("iperf3") is { } installed)
        {
            return (installed, null);
        }

        var why = install.StandardError.Trim() is { Length: > 0 } e ? e : update.StandardError.Trim();
        return (null, $"iperf3 is not installed and apt-get install failed ({install.ExitCode}): {why}");
    }

    private static List<Measurement> Missing(string reason) =>
        Writes.Select(w => Measurement.Missing(Groups.Bandwidth, w.Name, Units.GBps, reason, w.Bytes)).ToList();
}
