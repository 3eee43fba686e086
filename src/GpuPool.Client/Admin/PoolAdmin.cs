using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;
using Grpc.Core;

namespace GpuPool.Client.Admin;

/// <summary>
/// The admin side of the SDK: quotas, priority classes, drains and tenant tokens. Reads work for any caller with a
/// credential; changes need the admin role: the admin token given here, else the client's own credential (an admin
/// tenant token or admin certificate).
/// </summary>
public sealed class PoolAdmin
{
    private readonly GpuPoolClient _client;
    private readonly Metadata _credential;

    /// <param name="client">The SDK client whose scheduler to talk to.</param>
    /// <param name="adminToken">The pool's admin credential, sent with changes; null: the client's own credential (<see cref="GpuPoolClientOptions"/>).</param>
    public PoolAdmin(GpuPoolClient client, string? adminToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _credential = adminToken is null ? [] : new Metadata { { "authorization", "Bearer " + adminToken } };
    }

    public Task<Quota> SetQuotaAsync(Quota quota, CancellationToken cancellationToken = default)
        => CallAsync("set quota", () => Admin(c => c.SetQuotaAsync(new SetQuotaRequest { Quota = quota }, _credential, cancellationToken: cancellationToken).ResponseAsync));

    public Task<Quota> GetQuotaAsync(string tenant, CancellationToken cancellationToken = default)
        => CallAsync("get quota", () => Admin(c => c.GetQuotaAsync(new GetQuotaRequest { Tenant = tenant }, _credential, cancellationToken: cancellationToken).ResponseAsync));

    public async Task<IReadOnlyList<Quota>> ListQuotasAsync(CancellationToken cancellationToken = default)
        => (await CallAsync("list quotas", () => Admin(c => c.ListQuotasAsync(new ListQuotasRequest(), _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).Quotas;

    public async Task<bool> DeleteQuotaAsync(string tenant, CancellationToken cancellationToken = default)
        => (await CallAsync("delete quota", () => Admin(c => c.DeleteQuotaAsync(new GetQuotaRequest { Tenant = tenant }, _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).Deleted;

    public Task<PriorityClass> SetPriorityClassAsync(PriorityClass priorityClass, CancellationToken cancellationToken = default)
        => CallAsync("set priority class", () => Admin(c => c.SetPriorityClassAsync(new SetPriorityClassRequest { Class = priorityClass }, _credential, cancellationToken: cancellationToken).ResponseAsync));

    public async Task<IReadOnlyList<PriorityClass>> ListPriorityClassesAsync(CancellationToken cancellationToken = default)
        => (await CallAsync("list priority classes", () => Admin(c => c.ListPriorityClassesAsync(new ListPriorityClassesRequest(), _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).Classes;

    public async Task<bool> DeletePriorityClassAsync(string name, CancellationToken cancellationToken = default)
        => (await CallAsync("delete priority class", () => Admin(c => c.DeletePriorityClassAsync(new DeletePriorityClassRequest { Name = name }, _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).Deleted;

    /// <summary>Stops new placements on the broker(s) with this id or host (<paramref name="undo"/>: returns them to service).</summary>
    public Task<DrainReply> DrainAsync(string brokerOrHost, bool undo = false, CancellationToken cancellationToken = default)
        => CallAsync("drain", () => Admin(c => c.DrainAsync(new DrainRequest { BrokerId = brokerOrHost, Undo = undo }, _credential, cancellationToken: cancellationToken).ResponseAsync));

    /// <summary>Issues a token for <paramref name="tenant"/> (<paramref name="admin"/>: one that acts as an admin); the reply is the only place the token is shown.</summary>
    public Task<AddTenantTokenReply> AddTenantTokenAsync(string tenant, bool admin = false, CancellationToken cancellationToken = default)
        => CallAsync("add tenant token", () => Admin(c => c.AddTenantTokenAsync(new AddTenantTokenRequest { Tenant = tenant, Admin = admin }, _credential, cancellationToken: cancellationToken).ResponseAsync));

    /// <summary>Revokes the tenant's token <paramref name="tokenId"/>, or all its tokens when it is null; returns the ids revoked.</summary>
    public async Task<IReadOnlyList<string>> RevokeTenantTokensAsync(string tenant, string? tokenId = null, CancellationToken cancellationToken = default)
        => (await CallAsync("revoke tenant token", () => Admin(c => c.RevokeTenantTokensAsync(new RevokeTenantTokensRequest { Tenant = tenant, TokenId = tokenId ?? "" }, _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).TokenIds;

    /// <summary>Tenants with tokens or quotas, with their tokens' ids, roles and issue times (never the tokens).</summary>
    public async Task<IReadOnlyList<TenantView>> ListTenantsAsync(CancellationToken cancellationToken = default)
        => (await CallAsync("list tenants", () => Admin(c => c.ListTenantsAsync(new ListTenantsRequest(), _credential, cancellationToken: cancellationToken).ResponseAsync)).ConfigureAwait(false)).Tenants;

    private Task<T> Admin<T>(Func<Protocol.V1.Admin.AdminClient, Task<T>> call)
        => _client.CallSchedulerAsync(channel => call(new Protocol.V1.Admin.AdminClient(channel)));

    private async Task<T> CallAsync<T>(string what, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException ex)
        {
            throw GpuPoolException.FromRpc(ex, what, _client.SchedulerName);
        }
    }
}
