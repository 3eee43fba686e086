namespace GpuPool.Perf.Harness;

/// <summary>
/// One measured figure. <paramref name="Value"/> is null when the figure could not be measured in this
/// run (then <paramref name="Note"/> says why); it is never filled in from elsewhere.
/// </summary>
/// <param name="Group">Table the figure belongs to: "bandwidth", "latency", "rate".</param>
/// <param name="Name">Unique name; other measurements name it as their anchor.</param>
/// <param name="Value">The measured value, or null when missing.</param>
/// <param name="Unit">"GB/s" (10^9 bytes per second), "us" or "ops/s".</param>
/// <param name="SizeBytes">Transfer or message size, where the figure has one.</param>
/// <param name="Anchor">Name of the measurement this one is compared with (ratio = value / anchor).</param>
/// <param name="Series">
/// Plot series for bandwidth-against-size figures (e.g. "GpuPool H2D fast path"). Bandwidth figures
/// without a series are drawn as horizontal anchor lines.
/// </param>
/// <param name="Note">How it was measured, or why it is missing.</param>
public sealed record Measurement(
    string Group,
    string Name,
    double? Value,
    string Unit,
    long? SizeBytes = null,
    string? Anchor = null,
    string? Series = null,
    string? Note = null)
{
    public static Measurement Missing(string group, string name, string unit, string reason, long? sizeBytes = null) =>
        new(group, name, null, unit, sizeBytes, Note: "missing: " + reason);
}

/// <summary>Group names and units, so suites and the report agree on spelling.</summary>
public static class Groups
{
    public const string Bandwidth = "bandwidth";
    public const string Latency = "latency";
    public const string Rate = "rate";
}

public static class Units
{
    public const string GBps = "GB/s";
    public const string Microseconds = "us";
    public const string OpsPerSecond = "ops/s";
}
