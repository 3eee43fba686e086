using System.Diagnostics;
using System.Security.Cryptography;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.Hosts;
using GpuPool.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Which transport a session takes, and what it says when it cannot have the one it wanted: the Unix socket only on the
/// broker's machine (by machine id, not host name), TCP otherwise; a fast path or a data connection that does not answer
/// is given up within a second, and the client's log says once what the session fell back to; every connection error
/// names the broker and the address tried. A real pool on loopback; "another machine" is a lease record whose broker
/// names another machine id, as the scheduler would copy it from that broker's registration.
/// </summary>
public sealed class TransportChoiceTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private const string OtherMachine = "9f00aa11bb22cc33dd44ee55ff667788";

    /// <summary>The connect timeout and the slack a loaded 2-core machine needs around it (opening gRPC, the open op).</summary>
    private static readonly TimeSpan Fallback = TimeSpan.FromSeconds(1) + TimeSpan.FromSeconds(2);

    [Fact]
    public async Task A_lease_carries_its_brokers_machine_id_and_on_that_machine_auto_takes_the_unix_socket()
    {
        await using var lease = await pool.LeaseAsync();
        Assert.Equal(MachineIdentity.Get(), lease.Record.BrokerMachineId);

        await using var session = await lease.OpenSessionAsync();

        Assert.Equal("unix", session.Transport);
    }

    [Fact]
    public async Task A_broker_on_another_machine_with_this_hosts_name_is_reached_over_tcp()
    {
        await using var lease = await pool.LeaseAsync();
        var record = lease.Record.Clone();
        record.BrokerMachineId = OtherMachine;
        record.BrokerHost = Environment.MachineName;

        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token);

        Assert.Equal("tcp", session.Transport);
    }

    [Fact]
    public async Task A_lease_from_a_broker_too_old_to_name_its_machine_is_reached_over_tcp()
    {
        await using var lease = await pool.LeaseAsync();
        var record = lease.Record.Clone();
        record.BrokerMachineId = "";

        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token);

        Assert.Equal("tcp", session.Transport);
    }

    [Fact]
    public async Task A_fast_path_that_drops_connections_is_given_up_within_a_second_for_grpc_and_said_once()
    {
        using var silent = await SilentPort.StartAsync();
        var logger = new RecordingLogger();
        using var client = pool.AdminClient(logger);
        await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = PoolFixture.DefaultLeaseMemory, ComputeShare = 100 });
        var record = OnAnotherMachine(lease.Record);
        record.BrokerFastPathTcp = silent.Endpoint;

        var clock = Stopwatch.StartNew();
        await using (var session = await client.OpenSessionAsync(record, lease.Token))
        {
            var opened = clock.Elapsed;
            Assert.Equal("grpc", session.Transport);
            Assert.True(opened >= TimeSpan.FromSeconds(0.9), $"opened in {opened.TotalSeconds:0.00} s: the fast path was not waited for");
            Assert.True(opened < Fallback, $"the fallback took {opened.TotalSeconds:0.00} s");
            await AssertRoundTripAsync(session, 3 << 20);
        }

        var line = Assert.Single(logger.Warnings);
        Assert.Equal($"Broker {PoolFixture.BrokerId}: cannot reach its fast path at tcp {silent.Endpoint} (no answer within 1 s); the session runs over gRPC ({lease.Record.BrokerEndpoint}) instead", line);

        // Said once: the next session that falls back the same way says it at debug level only.
        await using (var again = await client.OpenSessionAsync(record, lease.Token))
        {
            Assert.Equal("grpc", again.Transport);
        }

        Assert.Single(logger.Warnings);
        Assert.Equal(2, logger.Lines.Count(l => l.Message == line));
        Assert.Equal(LogLevel.Debug, logger.Lines[^1].Level);
    }

    [Fact]
    public async Task A_data_connection_that_is_not_answered_leaves_large_copies_on_fewer_connections_within_a_second()
    {
        using var proxy = new FirstConnectionProxy(pool.Broker.FastPath.Tcp);
        var logger = new RecordingLogger();
        using var client = pool.AdminClient(logger);
        await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = PoolFixture.DefaultLeaseMemory, ComputeShare = 100 });
        var record = OnAnotherMachine(lease.Record);
        record.BrokerFastPathTcp = proxy.Endpoint;
        await using var session = await client.OpenSessionAsync(record, lease.Token, new SessionOptions { Stripes = 3, StripeThresholdBytes = 1 << 20 });
        Assert.Equal("tcp", session.Transport);
        await proxy.Silent.WaitAsync(TimeSpan.FromSeconds(10));

        var clock = Stopwatch.StartNew();
        await AssertRoundTripAsync(session, 24 << 20);
        var took = clock.Elapsed;

        Assert.True(took < Fallback + TimeSpan.FromSeconds(1), $"the copies took {took.TotalSeconds:0.00} s: a data connection that is not answered held them up");
        Assert.Equal(0, session.DataConnections);
        var line = Assert.Single(logger.Warnings);
        Assert.Equal($"Broker {PoolFixture.BrokerId}: a data connection to tcp {proxy.Endpoint} could not be opened (no answer within 1 s); large copies of this session go over 1 connection(s) instead of 3", line);

        // The session gave the address up: a later large copy waits on no connect.
        clock.Restart();
        await AssertRoundTripAsync(session, 8 << 20);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(0.9) + TimeSpan.FromSeconds(1.5), $"a later copy took {clock.Elapsed.TotalSeconds:0.00} s");
        Assert.Single(logger.Warnings);
    }

    [Fact]
    public async Task A_tcp_fast_path_asked_for_and_not_answered_fails_within_a_second_naming_the_broker_and_the_address()
    {
        using var silent = await SilentPort.StartAsync();
        await using var lease = await pool.LeaseAsync();
        var record = OnAnotherMachine(lease.Record);
        record.BrokerFastPathTcp = silent.Endpoint;

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client.OpenSessionAsync(record, lease.Token, SessionTransportKind.Tcp));

        Assert.True(clock.Elapsed < Fallback, $"gave up after {clock.Elapsed.TotalSeconds:0.00} s");
        Assert.Equal(ErrorCode.Unavailable, error.Code);
        Assert.Equal($"cannot reach broker {PoolFixture.BrokerId}'s fast path at tcp {silent.Endpoint}: no answer within 1 s", error.Message);
    }

    [Fact]
    public async Task A_broker_whose_grpc_port_is_closed_is_named_with_the_address_in_the_error()
    {
        await using var lease = await pool.LeaseAsync();
        var record = OnAnotherMachine(lease.Record);
        var closedPort = ClosedPort();
        record.BrokerEndpoint = $"http://127.0.0.1:{closedPort}";
        record.BrokerFastPathTcp = "";

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => pool.Client.OpenSessionAsync(record, lease.Token, SessionTransportKind.Grpc));

        Assert.Equal(ErrorCode.Unavailable, error.Code);
        Assert.StartsWith($"device session: cannot reach broker {PoolFixture.BrokerId} at http://127.0.0.1:{closedPort} (", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("the server", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_fast_path_connection_that_breaks_is_reported_with_the_broker_and_its_address()
    {
        await using var lease = await pool.LeaseAsync();
        var record = OnAnotherMachine(lease.Record);
        using var proxy = new CuttingProxy(pool.Broker.FastPath.Tcp, cutAfterBytes: 1 << 20);
        record.BrokerFastPathTcp = proxy.Endpoint;
        await using var session = await pool.Client.OpenSessionAsync(record, lease.Token, new SessionOptions { Stripes = 1 });
        var ptr = await session.AllocAsync(4 << 20);

        await session.CopyToDeviceAsync(ptr, new byte[4 << 20]).AsTask().ContinueWith(_ => { }, TaskScheduler.Default);
        await proxy.Cut.WaitAsync(TimeSpan.FromSeconds(10));
        var error = await Assert.ThrowsAsync<GpuPoolException>(async () => await session.SynchronizeAsync());

        Assert.Equal(ErrorCode.Unavailable, error.Code);
        Assert.Contains($"broker {PoolFixture.BrokerId} at tcp {proxy.Endpoint}", error.Message, StringComparison.Ordinal);
    }

    private static LeaseRecord OnAnotherMachine(LeaseRecord lease)
    {
        var record = lease.Clone();
        record.BrokerMachineId = OtherMachine;
        return record;
    }

    private static async Task AssertRoundTripAsync(GpuPool.Client.DeviceSession session, int size)
    {
        var data = new byte[size];
        new Random(size).NextBytes(data);
        var ptr = await session.AllocAsync((ulong)size);
        await session.CopyToDeviceAsync(ptr, data);
        var back = new byte[size];
        await session.CopyToHostAsync(ptr, back);
        await session.FreeAsync(ptr);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
    }

    private static int ClosedPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
