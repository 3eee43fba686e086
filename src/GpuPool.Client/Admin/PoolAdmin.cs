using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Client.Admin;

/// <summary>
/// The admin side of the SDK: quotas, priority classes and drains. Reads work for anyone; changes carry the
/// pool's admin credential.
/// </summary>
public sealed class PoolAdmin
{
    private readonly Protocol.V1.Admin.AdminClient _client;
    private readonly Metadata _credential;

    /// <param name="client">The SDK client whose scheduler to talk to.</param>
    /// <param name="adminToken">The pool's admin credential; null for reads only.</param>
    public PoolAdmin(GpuPoolClient client, string? adminToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = new Protocol.V1.Admin.AdminClient(client.SchedulerChannel);
        _credential = adminToken is null ? [] : new Metadata { { "authorization", "Bearer " + adminToken } };
    }

    public Task<Quota> SetQuotaAsync(Quota quota, CancellationToken cancellationToken = default)
        => CallAsync("set quota", () => _client.SetQuotaAsync(new SetQuotaRequest { Quota = quota }, _credential, cancellationToken: cancellationToken).ResponseAsync);

    public Task<Quota> GetQuotaAsync(string tenant, CancellationToken cancellationToken = default)
        => CallAsync("get quota", () => _client.GetQuotaAsync(new GetQuotaRequest { Tenant = tenant }, cancellationToken: cancellationToken).ResponseAsync);

    public async Task<IReadOnlyList<Quota>> ListQuotasAsync(CancellationToken cancellationToken = default)
        => (await CallAsync("list quotas", () => _client.ListQuotasAsync(new ListQuotasRequest(), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Quotas;

    public async Task<bool> DeleteQuotaAsync(string tenant, CancellationToken cancellationToken = default)
        => (await CallAsync("delete quota", () => _client.DeleteQuotaAsync(new GetQuotaRequest { Tenant = tenant }, _credential, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Deleted;

    public Task<PriorityClass> SetPriorityClassAsync(PriorityClass priorityClass, CancellationToken cancellationToken = default)
        => CallAsync("set priority class", () => _client.SetPriorityClassAsync(new SetPriorityClassRequest { Class = priorityClass }, _credential, cancellationToken: cancellationToken).ResponseAsync);

    public async Task<IReadOnlyList<PriorityClass>> ListPriorityClassesAsync(CancellationToken cancellationToken = default)
        => (await CallAsync("list priority classes", () => _client.ListPriorityClassesAsync(new ListPriorityClassesRequest(), cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Classes;

    public async Task<bool> DeletePriorityClassAsync(string name, CancellationToken cancellationToken = default)
        => (await CallAsync("delete priority class", () => _client.DeletePriorityClassAsync(new DeletePriorityClassRequest { Name = name }, _credential, cancellationToken: cancellationToken).ResponseAsync).ConfigureAwait(false)).Deleted;

    /// <summary>Stops new placements on the broker(s) with this id or host (<paramref name="undo"/>: returns them to service).</summary>
    public Task<DrainReply> DrainAsync(string brokerOrHost, bool undo = false, CancellationToken cancellationToken = default)
        => CallAsync("drain", () => _client.DrainAsync(new DrainRequest { BrokerId = brokerOrHost, Undo = undo }, _credential, cancellationToken: cancellationToken).ResponseAsync);

    private static async Task<T> CallAsync<T>(string what, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, what);
        }
    }
}
