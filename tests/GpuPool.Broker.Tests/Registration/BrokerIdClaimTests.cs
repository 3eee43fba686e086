using System.Diagnostics;
using Google.Protobuf;
using GpuPool.Broker.Hosting;
using GpuPool.Coordination;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests.Registration;

/// <summary>
/// A broker id belongs to one live broker: a second broker starting with it is refused, naming the id and the other
/// broker's address, and overwrites nothing; a record that this machine's own dead process left behind is taken over.
/// Real brokers over the in-memory store.
/// </summary>
public sealed class BrokerIdClaimTests : IAsyncLifetime
{
    private const string Key = StoreKeys.Brokers + BrokerRig.BrokerId;

    private readonly BrokerRig _rig = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _rig.DisposeAsync();

    [Fact]
    public async Task A_broker_id_held_by_another_live_broker_is_refused_naming_the_id_and_its_address()
    {
        await using var first = await StartAsync();
        var held = await _rig.Store.GetAsync(Key);

        var error = await Assert.ThrowsAsync<GpuPoolException>(StartAsync);

        Assert.Equal(ErrorCode.FailedPrecondition, error.Code);
        Assert.StartsWith($"broker id '{BrokerRig.BrokerId}' is already registered by another live broker at {first.Endpoint} (", error.Message, StringComparison.Ordinal);
        Assert.Contains($"process {Environment.ProcessId} on this machine", error.Message, StringComparison.Ordinal);
        Assert.Contains("give this broker another --id", error.Message, StringComparison.Ordinal);

        // The first broker's record and service registration are as they were, and stay after the refused one is gone.
        var now = await _rig.Store.GetAsync(Key);
        Assert.Equal((held!.ModRevision, held.SessionId), (now!.ModRevision, now.SessionId));
        Assert.Single(await _rig.Store.ListServicesAsync(GpuPool.Broker.Registration.BrokerRegistration.ServiceName));
    }

    [Fact]
    public async Task The_refused_broker_leaves_its_ports_closed()
    {
        await using var first = await StartAsync();
        var options = Options();
        options.Port = FreePort();
        options.FastPathPort = FreePort();

        await Assert.ThrowsAsync<GpuPoolException>(() => BrokerHost.StartAsync(options, _rig.Store));

        // Both ports can be bound again: nothing of the refused broker listens.
        using var grpc = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, options.Port);
        grpc.Start();
        using var fast = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, options.FastPathPort);
        fast.Start();
    }

    [Fact]
    public async Task A_record_that_a_dead_process_of_this_machine_left_is_taken_over()
    {
        var dead = await DeadProcessIdAsync();
        var session = await _rig.Store.CreateSessionAsync(TimeSpan.FromMinutes(1));
        await _rig.Store.PutAsync(Key, Record(MachineIdentity.Get(), dead).ToByteArray(), sessionId: session.Id);

        await using var broker = await StartAsync();

        var record = BrokerRecord.Parser.ParseFrom((await _rig.Store.GetAsync(Key))!.Value.Span);
        Assert.Equal((broker.Endpoint, (uint)Environment.ProcessId), (record.Endpoint, record.ProcessId));
    }

    [Fact]
    public async Task A_record_of_another_machine_is_never_taken_over_even_when_its_process_id_is_free_here()
    {
        var dead = await DeadProcessIdAsync();
        var session = await _rig.Store.CreateSessionAsync(TimeSpan.FromMinutes(1));
        await _rig.Store.PutAsync(Key, Record("9f00aa11bb22cc33dd44ee55ff667788", dead).ToByteArray(), sessionId: session.Id);

        var error = await Assert.ThrowsAsync<GpuPoolException>(StartAsync);

        Assert.Equal(
            $"broker id '{BrokerRig.BrokerId}' is already registered by another live broker at http://10.9.8.7:7071 (host other-host, machine 9f00aa11): stop it, or give this broker another --id "
            + "(if that broker has stopped without ending its registration, the record goes when its heartbeat TTL runs out, 10 s by default)",
            error.Message);
    }

    [Fact]
    public async Task A_record_of_a_broker_too_old_to_name_its_machine_is_refused()
    {
        var session = await _rig.Store.CreateSessionAsync(TimeSpan.FromMinutes(1));
        await _rig.Store.PutAsync(Key, new BrokerRecord { BrokerId = BrokerRig.BrokerId, Host = "old-host", Endpoint = "http://10.9.8.6:7071" }.ToByteArray(), sessionId: session.Id);

        var error = await Assert.ThrowsAsync<GpuPoolException>(StartAsync);

        Assert.Contains("already registered by another live broker at http://10.9.8.6:7071 (host old-host)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Once_the_other_brokers_registration_has_ended_the_id_is_free()
    {
        var first = await StartAsync();
        await first.DisposeAsync();

        await using var second = await StartAsync();

        Assert.Equal(second.Endpoint, BrokerRecord.Parser.ParseFrom((await _rig.Store.GetAsync(Key))!.Value.Span).Endpoint);
    }

    private BrokerOptions Options() => new()
    {
        BrokerId = BrokerRig.BrokerId,
        Port = 0,
        FastPathPort = 0,
        SchedulerPublicKey = _rig.Options.SchedulerPublicKey,
        Backend = _rig.Options.Backend,
        RegistrationTtl = _rig.Options.RegistrationTtl,
        TimeProvider = _rig.Clock,
    };

    private Task<BrokerHost> StartAsync() => BrokerHost.StartAsync(Options(), _rig.Store);

    private static BrokerRecord Record(string machineId, uint processId) => new()
    {
        BrokerId = BrokerRig.BrokerId,
        Host = "other-host",
        Endpoint = "http://10.9.8.7:7071",
        MachineId = machineId,
        ProcessId = processId,
        InstanceId = "00112233445566ff",
    };

    /// <summary>The id of a process that has just ended (nothing reuses it within a test, pids count up to a large limit).</summary>
    private static async Task<uint> DeadProcessIdAsync()
    {
        using var process = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        await process.WaitForExitAsync();
        return (uint)process.Id;
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
