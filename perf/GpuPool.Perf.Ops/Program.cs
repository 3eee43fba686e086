using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using BenchmarkDotNet.Running;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.Ops;

/// <summary>
/// Entry point: the BenchmarkDotNet suites of this assembly (arguments it does not know go to BenchmarkDotNet, such as
/// --filter), then the sampled allocation profile, then one dated markdown file with both under the results folder.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf.Ops -- [--out DIR] [--profile-ops N] [--skip-bdn] [--skip-profile] [BenchmarkDotNet args]\n" +
        "  --out DIR        where ops-<date>.md goes (default perf/results)\n" +
        "  --profile-ops N  ops of each kind in the allocation profile (default 10000)\n" +
        "  --skip-bdn       only the allocation profile\n" +
        "  --skip-profile   only BenchmarkDotNet";

    public static async Task<int> Main(string[] args)
    {
        var outDir = "perf/results";
        var profileOps = 10_000;
        bool skipBdn = false, skipProfile = false;
        var bdnArgs = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                case "--profile-ops" when i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var n) && n > 0:
                    profileOps = n;
                    i++;
                    break;
                case "--skip-bdn":
                    skipBdn = true;
                    break;
                case "--skip-profile":
                    skipProfile = true;
                    break;
                case "-h" or "--help":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    bdnArgs.Add(args[i]);
                    break;
            }
        }

        var started = DateTimeOffset.UtcNow;
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"# Small-op allocations and time per op, {started:yyyy-MM-dd HH:mm} UTC");
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"- commit: {RunInfo.Commit()}");
        report.AppendLine(CultureInfo.InvariantCulture, $"- command: `dotnet run -c Release --project perf/GpuPool.Perf.Ops -- {string.Join(' ', args)}`");
        report.AppendLine(CultureInfo.InvariantCulture, $"- machine: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, .NET {Environment.Version}; load average at start {RunInfo.LoadAverage()}");
        report.AppendLine("- client, broker (cpu device), scheduler and store all in this process; a session per transport; every figure counts");
        report.AppendLine("  the allocations of all threads (GC.GetTotalAllocatedBytes(precise: true)), so both ends of each op");
        report.AppendLine();

        if (!skipBdn)
        {
            var summaries = BenchmarkRunner.Run(typeof(Program).Assembly, args: [.. bdnArgs]);
            report.AppendLine("## BenchmarkDotNet");
            report.AppendLine();
            report.AppendLine(CultureInfo.InvariantCulture, $"Each invocation issues {OpBenchmarks.Ops} ops (OperationsPerInvoke) and waits until the broker has run them, so Mean and Allocated are per op.");
            report.AppendLine();
            foreach (var summary in summaries)
            {
                var table = Directory.EnumerateFiles(summary.ResultsDirectoryPath, "*-report-github.md")
                    .Where(f => File.GetLastWriteTimeUtc(f) >= started.UtcDateTime && Path.GetFileName(f).Contains(summary.BenchmarksCases.FirstOrDefault()?.Descriptor.Type.Name ?? "\0", StringComparison.Ordinal))
                    .Select(File.ReadAllText)
                    .FirstOrDefault();
                if (table is not null)
                {
                    report.AppendLine(table.Trim());
                    report.AppendLine();
                }
            }
        }

        if (!skipProfile)
        {
            var log = new StringWriter(CultureInfo.InvariantCulture);
            await OpAllocationProfile.RunAsync(log, profileOps, 8, CancellationToken.None).ConfigureAwait(false);
            Console.WriteLine();
            Console.WriteLine(log.ToString());
            report.AppendLine("## Allocation profile");
            report.AppendLine();
            report.Append(log);
            report.AppendLine();
        }

        report.AppendLine(CultureInfo.InvariantCulture, $"Load average at the end: {RunInfo.LoadAverage()}; {(DateTimeOffset.UtcNow - started).TotalSeconds:F0} s in all.");
        Directory.CreateDirectory(outDir);
        var path = Path.Combine(outDir, $"ops-{started:yyyy-MM-dd-HHmm}.md");
        await File.WriteAllTextAsync(path, report.ToString()).ConfigureAwait(false);
        Console.WriteLine($"wrote {path}");
        return 0;
    }
}
