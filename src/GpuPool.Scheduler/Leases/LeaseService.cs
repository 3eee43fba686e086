using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Scheduler.Leases;

/// <summary>The lease API over gRPC: validation and mapping only; <see cref="LeaseManager"/> does the work.</summary>
internal sealed class LeaseService(LeaseManager manager) : Protocol.V1.Leases.LeasesBase
{
    public override Task<AllocateReply> Allocate(AllocateRequest request, ServerCallContext context)
        => Map(() => manager.AllocateAsync(request, Forwarded(context), context.CancellationToken));

    public override Task<KeepAliveReply> KeepAlive(KeepAliveRequest request, ServerCallContext context)
        => Map(() => manager.KeepAliveAsync(request, Forwarded(context), context.CancellationToken));

    public override Task<ReleaseReply> Release(ReleaseRequest request, ServerCallContext context)
        => Map(async () =>
        {
            await manager.ReleaseAsync(request, Forwarded(context), context.CancellationToken).ConfigureAwait(false);
            return new ReleaseReply();
        });

    private static bool Forwarded(ServerCallContext context) => context.RequestHeaders.Get(LeaseManager.ForwardedHeader) is not null;

    internal static async Task<T> Map<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (GpuPoolException ex)
        {
            throw ex.ToRpcException();
        }
    }
}
