using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace GpuPool.Coordination.Services;

/// <summary>
/// Service registration with TTL health checks built on a store's keys and sessions, for drivers without a
/// native service catalog (embedded, etcd). An instance is two keys: its record under
/// <c>services/{name}/{id}</c>, which stays until deregistered, and a health key under
/// <c>services-health/{id}</c> bound to a session of the check's TTL. A check pass renews the session; when
/// passes stop, the session ends, the health key vanishes and the instance reads as critical.
/// </summary>
public sealed class KvServiceRegistry(IClusterStore store)
{
    public const string RecordPrefix = "services/";
    public const string HealthPrefix = "services-health/";

    /// <summary>The sessions this process holds for the instances it registered, by instance id.</summary>
    private readonly ConcurrentDictionary<string, string> _sessions = new(StringComparer.Ordinal);

    public async ValueTask RegisterAsync(ServiceRegistration registration, CancellationToken cancellationToken)
    {
        Validate(registration);
        var record = new ServiceRecord(registration.Id, registration.Name, registration.Address, registration.Port,
            new Dictionary<string, string>(registration.Meta, StringComparer.Ordinal), (long)registration.CheckTtl.TotalMilliseconds);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(record, ServiceJson.Default.ServiceRecord);

        // A re-registration under another name must not leave the old record behind.
        var previous = await FindRecordAsync(registration.Id, cancellationToken).ConfigureAwait(false);
        if (previous is not null && previous.Value.Record.Name != registration.Name)
        {
            await store.DeleteAsync(previous.Value.Key, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        await store.PutAsync(RecordKey(registration.Name, registration.Id), bytes, cancellationToken: cancellationToken).ConfigureAwait(false);
        await PassAsync(registration.Id, TimeSpan.FromMilliseconds(record.CheckTtlMs), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask<bool> PassCheckAsync(string serviceId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceId);
        if (_sessions.TryGetValue(serviceId, out var sessionId)
            && await store.KeepAliveAsync(sessionId, cancellationToken).ConfigureAwait(false))
        {
            return true;
        }

        // No live session here (never had one, or it ended): the instance must still be registered.
        var found = await FindRecordAsync(serviceId, cancellationToken).ConfigureAwait(false);
        if (found is null)
        {
            return false;
        }

        await PassAsync(serviceId, TimeSpan.FromMilliseconds(found.Value.Record.CheckTtlMs), cancellationToken).ConfigureAwait(false);
        return true;
    }

    public async ValueTask DeregisterAsync(string serviceId, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceId);
        if (_sessions.TryRemove(serviceId, out var sessionId))
        {
            await store.RevokeSessionAsync(sessionId, cancellationToken).ConfigureAwait(false);
        }

        await store.DeleteAsync(HealthPrefix + serviceId, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (await FindRecordAsync(serviceId, cancellationToken).ConfigureAwait(false) is { } found)
        {
            await store.DeleteAsync(found.Key, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask<IReadOnlyList<ServiceInstance>> ListAsync(string serviceName, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(serviceName);
        var records = await store.ListAsync(RecordPrefix + serviceName + "/", cancellationToken).ConfigureAwait(false);
        var healthy = await store.ListAsync(HealthPrefix, cancellationToken).ConfigureAwait(false);
        var passing = healthy.Entries.Select(e => e.Key[HealthPrefix.Length..]).ToHashSet(StringComparer.Ordinal);

        var result = new List<ServiceInstance>(records.Entries.Count);
        foreach (var entry in records.Entries)
        {
            if (Parse(entry) is { } r)
            {
                result.Add(new ServiceInstance(r.Id, r.Name, r.Address, r.Port, r.Meta, passing.Contains(r.Id) ? ServiceHealth.Passing : ServiceHealth.Critical));
            }
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Id, b.Id));
        return result;
    }

    /// <summary>Binds the health key to a fresh session of <paramref name="ttl"/>, replacing any session this process held.</summary>
    private async ValueTask PassAsync(string serviceId, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var session = await store.CreateSessionAsync(ttl, cancellationToken).ConfigureAwait(false);
        await store.PutAsync(HealthPrefix + serviceId, "passing"u8.ToArray(), sessionId: session.Id, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (_sessions.TryGetValue(serviceId, out var old) && old != session.Id)
        {
            await store.RevokeSessionAsync(old, cancellationToken).ConfigureAwait(false);
        }

        _sessions[serviceId] = session.Id;
    }

    private async ValueTask<(string Key, ServiceRecord Record)?> FindRecordAsync(string serviceId, CancellationToken cancellationToken)
    {
        var all = await store.ListAsync(RecordPrefix, cancellationToken).ConfigureAwait(false);
        foreach (var entry in all.Entries)
        {
            if (entry.Key.EndsWith("/" + serviceId, StringComparison.Ordinal) && Parse(entry) is { } record && record.Id == serviceId)
            {
                return (entry.Key, record);
            }
        }

        return null;
    }

    private static ServiceRecord? Parse(KvEntry entry)
    {
        try
        {
            return JsonSerializer.Deserialize(entry.Value.Span, ServiceJson.Default.ServiceRecord);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string RecordKey(string name, string id) => RecordPrefix + name + "/" + id;

    /// <summary>The checks every driver applies to a registration before it touches the store.</summary>
    public static void Validate(ServiceRegistration registration)
    {
        ArgumentNullException.ThrowIfNull(registration);
        ValidateName(registration.Id, "service id");
        ValidateName(registration.Name, "service name");
        ArgumentOutOfRangeException.ThrowIfNegative(registration.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(registration.Port, 65535);
        if (registration.CheckTtl < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(registration), $"the health check TTL of service '{registration.Id}' must be at least 1 s");
        }
    }

    private static void ValidateName(string value, string what)
    {
        if (string.IsNullOrEmpty(value) || value.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new ArgumentException($"a {what} must be letters, digits, '-', '_' or '.', not '{value}'");
        }
    }
}

internal sealed record ServiceRecord(string Id, string Name, string Address, int Port, Dictionary<string, string> Meta, long CheckTtlMs);

[JsonSerializable(typeof(ServiceRecord))]
internal sealed partial class ServiceJson : JsonSerializerContext;
