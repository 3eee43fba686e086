using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ScottPlot;

namespace GpuPool.Perf.Harness;

/// <summary>One figure as written out: the measurement with its ratio to its anchor resolved.</summary>
public sealed record ResultRow(
    string Group,
    string Name,
    double? Value,
    string Unit,
    long? SizeBytes,
    string? Anchor,
    double? AnchorValue,
    double? RatioToAnchor,
    string? Series,
    string? Note);

/// <summary>Where and how the run happened, so results from different machines are not confused.</summary>
/// <param name="LoadAverage">/proc/loadavg at the end of the run, where there is one: other work on the machine skews every figure.</param>
public sealed record MachineInfo(int ProcessorCount, string Os, string Runtime, string MachineName, string? LoadAverage);

public sealed record RunResults(
    DateTimeOffset StartedUtc,
    double ElapsedSeconds,
    bool Quick,
    MachineInfo Machine,
    IReadOnlyList<ResultRow> Results);

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RunResults))]
internal sealed partial class ResultsJsonContext : JsonSerializerContext;

/// <summary>
/// Turns a run's measurements into results.md, results.json and bandwidth.png, and the console summary.
/// Ratios are value / anchor value, only between figures of the same unit measured in this run.
/// </summary>
public sealed class Report
{
    private static readonly string[] GroupOrder = [Groups.Bandwidth, Groups.Latency, Groups.Rate];

    private readonly RunResults _run;

    public Report(IReadOnlyList<Measurement> measurements, DateTimeOffset startedUtc, TimeSpan elapsed, bool quick)
    {
        var byName = new Dictionary<string, Measurement>(StringComparer.Ordinal);
        foreach (var m in measurements)
        {
            if (!byName.TryAdd(m.Name, m))
            {
                throw new InvalidOperationException($"Two measurements are named '{m.Name}'; names must be unique so anchors resolve.");
            }
        }

        var rows = measurements.Select(m =>
        {
            double? anchorValue = null;
            double? ratio = null;
            if (m.Anchor is not null && byName.TryGetValue(m.Anchor, out var anchor) && anchor.Unit == m.Unit && anchor.Value is > 0)
            {
                anchorValue = anchor.Value;
                ratio = m.Value / anchor.Value;
            }

            return new ResultRow(m.Group, m.Name, m.Value, m.Unit, m.SizeBytes, m.Anchor, anchorValue, ratio, m.Series, m.Note);
        }).ToList();

        var machine = new MachineInfo(
            Environment.ProcessorCount,
            System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
            Environment.MachineName,
            ReadLoadAverage());
        _run = new RunResults(startedUtc, Math.Round(elapsed.TotalSeconds, 1), quick, machine, rows);
    }

    public RunResults Results => _run;

    /// <summary>Writes the three files; returns their paths.</summary>
    public IReadOnlyList<string> WriteAll(string outDir)
    {
        Directory.CreateDirectory(outDir);
        var md = Path.Combine(outDir, "results.md");
        var json = Path.Combine(outDir, "results.json");
        var png = Path.Combine(outDir, "bandwidth.png");
        File.WriteAllText(md, ToMarkdown());
        File.WriteAllText(json, JsonSerializer.Serialize(_run, ResultsJsonContext.Default.RunResults) + "\n");
        WriteBandwidthPlot(png);
        return [md, json, png];
    }

    public void PrintSummary(TextWriter writer)
    {
        writer.WriteLine();
        writer.WriteLine($"{"group",-10} {"figure",-44} {"value",12} {"unit",-6} ratio to anchor");
        foreach (var row in OrderedRows())
        {
            writer.WriteLine($"{row.Group,-10} {Truncate(row.Name, 44),-44} {FormatValue(row),12} {row.Unit,-6} {FormatRatio(row)}");
        }
    }

    public string ToMarkdown()
    {
        var sb = new StringBuilder();
        var m = _run.Machine;
        sb.AppendLine("# GpuPool wire benchmark");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Run {_run.StartedUtc:yyyy-MM-dd HH:mm} UTC, {(_run.Quick ? "--quick" : "full")}, {_run.ElapsedSeconds:F0} s; {m.ProcessorCount} cores, {m.Os}, {m.Runtime}; load average (1/5/15 min) at the end: {m.LoadAverage ?? "unknown"}.");
        sb.AppendLine("Every figure was measured in this run, on loopback. GB/s is 10^9 bytes per second. Ratio = value / anchor value");
        sb.AppendLine("(for GB/s and ops/s higher is better, for µs lower is better).");
        foreach (var group in OrderedRows().GroupBy(r => r.Group))
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"## {group.Key}");
            sb.AppendLine();
            sb.AppendLine("| figure | size | value | unit | anchor | ratio to anchor | note |");
            sb.AppendLine("| --- | ---: | ---: | --- | --- | ---: | --- |");
            foreach (var row in group)
            {
                var size = row.SizeBytes is { } s ? Stats.FormatSize(s) : "";
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {row.Name} | {size} | {FormatValue(row)} | {row.Unit} | {row.Anchor ?? ""} | {FormatRatio(row, withAnchorName: false)} | {Cell(row.Note)} |");
            }
        }

        return sb.ToString();
    }

    private void WriteBandwidthPlot(string path)
    {
        var plot = new Plot();
        var bandwidth = _run.Results.Where(r => r.Group == Groups.Bandwidth && r.Value is not null).ToList();

        // Log2 x axis: ScottPlot has no log scale, so plot log2(size) and label the ticks with sizes.
        const int minLog = 12; // 4 KiB
        const int maxLog = 30; // 1 GiB
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (var e = minLog; e <= maxLog; e += 2)
        {
            ticks.AddMajor(e, Stats.FormatSize(1L << e));
        }

        plot.Axes.Bottom.TickGenerator = ticks;

        var palette = new ScottPlot.Palettes.Category10();
        var colour = 0;
        foreach (var series in bandwidth.Where(r => r.Series is not null && r.SizeBytes is > 0).GroupBy(r => r.Series!))
        {
            var points = series.OrderBy(r => r.SizeBytes).ToArray();
            var scatter = plot.Add.Scatter(
                points.Select(r => Math.Log2(r.SizeBytes!.Value)).ToArray(),
                points.Select(r => r.Value!.Value).ToArray());
            scatter.LegendText = series.Key;
            scatter.Color = palette.GetColor(colour++);
            scatter.LineWidth = 2;
            scatter.MarkerSize = 6;
        }

        foreach (var anchor in bandwidth.Where(r => r.Series is null))
        {
            var line = plot.Add.HorizontalLine(anchor.Value!.Value);
            line.LinePattern = LinePattern.Dashed;
            line.LineWidth = 1.5f;
            line.Color = palette.GetColor(colour++);
            line.LegendText = $"{anchor.Name} ({FormatValue(anchor)} GB/s)";
        }

        var top = bandwidth.Count == 0 ? 1 : bandwidth.Max(r => r.Value!.Value);
        plot.Axes.SetLimits(minLog - 0.5, maxLog + 0.5, 0, top * 1.15);
        plot.Title($"Bandwidth against transfer size (loopback, {_run.StartedUtc:yyyy-MM-dd})");
        plot.XLabel("transfer size (log2)");
        plot.YLabel("GB/s (10^9 bytes/s)");
        plot.ShowLegend(Edge.Bottom);
        var missing = _run.Results.Where(r => r.Group == Groups.Bandwidth && r.Value is null).Select(r => r.Name).ToList();
        if (bandwidth.Count == 0)
        {
            plot.Add.Annotation("no bandwidth figure was measured in this run");
        }
        else if (missing.Count > 0)
        {
            plot.Add.Annotation("not measured in this run: " + string.Join("; ", missing), Alignment.LowerRight);
        }

        plot.SavePng(path, 1100, 650);
    }

    private IEnumerable<ResultRow> OrderedRows()
    {
        // Groups in a fixed order (unknown groups after), rows in the order they were measured.
        return _run.Results
            .Select((row, i) => (row, i))
            .OrderBy(x => Array.IndexOf(GroupOrder, x.row.Group) is var g and >= 0 ? g : GroupOrder.Length)
            .ThenBy(x => x.i)
            .Select(x => x.row);
    }

    private static string FormatValue(ResultRow row) => row.Value switch
    {
        null => "missing",
        { } v when row.Unit == Units.OpsPerSecond => v.ToString("N0", CultureInfo.InvariantCulture),
        { } v when row.Unit == Units.Microseconds => v.ToString("F1", CultureInfo.InvariantCulture),
        { } v => v.ToString(v < 1 ? "F3" : "F2", CultureInfo.InvariantCulture),
    };

    private static string FormatRatio(ResultRow row, bool withAnchorName = true)
    {
        if (row.Anchor is null)
        {
            return "";
        }

        if (row.RatioToAnchor is { } r)
        {
            return withAnchorName
                ? string.Create(CultureInfo.InvariantCulture, $"{r:F2}× {row.Anchor}")
                : string.Create(CultureInfo.InvariantCulture, $"{r:F2}×");
        }

        return row.Value is null ? "n/a" : $"n/a (anchor {row.Anchor} missing)";
    }

    private static string? ReadLoadAverage()
    {
        const string path = "/proc/loadavg";
        return File.Exists(path) ? string.Join(' ', File.ReadAllText(path).Split(' ').Take(3)) : null;
    }

    /// <summary>A markdown table cell: one line, no column breaks.</summary>
    private static string Cell(string? text) =>
        text is null ? "" : text.ReplaceLineEndings(" ").Replace("|", "\\|", StringComparison.Ordinal);

    private static string Truncate(string s, int width) => s.Length <= width ? s : s[..(width - 1)] + "…";
}
