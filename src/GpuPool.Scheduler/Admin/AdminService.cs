using GpuPool.Protocol.V1;
using GpuPool.Scheduler.Leases;
using Grpc.Core;

namespace GpuPool.Scheduler.Admin;

/// <summary>The admin API over gRPC: reads the credential from the call's metadata; <see cref="AdminCore"/> does the work.</summary>
internal sealed class AdminService(AdminCore core) : Protocol.V1.Admin.AdminBase
{
    private const string BearerPrefix = "Bearer ";

    public override Task<ClusterView> ListCluster(ListClusterRequest request, ServerCallContext context)
        => LeaseService.Map(() => core.ListClusterAsync(context.CancellationToken));

    public override Task<Quota> SetQuota(SetQuotaRequest request, ServerCallContext context)
        => LeaseService.Map(() => core.SetQuotaAsync(request.Quota, Credential(context), context.CancellationToken));

    public override Task<Quota> GetQuota(GetQuotaRequest request, ServerCallContext context)
        => LeaseService.Map(() => core.GetQuotaAsync(request.Tenant, context.CancellationToken));

    public override Task<ListQuotasReply> ListQuotas(ListQuotasRequest request, ServerCallContext context)
        => LeaseService.Map(async () => new ListQuotasReply { Quotas = { await core.ListQuotasAsync(context.CancellationToken).ConfigureAwait(false) } });

    public override Task<DeleteReply> DeleteQuota(GetQuotaRequest request, ServerCallContext context)
        => LeaseService.Map(async () => new DeleteReply { Deleted = await core.DeleteQuotaAsync(request.Tenant, Credential(context), context.CancellationToken).ConfigureAwait(false) });

    public override Task<PriorityClass> SetPriorityClass(SetPriorityClassRequest request, ServerCallContext context)
        => LeaseService.Map(() => core.SetPriorityClassAsync(request.Class, Credential(context), context.CancellationToken));

    public override Task<ListPriorityClassesReply> ListPriorityClasses(ListPriorityClassesRequest request, ServerCallContext context)
        => LeaseService.Map(async () => new ListPriorityClassesReply { Classes = { await core.ListPriorityClassesAsync(context.CancellationToken).ConfigureAwait(false) } });

    public override Task<DeleteReply> DeletePriorityClass(DeletePriorityClassRequest request, ServerCallContext context)
        => LeaseService.Map(async () => new DeleteReply { Deleted = await core.DeletePriorityClassAsync(request.Name, Credential(context), context.CancellationToken).ConfigureAwait(false) });

    public override Task<DrainReply> Drain(DrainRequest request, ServerCallContext context)
        => LeaseService.Map(() => core.DrainAsync(request.BrokerId, request.Undo, Credential(context), context.CancellationToken));

    private static AdminCaller Credential(ServerCallContext context)
    {
        var header = context.RequestHeaders.GetValue("authorization");
        return new AdminCaller(header is not null && header.StartsWith(BearerPrefix, StringComparison.Ordinal) ? header[BearerPrefix.Length..] : header, context.Peer);
    }
}
