using System.Diagnostics;
using System.Globalization;

namespace GpuPool.Perf.Scheduler;

/// <summary>A measuring window in <see cref="Stopwatch"/> ticks: a warm-up from now, then the measured stretch.</summary>
public sealed class Window
{
    private Window(long start, long end)
    {
        Start = start;
        End = end;
    }

    public long Start { get; }

    public long End { get; }

    public double Seconds => (double)(End - Start) / Stopwatch.Frequency;

    public static Window After(TimeSpan warmup, TimeSpan measure)
    {
        var start = Stopwatch.GetTimestamp() + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        return new Window(start, start + (long)(measure.TotalSeconds * Stopwatch.Frequency));
    }

    public bool Holds(long timestamp) => timestamp >= Start && timestamp < End;
}

/// <summary>What a closed loop measured: calls that completed inside the window, their latencies (sorted ticks), and the CPU the window took.</summary>
public sealed record LoopResult(int Completed, int Failed, string? FirstError, long[] SortedTicks, double WindowSeconds, WindowUse Use)
{
    public double PerSecond => Completed / WindowSeconds;

    public double? PercentileMilliseconds(double p) => SortedTicks.Length == 0 ? null : Timings.PercentileOfSorted(SortedTicks, p) / 1000.0;

    public string Summary() => string.Create(
        CultureInfo.InvariantCulture,
        $"{Completed:N0} in {WindowSeconds:F1} s{(Failed > 0 ? $", {Failed:N0} failed (first: {FirstError})" : "")}; p50 {PercentileMilliseconds(50):F2} ms, p99 {PercentileMilliseconds(99):F2} ms");
}

/// <summary>
/// N workers, each calling one operation after another until the window ends (a closed loop: the offered load is
/// what the system answers). A call counts, and its latency is kept, when it completes inside the window; a failed
/// call counts as failed and its first error is kept.
/// </summary>
public static class ClosedLoop
{
    public static async Task<LoopResult> RunAsync(int workers, Window window, WindowProbe cpu, Func<int, Random, Task> call, int seed)
    {
        var latencies = new List<long>[workers];
        var failed = 0;
        string? firstError = null;
        var sampling = cpu.MeasureAsync(window);
        var tasks = new Task[workers];
        for (var w = 0; w < workers; w++)
        {
            var worker = w;
            var mine = latencies[worker] = new List<long>(4096);
            tasks[worker] = Task.Run(async () =>
            {
                var random = new Random(HashCode.Combine(seed, worker));
                while (true)
                {
                    var t0 = Stopwatch.GetTimestamp();
                    if (t0 >= window.End)
                    {
                        return;
                    }

                    try
                    {
                        await call(worker, random).ConfigureAwait(false);
                        var t1 = Stopwatch.GetTimestamp();
                        if (window.Holds(t1))
                        {
                            mine.Add(t1 - t0);
                        }
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        if (window.Holds(Stopwatch.GetTimestamp()))
                        {
                            Interlocked.Increment(ref failed);
                        }

                        Interlocked.CompareExchange(ref firstError, ex.GetType().Name + ": " + ex.Message, null);
                    }
                }
            });
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        var use = await sampling.ConfigureAwait(false);
        var all = latencies.SelectMany(l => l).ToArray();
        Array.Sort(all);
        return new LoopResult(all.Length, failed, firstError, all, window.Seconds, use);
    }
}

/// <summary>
/// What a window cost: CPU in cores (1.0 = one core busy all the window) of this process, of the etcd members and of
/// the whole machine, what the JIT compiled meanwhile, and from etcd's own metrics the Raft proposals it committed
/// and its WAL fsyncs (count, mean, and the histogram bucket that holds the 99th percentile).
/// </summary>
public sealed record WindowUse(double ThisProcess, double Etcd, double Machine, double Jit, long JitMethods, long Proposals, long Fsyncs, double FsyncMeanMs, double? FsyncP99Ms, long AllocatedBytes, double GcPauseMs, int Gen2)
{
    /// <summary>Bytes this process allocated per operation of the window, and the GC's pauses.</summary>
    public string Heap(int operations) => string.Create(
        CultureInfo.InvariantCulture,
        $"this process allocated {(operations == 0 ? 0 : AllocatedBytes / (double)operations / 1024):N1} KiB per operation; GC paused it {GcPauseMs:N0} ms in all ({Gen2} gen-2 collections)");

    public string Summary(int cores) => string.Create(
        CultureInfo.InvariantCulture,
        $"CPU in the window, in cores of {cores}: scheduler + callers (this process) {ThisProcess:F2} (of which JIT {Jit:F2}, {JitMethods:N0} methods), etcd {Etcd:F2}, whole machine {Machine:F2} (other processes {Math.Max(0, Machine - ThisProcess - Etcd):F2}); etcd committed {Proposals:N0} Raft proposals, {Fsyncs:N0} WAL fsyncs (mean {FsyncMeanMs:F2} ms, p99 ≤ {FsyncP99Ms?.ToString("F0", CultureInfo.InvariantCulture) ?? "?"} ms)");
}

/// <summary>
/// Samples at a window's start and end: CPU time of this process, of the etcd members (found by their data dirs in
/// /proc) and of the machine (/proc/stat), the JIT's counters, and the etcd members' /metrics. Zeros where /proc
/// or a member's metrics cannot be read.
/// </summary>
public sealed class WindowProbe(IReadOnlyList<string> etcdDataDirs, IReadOnlyList<string> etcdClientUrls)
{
    /// <summary>USER_HZ: the unit of /proc's CPU times on Linux.</summary>
    private const double ClockTicksPerSecond = 100;

    private const string Fsync = "etcd_disk_wal_fsync_duration_seconds";
    private const string Proposals = "etcd_server_proposals_committed_total";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(2) };

    private int[]? _etcdPids;

    public async Task<WindowUse> MeasureAsync(Window window)
    {
        await DelayUntil(window.Start).ConfigureAwait(false);
        var before = await SampleAsync().ConfigureAwait(false);
        await DelayUntil(window.End).ConfigureAwait(false);
        var after = await SampleAsync().ConfigureAwait(false);
        var seconds = (after.At - before.At) / (double)Stopwatch.Frequency;
        var fsyncs = (long)(after.Metrics.GetValueOrDefault(Fsync + "_count") - before.Metrics.GetValueOrDefault(Fsync + "_count"));
        var fsyncSeconds = after.Metrics.GetValueOrDefault(Fsync + "_sum") - before.Metrics.GetValueOrDefault(Fsync + "_sum");
        return new WindowUse(
            (after.Process - before.Process) / seconds,
            (after.Etcd - before.Etcd) / seconds,
            (after.Machine - before.Machine) / seconds,
            (after.Jit - before.Jit) / seconds,
            after.JitMethods - before.JitMethods,
            (long)(after.Metrics.GetValueOrDefault(Proposals) - before.Metrics.GetValueOrDefault(Proposals)),
            fsyncs,
            fsyncs == 0 ? 0 : fsyncSeconds / fsyncs * 1000,
            P99Bucket(before.Metrics, after.Metrics, fsyncs),
            after.Allocated - before.Allocated,
            (after.GcPause - before.GcPause).TotalMilliseconds,
            after.Gen2 - before.Gen2);
    }

    /// <summary>The upper bound, in ms, of the fsync histogram's first bucket holding 99% of the window's fsyncs.</summary>
    private static double? P99Bucket(Dictionary<string, double> before, Dictionary<string, double> after, long count)
    {
        if (count == 0)
        {
            return null;
        }

        const string prefix = Fsync + "_bucket{le=\"";
        var buckets = after.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !k.Contains("+Inf", StringComparison.Ordinal))
            .Select(k => (Le: double.Parse(k[prefix.Length..^2], CultureInfo.InvariantCulture), Count: after[k] - before.GetValueOrDefault(k)))
            .OrderBy(b => b.Le);
        foreach (var (le, cumulative) in buckets)
        {
            if (cumulative >= 0.99 * count)
            {
                return le * 1000;
            }
        }

        return double.PositiveInfinity;
    }

    private static async Task DelayUntil(long timestamp)
    {
        var wait = (timestamp - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency;
        if (wait > 0)
        {
            await Task.Delay(TimeSpan.FromSeconds(wait)).ConfigureAwait(false);
        }
    }

    private async Task<Sample> SampleAsync()
    {
        var at = Stopwatch.GetTimestamp();
        var process = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        _etcdPids ??= FindPids();
        var etcd = _etcdPids.Sum(ProcessSeconds);
        var sample = new Sample(at, process, etcd, MachineBusySeconds(), System.Runtime.JitInfo.GetCompilationTime().TotalSeconds, System.Runtime.JitInfo.GetCompiledMethodCount(), GC.GetTotalAllocatedBytes(), GC.GetTotalPauseDuration(), GC.CollectionCount(2), []);

        // Fsyncs summed over the members; proposals as the member that committed most counts them (each commits every entry).
        foreach (var url in etcdClientUrls)
        {
            foreach (var (name, value) in await ReadMetricsAsync(url).ConfigureAwait(false))
            {
                sample.Metrics[name] = name == Proposals ? Math.Max(sample.Metrics.GetValueOrDefault(name), value) : sample.Metrics.GetValueOrDefault(name) + value;
            }
        }

        return sample;
    }

    private sealed record Sample(long At, double Process, double Etcd, double Machine, double Jit, long JitMethods, long Allocated, TimeSpan GcPause, int Gen2, Dictionary<string, double> Metrics);

    private static async Task<List<(string Name, double Value)>> ReadMetricsAsync(string clientUrl)
    {
        var found = new List<(string, double)>();
        try
        {
            var text = await Http.GetStringAsync(clientUrl + "/metrics").ConfigureAwait(false);
            foreach (var line in text.Split('\n'))
            {
                if (line.StartsWith(Fsync, StringComparison.Ordinal) || line.StartsWith(Proposals, StringComparison.Ordinal))
                {
                    var space = line.LastIndexOf(' ');
                    if (space > 0 && double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                    {
                        found.Add((line[..space], value));
                    }
                }
            }
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            // A member that does not answer adds nothing.
        }

        return found;
    }

    private int[] FindPids()
    {
        if (!Directory.Exists("/proc"))
        {
            return [];
        }

        var pids = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                var args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0');
                if (etcdDataDirs.Any(d => args.Contains(d, StringComparer.Ordinal)))
                {
                    pids.Add(pid);
                }
            }
            catch (IOException)
            {
                // Gone meanwhile, or not ours to read.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }

        return [.. pids];
    }

    /// <summary>utime + stime of a process, all its threads, from /proc/PID/stat (fields 14 and 15).</summary>
    private static double ProcessSeconds(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / ClockTicksPerSecond;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Busy time of all cores from the first line of /proc/stat: user, nice, system, irq and softirq (guest time is inside user).</summary>
    private static double MachineBusySeconds()
    {
        const string path = "/proc/stat";
        if (!File.Exists(path))
        {
            return 0;
        }

        using var reader = new StreamReader(path);
        var fields = reader.ReadLine()!.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / ClockTicksPerSecond;
    }
}
