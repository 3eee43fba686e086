using GpuPool.Coordination;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;
using GpuPool.Scheduler.Placement;
using Grpc.Core;

namespace GpuPool.Scheduler.Admin;

/// <summary>The admin API: what the pool has and who holds it.</summary>
internal sealed class AdminService(IClusterStore store) : Protocol.V1.Admin.AdminBase
{
    public override Task<ClusterView> ListCluster(ListClusterRequest request, ServerCallContext context)
        => LeaseService.Map(async () =>
        {
            var state = await ClusterState.ReadAsync(store, context.CancellationToken).ConfigureAwait(false);
            var view = new ClusterView();
            view.Brokers.AddRange(state.Brokers);
            view.Devices.AddRange(state.Devices());
            view.Leases.AddRange(state.Leases);
            return view;
        });
}
