using System.Diagnostics.Metrics;

namespace GpuPool.Broker;

/// <summary>The broker's OpenTelemetry instruments (meter "GpuPool.Broker").</summary>
internal static class BrokerMetrics
{
    public static readonly Meter Meter = new("GpuPool.Broker");
    public static readonly Counter<long> Ops = Meter.CreateCounter<long>("gpupool.broker.ops", description: "Device-session operations received");
    public static readonly Counter<long> BytesToDevice = Meter.CreateCounter<long>("gpupool.broker.bytes_to_device", "By");
    public static readonly Counter<long> BytesToHost = Meter.CreateCounter<long>("gpupool.broker.bytes_to_host", "By");
    public static readonly UpDownCounter<long> StagedBytes = Meter.CreateUpDownCounter<long>("gpupool.broker.fast_path.staged_bytes", "By", "Bytes of copies to the device held in staging buffers while their stream is busy");
    public static readonly Counter<long> StripedCopies = Meter.CreateCounter<long>("gpupool.broker.fast_path.striped_copies", description: "Copies striped over several fast-path connections, by direction");
}
