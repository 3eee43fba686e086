using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Copies to the host are sent from device memory straight to the socket; copies on several streams of one session
/// share its connections, one copy's chunks at a time, and each gets its own bytes.
/// </summary>
public sealed class FastPathDirectCopyTests(PoolFixture pool) : IClassFixture<PoolFixture>
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(SessionTransportKind.Tcp, 1, 3 << 20)]
    [InlineData(SessionTransportKind.Unix, 1, (3 << 20) + 777)]
    [InlineData(SessionTransportKind.Tcp, 2, (9 << 20) + 12345)]
    public async Task Copies_to_the_host_on_several_streams_at_once_each_get_their_own_bytes(SessionTransportKind kind, int stripes, int size)
    {
        const int streams = 3;
        await using var lease = await pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = 128UL << 20, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(30) });
        await using var session = await lease.OpenSessionAsync(new SessionOptions { Transport = kind, Stripes = stripes });
        var copies = new List<(DeviceStream Stream, DevicePtr Ptr, byte[] Data)>();
        for (var s = 0; s < streams; s++)
        {
            var data = new byte[size];
            new Random(40 + s).NextBytes(data);
            var ptr = await session.AllocAsync((ulong)size);
            var stream = await session.CreateStreamAsync();
            await session.CopyToDeviceAsync(ptr, data, stream);
            copies.Add((stream, ptr, data));
        }

        await session.SynchronizeAsync();
        for (var round = 0; round < 3; round++)
        {
            var backs = copies.Select(_ => new byte[size]).ToArray();
            await Task.WhenAll(copies.Select((c, i) => session.CopyToHostAsync(c.Ptr, backs[i], c.Stream).AsTask())).WaitAsync(Bound);
            for (var i = 0; i < streams; i++)
            {
                var wrong = copies[i].Data.AsSpan().IndexOfAnyExcept(backs[i]);
                Assert.True(wrong < 0, $"round {round}, stream {i}: byte {wrong} differs");
            }
        }
    }
}
