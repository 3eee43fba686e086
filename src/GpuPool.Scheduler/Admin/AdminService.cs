using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Identity;
using GpuPool.Scheduler.Leases;
using Grpc.Core;

namespace GpuPool.Scheduler.Admin;

/// <summary>The admin API over gRPC: resolves the caller from the call's credential; <see cref="AdminCore"/> does the work.</summary>
internal sealed class AdminService(AdminCore core, CallerResolver callers) : Protocol.V1.Admin.AdminBase
{
    public override Task<ClusterView> ListCluster(ListClusterRequest request, ServerCallContext context)
        => Call(context, caller => core.ListClusterAsync(caller, context.CancellationToken));

    public override Task<Quota> SetQuota(SetQuotaRequest request, ServerCallContext context)
        => Call(context, caller => core.SetQuotaAsync(request.Quota, caller, context.CancellationToken));

    public override Task<Quota> GetQuota(GetQuotaRequest request, ServerCallContext context)
        => Call(context, caller => core.GetQuotaAsync(request.Tenant, caller, context.CancellationToken));

    public override Task<ListQuotasReply> ListQuotas(ListQuotasRequest request, ServerCallContext context)
        => Call(context, async caller => new ListQuotasReply { Quotas = { await core.ListQuotasAsync(caller, context.CancellationToken).ConfigureAwait(false) } });

    public override Task<DeleteReply> DeleteQuota(GetQuotaRequest request, ServerCallContext context)
        => Call(context, async caller => new DeleteReply { Deleted = await core.DeleteQuotaAsync(request.Tenant, caller, context.CancellationToken).ConfigureAwait(false) });

    public override Task<PriorityClass> SetPriorityClass(SetPriorityClassRequest request, ServerCallContext context)
        => Call(context, caller => core.SetPriorityClassAsync(request.Class, caller, context.CancellationToken));

    public override Task<ListPriorityClassesReply> ListPriorityClasses(ListPriorityClassesRequest request, ServerCallContext context)
        => Call(context, async caller => new ListPriorityClassesReply { Classes = { await core.ListPriorityClassesAsync(caller, context.CancellationToken).ConfigureAwait(false) } });

    public override Task<DeleteReply> DeletePriorityClass(DeletePriorityClassRequest request, ServerCallContext context)
        => Call(context, async caller => new DeleteReply { Deleted = await core.DeletePriorityClassAsync(request.Name, caller, context.CancellationToken).ConfigureAwait(false) });

    public override Task<DrainReply> Drain(DrainRequest request, ServerCallContext context)
        => Call(context, caller => core.DrainAsync(request.BrokerId, request.Undo, caller, context.CancellationToken));

    public override Task<AddTenantTokenReply> AddTenantToken(AddTenantTokenRequest request, ServerCallContext context)
        => Call(context, caller => core.AddTenantTokenAsync(request.Tenant, request.Admin, caller, context.CancellationToken));

    public override Task<RevokeTenantTokensReply> RevokeTenantTokens(RevokeTenantTokensRequest request, ServerCallContext context)
        => Call(context, caller => core.RevokeTenantTokensAsync(request.Tenant, request.TokenId, caller, context.CancellationToken));

    public override Task<ListTenantsReply> ListTenants(ListTenantsRequest request, ServerCallContext context)
        => Call(context, caller => core.ListTenantsAsync(caller, context.CancellationToken));

    private Task<T> Call<T>(ServerCallContext context, Func<Caller, Task<T>> call)
        => LeaseService.Map(async () => await call(await callers.ResolveAsync(context).ConfigureAwait(false)).ConfigureAwait(false));
}
