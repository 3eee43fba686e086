namespace GpuPool.Perf.Anchors;

/// <summary>Names of the anchor figures, for GpuPool measurements to name as their anchor.</summary>
public static class AnchorNames
{
    public const string Iperf128K = "iperf3, 128 KiB writes";
    public const string Iperf1M = "iperf3, 1 MiB writes";
    public const string Iperf1MTurns = "iperf3, 1 MiB writes, taking turns with the 256 MiB tcp copies";
    public const string SocketEchoP50 = "raw socket echo 16 B, p50";
    public const string SocketEchoP99 = "raw socket echo 16 B, p99";
    public const string GrpcUpload = "plain gRPC upload, 256 KiB msgs";
    public const string GrpcPingP50 = "plain gRPC bidi ping 16 B, p50";
    public const string GrpcPingP99 = "plain gRPC bidi ping 16 B, p99";
}
