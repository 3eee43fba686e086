using System.Net;
using System.Net.Sockets;
using GpuPool.Client;
using GpuPool.Protocol.Errors;
using GpuPool.Protocol.V1;

namespace GpuPool.Client.Tests.Scheduler;

/// <summary>A scheduler nobody answers at: the error names the address the client tried, not "the server".</summary>
public sealed class UnreachableSchedulerTests
{
    [Fact]
    public async Task Allocate_and_list_name_the_scheduler_address_they_could_not_reach()
    {
        var nobody = $"http://127.0.0.1:{FreePort()}";
        using var client = new GpuPoolClient(nobody);

        var allocate = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { MemoryBytes = 1 << 20 }));
        var list = await Assert.ThrowsAsync<GpuPoolException>(() => client.ListClusterAsync());

        Assert.Equal(ErrorCode.Unavailable, allocate.Code);
        Assert.StartsWith($"allocate: cannot reach the scheduler at {nobody} (", allocate.Message, StringComparison.Ordinal);
        Assert.StartsWith($"list cluster: cannot reach the scheduler at {nobody} (", list.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_several_replicas_the_error_names_them_all()
    {
        var replicas = $"http://127.0.0.1:{FreePort()},http://127.0.0.1:{FreePort()}";
        using var client = new GpuPoolClient(replicas);

        var error = await Assert.ThrowsAsync<GpuPoolException>(() => client.AllocateAsync(new LeaseRequest { MemoryBytes = 1 << 20 }));

        Assert.StartsWith($"allocate: cannot reach any of the scheduler replicas ({replicas}) (", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A loopback port nothing listens on (bound, read, released).</summary>
    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
