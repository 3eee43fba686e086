using GpuPool.Broker.Hosting;
using GpuPool.Broker.Registration;
using GpuPool.Coordination;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging.Abstractions;

namespace GpuPool.Broker.Tests.Registration;

/// <summary>
/// A broker's record lives under a store session its heartbeat renews every third of the registration TTL, by the
/// broker's clock; the store ends the session (and the record) when no heartbeat comes for a TTL.
/// </summary>
public sealed class BrokerRegistrationTests : IAsyncLifetime
{
    private const string Key = StoreKeys.Brokers + BrokerRig.BrokerId;

    private readonly BrokerRig _rig = new();
    private BrokerRegistration _registration = null!;

    private TimeSpan Period => _rig.Options.RegistrationTtl / 3;

    public async Task InitializeAsync()
    {
        _registration = new BrokerRegistration(_rig.Options, _rig.Store, "http://127.0.0.1:7071", new FastPathEndpoints("", ""), NullLogger.Instance);
        await _registration.StartAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _registration.DisposeAsync();
        await _rig.DisposeAsync();
    }

    [Fact]
    public async Task The_heartbeat_keeps_the_registration_past_its_ttl()
    {
        var registered = await _rig.Store.GetAsync(Key);
        var start = _rig.Clock.GetUtcNow();

        while (_rig.Clock.GetUtcNow() - start <= _rig.Options.RegistrationTtl)
        {
            await BeatAsync();
        }

        var entry = await _rig.Store.GetAsync(Key);
        Assert.NotNull(entry);
        Assert.Equal(registered!.SessionId, entry.SessionId);
    }

    [Fact]
    public async Task A_broker_whose_session_ended_registers_again_at_its_next_heartbeat()
    {
        // What the store does when a pause outlasts the TTL: the session ends and the record with it.
        var registered = await _rig.Store.GetAsync(Key);
        await _rig.Store.RevokeSessionAsync(registered!.SessionId!);
        Assert.Null(await _rig.Store.GetAsync(Key));

        await BeatAsync();

        var entry = await _rig.Store.GetAsync(Key);
        Assert.NotNull(entry);
        Assert.NotEqual(registered.SessionId, entry.SessionId);
    }

    /// <summary>Advances the clock to the next heartbeat and waits until the record it writes carries that time.</summary>
    private async Task BeatAsync()
    {
        var due = _rig.Clock.GetUtcNow() + Period;
        await Until.TimerDueAsync(_rig.Clock, due);
        _rig.Clock.Advance(Period);
        await Until.TrueAsync(async () => await _rig.Store.GetAsync(Key) is { } entry && Heartbeat(entry) == due, "the heartbeat rewrites the record");
    }

    private static DateTimeOffset Heartbeat(KvEntry entry) => BrokerRecord.Parser.ParseFrom(entry.Value.Span).Heartbeat.ToDateTimeOffset();
}
