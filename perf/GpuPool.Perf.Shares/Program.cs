using System.Diagnostics;
using System.Globalization;
using System.Text;
using GpuPool.Client;
using GpuPool.Perf.GpuPoolSuites;
using GpuPool.Perf.Harness;
using GpuPool.Protocol.V1;
using DeviceSession = GpuPool.Client.DeviceSession;

namespace GpuPool.Perf.Shares;

/// <summary>
/// Compute shares measured: leases on one cpu device with a single execution slot, in a pool in this process, each
/// keeping its device busy with matrix products through a real session (the fast path over TCP), and each lease's
/// device time read back through its session at the ends of 10 s windows. The anchor of each figure is the share it
/// should be: the ratio of shares, or the share itself for a lease alone. Prints, and writes perf/results/shares.md.
/// </summary>
public static class Program
{
    private const string Usage =
        "usage: dotnet run -c Release --project perf/GpuPool.Perf.Shares -- [--quick] [--window S] [--out DIR]\n" +
        "  --quick     one window per case instead of three (about 1.5 minutes; the full run about 4)\n" +
        "  --window S  seconds per window (default 10)\n" +
        "  --out DIR   where shares.md goes (default perf/results)";

    /// <summary>The side of the square matrices of a short kernel: 5-10 ms of one core here.</summary>
    private const int Side = 480;

    public static async Task<int> Main(string[] args)
    {
        var quick = false;
        var window = TimeSpan.FromSeconds(10);
        var outDir = "perf/results";
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--window" when i + 1 < args.Length:
                    window = TimeSpan.FromSeconds(double.Parse(args[++i], CultureInfo.InvariantCulture));
                    break;
                case "--out" when i + 1 < args.Length:
                    outDir = args[++i];
                    break;
                default:
                    Console.Error.WriteLine(Usage);
                    return args[i] is "-h" or "--help" ? 0 : 2;
            }
        }

        var windows = quick ? 1 : 3;
        var started = DateTimeOffset.UtcNow;
        var load = RunInfo.LoadAverage();
        Console.WriteLine($"compute-share benchmark: one cpu device, 1 slot, {windows} window(s) of {window.TotalSeconds:0} s per case; load average {load}");
        await using var pool = await BenchPool.StartAsync(1UL << 30, CancellationToken.None, slots: 1).ConfigureAwait(false);
        var cases = new List<Case>();

        cases.Add(await RunAsync(pool, "750 and 250, both busy", [new(750), new(250)], window, windows, RatioOfFirstTwo(3.0, 0.10)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "250 work-conserving, the 750 lease held but idle", [new(750, Idle: true), new(250)], window, windows, ShareOf(1, 1.0, 0.10, atLeast: true)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "250 capped, alone", [new(250, ShareMode.Capped)], window, windows, ShareOf(0, 0.25, 0.05)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "250 capped beside a busy 750", [new(750), new(250, ShareMode.Capped)], window, windows, ShareOf(1, 0.25, 0.05)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "400/300/200/100, all busy", [new(400), new(300), new(200), new(100)], window, windows, Proportional(0.10)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "750 with one kernel in eight of 8× the work, and 250", [new(750, LongEvery: 8), new(250)], window, windows, RatioOfFirstTwo(3.0, 0.10)).ConfigureAwait(false));
        cases.Add(await RunAsync(pool, "250 capped, alone, kernels of about 120 ms", [new(250, ShareMode.Capped, Side: 1900)], window, windows, ShareOf(0, 0.25, 0.05)).ConfigureAwait(false));

        var report = Report(cases, window, windows, started, load, args);
        Directory.CreateDirectory(outDir);
        var path = Path.Combine(outDir, "shares.md");
        await File.WriteAllTextAsync(path, report).ConfigureAwait(false);
        Console.WriteLine();
        Console.WriteLine(report);
        Console.WriteLine($"written to {path}");
        return 0;
    }

    /// <summary>One lease of a case: its share and mode, whether it stays idle, the side of its kernels' matrices, and one long kernel in how many.</summary>
    private sealed record LeaseSpec(int Share, ShareMode Mode = ShareMode.WorkConserving, bool Idle = false, int Side = Side, int LongEvery = 0)
    {
        public override string ToString() => $"{Share}{(Mode == ShareMode.Capped ? " capped" : "")}{(Idle ? " (idle)" : "")}";
    }

    /// <summary>A window's device time per lease, and how long the window was.</summary>
    private sealed record Window(double[] Seconds, double Wall);

    /// <summary>What a window is judged by: its figure and whether it is within the target.</summary>
    private sealed record Judge(string Target, Func<Window, IReadOnlyList<LeaseSpec>, (string Figure, bool Met)> Apply);

    private sealed record Case(string Name, IReadOnlyList<LeaseSpec> Leases, List<Window> Windows, Judge Judge, double ItemMs);

    private static Judge RatioOfFirstTwo(double ratio, double tolerance) => new(
        $"{ratio:0.0} : 1 ± {tolerance:P0}",
        (w, _) =>
        {
            var r = w.Seconds[0] / w.Seconds[1];
            return ($"{r:0.00} : 1", Math.Abs(r - ratio) <= ratio * tolerance);
        });

    private static Judge ShareOf(int lease, double share, double tolerance, bool atLeast = false) => new(
        atLeast ? $"at least {share - tolerance:P0} of the device" : $"{share:P0} ± {tolerance * 100:0} points of the device",
        (w, _) =>
        {
            var s = w.Seconds[lease] / w.Wall;
            return ($"{s:P1}", atLeast ? s >= share - tolerance : Math.Abs(s - share) <= tolerance);
        });

    private static Judge Proportional(double tolerance) => new(
        $"each lease its share of the device time ± {tolerance:P0} of it",
        (w, leases) =>
        {
            var total = w.Seconds.Sum();
            var fractions = w.Seconds.Select(s => s / total).ToArray();
            var met = leases.Select((l, i) => Math.Abs(fractions[i] - (l.Share / 1000.0)) <= l.Share / 1000.0 * tolerance).All(m => m);
            return (string.Join(" / ", fractions.Select(f => $"{f * 100:0.0}%")), met);
        });

    private static async Task<Case> RunAsync(BenchPool pool, string name, LeaseSpec[] specs, TimeSpan window, int windows, Judge judge)
    {
        Console.WriteLine($"== {name}");
        var workers = new List<Worker>();
        try
        {
            foreach (var spec in specs)
            {
                workers.Add(await Worker.StartAsync(pool, spec).ConfigureAwait(false));
            }

            // A second for the workers to fill their queues and for capped budgets to settle.
            await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            var measured = new List<Window>();
            var before = await UsageAsync(workers).ConfigureAwait(false);
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < windows; i++)
            {
                await Task.Delay(window).ConfigureAwait(false);
                var after = await UsageAsync(workers).ConfigureAwait(false);
                var w = new Window([.. after.Zip(before, (a, b) => (a - b).TotalSeconds)], clock.Elapsed.TotalSeconds);
                clock.Restart();
                before = after;
                measured.Add(w);
                var (figure, met) = judge.Apply(w, specs);
                Console.WriteLine($"   window {i + 1}: {string.Join(", ", specs.Zip(w.Seconds, (s, t) => $"{s}: {t:0.00} s"))} of {w.Wall:0.00} s → {figure} ({(met ? "met" : "missed")}: {judge.Target})");
            }

            var perKernel = await Task.WhenAll(workers.Where(w => !w.Spec.Idle).Select(w => w.DeviceMsPerKernelAsync())).ConfigureAwait(false);
            return new Case(name, specs, measured, judge, perKernel.Average());
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task<TimeSpan[]> UsageAsync(List<Worker> workers)
        => [.. (await Task.WhenAll(workers.Select(w => w.Session.GetUsageAsync())).ConfigureAwait(false)).Select(u => u.DeviceTime)];

    private static string Report(List<Case> cases, TimeSpan window, int windows, DateTimeOffset started, string load, string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine("# Compute shares on one device (`perf/GpuPool.Perf.Shares`)");
        md.AppendLine();
        md.AppendLine(inv, $"- Run: {started:yyyy-MM-dd HH:mm} UTC, `{(args.Length == 0 ? "(no options)" : string.Join(' ', args))}`, code at {RunInfo.Commit()}, {Environment.ProcessorCount} cores, load average at start {load}");
        md.AppendLine(inv, $"- A pool in this process: one cpu device with one execution slot; each lease keeps it busy with `gemm_f32` launches through a session (fast path, TCP), in batches of eight each followed by an event, waiting for the batch four back (four batches always queued); device time read through each session at the ends of {windows} window(s) of {window.TotalSeconds:0} s per case");
        md.AppendLine("- The anchor of each figure is the share it should be (the ratio of the shares, or the share of the device)");
        md.AppendLine("- A window's wall time runs from one usage answer to the next as the client receives them; a usage op answers after the ops its session sent before it, so a window can be longer than asked (the capped case with long kernels)");
        md.AppendLine();
        md.AppendLine("| case | leases | device time per kernel | target | " + string.Join(" | ", Enumerable.Range(1, windows).Select(i => $"window {i}")) + " | met |");
        md.AppendLine("|---|---|---:|---|" + string.Concat(Enumerable.Repeat("---:|", windows)) + "---|");
        foreach (var c in cases)
        {
            var judged = c.Windows.Select(w => c.Judge.Apply(w, c.Leases)).ToArray();
            md.AppendLine(inv, $"| {c.Name} | {string.Join(", ", c.Leases)} | {c.ItemMs:0.0} ms | {c.Judge.Target} | {string.Join(" | ", judged.Select(j => j.Figure))} | {(judged.All(j => j.Met) ? "yes" : "**no**")} |");
        }

        return md.ToString();
    }

    /// <summary>A lease whose session keeps the device busy (or, idle, holds its lease and does nothing).</summary>
    private sealed class Worker : IAsyncDisposable
    {
        private const int Ahead = 4;

        private readonly CancellationTokenSource _stop = new();
        private Task _loop = Task.CompletedTask;
        private long _kernels;

        private Worker(LeaseSpec spec, Lease lease, DeviceSession session) => (Spec, Lease, Session) = (spec, lease, session);

        public LeaseSpec Spec { get; }

        public Lease Lease { get; }

        public DeviceSession Session { get; }

        /// <summary>The lease's device time per kernel it has run so far, as the broker measured it.</summary>
        public async Task<double> DeviceMsPerKernelAsync()
            => (await Session.GetUsageAsync().ConfigureAwait(false)).DeviceTime.TotalMilliseconds / Math.Max(1, Interlocked.Read(ref _kernels));

        public static async Task<Worker> StartAsync(BenchPool pool, LeaseSpec spec)
        {
            var lease = await pool.Client.AllocateAsync(new LeaseRequest { Tenant = "bench", MemoryBytes = 64UL << 20, ComputeShare = spec.Share, ShareMode = spec.Mode }).ConfigureAwait(false);
            var session = await lease.OpenSessionAsync(SessionTransportKind.Tcp).ConfigureAwait(false);
            var worker = new Worker(spec, lease, session);
            if (spec.Idle)
            {
                return worker;
            }

            var gemm = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync().ConfigureAwait(false), "gemm_f32").ConfigureAwait(false);
            var large = spec.LongEvery > 0 ? 2 * spec.Side : spec.Side;
            var a = await session.AllocAsync((ulong)(large * large * sizeof(float))).ConfigureAwait(false);
            var c = await session.AllocAsync((ulong)(large * large * sizeof(float))).ConfigureAwait(false);
            await session.CopyToDeviceAsync(a, Enumerable.Range(0, large * large).Select(i => (float)(i % 5)).ToArray()).ConfigureAwait(false);
            KernelArgs Args(int n) => new KernelArgs().I32(0).I32(0).I32(n).I32(n).I32(n).F32(1).Ptr(a).I32(n).Ptr(a).I32(n).F32(0).Ptr(c).I32(n);
            var (shortArgs, longArgs) = (Args(spec.Side), Args(large));
            worker._loop = Task.Run(() => worker.RunAsync(gemm, shortArgs, longArgs));
            return worker;
        }

        /// <summary>Batches of eight, each followed by an event; the client waits for the batch <see cref="Ahead"/> back, so that many are always queued.</summary>
        private async Task RunAsync(KernelFunction gemm, KernelArgs shortArgs, KernelArgs longArgs)
        {
            long launched = 0;
            var done = new DeviceEvent[Ahead + 1];
            for (var i = 0; i < done.Length; i++)
            {
                done[i] = await Session.CreateEventAsync().ConfigureAwait(false);
            }

            for (var batch = 0L; !_stop.IsCancellationRequested; batch++)
            {
                for (var i = 0; i < 8; i++)
                {
                    var args = Spec.LongEvery > 0 && ++launched % Spec.LongEvery == 0 ? longArgs : shortArgs;
                    await Session.LaunchAsync(gemm, new Dim3(1), new Dim3(1), args).ConfigureAwait(false);
                }

                await Session.RecordEventAsync(done[batch % done.Length]).ConfigureAwait(false);
                if (batch >= Ahead)
                {
                    await Session.SynchronizeEventAsync(done[(batch - Ahead) % done.Length]).ConfigureAwait(false);
                }

                Interlocked.Add(ref _kernels, 8);
            }

            await Session.SynchronizeAsync().ConfigureAwait(false);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _loop.ConfigureAwait(false);
            await Session.DisposeAsync().ConfigureAwait(false);
            await Lease.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
        }
    }
}
