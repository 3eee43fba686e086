using System.Collections.Concurrent;
using System.Diagnostics.Tracing;
using System.Globalization;

namespace GpuPool.Perf.Harness;

/// <summary>Sums GCAllocationTick events by type name; the runtime raises one per ~100 KB allocated on a heap.</summary>
internal sealed class AllocationTickListener : EventListener
{
    private static readonly ConcurrentDictionary<string, (long Bytes, int Ticks)> Samples = new(StringComparer.Ordinal);

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            // GC keyword; GCAllocationTick is a Verbose event.
            EnableEvents(eventSource, EventLevel.Verbose, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (eventData.EventName is null || !eventData.EventName.StartsWith("GCAllocationTick", StringComparison.Ordinal) || eventData.PayloadNames is null)
        {
            return;
        }

        var typeIndex = eventData.PayloadNames.IndexOf("TypeName");
        var amountIndex = eventData.PayloadNames.IndexOf("AllocationAmount64");
        if (amountIndex < 0)
        {
            amountIndex = eventData.PayloadNames.IndexOf("AllocationAmount");
        }

        if (typeIndex < 0 || amountIndex < 0)
        {
            return;
        }

        var type = eventData.Payload![typeIndex] as string ?? "?";

        // A large object's tick is usually that object: name its size, which says whose buffer it is.
        var sizeIndex = eventData.PayloadNames.IndexOf("ObjectSize");
        var kindIndex = eventData.PayloadNames.IndexOf("AllocationKind");
        if (sizeIndex >= 0 && kindIndex >= 0 && Convert.ToInt32(eventData.Payload[kindIndex], CultureInfo.InvariantCulture) != 0)
        {
            type += string.Create(CultureInfo.InvariantCulture, $" ({(Convert.ToInt32(eventData.Payload[kindIndex], CultureInfo.InvariantCulture) == 1 ? "large" : "pinned")}, {Convert.ToInt64(eventData.Payload[sizeIndex], CultureInfo.InvariantCulture):N0} B)");
        }

        var amount = Convert.ToInt64(eventData.Payload[amountIndex], CultureInfo.InvariantCulture);
        Samples.AddOrUpdate(type, (amount, 1), (_, s) => (s.Bytes + amount, s.Ticks + 1));
    }

    public void Reset() => Samples.Clear();

    public List<(string Type, long Bytes, int Ticks)> Snapshot() => Samples.Select(kv => (kv.Key, kv.Value.Bytes, kv.Value.Ticks)).ToList();
}
