using System.Diagnostics;
using System.Globalization;
using GpuPool.Scheduler.Placement;

namespace GpuPool.Perf.Scheduler;

/// <summary>Command-line choices every suite sees.</summary>
public sealed record PlacementOptions(bool Quick, string OutDir, int Hosts, int DevicesPerHost, int Seed)
{
    /// <summary>The target: placement decisions per second in memory, on this 2-core machine.</summary>
    public const double DecisionsPerSecondTarget = 20_000;

    public int Decisions => Quick ? 20_000 : 100_000;

    public int WarmupDecisions => Quick ? 5_000 : 20_000;

    public int EvictionCalls => Quick ? 40 : 200;

    public int Heartbeats => Quick ? 200 : 1_000;

    public int AllocatorShapedSlices => Quick ? 2_000 : 10_000;

    public int AllocatorShapedGangs => Quick ? 100 : 500;
}

/// <summary>
/// The suites: slice decisions with the pool held at a fill, gang decisions, and on a full pool the cost of
/// finding an eviction and of a broker's heartbeat. Each builds its own simulated pool.
/// </summary>
internal static class PlacementSuites
{
    private const string Decisions = "decisions";
    private const string Preemption = "preemption";
    private const string Upkeep = "upkeep";

    /// <summary>The allocator's top class (PriorityClasses.Defaults "high"): above every lease of the simulation.</summary>
    private const int HighClass = 1000;

    public static IReadOnlyList<Figure> SlicesAtFill(PlacementOptions options, double fill, TextWriter log)
    {
        var pool = new SimulatedPool(options.Hosts, options.DevicesPerHost, options.Seed);
        var filled = Fill(pool, () => pool.MemoryFill < fill, () => pool.NextSlice(withModel: false));
        log.WriteLine($"   filled to {pool.MemoryFill:P1} of memory with {pool.LiveGrants:N0} slices of any model in {filled.TotalSeconds:F1} s");
        var label = $"slices, pool {Percent(fill)} full";
        var figures = new List<Figure>(Steady(pool, options, label, pool.NextSlice, () => pool.MemoryFill > fill, $"held at {Percent(fill)} of memory leased"));

        // The same decisions with the lookups Allocator.Decide and CreateGrant make.
        pool.AllocatorLookups = true;
        var (ticks, elapsed, placed) = Run(pool, options.AllocatorShapedSlices, pool.NextSlice, () => pool.MemoryFill > fill);
        figures.Add(new Figure(Decisions, label + ", with the allocator's broker lookup", Timings.PerSecond(ticks.Length, elapsed), "decisions/s", PlacementOptions.DecisionsPerSecondTarget,
            $"{ticks.Length:N0} decisions; p50 {Timings.PercentileMicroseconds(ticks, 50):N1} µs, p99 {Timings.PercentileMicroseconds(ticks, 99):N1} µs; placed {Percent(placed, ticks.Length)}; finds the placed broker and devices by PoolModel.FindBroker/FindDevice, as Allocator.CreateGrant does"));
        return figures;
    }

    public static IReadOnlyList<Figure> Gangs(PlacementOptions options, TextWriter log)
    {
        const double fill = 0.5;
        var pool = new SimulatedPool(options.Hosts, options.DevicesPerHost, options.Seed + 1);
        var filled = Fill(pool, () => pool.DeviceFill < fill, pool.NextGang);
        log.WriteLine($"   filled {pool.DeviceFill:P1} of devices with {pool.LiveGrants:N0} gangs in {filled.TotalSeconds:F1} s");
        var label = $"gangs of 1-8 whole devices, {Percent(fill)} of devices leased";
        var figures = new List<Figure>(Steady(pool, options, label, pool.NextGang, () => pool.DeviceFill > fill, $"held at {Percent(fill)} of devices leased"));

        pool.AllocatorLookups = true;
        var (ticks, elapsed, placed) = Run(pool, options.AllocatorShapedGangs, pool.NextGang, () => pool.DeviceFill > fill);
        figures.Add(new Figure(Decisions, label + ", with the allocator's device lookup", Timings.PerSecond(ticks.Length, elapsed), "decisions/s", PlacementOptions.DecisionsPerSecondTarget,
            $"{ticks.Length:N0} decisions; p50 {Timings.PercentileMicroseconds(ticks, 50):N1} µs, p99 {Timings.PercentileMicroseconds(ticks, 99):N1} µs; placed {Percent(placed, ticks.Length)}; finds the first device's memory by PoolModel.FindDevice as Allocator.Decide does, and the broker as CreateGrant does"));
        return figures;
    }

    /// <summary>A pool filled with slices until asks keep failing; then evictions for high-class requests, and heartbeats.</summary>
    public static IReadOnlyList<Figure> FullPool(PlacementOptions options, TextWriter log)
    {
        var pool = new SimulatedPool(options.Hosts, options.DevicesPerHost, options.Seed + 2);
        var filled = Fill(pool, () => true, () => pool.NextSlice(withModel: false), giveUpAfterMisses: 2_000);
        var state = $"pool {Percent(pool.MemoryFill)} full ({pool.Model.LeaseCount:N0} leases, 6 in 10 preemptible in class low)";
        log.WriteLine($"   filled to {pool.MemoryFill:P1} of memory with {pool.LiveGrants:N0} slices of any model in {filled.TotalSeconds:F1} s (until 2,000 asks in a row found no room)");
        GC.Collect();

        var figures = new List<Figure>();
        foreach (var (kind, next) in new (string, Func<PlacementAsk>)[] { ("slice", pool.NextSlice), ("gang", pool.NextGang) })
        {
            var ticks = new long[options.EvictionCalls];
            var found = 0;
            var victims = 0;
            var start = Stopwatch.GetTimestamp();
            for (var i = 0; i < ticks.Length; i++)
            {
                var ask = next();
                var t0 = Stopwatch.GetTimestamp();
                var eviction = pool.Model.FindEviction(ask, HighClass);
                ticks[i] = Stopwatch.GetTimestamp() - t0;
                found += eviction is null ? 0 : 1;
                victims += eviction?.Victims.Count ?? 0;
            }

            var elapsed = Stopwatch.GetTimestamp() - start;
            var note = $"{ticks.Length:N0} calls for class-high {kind} asks on a {state}; found an eviction for {Percent(found, ticks.Length)}, {(found == 0 ? 0 : (double)victims / found):F1} victims on average";
            figures.Add(new Figure(Preemption, $"FindEviction, {kind} asks, full pool", Timings.PerSecond(ticks.Length, elapsed), "calls/s", Note: note));
            figures.Add(new Figure(Preemption, $"FindEviction, {kind} asks, full pool, p50", Timings.PercentileMicroseconds(ticks, 50), "µs/call"));
            figures.Add(new Figure(Preemption, $"FindEviction, {kind} asks, full pool, p99", Timings.PercentileMicroseconds(ticks, 99), "µs/call"));
        }

        // Every broker rewrites its record at a third of its registration TTL (10 s by default); the leader's
        // watch turns each write into UpsertBroker.
        var beats = new long[options.Heartbeats];
        var beatStart = Stopwatch.GetTimestamp();
        for (var i = 0; i < beats.Length; i++)
        {
            var host = pool.NextHost();
            var t0 = Stopwatch.GetTimestamp();
            pool.Heartbeat(host);
            beats[i] = Stopwatch.GetTimestamp() - t0;
        }

        var beatElapsed = Stopwatch.GetTimestamp() - beatStart;
        var needed = options.Hosts / (10.0 / 3);
        figures.Add(new Figure(Upkeep, "broker heartbeat (UpsertBroker), full pool", Timings.PerSecond(beats.Length, beatElapsed), "upserts/s", needed,
            $"{beats.Length:N0} heartbeats on a {state}; p50 {Timings.PercentileMicroseconds(beats, 50):N1} µs, p99 {Timings.PercentileMicroseconds(beats, 99):N1} µs. Target derived, not the issue's: {options.Hosts:N0} brokers each writing every 10/3 s (the default registration TTL of 10 s, renewed at a third)"));
        return figures;
    }

    /// <summary>Warm-up, then the measured decisions: throughput over the whole loop, p50/p99 of each decision.</summary>
    private static IEnumerable<Figure> Steady(SimulatedPool pool, PlacementOptions options, string label, Func<PlacementAsk> next, Func<bool> over, string held)
    {
        Run(pool, options.WarmupDecisions, next, over);
        GC.Collect();
        var asks = new List<PlacementAsk>(options.Decisions);
        var (ticks, elapsed, placed) = Run(pool, options.Decisions, () =>
        {
            var ask = next();
            asks.Add(ask);
            return ask;
        }, over);
        var note = $"{ticks.Length:N0} decisions after {options.WarmupDecisions:N0} warm-up, {held} by releasing random grants (in the loop's time); placed {Percent(placed, ticks.Length)}; a decision is admission, TryPlace, the lease records and UpsertLease";
        yield return new Figure(Decisions, label, Timings.PerSecond(ticks.Length, elapsed), "decisions/s", PlacementOptions.DecisionsPerSecondTarget, note);
        yield return new Figure(Decisions, label + ", p50", Timings.PercentileMicroseconds(ticks, 50), "µs/decision");
        yield return new Figure(Decisions, label + ", p99", Timings.PercentileMicroseconds(ticks, 99), "µs/decision");

        // One ask in five names a model; the index orders devices by free memory only, so such an ask passes over
        // the devices of other models that have room.
        var named = ticks.Where((_, i) => asks[i].DeviceModel.Length > 0).ToArray();
        var any = ticks.Where((_, i) => asks[i].DeviceModel.Length == 0).ToArray();
        yield return new Figure(Decisions, label + ", p99 of asks of any model", Timings.PercentileMicroseconds(any, 99), "µs/decision", Note: $"{any.Length:N0} decisions; p50 {Timings.PercentileMicroseconds(any, 50):N1} µs");
        yield return new Figure(Decisions, label + ", p99 of asks naming a model", Timings.PercentileMicroseconds(named, 99), "µs/decision", Note: $"{named.Length:N0} decisions ('h100' or 'a100'); p50 {Timings.PercentileMicroseconds(named, 50):N1} µs");
    }

    /// <summary>
    /// <paramref name="count"/> decisions, each timed; after each, random grants end until the pool is back at its
    /// fill, so that releases happen as often as placements (their time counts in the elapsed total, not per decision).
    /// </summary>
    private static (long[] Ticks, long Elapsed, int Placed) Run(SimulatedPool pool, int count, Func<PlacementAsk> next, Func<bool> over)
    {
        var ticks = new long[count];
        var placed = 0;
        var start = Stopwatch.GetTimestamp();
        for (var i = 0; i < count; i++)
        {
            var ask = next();
            var t0 = Stopwatch.GetTimestamp();
            placed += pool.Decide(ask) ? 1 : 0;
            ticks[i] = Stopwatch.GetTimestamp() - t0;
            while (over())
            {
                pool.ReleaseOne();
            }
        }

        return (ticks, Stopwatch.GetTimestamp() - start, placed);
    }

    private static TimeSpan Fill(SimulatedPool pool, Func<bool> more, Func<PlacementAsk> next, int giveUpAfterMisses = 10_000)
    {
        var start = Stopwatch.GetTimestamp();
        var misses = 0;
        while (more() && misses < giveUpAfterMisses)
        {
            misses = pool.Decide(next()) ? 0 : misses + 1;
        }

        return Stopwatch.GetElapsedTime(start);
    }

    private static string Percent(int part, int whole) => Percent((double)part / whole);

    private static string Percent(double fraction) => string.Create(CultureInfo.InvariantCulture, $"{fraction * 100:0.#}%");
}
