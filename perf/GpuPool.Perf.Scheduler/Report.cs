using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace GpuPool.Perf.Scheduler;

/// <summary>
/// One measured figure. <paramref name="Target"/> is the issue's goal where it sets one: a floor for rates, or a
/// ceiling (the value must stay below it) where <paramref name="Ceiling"/> is true, as for latencies. The value is
/// never filled in from elsewhere: null means it could not be measured, and <paramref name="Note"/> says why.
/// </summary>
public sealed record Figure(
    string Group,
    string Name,
    double? Value,
    string Unit,
    double? Target = null,
    string? Note = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] bool Ceiling = false)
{
    /// <summary>"met", "missed", "missing" where a target could not be measured, or empty where there is no target.</summary>
    public string Verdict => Target is not { } t ? "" : Value is not { } v ? "missing" : (Ceiling ? v < t : v >= t) ? "met" : "missed";

    /// <summary>The target as the tables print it: "≥ 1,000" or "&lt; 50"; empty without one.</summary>
    [JsonIgnore]
    public string TargetText => Target is { } t ? (Ceiling ? "< " : "≥ ") + t.ToString("N0", CultureInfo.InvariantCulture) : "";
}

public sealed record MachineInfo(int ProcessorCount, string Os, string Runtime, string? LoadAverage)
{
    public static MachineInfo Current() => new(Environment.ProcessorCount, System.Runtime.InteropServices.RuntimeInformation.OSDescription, System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription, Report.ReadLoadAverage());
}

public sealed record PlacementRun(DateTimeOffset StartedUtc, double ElapsedSeconds, bool Quick, int Hosts, int DevicesPerHost, int Seed, MachineInfo Machine, IReadOnlyList<Figure> Figures);

public sealed record AllocationRun(
    DateTimeOffset StartedUtc,
    double ElapsedSeconds,
    bool Quick,
    int Hosts,
    int DevicesPerHost,
    int Seed,
    double MeasureSeconds,
    IReadOnlyList<int> Callers,
    IReadOnlyList<int> Members,
    string EtcdVersion,
    MachineInfo Machine,
    IReadOnlyList<Figure> Figures);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PlacementRun))]
[JsonSerializable(typeof(AllocationRun))]
internal sealed partial class ReportJsonContext : JsonSerializerContext;

/// <summary>Per-call timings of a run of calls: nearest-rank percentiles in microseconds.</summary>
public static class Timings
{
    public static double PercentileMicroseconds(long[] ticks, double p)
    {
        ArgumentOutOfRangeException.ThrowIfZero(ticks.Length);
        var sorted = (long[])ticks.Clone();
        Array.Sort(sorted);
        return PercentileOfSorted(sorted, p);
    }

    /// <summary>As <see cref="PercentileMicroseconds"/> on ticks already sorted ascending.</summary>
    public static double PercentileOfSorted(long[] sorted, double p)
    {
        ArgumentOutOfRangeException.ThrowIfZero(sorted.Length);
        var index = Math.Clamp((int)Math.Ceiling(p / 100.0 * sorted.Length) - 1, 0, sorted.Length - 1);
        return sorted[index] * 1_000_000.0 / Stopwatch.Frequency;
    }

    public static double PerSecond(int count, long elapsedTicks) => count / ((double)elapsedTicks / Stopwatch.Frequency);
}

/// <summary>What both benchmarks print and write: a figure against its target, and markdown tables grouped by figure group.</summary>
public static class Report
{
    public static void Print(TextWriter writer, Figure figure)
        => writer.WriteLine($"  {figure.Name,-62} {Format(figure),12} {figure.Unit,-12} {TargetText(figure)}");

    public static void AppendTables(StringBuilder sb, IEnumerable<Figure> figures)
    {
        foreach (var group in figures.GroupBy(f => f.Group))
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"## {group.Key}");
            sb.AppendLine();
            sb.AppendLine("| figure | value | unit | target | verdict | note |");
            sb.AppendLine("| --- | ---: | --- | ---: | --- | --- |");
            foreach (var f in group)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {f.Name} | {Format(f)} | {f.Unit} | {f.TargetText} | {f.Verdict} | {Cell(f.Note)} |");
            }
        }
    }

    public static string? ReadLoadAverage()
    {
        const string path = "/proc/loadavg";
        return File.Exists(path) ? string.Join(' ', File.ReadAllText(path).Split(' ').Take(3)) : null;
    }

    public static string Format(Figure f) => f.Value switch
    {
        null => "missing",
        { } v when v >= 100 => v.ToString("N0", CultureInfo.InvariantCulture),
        { } v when v >= 10 => v.ToString("F1", CultureInfo.InvariantCulture),
        { } v => v.ToString("F2", CultureInfo.InvariantCulture),
    };

    /// <summary>"target ≥ 1,000: met (1.23×)": the ratio is value over target for a floor, target over value for a ceiling, so above 1 is good either way.</summary>
    private static string TargetText(Figure f) => (f.Target, f.Value) switch
    {
        ({ } t, { } v) => string.Create(CultureInfo.InvariantCulture, $"target {f.TargetText}: {f.Verdict} ({(f.Ceiling ? t / v : v / t):F2}×)"),
        ({ }, null) => $"target {f.TargetText}: {f.Verdict}",
        _ => "",
    };

    private static string Cell(string? text) => text is null ? "" : text.ReplaceLineEndings(" ").Replace("|", "\\|", StringComparison.Ordinal);
}

/// <summary>Writes placement.md and placement.json.</summary>
public static class PlacementReport
{
    public static IReadOnlyList<string> WriteAll(PlacementRun run, string outDir)
    {
        Directory.CreateDirectory(outDir);
        var md = Path.Combine(outDir, "placement.md");
        var json = Path.Combine(outDir, "placement.json");
        File.WriteAllText(md, ToMarkdown(run));
        File.WriteAllText(json, JsonSerializer.Serialize(run, ReportJsonContext.Default.PlacementRun) + "\n");
        return [md, json];
    }

    public static string ToMarkdown(PlacementRun run)
    {
        var sb = new StringBuilder();
        var m = run.Machine;
        sb.AppendLine("# GpuPool placement benchmark");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Run {run.StartedUtc:yyyy-MM-dd HH:mm} UTC, {(run.Quick ? "--quick" : "full")}, {run.ElapsedSeconds:F0} s; simulated inventory of {run.Hosts:N0} hosts × {run.DevicesPerHost} GPUs (seed {run.Seed}); {m.ProcessorCount} cores, {m.Os}, {m.Runtime}; load average (1/5/15 min) at the end: {m.LoadAverage ?? "unknown"}.");
        sb.AppendLine("Everything runs in memory on one thread: the scheduler's pool model, no store. Targets are the issue's (benchmarks, not timed tests) except where a note says a target is derived.");
        Report.AppendTables(sb, run.Figures);
        return sb.ToString();
    }
}

/// <summary>Writes allocations.md and allocations.json.</summary>
public static class AllocationReport
{
    public static IReadOnlyList<string> WriteAll(AllocationRun run, string outDir)
    {
        Directory.CreateDirectory(outDir);
        var md = Path.Combine(outDir, "allocations.md");
        var json = Path.Combine(outDir, "allocations.json");
        File.WriteAllText(md, ToMarkdown(run));
        File.WriteAllText(json, JsonSerializer.Serialize(run, ReportJsonContext.Default.AllocationRun) + "\n");
        return [md, json];
    }

    public static string ToMarkdown(AllocationRun run)
    {
        var sb = new StringBuilder();
        var m = run.Machine;
        sb.AppendLine("# GpuPool committed-allocation benchmark");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Run {run.StartedUtc:yyyy-MM-dd HH:mm} UTC, {(run.Quick ? "--quick" : "full")}, {run.ElapsedSeconds:F0} s; {run.EtcdVersion}; simulated inventory of {run.Hosts:N0} hosts × {run.DevicesPerHost} GPUs registered in etcd; callers {string.Join(", ", run.Callers)}, {run.MeasureSeconds:F0} s measured each; {m.ProcessorCount} cores, {m.Os}, {m.Runtime}; load average (1/5/15 min) at the end: {m.LoadAverage ?? "unknown"}.");
        sb.AppendLine("Real etcd processes (tests/Shared/Etcd) on loopback with their data on the local disk; the scheduler (SchedulerHost on the etcd driver, open tenants) and the callers share this process and the machine's cores with etcd.");
        sb.AppendLine("An allocation counts when its Allocate call over gRPC has returned a lease committed to etcd (its record written by a fenced transaction the leader shares among a batch's grants and releases); releasers hand every lease back meanwhile (each Release returns once the record is deleted), so etcd carries the steady state.");
        sb.AppendLine("The anchor is etcd alone through the same driver at the same concurrency. Targets are the issue's (benchmarks, not timed tests).");
        Report.AppendTables(sb, run.Figures);
        return sb.ToString();
    }

    /// <summary>"etcd 3.4.23", from <c>etcd --version</c>.</summary>
    public static async Task<string> EtcdVersionAsync(string binary)
    {
        var info = new ProcessStartInfo(binary, "--version") { RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {binary}");
        var output = await process.StandardOutput.ReadToEndAsync().ConfigureAwait(false);
        await process.WaitForExitAsync().ConfigureAwait(false);
        var first = output.Split('\n', StringSplitOptions.TrimEntries).FirstOrDefault(l => l.StartsWith("etcd Version:", StringComparison.Ordinal));
        return first is null ? "etcd (version unknown)" : "etcd " + first["etcd Version:".Length..].Trim();
    }
}
