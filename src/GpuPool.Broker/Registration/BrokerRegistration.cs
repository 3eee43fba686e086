using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using GpuPool.Coordination;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.Broker.Registration;

/// <summary>
/// Keeps this broker's record (host, endpoint, devices and their use) in the coordination store under
/// brokers/{id}, bound to a store session that the heartbeat renews; if the broker dies the record
/// vanishes when the session's TTL runs out. It also registers the broker as an instance of the
/// <see cref="ServiceName"/> service with a TTL health check passed at every heartbeat, so a store with a
/// service catalog (Consul) shows brokers and their health to its own tools.
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
    private StoreSession? _session;
    private Task? _heartbeat;

    public BrokerRegistration(BrokerOptions options, IClusterStore store, string endpoint, Hosting.FastPathEndpoints fastPath, ILogger logger)
    {
        _fastPath = fastPath;
        _options = options;
        _store = store;
        _endpoint = endpoint;
        _logger = logger;
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _session = await _store.CreateSessionAsync(_options.RegistrationTtl, cancellationToken).ConfigureAwait(false);
        await WriteAsync(cancellationToken).ConfigureAwait(false);
        var uri = new Uri(_endpoint);
        var meta = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["devices"] = _options.Backend.Devices.Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["backend"] = _options.Backend.Devices.Count > 0 ? _options.Backend.Devices[0].Backend : "",
            ["fast_path_tcp"] = _fastPath.Tcp,
        };
        await _store.RegisterServiceAsync(new ServiceRegistration(_options.BrokerId, ServiceName, uri.Host, uri.Port, meta, _options.RegistrationTtl), cancellationToken).ConfigureAwait(false);
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
            Heartbeat = Timestamp.FromDateTimeOffset(_options.TimeProvider.GetUtcNow()),
        };
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
            };
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
        => await _store.PutAsync(StoreKeys.Brokers + _options.BrokerId, Describe().ToByteArray(), sessionId: _session!.Id, cancellationToken: cancellationToken).ConfigureAwait(false);

    private async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        var period = _options.RegistrationTtl / 3;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(period, _options.TimeProvider, cancellationToken).ConfigureAwait(false);
                if (!await _store.KeepAliveAsync(_session!.Id, cancellationToken).ConfigureAwait(false))
                {
                    // The session expired (a long pause): register again.
                    _session = await _store.CreateSessionAsync(_options.RegistrationTtl, cancellationToken).ConfigureAwait(false);
                }

                await WriteAsync(cancellationToken).ConfigureAwait(false);
                await _store.PassServiceCheckAsync(_options.BrokerId, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
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
            await _store.DeregisterServiceAsync(_options.BrokerId).ConfigureAwait(false);
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
