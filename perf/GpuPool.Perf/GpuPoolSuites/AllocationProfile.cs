using System.Globalization;
using GpuPool.Client;
using GpuPool.Perf.Harness;

namespace GpuPool.Perf.GpuPoolSuites;

/// <summary>
/// Where the bulk fast-path copies allocate: <c>--alloc-profile</c> runs N copies of one size each way, over
/// TCP and the Unix socket, on a pool in this process (client and broker together), and prints the bytes
/// allocated per MiB moved (<see cref="GC.GetTotalAllocatedBytes(bool)"/>, exact) and the top allocating
/// types, from the runtime's GCAllocationTick events (one sample per ~100 KB allocated, so a type's figure
/// is an estimate; types under a few KB per MiB may not show at all).
/// </summary>
public static class AllocationProfile
{
    public static async Task<int> RunAsync(TextWriter log, int copies, int sizeMiB, int maxMessageKiB, int top, CancellationToken cancellationToken)
    {
        var size = sizeMiB << 20;
        using var ticks = new AllocationTickListener();
        await using var pool = await BenchPool.StartAsync((ulong)size * 3, cancellationToken, maxMessageKiB << 10).ConfigureAwait(false);
        log.WriteLine($"allocation profile: {copies} copies of {sizeMiB} MiB each way per transport, broker message limit {maxMessageKiB} KiB, client and broker in this process");
        foreach (var transport in new[] { SessionTransportKind.Tcp, SessionTransportKind.Unix })
        {
            await using var lease = await pool.LeaseAsync((ulong)size * 2, 1000, cancellationToken).ConfigureAwait(false);
            await using var session = await lease.OpenSessionAsync(transport, cancellationToken).ConfigureAwait(false);
            var ptr = await session.AllocAsync((ulong)size, cancellationToken).ConfigureAwait(false);
            var source = GC.AllocateUninitializedArray<byte>(size, pinned: true);
            Random.Shared.NextBytes(source);
            var back = GC.AllocateUninitializedArray<byte>(size, pinned: true);

            // Warm-up: pools, pipes, the thread pool and the JIT settle before anything is counted.
            for (var i = 0; i < 2; i++)
            {
                await session.CopyToDeviceAsync(ptr, source, cancellationToken: cancellationToken).ConfigureAwait(false);
                await session.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
                await session.CopyToHostAsync(ptr, back, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            if (!back.AsSpan().SequenceEqual(source))
            {
                throw new InvalidOperationException($"a {size}-byte copy over {transport} came back different");
            }

            await PhaseAsync(log, ticks, $"{transport} host-to-device", copies, size, top, async () =>
            {
                for (var i = 0; i < copies; i++)
                {
                    await session.CopyToDeviceAsync(ptr, source, cancellationToken: cancellationToken).ConfigureAwait(false);
                }

                await session.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
            }).ConfigureAwait(false);

            // Chunks that arrive while their stream is busy are staged and queued instead of going straight
            // to the device: a memset of the whole buffer ahead of each copy keeps the stream busy a while.
            await PhaseAsync(log, ticks, $"{transport} host-to-device behind a memset (staged chunks)", copies, size, top, async () =>
            {
                for (var i = 0; i < copies; i++)
                {
                    await session.MemsetAsync(ptr, 0, (ulong)size, cancellationToken: cancellationToken).ConfigureAwait(false);
                    await session.CopyToDeviceAsync(ptr, source, cancellationToken: cancellationToken).ConfigureAwait(false);
                }

                await session.SynchronizeAsync(cancellationToken).ConfigureAwait(false);
            }).ConfigureAwait(false);

            await PhaseAsync(log, ticks, $"{transport} device-to-host", copies, size, top, async () =>
            {
                for (var i = 0; i < copies; i++)
                {
                    await session.CopyToHostAsync(ptr, back, cancellationToken: cancellationToken).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);

            await session.FreeAsync(ptr, cancellationToken).ConfigureAwait(false);
        }

        return 0;
    }

    private static async Task PhaseAsync(TextWriter log, AllocationTickListener ticks, string name, int copies, int size, int top, Func<Task> run)
    {
        var mib = (double)copies * size / (1 << 20);
        ticks.Reset();
        var before = GC.GetTotalAllocatedBytes(precise: true);
        await run().ConfigureAwait(false);
        var total = GC.GetTotalAllocatedBytes(precise: true) - before;

        // The runtime hands events to listeners from a dispatch thread, a little late.
        await Task.Delay(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        var sampled = ticks.Snapshot();
        log.WriteLine();
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"== {name}: {total / mib:F0} B per MiB moved ({total:N0} B over {mib:F0} MiB); sampled {sampled.Sum(s => s.Bytes):N0} B in {sampled.Sum(s => s.Ticks)} ticks"));
        foreach (var (type, bytes, count) in sampled.OrderByDescending(s => s.Bytes).Take(top))
        {
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {bytes / mib,10:F0} B/MiB  {count,5} ticks  {type}"));
        }
    }
}
