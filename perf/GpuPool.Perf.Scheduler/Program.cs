using System.Diagnostics;
using System.Globalization;
using GpuPool.Testing.Etcd;

namespace GpuPool.Perf.Scheduler;

/// <summary>
/// The scheduler's benchmarks. By default the placement benchmark: the pool model on a simulated inventory, in
/// memory on one thread (placement.md/.json). With --etcd the committed-allocation benchmark: a real etcd, the
/// scheduler in this process, callers over gRPC (allocations.md/.json). Each prints every figure against the
/// issue's target.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf.Scheduler -- [--etcd] [--quick] [--out DIR] [--hosts N] [--gpus N] [--seed N]\n" +
        "                                                                     [--callers N,N,..] [--members N,..] [--seconds S]\n" +
        "  --etcd          committed allocations with real etcd in the loop instead of placement decisions in memory\n" +
        "  --quick         shorter runs (placement about 20 s on two cores, --etcd about 2 min; the full runs 1 min and 5 min)\n" +
        "  --out DIR       where the .md and .json go (default perf/results)\n" +
        "  --hosts N       simulated hosts (default 10000)\n" +
        "  --gpus N        GPUs per host (default 8)\n" +
        "  --seed N        seed of the simulation's random choices (default 1)\n" +
        "  --callers LIST  --etcd: concurrent callers, one run each (default 8,16,32,64,256)\n" +
        "  --members LIST  --etcd: etcd cluster sizes, one cluster each (default 1,3)\n" +
        "  --seconds S     --etcd: measured seconds per run (default 10, --quick 3)";

    public static async Task<int> Main(string[] args)
    {
        if (!TryParse(args, out var options, out var error))
        {
            Console.Error.WriteLine(error);
            Console.Error.WriteLine(Usage);
            return error is null ? 0 : 2;
        }

        return options.Etcd ? await RunAllocationsAsync(options.Allocation, Console.Out).ConfigureAwait(false) : RunPlacement(options.Placement, Console.Out);
    }

    private static int RunPlacement(PlacementOptions options, TextWriter log)
    {
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
                    Report.Print(log, figure);
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

        var result = new PlacementRun(startedUtc, Math.Round(total.Elapsed.TotalSeconds, 1), options.Quick, options.Hosts, options.DevicesPerHost, options.Seed, MachineInfo.Current(), figures);
        foreach (var path in PlacementReport.WriteAll(result, options.OutDir))
        {
            log.WriteLine($"wrote {Path.GetRelativePath(Environment.CurrentDirectory, path)}");
        }

        log.WriteLine($"total {total.Elapsed.TotalSeconds:F1} s");
        return failed ? 1 : 0;
    }

    private static async Task<int> RunAllocationsAsync(AllocationOptions options, TextWriter log)
    {
        var startedUtc = DateTimeOffset.UtcNow;
        var total = Stopwatch.StartNew();
        var figures = new List<Figure>();
        var failed = false;
        string? missing = null;
        var version = "etcd not found";
        try
        {
            version = await AllocationReport.EtcdVersionAsync(EtcdCluster.FindBinary()).ConfigureAwait(false);
        }
        catch (InvalidOperationException ex)
        {
            // No etcd: every figure is missing, and the run says how to install it.
            missing = ex.Message;
        }

        log.WriteLine($"GpuPool committed-allocation benchmark ({(options.Quick ? "--quick" : "full")}), {options.Hosts:N0} hosts × {options.DevicesPerHost} GPUs, {version}, callers {string.Join(",", options.Callers)}, {options.MeasureSeconds:F0} s each, {Environment.ProcessorCount} cores, out: {options.OutDir}");
        foreach (var members in options.Members)
        {
            var name = members == 1 ? "etcd, one member" : $"etcd, {members}-member cluster";
            log.WriteLine($"== {name}");
            var elapsed = Stopwatch.StartNew();
            try
            {
                if (missing is not null)
                {
                    throw new InvalidOperationException(missing);
                }

                var results = await CommittedAllocations.RunAsync(options, members, log).ConfigureAwait(false);
                foreach (var figure in results)
                {
                    Report.Print(log, figure);
                }

                figures.AddRange(results);
            }
            catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or GpuPool.Coordination.StoreUnavailableException or Grpc.Core.RpcException or IOException)
            {
                Console.Error.WriteLine($"gpupool-perf-scheduler: {name} failed: {ex.Message}");
                figures.Add(new Figure("failures", name, null, "", Note: ex.GetType().Name + ": " + ex.Message));
                failed = true;
            }

            log.WriteLine($"   ({elapsed.Elapsed.TotalSeconds:F1} s)");
        }

        var result = new AllocationRun(startedUtc, Math.Round(total.Elapsed.TotalSeconds, 1), options.Quick, options.Hosts, options.DevicesPerHost, options.Seed, options.MeasureSeconds, options.Callers, options.Members, version, MachineInfo.Current(), figures);
        foreach (var path in AllocationReport.WriteAll(result, options.OutDir))
        {
            log.WriteLine($"wrote {Path.GetRelativePath(Environment.CurrentDirectory, path)}");
        }

        log.WriteLine($"total {total.Elapsed.TotalSeconds:F1} s");
        return failed ? 1 : 0;
    }

    private sealed record Options(bool Etcd, PlacementOptions Placement, AllocationOptions Allocation);

    /// <summary>False with a null error for --help; false with an error naming the bad argument otherwise.</summary>
    private static bool TryParse(string[] args, out Options options, out string? error)
    {
        var quick = false;
        var etcd = false;
        string? outDir = null;
        int hosts = 10_000, gpus = 8, seed = 1;
        int[] callers = [8, 16, 32, 64, 256], members = [1, 3];
        double? seconds = null;
        options = null!;
        error = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--etcd":
                    etcd = true;
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
                case "--callers" or "--members" when i + 1 < args.Length:
                    var list = args[i];
                    var parts = args[++i].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                    var numbers = new int[parts.Length];
                    if (parts.Length == 0 || parts.Select((p, k) => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out numbers[k]) && numbers[k] is >= 1 and <= 4096).Contains(false))
                    {
                        error = $"gpupool-perf-scheduler: {list} needs a comma-separated list of whole numbers from 1 to 4096 (for example 16,64,256), not '{args[i]}'.";
                        return false;
                    }

                    if (list == "--callers")
                    {
                        callers = numbers;
                    }
                    else if (numbers.Any(n => n is not (1 or 3 or 5)))
                    {
                        error = $"gpupool-perf-scheduler: --members takes etcd cluster sizes of 1, 3 or 5, not '{args[i]}'.";
                        return false;
                    }
                    else
                    {
                        members = numbers;
                    }

                    break;
                case "--seconds" when i + 1 < args.Length:
                    if (!double.TryParse(args[++i], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var s) || s < 0.5 || s > 600)
                    {
                        error = $"gpupool-perf-scheduler: --seconds needs a number of seconds from 0.5 to 600, not '{args[i]}'.";
                        return false;
                    }

                    seconds = s;
                    break;
                case "--out" or "--hosts" or "--gpus" or "--seed" or "--callers" or "--members" or "--seconds":
                    error = $"gpupool-perf-scheduler: {args[i]} needs a value.";
                    return false;
                case "-h" or "--help":
                    return false;
                default:
                    error = $"gpupool-perf-scheduler: unknown argument '{args[i]}'.";
                    return false;
            }
        }

        var dir = Path.GetFullPath(outDir ?? DefaultOutDir());
        options = new Options(
            etcd,
            new PlacementOptions(quick, dir, hosts, gpus, seed),
            new AllocationOptions(quick, dir, hosts, gpus, seed, callers, members, seconds ?? AllocationOptions.DefaultSeconds(quick)));
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
