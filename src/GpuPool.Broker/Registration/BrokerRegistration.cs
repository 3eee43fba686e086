using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Protocol;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Registration;

/// <summary>
/// Keeps this broker's record (host, machine, endpoints, devices and their use) in the coordination store under
/// brokers/{id}, bound to a store session that the heartbeat renews; if the broker dies the record
/// vanishes when the session's TTL runs out. It also registers the broker as an instance of the
/// <see cref="ServiceName"/> service with a TTL health check passed at every heartbeat, so a store with a
/// service catalog (Consul) shows brokers and their health to its own tools. An id whose record another live
/// broker holds is refused, never overwritten (<see cref="ClaimAsync"/>).
/// </summary>
public sealed class BrokerRegistration : IAsyncDisposable
{
    public const string ServiceName = "gpupool-broker";

    private readonly BrokerOptions _options;
    private readonly IClusterStore _store;
    private readonly ILogger _logger;
    private readonly string _endpoint;
    private readonly Hosting.FastPathEndpoints _fastPath;
    private readonly CancellationTokenSource _stop = new();
    private readonly string _instanceId = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
    private StoreSession? _session;
    private Task? _heartbeat;
    private bool _claimed;
    private bool _holdsRecord;
    private readonly Func<IEnumerable<Leases.BrokerLease>> _leases;

    /// <param name="leases">The leases open on this broker, whose measured use each heartbeat publishes (none when null).</param>
    public BrokerRegistration(BrokerOptions options, IClusterStore store, string endpoint, Hosting.FastPathEndpoints fastPath, ILogger logger, Func<IEnumerable<Leases.BrokerLease>>? leases = null)
    {
        _leases = leases ?? (static () => []);
        _fastPath = fastPath;
        _options = options;
        _store = store;
        _endpoint = endpoint;
        _logger = logger;
        MachineId = MachineIdentity.Get(options.StateDirectory);
    }

    public string BrokerId => _options.BrokerId;

    /// <summary>The machine id this broker registers.</summary>
    public string MachineId { get; }

    private string Key => StoreKeys.Brokers + _options.BrokerId;

    /// <summary>
    /// Registers the broker. Throws a <see cref="GpuPoolException"/> (FailedPrecondition) naming the id and the other
    /// broker's address when another live broker holds the id.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _session = await _store.CreateSessionAsync(_options.RegistrationTtl, cancellationToken).ConfigureAwait(false);
        await ClaimAsync(cancellationToken).ConfigureAwait(false);
        _claimed = _holdsRecord = true;
        var uri = new Uri(_endpoint);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["devices"] = _options.Backend.Devices.Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["backend"] = _options.Backend.Devices.Count > 0 ? _options.Backend.Devices[0].Backend : "",
            ["fast_path_tcp"] = _fastPath.Tcp,
        };
        await _store.RegisterServiceAsync(new ServiceRegistration(_options.BrokerId, ServiceName, uri.Host.Trim('[', ']'), uri.Port, meta, _options.RegistrationTtl), cancellationToken).ConfigureAwait(false);
        _heartbeat = Task.Run(() => HeartbeatAsync(_stop.Token));
    }

    public BrokerRecord Describe()
    {
        var record = new BrokerRecord
        {
            BrokerId = _options.BrokerId,
            Host = Environment.MachineName,
            Endpoint = _endpoint,
            FastPathTcp = _fastPath.Tcp,
            FastPathUnix = _fastPath.Unix,
            MachineId = MachineId,
            ProcessId = (uint)Environment.ProcessId,
            InstanceId = _instanceId,
            Heartbeat = Timestamp.FromDateTimeOffset(_options.TimeProvider.GetUtcNow()),
        };
        var usage = _leases().ToLookup(l => l.Device.Index);
        foreach (var d in _options.Backend.Devices)
        {
            var info = new DeviceInfo
            {
                Index = (uint)d.Index,
                Name = d.Name,
                Uuid = d.Uuid,
                Backend = d.Backend,
                MemoryTotalBytes = d.MemoryTotal,
                MemoryUsedBytes = d.MemoryUsed,
                MultiprocessorCount = (uint)d.MultiprocessorCount,
                ComputeCapacity = 1000,
                ExecutionSlots = (uint)d.ExecutionSlots,
            };
            foreach (var lease in usage[d.Index])
            {
                var use = lease.Context.Usage;
                info.LeaseUsage.Add(new LeaseUsage
                {
                    LeaseId = lease.Claims.LeaseId,
                    DeviceTimeNs = Units.ToNanoseconds(use.DeviceTime),
                    RecentSharePpm = Units.ToPpm(use.RecentShare),
                    MemoryUsedBytes = use.MemoryUsed,
                });
            }

            if (d.ReadTelemetry() is { } telemetry)
            {
                if (telemetry.UtilizationPercent is { } utilization)
                {
                    info.UtilizationPercent = utilization;
                }

                if (telemetry.TemperatureC is { } temperature)
                {
                    info.TemperatureC = temperature;
                }

                if (telemetry.MemoryTotal is { } total)
                {
                    info.DeviceMemoryTotalBytes = total;
                }

                if (telemetry.MemoryUsed is { } used)
                {
                    info.DeviceMemoryUsedBytes = used;
                }
            }

            record.Devices.Add(info);
        }

        return record;
    }

    private async Task WriteAsync(CancellationToken cancellationToken)
        => await _store.PutAsync(Key, Describe().ToByteArray(), sessionId: _session!.Id, cancellationToken: cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Writes the record under this broker's session if the id is free, or held by this broker, or by its own earlier
    /// process on this machine that is gone (a crash and a restart within the registration TTL, or a store file kept
    /// across restarts); each write is a compare-and-set on what was read, so two brokers starting with one id at the
    /// same moment cannot both win. Any other holder of the id is a live broker: refused, naming it.
    /// </summary>
    private async Task ClaimAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var existing = await _store.GetAsync(Key, cancellationToken).ConfigureAwait(false);
            if (existing is not null && existing.SessionId != _session!.Id)
            {
                BrokerRecord? other;
                try
                {
                    other = BrokerRecord.Parser.ParseFrom(existing.Value.Span);
                }
                catch (InvalidProtocolBufferException)
                {
                    other = null;
                }

                if (other is null || !IsOwnOrGone(other))
                {
                    throw new GpuPoolException(ErrorCode.FailedPrecondition, Refusal(other));
                }

                if (other.InstanceId != _instanceId)
                {
                    Log.TookOverRegistration(_logger, _options.BrokerId, other.ProcessId);
                }
            }

            var put = await _store.PutAsync(Key, Describe().ToByteArray(), existing?.ModRevision ?? 0, _session!.Id, cancellationToken).ConfigureAwait(false);
            if (put.Succeeded)
            {
                return;
            }

            if (attempt >= 3)
            {
                throw new GpuPoolException(ErrorCode.FailedPrecondition, $"broker id '{_options.BrokerId}' is being registered by another broker at the same time: give each broker its own --id");
            }
        }
    }

    /// <summary>This broker's own record, or one its earlier process on this machine left behind when it died.</summary>
    private bool IsOwnOrGone(BrokerRecord other)
    {
        if (other.InstanceId.Length > 0 && other.InstanceId == _instanceId)
        {
            return true;
        }

        return other.MachineId.Length > 0
            && other.MachineId == MachineId
            && other.ProcessId != 0
            && other.ProcessId != (uint)Environment.ProcessId
            && !MachineIdentity.ProcessIsAlive(other.ProcessId);
    }

    private string Refusal(BrokerRecord? other)
    {
        if (other is null)
        {
            return $"broker id '{_options.BrokerId}' is already registered, by a record this broker cannot read: stop the broker that holds it, or give this one another --id";
        }

        var where = other.MachineId.Length == 0
            ? $"host {other.Host}"
            : other.MachineId == MachineId
                ? $"host {other.Host}, process {other.ProcessId} on this machine"
                : $"host {other.Host}, machine {other.MachineId[..Math.Min(8, other.MachineId.Length)]}";
        return $"broker id '{_options.BrokerId}' is already registered by another live broker at {other.Endpoint} ({where}): stop it, or give this broker another --id "
            + "(if that broker has stopped without ending its registration, the record goes when its heartbeat TTL runs out, 10 s by default)";
    }

    private async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        var period = _options.HeartbeatInterval ?? _options.RegistrationTtl / 3;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, _options.TimeProvider, cancellationToken).ConfigureAwait(false);
                if (!await _store.KeepAliveAsync(_session!.Id, cancellationToken).ConfigureAwait(false))
                {
                    // The session expired (a long pause), and the record with it.
                    _session = await _store.CreateSessionAsync(_options.RegistrationTtl, cancellationToken).ConfigureAwait(false);
                    _holdsRecord = false;
                }

                if (_holdsRecord)
                {
                    await WriteAsync(cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    // Register again, unless another broker has taken the id meanwhile (then again at the next beat).
                    await ClaimAsync(cancellationToken).ConfigureAwait(false);
                    _holdsRecord = true;
                }

                await _store.PassServiceCheckAsync(_options.BrokerId, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (GpuPoolException ex)
            {
                Log.RegistrationRefused(_logger, _options.BrokerId, ex.Message);
            }
            catch (Exception ex) when (ex is StoreSessionNotFoundException or StoreUnavailableException or IOException or InvalidOperationException)
            {
                Log.HeartbeatFailed(_logger, ex.Message);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_heartbeat is not null)
        {
            await _heartbeat.ConfigureAwait(false);
        }

        try
        {
            // A broker refused at start registered no service: the one under this id is the other broker's.
            if (_claimed)
            {
                await _store.DeregisterServiceAsync(_options.BrokerId).ConfigureAwait(false);
            }

            if (_session is not null)
            {
                await _store.RevokeSessionAsync(_session.Id).ConfigureAwait(false);
            }
        }
        catch (StoreUnavailableException ex)
        {
            // The record and the check end with their TTL.
            Log.HeartbeatFailed(_logger, ex.Message);
        }

        _stop.Dispose();
    }
}
