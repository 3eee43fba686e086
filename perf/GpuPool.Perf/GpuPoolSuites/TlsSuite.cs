using System.Diagnostics;
using System.Globalization;
using GpuPool.Client;
using GpuPool.Perf.Anchors;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.GpuPoolSuites;

/// <summary>
/// What TLS costs the fast path: two pools in this process, one plaintext and one with TLS on every port, and a 256 MiB
/// copy each way over TCP — on one connection and striped over two — in sessions that take turns round by round with
/// each other and with an iperf3 run, so that load from elsewhere falls on all alike. Each TLS row's note gives its
/// ratio to the plaintext copy of the same rounds (target: at least 0.6×); every copy is checked byte for byte once.
/// </summary>
public sealed class TlsSuite : IBenchmark
{
    private const long Size = 256L << 20;
    private const int IperfTurnSeconds = 1;

    public string Name => "GpuPool over tcp with TLS against plaintext";

    public async Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken)
    {
        await using var plain = await BenchPool.StartAsync(3 * (ulong)Size, cancellationToken).ConfigureAwait(false);
        await using var secure = await BenchPool.StartAsync(3 * (ulong)Size, cancellationToken, tls: true).ConfigureAwait(false);
        var source = GC.AllocateUninitializedArray<byte>((int)Size, pinned: true);
        Random.Shared.NextBytes(source);
        var back = GC.AllocateUninitializedArray<byte>((int)Size, pinned: true);
        var runs = new List<Run>();
        var leases = new List<Lease>();
        try
        {
            foreach (var (pool, label) in new[] { (plain, "plaintext"), (secure, "TLS") })
            {
                foreach (var stripes in new[] { 1, 2 })
                {
                    leases.Add(await pool.LeaseAsync((ulong)Size + (1 << 20), 250, cancellationToken).ConfigureAwait(false));
                    var session = await leases[^1].OpenSessionAsync(new SessionOptions { Transport = SessionTransportKind.Tcp, Stripes = stripes }, cancellationToken).ConfigureAwait(false);
                    var ptr = await session.AllocAsync((ulong)Size, cancellationToken).ConfigureAwait(false);
                    await session.CopyToDeviceAsync(ptr, source, cancellationToken: cancellationToken).ConfigureAwait(false);
                    back.AsSpan().Clear();
                    await session.CopyToHostAsync(ptr, back, cancellationToken: cancellationToken).ConfigureAwait(false);
                    if (!back.AsSpan().SequenceEqual(source) || session.DataConnections != stripes - 1 || session.Transport != "tcp")
                    {
                        throw new InvalidOperationException($"the {label} session over {stripes} connection(s) did not copy every byte over tcp ({session.Transport}, {session.DataConnections} data connections)");
                    }

                    runs.Add(new Run(label, stripes, session, ptr));
                }
            }

            var iperf = new List<double>();
            for (var round = 0; round < options.BandwidthRepetitions + 2; round++)
            {
                if (!options.SkipIperf && await IperfAnchor.RunTurnAsync(IperfTurnSeconds, cancellationToken).ConfigureAwait(false) is { } wire)
                {
                    iperf.Add(wire);
                }

                foreach (var run in runs)
                {
                    var start = Stopwatch.GetTimestamp();
                    await run.Session.CopyToDeviceAsync(run.Ptr, source, cancellationToken: cancellationToken).ConfigureAwait(false);
                    await run.Session.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
                    run.ToDevice.Add(Stats.GigabytesPerSecond(Size, Stopwatch.GetTimestamp() - start));
                    start = Stopwatch.GetTimestamp();
                    await run.Session.CopyToHostAsync(run.Ptr, back, cancellationToken: cancellationToken).ConfigureAwait(false);
                    run.ToHost.Add(Stats.GigabytesPerSecond(Size, Stopwatch.GetTimestamp() - start));
                }
            }

            var results = new List<Measurement>();
            var anchor = AnchorNames.Iperf1M;
            if (iperf.Count > 0)
            {
                anchor = AnchorNames.Iperf1MTurns + " (TLS suite)";
                results.Add(new Measurement(Groups.Bandwidth, anchor, Stats.Median(iperf), Units.GBps, 1 << 20, Note: $"iperf3 -l 1M -t {IperfTurnSeconds} once per round, median of {iperf.Count} ({List(iperf)})"));
            }

            foreach (var run in runs)
            {
                var plainTwin = runs.Single(r => r.Label == "plaintext" && r.Stripes == run.Stripes);
                foreach (var (direction, values, twin) in new[] { ("H2D", run.ToDevice, plainTwin.ToDevice), ("D2H", run.ToHost, plainTwin.ToHost) })
                {
                    var median = Stats.Median(values);
                    var versus = run.Label == "TLS" ? $"; {(median / Stats.Median(twin)).ToString("F2", CultureInfo.InvariantCulture)}x the plaintext copy of the same rounds (target 0.6x)" : "";
                    results.Add(new Measurement(Groups.Bandwidth, $"GpuPool {direction} tcp {run.Label} {Stats.FormatSize(Size)}, {run.Stripes} connection(s)", median, Units.GBps, Size, anchor,
                        Note: $"median of {values.Count} rounds ({List(values)}){versus}"));
                }
            }

            return results;
        }
        finally
        {
            foreach (var run in runs)
            {
                await run.Session.DisposeAsync().ConfigureAwait(false);
            }

            foreach (var lease in leases)
            {
                await lease.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static string List(IEnumerable<double> values) => string.Join(", ", values.Select(v => v.ToString("F2", CultureInfo.InvariantCulture)));

    private sealed record Run(string Label, int Stripes, DeviceSession Session, DevicePtr Ptr)
    {
        public List<double> ToDevice { get; } = [];

        public List<double> ToHost { get; } = [];
    }
}
