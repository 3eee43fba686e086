using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace GpuPool.Perf.Scheduler;

/// <summary>
/// One measured figure. <paramref name="Target"/> is the issue's goal where it sets one (a floor for rates); the
/// value is never filled in from elsewhere: null means it could not be measured, and <paramref name="Note"/> says why.
/// </summary>
public sealed record Figure(string Group, string Name, double? Value, string Unit, double? Target = null, string? Note = null)
{
    /// <summary>"met", "missed", or empty where there is no target.</summary>
    public string Verdict => Target is null ? "" : Value is null ? "missing" : Value >= Target ? "met" : "missed";
}

public sealed record MachineInfo(int ProcessorCount, string Os, string Runtime, string? LoadAverage);

public sealed record PlacementRun(DateTimeOffset StartedUtc, double ElapsedSeconds, bool Quick, int Hosts, int DevicesPerHost, int Seed, MachineInfo Machine, IReadOnlyList<Figure> Figures);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(PlacementRun))]
internal sealed partial class PlacementJsonContext : JsonSerializerContext;

/// <summary>Per-call timings of a run of calls: nearest-rank percentiles in microseconds.</summary>
public static class Timings
{
    public static double PercentileMicroseconds(long[] ticks, double p)
    {
        ArgumentOutOfRangeException.ThrowIfZero(ticks.Length);
        var sorted = (long[])ticks.Clone();
        Array.Sort(sorted);
        var index = Math.Clamp((int)Math.Ceiling(p / 100.0 * sorted.Length) - 1, 0, sorted.Length - 1);
        return sorted[index] * 1_000_000.0 / Stopwatch.Frequency;
    }

    public static double PerSecond(int count, long elapsedTicks) => count / ((double)elapsedTicks / Stopwatch.Frequency);
}

/// <summary>Writes placement.md and placement.json, and prints each figure against its target.</summary>
public static class PlacementReport
{
    public static void Print(TextWriter writer, Figure figure)
        => writer.WriteLine($"  {figure.Name,-62} {Format(figure),12} {figure.Unit,-12} {TargetText(figure)}");

    public static IReadOnlyList<string> WriteAll(PlacementRun run, string outDir)
    {
        Directory.CreateDirectory(outDir);
        var md = Path.Combine(outDir, "placement.md");
        var json = Path.Combine(outDir, "placement.json");
        File.WriteAllText(md, ToMarkdown(run));
        File.WriteAllText(json, JsonSerializer.Serialize(run, PlacementJsonContext.Default.PlacementRun) + "\n");
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
        foreach (var group in run.Figures.GroupBy(f => f.Group))
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"## {group.Key}");
            sb.AppendLine();
            sb.AppendLine("| figure | value | unit | target | verdict | note |");
            sb.AppendLine("| --- | ---: | --- | ---: | --- | --- |");
            foreach (var f in group)
            {
                var target = f.Target is { } t ? "≥ " + t.ToString("N0", CultureInfo.InvariantCulture) : "";
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {f.Name} | {Format(f)} | {f.Unit} | {target} | {f.Verdict} | {Cell(f.Note)} |");
            }
        }

        return sb.ToString();
    }

    public static string? ReadLoadAverage()
    {
        const string path = "/proc/loadavg";
        return File.Exists(path) ? string.Join(' ', File.ReadAllText(path).Split(' ').Take(3)) : null;
    }

    private static string Format(Figure f) => f.Value switch
    {
        null => "missing",
        { } v when v >= 100 => v.ToString("N0", CultureInfo.InvariantCulture),
        { } v when v >= 10 => v.ToString("F1", CultureInfo.InvariantCulture),
        { } v => v.ToString("F2", CultureInfo.InvariantCulture),
    };

    private static string TargetText(Figure f) => (f.Target, f.Value) switch
    {
        ({ } t, { } v) => string.Create(CultureInfo.InvariantCulture, $"target ≥ {t:N0}: {f.Verdict} ({v / t:F2}×)"),
        ({ } t, null) => string.Create(CultureInfo.InvariantCulture, $"target ≥ {t:N0}: {f.Verdict}"),
        _ => "",
    };

    private static string Cell(string? text) => text is null ? "" : text.ReplaceLineEndings(" ").Replace("|", "\\|", StringComparison.Ordinal);
}
