using GpuPool.Client;
using GpuPool.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace GpuPool.IntegrationTests.Transport;

/// <summary>
/// Issue 13's "nothing allocated per op in steady state", held on the fast path: launches, memsets, 4-byte copies each
/// way, event records and synchronizes allocate (almost) nothing per op, client and broker together. Not a timed test:
/// it counts bytes allocated by the whole process (<see cref="GC.GetTotalAllocatedBytes(bool)"/>; the client, the
/// broker and its cpu device all run here) around many ops after a warm-up, and takes the least of three rounds, since
/// other threads (Kestrel, lease keepalives, registration) allocate now and then too. Measured on the 2-core
/// development machine before the op-path rewrite (per op, both ends, fast path): launch 344-370 B, memset 176-178,
/// 4-byte copy to the device 118-136, to the host 200, event record 248-257, synchronize 496-527; after it, under
/// 1 B for each.
/// </summary>
[Collection(nameof(FastPathAllocationCollection))]
public sealed class OpAllocationTests(PoolFixture pool, ITestOutputHelper output) : IClassFixture<PoolFixture>
{
    private const int OpsPerRound = 20_000;
    private const int Rounds = 3;

    /// <summary>Bytes per op both ends may allocate: less than one small object per op.</summary>
    private const double BoundBytesPerOp = 16;

    public static TheoryData<SessionTransportKind, string> Cases()
    {
        var cases = new TheoryData<SessionTransportKind, string>();
        foreach (var kind in new[] { SessionTransportKind.Tcp, SessionTransportKind.Unix })
        {
            foreach (var op in new[] { "launch", "memset", "copy 4 bytes to the device", "copy 4 bytes to the device behind a launch", "copy 4 bytes to the host", "event record", "synchronize" })
            {
                cases.Add(kind, op);
            }
        }

        return cases;
    }

    [ReleaseBuildTheory]
    [MemberData(nameof(Cases))]
    public async Task An_op_allocates_nothing_in_steady_state_on_either_end(SessionTransportKind kind, string op)
    {
        await using var lease = await pool.Client.AllocateAsync(new LeaseRequest { Tenant = "it", MemoryBytes = 1 << 20, ComputeShare = 100, Ttl = TimeSpan.FromSeconds(30) });
        await using var session = await lease.OpenSessionAsync(kind);
        var ptr = await session.AllocAsync(4096);
        var module = await session.LoadBuiltinModuleAsync();
        var fill = await session.GetFunctionAsync(module, "fill_f32");
        var args = new KernelArgs().U64(1).F32(2f).Ptr(ptr);
        var evt = await session.CreateEventAsync();
        var four = new byte[4];
        var run = op switch
        {
            "launch" => () => session.LaunchAsync(fill, 1, 32, args),
            "memset" => () => session.MemsetAsync(ptr, 7, 64),
            "copy 4 bytes to the device" => () => session.CopyToDeviceAsync(ptr, four),

            // Its stream is busy with the launch, so the copy's bytes are staged on the broker and queued.
            "copy 4 bytes to the device behind a launch" => async () =>
            {
                await session.LaunchAsync(fill, 1, 32, args);
                await session.CopyToDeviceAsync(ptr, four);
            },
            "copy 4 bytes to the host" => () => session.CopyToHostAsync(ptr, four),
            "event record" => () => session.RecordEventAsync(evt),
            _ => new Func<ValueTask>(() => session.SynchronizeAsync()),
        };

        // Warm-up: pools, pipes, queues, the thread pool and the JIT settle.
        await RoundAsync(session, run);
        await RoundAsync(session, run);
        var least = double.MaxValue;
        for (var round = 0; round < Rounds; round++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            await RoundAsync(session, run);
            least = Math.Min(least, (GC.GetTotalAllocatedBytes(precise: true) - before) / (double)OpsPerRound);
        }

        output.WriteLine($"{kind}, {op}: {least:F2} B allocated per op, client and broker (least of {Rounds} rounds of {OpsPerRound:N0})");
        Assert.True(least < BoundBytesPerOp, $"{op} over {kind} allocated {least:F1} B per op (bound {BoundBytesPerOp}): something is allocated per op");
    }

    /// <summary>
    /// The ops, with a synchronize after every <see cref="OpsPerSync"/> (so that the broker's side of every op is done
    /// within the round, and no queue grows past what the warm-up saw: fire-and-forget ops left to pile up without a
    /// bound grow the queues and pools they pass through, which is growth, not a cost per op).
    /// </summary>
    private static async Task RoundAsync(DeviceSession session, Func<ValueTask> run)
    {
        for (var i = 1; i <= OpsPerRound; i++)
        {
            await run();
            if (i % OpsPerSync == 0)
            {
                await session.SynchronizeAsync();
            }
        }
    }

    private const int OpsPerSync = 1_000;
}
