namespace GpuPool.Perf.Harness;

/// <summary>A suite of measurements run once per process run; it owns and cleans up whatever it starts.</summary>
public interface IBenchmark
{
    string Name { get; }

    Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken);
}

/// <summary>Adapts a plain delegate to <see cref="IBenchmark"/>, for suites that are one method.</summary>
public sealed class DelegateBenchmark(string name, Func<BenchmarkOptions, CancellationToken, Task<IReadOnlyList<Measurement>>> run) : IBenchmark
{
    public string Name { get; } = name;

    public Task<IReadOnlyList<Measurement>> RunAsync(BenchmarkOptions options, CancellationToken cancellationToken) =>
        run(options, cancellationToken);
}

/// <summary>Command-line choices every suite sees.</summary>
/// <param name="Quick">Shorter runs: the anchors together in well under a minute.</param>
/// <param name="OutDir">Where results.md, results.json and bandwidth.png go.</param>
/// <param name="SkipIperf">Leave out the iperf3 anchor (recorded as missing).</param>
public sealed record BenchmarkOptions(bool Quick, string OutDir, bool SkipIperf)
{
    /// <summary>Repetitions whose median is reported for a bandwidth figure.</summary>
    public int BandwidthRepetitions => 3;

    /// <summary>Round trips timed for a latency figure (after a separate warm-up).</summary>
    public int LatencyRoundTrips => Quick ? 20_000 : 50_000;

    public int LatencyWarmupRoundTrips => Quick ? 2_000 : 5_000;

    /// <summary>Words of which a suite's name must hold one for it to run (null: every suite).</summary>
    public IReadOnlyList<string>? Only { get; init; }
}
