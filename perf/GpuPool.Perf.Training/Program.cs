using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using GpuPool.Client;
using GpuPool.Devices;
using GpuPool.Perf.GpuPoolSuites;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.Training;

/// <summary>
/// The demo model's training step through a session over each transport, against the same step on the broker's own
/// device in this process with no session (the anchor), at several batch sizes in one run: steps per second and each
/// transport's ratio to the anchor, printed and written to a dated markdown file.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf.Training -- [--quick] [--batches 32,64,...] [--rounds N] [--round-ms MS] [--targets tcp,unix,grpc] [--out DIR]\n" +
        "  --quick      15 rounds of about 100 ms of in-process steps per batch size (default: 31 rounds of 150 ms)\n" +
        "  --batches    batch sizes (default 32,64,128,256,512,1024)\n" +
        "  --rounds N   rounds per batch size; each round runs every target once, in turn, the same number of steps\n" +
        "  --round-ms   how long a round's in-process steps take, which sets the steps per round\n" +
        "  --targets    which session transports run beside the anchor (default tcp,unix,grpc)\n" +
        "  --out DIR    where training-<date>.md goes (default perf/results)";

    /// <summary>The fast path's target from issue 13: steps/s at least this fraction of in-process, at batch 128 and above.</summary>
    private const double Target = 0.96;
    private const int TargetFromBatch = 128;

    private const ulong LeaseMemory = 256UL << 20;
    /// <summary>Each target's share: three leases at once must fit a device's 1000 (a share matters only when leases contend).</summary>
    private const int ComputeShare = 250;

    public static async Task<int> Main(string[] args)
    {
        var quick = false;
        int[] batches = [32, 64, 128, 256, 512, 1024];
        int? rounds = null, roundMs = null;
        SessionTransportKind[] transports = [SessionTransportKind.Tcp, SessionTransportKind.Unix, SessionTransportKind.Grpc];
        var outDir = "perf/results";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--batches" when i + 1 < args.Length:
                    batches = [.. args[++i].Split(',').Select(b => int.Parse(b, CultureInfo.InvariantCulture))];
                    break;
                case "--rounds" when i + 1 < args.Length:
                    rounds = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--round-ms" when i + 1 < args.Length:
                    roundMs = int.Parse(args[++i], CultureInfo.InvariantCulture);
                    break;
                case "--targets" when i + 1 < args.Length:
                    transports = [.. args[++i].Split(',').Select(t => Enum.Parse<SessionTransportKind>(t, ignoreCase: true))];
                    break;
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                default:
                    Console.Error.WriteLine(Usage);
                    return args[i] is "-h" or "--help" ? 0 : 2;
            }
        }

        var settings = new RunSettings(rounds ?? (quick ? 15 : 31), TimeSpan.FromMilliseconds(roundMs ?? (quick ? 100 : 150)), quick ? 20 : 50, transports);
        using var cts = new CancellationTokenSource();
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            cts.Cancel();
        });

        var started = DateTimeOffset.UtcNow;
        var loadAtStart = RunInfo.LoadAverage();
        Console.WriteLine($"training-step benchmark: batches {string.Join(',', batches)}, {settings.Rounds} rounds of ~{settings.RoundTime.TotalMilliseconds:F0} ms of in-process steps each; load average {loadAtStart}");
        var results = new List<BatchResult>();
        await using (var pool = await BenchPool.StartAsync((LeaseMemory * 4) + (64UL << 20), cts.Token).ConfigureAwait(false))
        {
            // A run thrown away first: until the runtime has recompiled the hot methods (tiered JIT), the first batch size
            // measured would run partly on unoptimized code, the anchor's and the sessions' alike but not equally.
            Console.WriteLine("warm-up run (not recorded):");
            await MeasureBatchAsync(pool, batches[0], settings with { Rounds = 3 }, cts.Token).ConfigureAwait(false);
            Console.WriteLine("measured:");
            foreach (var batch in batches)
            {
                results.Add(await MeasureBatchAsync(pool, batch, settings, cts.Token).ConfigureAwait(false));
            }
        }

        var report = Report(results, settings, started, loadAtStart, args);
        Directory.CreateDirectory(outDir);
        var path = Path.Combine(outDir, $"training-{started:yyyy-MM-dd-HHmm}.md");
        await File.WriteAllTextAsync(path, report, cts.Token).ConfigureAwait(false);
        Console.WriteLine();
        Console.WriteLine(report);
        Console.WriteLine($"wrote {path} ({(DateTimeOffset.UtcNow - started).TotalSeconds:F0} s)");
        return 0;
    }

    private sealed record RunSettings(int Rounds, TimeSpan RoundTime, int WarmupSteps, SessionTransportKind[] Transports);

    /// <summary>One batch size's figures: every target's timed runs, the anchor first.</summary>
    private sealed record BatchResult(int Batch, int StepsPerRound, double LaunchesPerStep, IReadOnlyList<(string Target, List<StepTiming> Runs)> Targets, IReadOnlyList<(string Target, float Loss)> Losses);

    private static async Task<BatchResult> MeasureBatchAsync(BenchPool pool, int batch, RunSettings settings, CancellationToken cancellationToken)
    {
        // The anchor: a context on the broker's own device, as the broker would open for a lease, driven directly.
        var context = pool.Backend.Devices[0].CreateContext(new ContextOptions("in-process", LeaseMemory, ComputeShare));
        var counting = new ContextDevice(context);
        var targets = new List<StepTarget>();
        var leases = new List<(Lease Lease, DeviceSession Session)>();
        try
        {
            targets.Add(await StepTarget.CreateAsync("in-process", counting, batch, cancellationToken).ConfigureAwait(false));
            foreach (var transport in settings.Transports)
            {
                var lease = await pool.LeaseAsync(LeaseMemory, ComputeShare, cancellationToken).ConfigureAwait(false);
                var session = await lease.OpenSessionAsync(transport, cancellationToken).ConfigureAwait(false);
                leases.Add((lease, session));
                targets.Add(await StepTarget.CreateAsync(session.Transport, session, batch, cancellationToken).ConfigureAwait(false));
            }

            // Warm-up (JIT, pools, connections), twice each; the anchor's second run sets the steps per round.
            StepTiming anchorWarm = default;
            for (var pass = 0; pass < 2; pass++)
            {
                foreach (var target in targets)
                {
                    var warm = await target.RunAsync(settings.WarmupSteps, cancellationToken).ConfigureAwait(false);
                    if (target == targets[0])
                    {
                        anchorWarm = warm;
                    }
                }
            }

            var launchesBefore = counting.Launches;
            var steps = (int)Math.Clamp(settings.RoundTime / (anchorWarm.Total / anchorWarm.Steps), 5, 50_000);
            var runs = targets.Select(_ => new List<StepTiming>()).ToArray();
            for (var round = 0; round < settings.Rounds; round++)
            {
                // Each round every target runs once, starting from a different one, so drift in the machine's load
                // falls on all of them alike rather than always on the same one.
                for (var k = 0; k < targets.Count; k++)
                {
                    var t = (round + k) % targets.Count;
                    runs[t].Add(await targets[t].RunAsync(steps, cancellationToken).ConfigureAwait(false));
                }
            }

            var launchesPerStep = (double)(counting.Launches - launchesBefore) / (steps * settings.Rounds);
            var losses = new List<(string, float)>();
            foreach (var target in targets)
            {
                losses.Add((target.Name, await target.LossTotalAsync(cancellationToken).ConfigureAwait(false)));
            }

            var result = new BatchResult(batch, steps, launchesPerStep, targets.Select((t, i) => (t.Name, runs[i])).ToArray(), losses);
            PrintBatch(result);
            return result;
        }
        finally
        {
            foreach (var target in targets)
            {
                await target.DisposeAsync().ConfigureAwait(false);
            }

            foreach (var (lease, session) in leases)
            {
                await session.DisposeAsync().ConfigureAwait(false);
                await lease.DisposeAsync().ConfigureAwait(false);
            }

            await context.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A target's ratio to the anchor: the median over rounds of anchor time / target time for the same steps.</summary>
    private static double Ratio(List<StepTiming> anchor, List<StepTiming> runs) => Median(Ratios(anchor, runs));

    private static IEnumerable<double> Ratios(List<StepTiming> anchor, List<StepTiming> runs) => runs.Select((r, i) => anchor[i].Total / r.Total);

    private static double Median(IEnumerable<double> values) => Quantile(values, 0.5);

    /// <summary>The q-quantile, interpolated between the nearest ranks.</summary>
    private static double Quantile(IEnumerable<double> values, double q)
    {
        var sorted = values.Order().ToArray();
        var at = q * (sorted.Length - 1);
        var below = (int)Math.Floor(at);
        return below + 1 < sorted.Length ? sorted[below] + ((at - below) * (sorted[below + 1] - sorted[below])) : sorted[below];
    }

    private static void PrintBatch(BatchResult result)
    {
        var anchor = result.Targets[0].Runs;
        var line = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"batch {result.Batch,5}: in-process {Median(anchor.Select(r => r.StepsPerSecond)),8:F0} steps/s"));
        foreach (var (name, runs) in result.Targets.Skip(1))
        {
            line.Append(CultureInfo.InvariantCulture, $"  {name} {Median(runs.Select(r => r.StepsPerSecond)),7:F0} ({Ratio(anchor, runs):F2}x)");
        }

        Console.WriteLine(line);
    }

    private static string Report(List<BatchResult> results, RunSettings settings, DateTimeOffset started, string loadAtStart, string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        var names = results[0].Targets.Skip(1).Select(t => t.Target).ToArray();
        var md = new StringBuilder();
        md.AppendLine(inv, $"# Training step through the broker against the same step in-process, {started:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine(inv, $"- commit: {RunInfo.Commit()}");
        md.AppendLine(inv, $"- command: `dotnet run -c Release --project perf/GpuPool.Perf.Training -- {string.Join(' ', args)}`");
        md.AppendLine(inv, $"- machine: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, .NET {Environment.Version}; load average {loadAtStart} at the start, {RunInfo.LoadAverage()} at the end");
        md.AppendLine("- model: the demo's MLP (2-64-64-3, ReLU, softmax cross-entropy, Adam; `src/GpuPool.Cli/Demo/MlpClassifier.cs`,");
        md.AppendLine(inv, $"  `TrainStepAsync`), {results[0].LaunchesPerStep:F0} kernel launches a step, fire-and-forget, one synchronize after each run of steps");
        md.AppendLine("- in-process: the same model on a context of the broker's own cpu device in this process, driven directly");
        md.AppendLine("  (`IDeviceContext`), no session, no network; tcp, unix, grpc: a session per transport to the broker of a pool");
        md.AppendLine("  in this process (client and broker share the machine's cores)");
        md.AppendLine(inv, $"- {settings.Rounds} rounds per batch size; in each round every target runs the same number of steps (about");
        md.AppendLine(inv, $"  {settings.RoundTime.TotalMilliseconds:F0} ms of in-process steps), in a rotating order; steps/s is the median over rounds, and a ratio");
        md.AppendLine("  is the median over rounds of in-process time / target time for the same steps");
        md.AppendLine();
        md.AppendLine("## Steps per second, and ratio to in-process");
        md.AppendLine();
        md.AppendLine("| batch | steps/round | in-process steps/s | " + string.Join(" | ", names.Select(n => $"{n} steps/s | {n} ratio (p25–p75)")) + " |");
        md.AppendLine("|---:|---:|---:|" + string.Concat(names.Select(_ => "---:|---:|")));
        foreach (var r in results)
        {
            var anchor = r.Targets[0].Runs;
            md.Append(inv, $"| {r.Batch} | {r.StepsPerRound} | {Median(anchor.Select(x => x.StepsPerSecond)):F0} |");
            foreach (var (_, runs) in r.Targets.Skip(1))
            {
                var ratios = Ratios(anchor, runs).ToArray();
                md.Append(inv, $" {Median(runs.Select(x => x.StepsPerSecond)):F0} | {Median(ratios):F2}x ({Quantile(ratios, 0.25):F2}–{Quantile(ratios, 0.75):F2}) |");
            }

            md.AppendLine();
        }

        md.AppendLine();
        md.AppendLine(inv, $"Target (issue 13): the fast path (tcp, unix) at least {Target:F2}x in-process at batch {TargetFromBatch} and above.");
        md.AppendLine();
        foreach (var r in results.Where(r => r.Batch >= TargetFromBatch))
        {
            var anchor = r.Targets[0].Runs;
            var verdicts = r.Targets.Skip(1).Where(t => t.Target is "tcp" or "unix").Select(t => (t.Target, Ratio: Ratio(anchor, t.Runs)));
            md.AppendLine(string.Create(inv, $"- batch {r.Batch}: ") + string.Join(", ", verdicts.Select(v => string.Create(inv, $"{v.Target} {v.Ratio:F2}x {(v.Ratio >= Target ? "met" : "missed")}"))));
        }

        md.AppendLine();
        md.AppendLine("## Where the time goes");
        md.AppendLine();
        md.AppendLine("CPU time of the whole process per step (every thread: caller, broker, kernels; medians over rounds), the part");
        md.AppendLine("of it above in-process per kernel launch, bytes allocated per step (every thread), and how much of a run's wall");
        md.AppendLine("time the caller spent queuing the steps (the rest it waited for the broker and the device to finish them).");
        md.AppendLine();
        md.AppendLine("| batch | in-process CPU µs/step | " + string.Join(" | ", names.Select(n => $"{n} CPU µs/step | {n} extra µs/launch")) + " | "
            + string.Join(" | ", results[0].Targets.Select(t => $"{t.Target} B/step")) + " | " + string.Join(" | ", results[0].Targets.Select(t => $"{t.Target} queuing share")) + " |");
        md.AppendLine("|---:|---:|" + string.Concat(names.Select(_ => "---:|---:|")) + string.Concat(results[0].Targets.Select(_ => "---:|---:|")));
        foreach (var r in results)
        {
            var anchorCpu = Median(r.Targets[0].Runs.Select(x => x.CpuMicrosecondsPerStep));
            md.Append(inv, $"| {r.Batch} | {anchorCpu:F0} |");
            foreach (var (_, runs) in r.Targets.Skip(1))
            {
                var cpu = Median(runs.Select(x => x.CpuMicrosecondsPerStep));
                md.Append(inv, $" {cpu:F0} | {(cpu - anchorCpu) / r.LaunchesPerStep:F1} |");
            }

            foreach (var (_, runs) in r.Targets)
            {
                md.Append(inv, $" {Median(runs.Select(x => x.BytesPerStep)):F0} |");
            }

            foreach (var (_, runs) in r.Targets)
            {
                md.Append(inv, $" {Median(runs.Select(x => x.SubmitShare)):P0} |");
            }

            md.AppendLine();
        }

        md.AppendLine();
        md.AppendLine("Loss summed over every step each target ran (the same steps on the same data from the same weights):");
        md.AppendLine();
        foreach (var r in results)
        {
            var same = r.Losses.All(l => l.Loss == r.Losses[0].Loss);
            md.AppendLine(string.Create(inv, $"- batch {r.Batch}: ") + string.Join(", ", r.Losses.Select(l => string.Create(inv, $"{l.Target} {l.Loss:R}"))) + (same ? " (identical)" : " (differ)"));
        }

        return md.ToString();
    }
}
