using System.Globalization;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Infrastructure;

/// <summary>A launch the broker received, as its session log (Debug) wrote it.</summary>
public sealed record RecordedLaunch(string Function, (uint X, uint Y, uint Z) Grid, (uint X, uint Y, uint Z) Block, uint SharedBytes, byte[] Parameters);

/// <summary>An allocation the broker made for a session, as its session log (Debug) wrote it.</summary>
public sealed record RecordedAllocation(ulong Address, ulong Bytes)
{
    public bool Contains(ulong address) => address >= Address && address < Address + Bytes;
}

/// <summary>
/// A pool whose broker's session log (each allocation and kernel launch, at Debug, under the SessionExecutor category)
/// goes to a <see cref="BrokerLogRecorder"/>, so a test can check what an unmodified program made the broker do.
/// </summary>
public sealed class SessionLogPoolFixture : PoolFixture
{
    private ILoggerFactory? _loggerFactory;

    public BrokerLogRecorder Log { get; } = new(LogLevel.Debug);

    protected override ILoggerFactory? BrokerLoggerFactory => _loggerFactory ??= LoggerFactory.Create(logging => logging
        .SetMinimumLevel(LogLevel.Warning)
        .AddFilter("GpuPool.Broker.Sessions.SessionExecutor", LogLevel.Debug)
        .AddProvider(Log));

    /// <summary>The launches the broker received in sessions of <paramref name="leaseId"/>, in order.</summary>
    public IReadOnlyList<RecordedLaunch> Launches(string leaseId) => [.. Entries("KernelLaunch", leaseId).Select(e => new RecordedLaunch(
        e.Field("Function"),
        (U32(e, "GridX"), U32(e, "GridY"), U32(e, "GridZ")),
        (U32(e, "BlockX"), U32(e, "BlockY"), U32(e, "BlockZ")),
        U32(e, "SharedBytes"),
        Convert.FromHexString(e.Field("Parameters"))))];

    /// <summary>The allocations the broker made in sessions of <paramref name="leaseId"/>, in order.</summary>
    public IReadOnlyList<RecordedAllocation> Allocations(string leaseId) => [.. Entries("Allocated", leaseId).Select(e => new RecordedAllocation(
        ulong.Parse(e.Field("Address"), CultureInfo.InvariantCulture),
        ulong.Parse(e.Field("Bytes"), CultureInfo.InvariantCulture)))];

    private IEnumerable<LoggedEntry> Entries(string eventName, string leaseId)
        => Log.Entries.Where(e => e.EventId.Name == eventName && e.Fields.TryGetValue("LeaseId", out var lease) && (string?)lease == leaseId);

    private static uint U32(LoggedEntry entry, string field) => uint.Parse(entry.Field(field), CultureInfo.InvariantCulture);
}
