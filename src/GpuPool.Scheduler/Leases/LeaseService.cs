using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Identity;
using Grpc.Core;

namespace GpuPool.Scheduler.Leases;

/// <summary>The lease API over gRPC: resolves the caller, validates and maps; <see cref="LeaseManager"/> does the work.</summary>
internal sealed class LeaseService(LeaseManager manager, CallerResolver callers) : Protocol.V1.Leases.LeasesBase
{
    public override Task<AllocateReply> Allocate(AllocateRequest request, ServerCallContext context)
        => Map(async () => await manager.AllocateAsync(request, await callers.ResolveAsync(context).ConfigureAwait(false), Forwarded(context), context.CancellationToken).ConfigureAwait(false));

    public override Task<KeepAliveReply> KeepAlive(KeepAliveRequest request, ServerCallContext context)
        => Map(async () => await manager.KeepAliveAsync(request, await callers.ResolveAsync(context).ConfigureAwait(false), Forwarded(context), context.CancellationToken).ConfigureAwait(false));

    public override Task<ReleaseReply> Release(ReleaseRequest request, ServerCallContext context)
        => Map(async () =>
        {
            await manager.ReleaseAsync(request, await callers.ResolveAsync(context).ConfigureAwait(false), Forwarded(context), context.CancellationToken).ConfigureAwait(false);
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
