using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using GpuPool.Protocol.V1;
using DeviceSession = GpuPool.Client.DeviceSession;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests;

/// <summary>
/// Compute shares end to end: leases on one cpu device with a single execution slot, each running saturating kernels
/// through a real session, and the device time the broker measured for each, read back through the session. The bounds
/// are the (a 750/250 split within ±10%, a cap within ±5 points); the exact figures are perf's (ShareSplit).
/// </summary>
public sealed class ComputeShareTests(OneSlotPoolFixture pool, ITestOutputHelper output) : IClassFixture<OneSlotPoolFixture>
{
    /// <summary>The side of the square matrices each kernel multiplies: 5-10 ms of one core.</summary>
    private const int Side = 480;

    [Fact]
    public async Task Two_busy_leases_of_750_and_250_split_the_device_3_to_1_and_the_broker_publishes_it()
    {
        await using var big = await Worker.StartAsync(pool, 750);
        await using var small = await Worker.StartAsync(pool, 250);
        await Task.Delay(TimeSpan.FromSeconds(1));

        var (a, b, wall) = await MeasureAsync(big, small, TimeSpan.FromSeconds(10));

        output.WriteLine($"750: {a.TotalMilliseconds:0} ms, 250: {b.TotalMilliseconds:0} ms of {wall.TotalMilliseconds:0} ms; ratio {a / b:0.00}; item {big.ItemTime.TotalMilliseconds:0.0} ms");
        Assert.InRange(a / b, 2.7, 3.3);
        Assert.InRange((a + b) / wall, 0.85, 1.01);

        // The broker's heartbeat (every second here) carries each lease's device time and recent share for gpupool ls.
        LeaseUsage? published = null;
        await Poll.UntilAsync(
            async () =>
            {
                published = (await pool.Client.ListClusterAsync()).Brokers.SelectMany(r => r.Devices).SelectMany(d => d.LeaseUsage).FirstOrDefault(u => u.LeaseId == big.Lease.Id);
                return published is { DeviceTimeNs: > 0, RecentSharePpm: > 500_000 };
            },
            TimeSpan.FromSeconds(10),
            "the broker's heartbeat to publish the 750 lease's use");
        Assert.InRange(published!.RecentSharePpm, 650_000u, 850_000u);
        Assert.True(published.MemoryUsedBytes >= 3UL * Side * Side * sizeof(float));
    }

    [Fact]
    public async Task A_work_conserving_250_lease_takes_the_whole_device_once_the_750_lease_is_idle()
    {
        await using var big = await Worker.StartAsync(pool, 750);
        await using var small = await Worker.StartAsync(pool, 250);
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        await big.StopAsync();

        var (taken, wall) = await MeasureAsync(small, TimeSpan.FromSeconds(3));

        output.WriteLine($"250 with the 750 lease idle: {taken / wall:P1} of the device; item {small.ItemTime.TotalMilliseconds:0.0} ms");
        Assert.InRange(taken / wall, 0.9, 1.01);
    }

    [Fact]
    public async Task A_capped_250_lease_stays_at_a_quarter_of_an_idle_device()
    {
        await using var capped = await Worker.StartAsync(pool, 250, ShareMode.Capped);
        await Task.Delay(TimeSpan.FromMilliseconds(500));

        var (taken, wall) = await MeasureAsync(capped, TimeSpan.FromSeconds(5));

        output.WriteLine($"capped 250 alone: {taken / wall:P1} of the device; item {capped.ItemTime.TotalMilliseconds:0.0} ms");
        Assert.InRange(taken / wall, 0.20, 0.30);
    }

    [Fact]
    public async Task Four_busy_leases_of_400_300_200_100_split_the_device_in_proportion()
    {
        int[] shares = [400, 300, 200, 100];
        var workers = new List<Worker>();
        try
        {
            foreach (var share in shares)
            {
                workers.Add(await Worker.StartAsync(pool, share));
            }

            await Task.Delay(TimeSpan.FromSeconds(1));
            var before = await Task.WhenAll(workers.Select(w => w.Session.GetUsageAsync()));
            await Task.Delay(TimeSpan.FromSeconds(6));
            var after = await Task.WhenAll(workers.Select(w => w.Session.GetUsageAsync()));

            var taken = after.Zip(before, (x, y) => (x.DeviceTime - y.DeviceTime).TotalMilliseconds).ToArray();
            output.WriteLine(string.Join(", ", shares.Zip(taken, (s, t) => $"{s}: {t:0} ms")));
            for (var i = 0; i < shares.Length; i++)
            {
                var expected = shares[i] / 1000.0;
                Assert.InRange(taken[i] / taken.Sum(), expected * 0.85, expected * 1.15);
            }
        }
        finally
        {
            foreach (var w in workers)
            {
                await w.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Long_kernels_mixed_with_short_ones_in_one_lease_keep_the_split()
    {
        // The 750 lease runs one kernel of eight times the work in every eight; the 250 lease only short ones.
        await using var mixed = await Worker.StartAsync(pool, 750, longEvery: 8);
        await using var plain = await Worker.StartAsync(pool, 250);
        await Task.Delay(TimeSpan.FromSeconds(1));

        var (a, b, _) = await MeasureAsync(mixed, plain, TimeSpan.FromSeconds(6));

        output.WriteLine($"mixed 750: {a.TotalMilliseconds:0} ms, 250: {b.TotalMilliseconds:0} ms; ratio {a / b:0.00}");
        Assert.InRange(a / b, 2.7, 3.3);
    }

    private static async Task<(TimeSpan A, TimeSpan B, TimeSpan Wall)> MeasureAsync(Worker first, Worker second, TimeSpan window)
    {
        var start = DateTimeOffset.UtcNow;
        var a0 = first.Session.GetUsageAsync();
        var b0 = second.Session.GetUsageAsync();
        var (ua0, ub0) = (await a0, await b0);
        await Task.Delay(window);
        var a1 = first.Session.GetUsageAsync();
        var b1 = second.Session.GetUsageAsync();
        var (ua1, ub1) = (await a1, await b1);
        return (ua1.DeviceTime - ua0.DeviceTime, ub1.DeviceTime - ub0.DeviceTime, DateTimeOffset.UtcNow - start);
    }

    private static async Task<(TimeSpan Taken, TimeSpan Wall)> MeasureAsync(Worker worker, TimeSpan window)
    {
        var start = DateTimeOffset.UtcNow;
        var before = await worker.Session.GetUsageAsync();
        await Task.Delay(window);
        var after = await worker.Session.GetUsageAsync();
        return (after.DeviceTime - before.DeviceTime, DateTimeOffset.UtcNow - start);
    }

    /// <summary>
    /// A lease whose session keeps its device busy: batches of eight matrix products, each batch followed by an event,
    /// the client waiting for the batch <see cref="Ahead"/> back, so that many batches are queued while it waits (a
    /// loaded machine that is slow to run the client does not leave the lease with nothing queued: it is busy). With <c>longEvery</c>, one kernel in
    /// that many multiplies a matrix twice as tall and wide (eight times the work).
    /// </summary>
    private sealed class Worker : IAsyncDisposable
    {
        /// <summary>Batches queued ahead of the one the client waits for: a few hundred milliseconds of work.</summary>
        private const int Ahead = 4;

        private readonly CancellationTokenSource _stop = new();
        private Task _loop = Task.CompletedTask;
        private long _items;
        private long _itemTicks;

        private Worker(Lease lease, DeviceSession session)
        {
            Lease = lease;
            Session = session;
        }

        public Lease Lease { get; }

        public DeviceSession Session { get; }

        /// <summary>The mean wall time of one batch's kernel, as the client saw it (for the test's output).</summary>
        public TimeSpan ItemTime => TimeSpan.FromTicks(Interlocked.Read(ref _itemTicks) / Math.Max(1, Interlocked.Read(ref _items)));

        public static async Task<Worker> StartAsync(PoolFixture pool, int share, ShareMode mode = ShareMode.WorkConserving, int longEvery = 0)
        {
            var lease = await pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = 16UL << 20, ComputeShare = share, ShareMode = mode, Ttl = PoolFixture.LeaseTtl });
            var session = await lease.OpenSessionAsync();
            var worker = new Worker(lease, session);
            var gemm = await session.GetFunctionAsync(await session.LoadBuiltinModuleAsync(), "gemm_f32");
            var large = 2 * Side;
            var a = await session.AllocAsync((ulong)(large * large * sizeof(float)));
            var c = await session.AllocAsync((ulong)(large * large * sizeof(float)));
            await session.CopyToDeviceAsync(a, Enumerable.Range(0, large * large).Select(i => (float)(i % 7)).ToArray());
            var small = Args(Side, a, c);
            var big = Args(large, a, c);
            worker._loop = Task.Run(() => worker.RunAsync(gemm, small, big, longEvery));
            return worker;
        }

        private static KernelArgs Args(int n, DevicePtr a, DevicePtr c)
            => new KernelArgs().I32(0).I32(0).I32(n).I32(n).I32(n).F32(1).Ptr(a).I32(n).Ptr(a).I32(n).F32(0).Ptr(c).I32(n);

        private async Task RunAsync(KernelFunction gemm, KernelArgs small, KernelArgs big, int longEvery)
        {
            var launched = 0L;
            var done = new DeviceEvent[Ahead + 1];
            for (var i = 0; i < done.Length; i++)
            {
                done[i] = await Session.CreateEventAsync();
            }

            for (var batch = 0L; !_stop.IsCancellationRequested; batch++)
            {
                var started = DateTimeOffset.UtcNow;
                for (var i = 0; i < 8; i++)
                {
                    var args = longEvery > 0 && ++launched % longEvery == 0 ? big : small;
                    await Session.LaunchAsync(gemm, new Dim3(1), new Dim3(1), args);
                }

                await Session.RecordEventAsync(done[batch % done.Length]);
                if (batch >= Ahead)
                {
                    await Session.SynchronizeEventAsync(done[(batch - Ahead) % done.Length]);
                    Interlocked.Add(ref _itemTicks, (DateTimeOffset.UtcNow - started).Ticks / 8);
                    Interlocked.Add(ref _items, 1);
                }
            }

            await Session.SynchronizeAsync();
        }

        /// <summary>Stops launching: the lease stays, idle.</summary>
        public async Task StopAsync()
        {
            await _stop.CancelAsync();
            await _loop;
        }

        public async ValueTask DisposeAsync()
        {
            await StopAsync();
            await Session.DisposeAsync();
            await Lease.DisposeAsync();
            _stop.Dispose();
        }
    }
}
