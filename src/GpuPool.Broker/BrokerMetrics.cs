using System.Diagnostics.Metrics;

namespace GpuPool.Broker;

/// <summary>The broker's OpenTelemetry instruments (meter "GpuPool.Broker").</summary>
internal static class BrokerMetrics
{
    public static readonly Meter Meter = new("GpuPool.Broker");
    public static readonly Counter<long> Ops = Meter.CreateCounter<long>("gpupool.broker.ops", description: "Device-session operations received");
    public static readonly Counter<long> BytesToDevice = Meter.CreateCounter<long>("gpupool.broker.bytes_to_device", "By");
    public static readonly Counter<long> BytesToHost = Meter.CreateCounter<long>("gpupool.broker.bytes_to_host", "By");
}
