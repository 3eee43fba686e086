using System.Diagnostics;
using System.Runtime.InteropServices;
using GpuPool.Perf.Anchors;
using GpuPool.Perf.GpuPoolSuites;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf;

/// <summary>
/// The wire benchmark: runs every suite once in this process, prints each figure with its ratio to its
/// anchor, and writes results.md, results.json and bandwidth.png.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf -- [--quick] [--out DIR] [--skip-iperf] [--only WORDS]\n" +
        "  --quick       shorter runs (the anchors take well under a minute)\n" +
        "  --out DIR     where results.md, results.json and bandwidth.png go (default perf/results)\n" +
        "  --skip-iperf  leave out the iperf3 anchor (recorded as missing)\n" +
        "  --only WORDS  run only the suites whose name holds one of the comma-separated words (iperf3, echo, gRPC,\n" +
        "                tcp, unix, grpc); a figure whose anchor did not run has no ratio\n" +
        "  --alloc-profile [--copies N] [--size MiB] [--max-message KiB]\n" +
        "                only profile where bulk fast-path copies allocate (N copies of MiB each way, TCP and Unix;\n" +
        "                default 16 of 64 MiB; a smaller broker message limit means smaller chunks, so more of them):\n" +
        "                bytes per MiB moved and the top allocating types";

    public static async Task<int> Main(string[] args)
    {
        if (!TryParse(args, out var options, out var error))
        {
            Console.Error.WriteLine(error);
            Console.Error.WriteLine(Usage);
            return error is null ? 0 : 2;
        }

        // Ctrl+C or a TERM stops the run cleanly: suites kill their child processes, what was measured is written.
        using var cts = new CancellationTokenSource();
        void Cancel(PosixSignalContext context)
        {
            context.Cancel = true;
            cts.Cancel();
        }

        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);

        var log = Console.Out;
        if (AllocationProfileArgs(args) is { } profile)
        {
            return await AllocationProfile.RunAsync(log, profile.Copies, profile.SizeMiB, profile.MaxMessageKiB, 20, cts.Token).ConfigureAwait(false);
        }

        // Every suite that runs, in order. GpuPool's own suites (fast path and gRPC path bandwidth,
        // small-op round trip, launch rate) are added here, naming AnchorNames.* as their anchors.
        IBenchmark[] suites =
        [
            new IperfAnchor(log),
            new SocketEchoAnchor(),
            new GrpcAnchor(),
            new WireSuite(Client.SessionTransportKind.Tcp),
            new WireSuite(Client.SessionTransportKind.Unix),
            new WireSuite(Client.SessionTransportKind.Grpc),
            new TlsSuite(),
        ];

        if (options.Only is { } only)
        {
            var names = suites.Select(s => s.Name).ToArray();
            suites = [.. suites.Where(s => only.Any(word => s.Name.Contains(word, StringComparison.Ordinal)))];
            if (suites.Length == 0)
            {
                Console.Error.WriteLine($"gpupool-perf: --only {string.Join(',', only)} matches no suite; the suites are: {string.Join("; ", names)}.");
                return 2;
            }
        }

        var startedUtc = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        var measurements = new List<Measurement>();
        var failed = false;
        log.WriteLine($"GpuPool wire benchmark ({(options.Quick ? "--quick" : "full")}), {Environment.ProcessorCount} cores, out: {options.OutDir}");
        foreach (var suite in suites)
        {
            log.WriteLine($"== {suite.Name}");
            var elapsed = Stopwatch.StartNew();
            try
            {
                var results = await suite.RunAsync(options, cts.Token).ConfigureAwait(false);
                foreach (var m in results)
                {
                    var value = m.Value is { } v ? v.ToString("G4", System.Globalization.CultureInfo.InvariantCulture) : "missing";
                    log.WriteLine($"  {m.Name,-44} {value,10} {m.Unit}");
                }

                measurements.AddRange(results);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                Console.Error.WriteLine("gpupool-perf: cancelled; writing what was measured.");
                failed = true;
                break;
            }
            catch (Exception ex)
            {
                // One broken suite must not hide the others' figures; it is reported and fails the run.
                Console.Error.WriteLine($"gpupool-perf: {suite.Name} failed: {ex.Message}");
                measurements.Add(Measurement.Missing("failures", suite.Name, "", ex.GetType().Name + ": " + ex.Message));
                failed = true;
            }

            log.WriteLine($"   ({elapsed.Elapsed.TotalSeconds:F1} s)");
        }

        var report = new Report(measurements, startedUtc, total.Elapsed, options.Quick);
        report.PrintSummary(log);
        foreach (var path in report.WriteAll(options.OutDir))
        {
            log.WriteLine($"wrote {Path.GetRelativePath(Environment.CurrentDirectory, path)}");
        }

        log.WriteLine($"total {total.Elapsed.TotalSeconds:F1} s");
        return failed ? 1 : 0;
    }

    /// <summary>The --alloc-profile mode's settings, or null when it was not asked for.</summary>
    private static (int Copies, int SizeMiB, int MaxMessageKiB)? AllocationProfileArgs(string[] args)
    {
        if (!args.Contains("--alloc-profile"))
        {
            return null;
        }

        static int Value(string[] args, string name, int fallback)
        {
            var i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out var v) && v > 0 ? v : fallback;
        }

        return (Value(args, "--copies", 16), Value(args, "--size", 64), Value(args, "--max-message", 16 << 10));
    }

    /// <summary>False with a null error for --help; false with an error naming the bad argument otherwise.</summary>
    private static bool TryParse(string[] args, out BenchmarkOptions options, out string? error)
    {
        var quick = false;
        var skipIperf = false;
        string? outDir = null;
        string[]? only = null;
        options = null!;
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--skip-iperf":
                    skipIperf = true;
                    break;
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                case "--out":
                    error = "gpupool-perf: --out needs a directory.";
                    return false;
                case var a when a.StartsWith("--out=", StringComparison.Ordinal):
                    outDir = a["--out=".Length..];
                    break;
                case "--only" when i + 1 < args.Length:
                    only = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    break;
                case "--only":
                    error = "gpupool-perf: --only needs a comma-separated list of words from the suites' names.";
                    return false;
                case "--alloc-profile":
                    break;
                case "--copies" or "--size" or "--max-message" when i + 1 < args.Length:
                    i++;
                    break;
                case "-h" or "--help":
                    return false;
                default:
                    error = $"gpupool-perf: unknown argument '{args[i]}'.";
                    return false;
            }
        }

        options = new BenchmarkOptions(quick, Path.GetFullPath(outDir ?? DefaultOutDir()), skipIperf) { Only = only };
        return true;
    }

    /// <summary>perf/results under the repository root (found by GpuPool.sln), else under the current directory.</summary>
    private static string DefaultOutDir()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "GpuPool.sln")))
            {
                return Path.Combine(dir.FullName, "perf", "results");
            }
        }

        return Path.Combine("perf", "results");
    }
}
