using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using GpuPool.Broker.Hosting;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.V1;

namespace GpuPool.Broker.Tests.Registration;

/// <summary>
/// What a broker registers for clients to dial: never a wildcard address; for a broker bound to every address, this
/// host's own address (not loopback when it has another); an explicit --advertise as given; and the machine it runs on.
/// Real brokers (Kestrel, the fast path's listeners) over the in-memory store.
/// </summary>
public sealed class BrokerAddressTests : IAsyncLifetime
{
    private readonly BrokerRig _rig = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _rig.DisposeAsync();

    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("::")]
    public async Task Bound_to_every_address_a_broker_registers_this_hosts_own_address(string listen)
    {
        await using var broker = await StartAsync(listen, advertise: null);

        var record = await RecordAsync();
        var grpc = new Uri(record.Endpoint);
        var host = grpc.Host.Trim('[', ']');
        Assert.True(IPAddress.TryParse(host, out var address), record.Endpoint);
        Assert.False(AdvertisedAddress.IsWildcard(address), $"registered {record.Endpoint}");
        Assert.Equal($"{grpc.Host}:{record.FastPathTcp.Split(':')[^1]}", record.FastPathTcp);
        Assert.Equal(AdvertisedAddress.Choose(listen, null).Host, host);
        if (HostHasAnIPv4AddressBesidesLoopback())
        {
            Assert.False(IPAddress.IsLoopback(address), $"registered {record.Endpoint} though this host has other addresses");
            Assert.Null(broker.Advertised.Warning);
        }
        else
        {
            Assert.Contains("only clients on this machine", broker.Advertised.Warning, StringComparison.Ordinal);
        }

        // The registered addresses are live: a client on another host would dial exactly these.
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address, int.Parse(record.FastPathTcp.Split(':')[^1], System.Globalization.CultureInfo.InvariantCulture));
        using var grpcSocket = new TcpClient();
        await grpcSocket.ConnectAsync(address, grpc.Port);
    }

    [Fact]
    public async Task An_advertised_host_is_what_the_broker_registers_for_grpc_and_the_fast_path()
    {
        await using var broker = await StartAsync("0.0.0.0", advertise: "gpu7.pool.example");

        var record = await RecordAsync();
        Assert.Equal($"http://gpu7.pool.example:{new Uri(broker.Endpoint).Port}", record.Endpoint);
        Assert.Matches(@"^gpu7\.pool\.example:\d+$", record.FastPathTcp);
        Assert.Equal(("gpu7.pool.example", "given by --advertise"), (broker.Advertised.Host, broker.Advertised.Reason));
    }

    [Fact]
    public async Task A_specific_listen_address_is_registered_as_it_is()
    {
        await using var broker = await StartAsync("127.0.0.1", advertise: null);

        var record = await RecordAsync();
        Assert.StartsWith("http://127.0.0.1:", record.Endpoint, StringComparison.Ordinal);
        Assert.StartsWith("127.0.0.1:", record.FastPathTcp, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_record_names_the_machine_and_the_process_the_broker_runs_in()
    {
        await using var broker = await StartAsync("127.0.0.1", advertise: null);

        var record = await RecordAsync();
        Assert.Equal(MachineIdentity.Get(), record.MachineId);
        Assert.Equal(broker.MachineId, record.MachineId);
        Assert.Equal((uint)Environment.ProcessId, record.ProcessId);
        Assert.Matches("^[0-9a-f]{16}$", record.InstanceId);
    }

    [Theory]
    [InlineData("localhost", null, "--listen 'localhost' is not an IP address")]
    [InlineData("0.0.0.0", "0.0.0.0", "--advertise '0.0.0.0' is a wildcard address")]
    [InlineData("0.0.0.0", "http://gpu1:7071", "not a URL")]
    public async Task A_bad_listen_or_advertise_address_is_refused_before_anything_starts(string listen, string? advertise, string says)
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => StartAsync(listen, advertise));

        Assert.Contains(says, error.Message, StringComparison.Ordinal);
        Assert.Null(await _rig.Store.GetAsync(StoreKeys.Brokers + BrokerRig.BrokerId));
    }

    [Fact]
    public void Two_machines_with_one_host_name_get_different_default_ids_and_one_machine_always_the_same()
    {
        var a = BrokerOptions.DefaultBrokerId("GPU-Host", "3d1219c7c4c5404aaa1f6d2a48adfda4");
        var b = BrokerOptions.DefaultBrokerId("GPU-Host", "9f00aa11bb22cc33dd44ee55ff667788");

        Assert.Equal("gpu-host-3d1219", a);
        Assert.Equal("gpu-host-9f00aa", b);
        Assert.Equal(a, BrokerOptions.DefaultBrokerId("GPU-Host", "3d1219c7c4c5404aaa1f6d2a48adfda4"));
        Assert.Equal($"{Environment.MachineName.ToLowerInvariant()}-{MachineIdentity.Get()[..6]}", new BrokerOptions { SchedulerPublicKey = _rig.Options.SchedulerPublicKey, Backend = _rig.Options.Backend }.BrokerId);
    }

    private Task<BrokerHost> StartAsync(string listen, string? advertise)
        => BrokerHost.StartAsync(
            new BrokerOptions
            {
                BrokerId = BrokerRig.BrokerId,
                ListenAddress = listen,
                AdvertiseAddress = advertise,
                Port = 0,
                FastPathPort = 0,
                SchedulerPublicKey = _rig.Options.SchedulerPublicKey,
                Backend = _rig.Options.Backend,
                RegistrationTtl = _rig.Options.RegistrationTtl,
                TimeProvider = _rig.Clock,
            },
            _rig.Store);

    private async Task<BrokerRecord> RecordAsync()
        => BrokerRecord.Parser.ParseFrom((await _rig.Store.GetAsync(StoreKeys.Brokers + BrokerRig.BrokerId))!.Value.Span);

    private static bool HostHasAnIPv4AddressBesidesLoopback()
        => NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.NetworkInterfaceType != NetworkInterfaceType.Loopback && n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Any(u => u.Address.AddressFamily == AddressFamily.InterNetwork);
}
