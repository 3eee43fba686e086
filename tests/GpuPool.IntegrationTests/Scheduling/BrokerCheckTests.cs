using System.Net;
using System.Net.Sockets;
using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.V1;

namespace GpuPool.IntegrationTests.Scheduling;

/// <summary>
/// The leader checks that each broker answers at its endpoint: a broker whose process is gone while its registration
/// lives on (as after a SIGKILL, until the registration's TTL runs out) gets no new leases once two checks fail, and
/// takes them again once it answers. The broker "gone" here is a registration with nothing listening behind it, with a
/// smaller device than the real broker's, so best fit would pick it first.
/// </summary>
public sealed class BrokerCheckTests
{
    private const ulong MiB = 1UL << 20;

    [Fact]
    public async Task A_broker_that_does_not_answer_gets_no_new_leases_until_it_answers_again()
    {
        await using var pool = await MultiPool.StartAsync([1], configure: o => (o.OpenTenants, o.BrokerCheckInterval) = (true, TimeSpan.FromMilliseconds(500)));
        var port = FreePort();
        await RegisterGoneBrokerAsync(pool, port);
        var client = pool.Client();

        // Two failed checks (about a second) and it is out of placement: every lease goes to the real broker.
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        var placed = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 64 * MiB, ComputeShare = 10 });
            placed.Add(lease.Record.BrokerId);
        }

        Assert.All(placed, id => Assert.Equal("b0", id));

        // Something answers at its endpoint again: within a few checks it is placeable, and best fit picks it.
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        await Poll.UntilAsync(async () =>
        {
            await using var lease = await client.AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 64 * MiB, ComputeShare = 10 });
            return lease.Record.BrokerId == "b-gone";
        }, TimeSpan.FromSeconds(10), "a lease on the broker that answers again");
    }

    [Fact]
    public async Task Without_checks_best_fit_places_on_the_broker_that_does_not_answer()
    {
        await using var pool = await MultiPool.StartAsync([1], configure: o => (o.OpenTenants, o.BrokerCheckInterval) = (true, TimeSpan.Zero));
        await RegisterGoneBrokerAsync(pool, FreePort());

        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await using var lease = await pool.Client().AllocateAsync(new LeaseRequest { Tenant = "default", MemoryBytes = 64 * MiB, ComputeShare = 10 });

        Assert.Equal("b-gone", lease.Record.BrokerId);
    }

    /// <summary>A broker record under a live session, with a 512 MiB device (the real broker's is 1 GiB), at a port nothing listens on.</summary>
    private static async Task RegisterGoneBrokerAsync(MultiPool pool, int port)
    {
        var session = await pool.Store.CreateSessionAsync(TimeSpan.FromMinutes(5));
        var broker = new BrokerRecord { BrokerId = "b-gone", Host = "gone", Endpoint = $"http://127.0.0.1:{port}" };
        broker.Devices.Add(new DeviceInfo { Index = 0, Name = "GpuPool CPU device", MemoryTotalBytes = 512 * MiB, ComputeCapacity = 1000 });
        await pool.Store.PutAsync(StoreKeys.Brokers + broker.BrokerId, Google.Protobuf.MessageExtensions.ToByteArray(broker), sessionId: session.Id);
        var client = pool.Client();
        await Poll.UntilAsync(async () => (await client.ListClusterAsync()).Devices.Count == 2, TimeSpan.FromSeconds(10), "the leader sees the gone broker");
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
