using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace GpuPool.Perf.Scheduler;

/// <summary>
/// The placement benchmark: the scheduler's pool model on a simulated inventory, in memory on one thread. Prints
/// each figure against the issue's target and writes placement.md and placement.json.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf.Scheduler -- [--quick] [--out DIR] [--hosts N] [--gpus N] [--seed N]\n" +
        "  --quick     fewer decisions and calls per figure (about 20 s on two cores; the full run about a minute)\n" +
        "  --out DIR   where placement.md and placement.json go (default perf/results)\n" +
        "  --hosts N   simulated hosts (default 10000)\n" +
        "  --gpus N    GPUs per host (default 8)\n" +
        "  --seed N    seed of the simulation's random choices (default 1)";

    public static int Main(string[] args)
    {
        if (!TryParse(args, out var options, out var error))
        {
            Console.Error.WriteLine(error);
            Console.Error.WriteLine(Usage);
            return error is null ? 0 : 2;
        }

        var log = Console.Out;
        var suites = new (string Name, Func<IReadOnlyList<Figure>> Run)[]
        {
            ("slices, pool held at 50% of memory", () => PlacementSuites.SlicesAtFill(options, 0.5, log)),
            ("slices, pool held at 90% of memory", () => PlacementSuites.SlicesAtFill(options, 0.9, log)),
            ("gangs, pool held at 50% of devices", () => PlacementSuites.Gangs(options, log)),
            ("full pool: evictions and heartbeats", () => PlacementSuites.FullPool(options, log)),
        };

        var startedUtc = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        var figures = new List<Figure>();
        var failed = false;
        log.WriteLine($"GpuPool placement benchmark ({(options.Quick ? "--quick" : "full")}), {options.Hosts:N0} hosts × {options.DevicesPerHost} GPUs, {Environment.ProcessorCount} cores, out: {options.OutDir}");
        foreach (var (name, run) in suites)
        {
            log.WriteLine($"== {name}");
            var elapsed = Stopwatch.StartNew();
            try
            {
                var results = run();
                foreach (var figure in results)
                {
                    PlacementReport.Print(log, figure);
                }

                figures.AddRange(results);
            }
            catch (Exception ex) when (ex is InvalidOperationException or OutOfMemoryException or ArgumentException)
            {
                // One broken suite must not hide the others' figures; it is reported and fails the run.
                Console.Error.WriteLine($"gpupool-perf-scheduler: {name} failed: {ex.Message}");
                figures.Add(new Figure("failures", name, null, "", Note: ex.GetType().Name + ": " + ex.Message));
                failed = true;
            }

            log.WriteLine($"   ({elapsed.Elapsed.TotalSeconds:F1} s)");
        }

        var machine = new MachineInfo(Environment.ProcessorCount, RuntimeInformation.OSDescription, RuntimeInformation.FrameworkDescription, PlacementReport.ReadLoadAverage());
        var result = new PlacementRun(startedUtc, Math.Round(total.Elapsed.TotalSeconds, 1), options.Quick, options.Hosts, options.DevicesPerHost, options.Seed, machine, figures);
        foreach (var path in PlacementReport.WriteAll(result, options.OutDir))
        {
            log.WriteLine($"wrote {Path.GetRelativePath(Environment.CurrentDirectory, path)}");
        }

        log.WriteLine($"total {total.Elapsed.TotalSeconds:F1} s");
        return failed ? 1 : 0;
    }

    /// <summary>False with a null error for --help; false with an error naming the bad argument otherwise.</summary>
    private static bool TryParse(string[] args, out PlacementOptions options, out string? error)
    {
        var quick = false;
        string? outDir = null;
        int hosts = 10_000, gpus = 8, seed = 1;
        options = null!;
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                case "--hosts" or "--gpus" or "--seed" when i + 1 < args.Length:
                    var name = args[i];
                    if (!int.TryParse(args[++i], NumberStyles.None, CultureInfo.InvariantCulture, out var value) || (value < 1 && name != "--seed"))
                    {
                        error = $"gpupool-perf-scheduler: {name} needs a positive whole number, not '{args[i]}'.";
                        return false;
                    }

                    _ = name switch
                    {
                        "--hosts" => hosts = value,
                        "--gpus" => gpus = value,
                        _ => seed = value,
                    };
                    break;
                case "--out" or "--hosts" or "--gpus" or "--seed":
                    error = $"gpupool-perf-scheduler: {args[i]} needs a value.";
                    return false;
                case "-h" or "--help":
                    return false;
                default:
                    error = $"gpupool-perf-scheduler: unknown argument '{args[i]}'.";
                    return false;
            }
        }

        options = new PlacementOptions(quick, Path.GetFullPath(outDir ?? DefaultOutDir()), hosts, gpus, seed);
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
