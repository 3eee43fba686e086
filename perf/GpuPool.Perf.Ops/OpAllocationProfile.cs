using System.Diagnostics;
using System.Globalization;
using GpuPool.Client;
using GpuPool.Perf.GpuPoolSuites;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.Ops;

/// <summary>
/// The same ops as <see cref="OpBenchmarks"/>, each as one long batch, with bytes per op taken from
/// GC.GetTotalAllocatedBytes(precise: true) around it (every thread: client and broker) and the types that allocate
/// them sampled from the runtime's GCAllocationTick events (one per ~100 KB allocated, so a type's figure is an
/// estimate and a type under a few bytes per op may not show).
/// </summary>
internal static class OpAllocationProfile
{
    public static async Task RunAsync(TextWriter log, int ops, int top, CancellationToken cancellationToken)
    {
        using var ticks = new AllocationTickListener();
        await using var pool = await BenchPool.StartAsync(64 << 20, cancellationToken).ConfigureAwait(false);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Per op, over {ops:N0} ops of each kind after 2,000 of warm-up, client and broker in this process:"));
        log.WriteLine();
        log.WriteLine("| transport | op | allocated B/op | µs/op |");
        log.WriteLine("|---|---|---:|---:|");
        var details = new List<string>();
        foreach (var transport in new[] { SessionTransportKind.Tcp, SessionTransportKind.Unix, SessionTransportKind.Grpc })
        {
            await using var workload = await OpWorkload.OpenAsync(pool, transport, cancellationToken).ConfigureAwait(false);
            foreach (var (name, run) in workload.All)
            {
                await run(1000).ConfigureAwait(false);
                await run(1000).ConfigureAwait(false);
                GC.Collect();
                ticks.Reset();
                var before = GC.GetTotalAllocatedBytes(precise: true);
                var clock = Stopwatch.StartNew();
                await run(ops).ConfigureAwait(false);
                clock.Stop();
                var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

                // The runtime hands events to listeners from a dispatch thread, a little late.
                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
                var sampled = ticks.Snapshot();
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {workload.Transport} | {name} | {(double)allocated / ops:F0} | {clock.Elapsed.TotalMicroseconds / ops:F1} |"));
                details.Add(string.Create(CultureInfo.InvariantCulture, $"{workload.Transport}, {name}: {(double)allocated / ops:F0} B/op; sampled {sampled.Sum(s => s.Bytes):N0} B in {sampled.Sum(s => s.Ticks)} ticks"));
                foreach (var (type, bytes, count) in sampled.OrderByDescending(s => s.Bytes).Take(top))
                {
                    details.Add(string.Create(CultureInfo.InvariantCulture, $"  {(double)bytes / ops,8:F0} B/op  {count,5} ticks  {type}"));
                }
            }
        }

        log.WriteLine();
        log.WriteLine("What allocates, by type (sampled):");
        log.WriteLine();
        log.WriteLine("```");
        foreach (var line in details)
        {
            log.WriteLine(line);
        }

        log.WriteLine("```");
    }
}
