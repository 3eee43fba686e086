using GpuPool.Devices.Streams;

namespace GpuPool.Devices.Contexts;

/// <summary>A context's pools of reusable work items and synchronize points, one per kind: its ops allocate none in steady state.</summary>
internal sealed class ContextPools
{
    public WorkPool<LaunchWork> Launches { get; } = new(static p => new LaunchWork(p));

    public WorkPool<MemsetWork> Memsets { get; } = new(static p => new MemsetWork(p));

    public WorkPool<CopyToDeviceWork> CopiesToDevice { get; } = new(static p => new CopyToDeviceWork(p));

    public WorkPool<CopyToHostWork> CopiesToHost { get; } = new(static p => new CopyToHostWork(p));

    public WorkPool<CopyDeviceToDeviceWork> DeviceCopies { get; } = new(static p => new CopyDeviceToDeviceWork(p));

    public WorkPool<RecordWork> Records { get; } = new(static p => new RecordWork(p));

    public WorkPool<WaitEventWork> EventWaits { get; } = new(static p => new WaitEventWork(p));

    public WorkPool<MarkerWork> Markers { get; } = new(static p => new MarkerWork(p));

    public WorkPool<SyncPoint> Syncs { get; } = new(static p => new SyncPoint(p));
}
