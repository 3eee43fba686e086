using GpuPool.Client;
using GpuPool.Perf.GpuPoolSuites;

namespace GpuPool.Perf.Ops;

/// <summary>The small ops under test, on one session of a lease, each run as a batch of N with the SDK's public API only.</summary>
internal sealed class OpWorkload : IAsyncDisposable
{
    /// <summary>Bytes a memset sets.</summary>
    public const int MemsetBytes = 64;

    private readonly Lease _lease;
    private readonly DeviceSession _session;
    private readonly DevicePtr _ptr;
    private readonly KernelFunction _fill;
    private readonly KernelArgs _fillOne;
    // As Memory, so the byte overloads are called (a byte[] would pick the typed one, which wraps the array per call).
    private readonly ReadOnlyMemory<byte> _four = new byte[] { 1, 2, 3, 4 };
    private readonly Memory<byte> _fourBack = new byte[4];

    private OpWorkload(Lease lease, DeviceSession session, DevicePtr ptr, KernelFunction fill)
    {
        _lease = lease;
        _session = session;
        _ptr = ptr;
        _fill = fill;

        // Built once and reused by every launch: what is measured is the launch, not packing its arguments.
        _fillOne = new KernelArgs().U64(1).F32(0).Ptr(ptr);
    }

    /// <summary>The transport the session ended up on ("tcp", "unix", "grpc").</summary>
    public string Transport => _session.Transport;

    public static async Task<OpWorkload> OpenAsync(BenchPool pool, SessionTransportKind transport, CancellationToken cancellationToken = default)
    {
        var lease = await pool.LeaseAsync(1 << 20, 1000, cancellationToken).ConfigureAwait(false);
        try
        {
            var session = await lease.OpenSessionAsync(transport, cancellationToken).ConfigureAwait(false);
            var ptr = await session.AllocAsync(4096, cancellationToken).ConfigureAwait(false);
            var module = await session.LoadBuiltinModuleAsync(cancellationToken).ConfigureAwait(false);

            // fill_f32 over one element: the cheapest built-in kernel that takes arguments.
            var fill = await session.GetFunctionAsync(module, "fill_f32", cancellationToken).ConfigureAwait(false);
            return new OpWorkload(lease, session, ptr, fill);
        }
        catch
        {
            await lease.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The ops by name, each a batch of n followed by whatever makes the broker finish them.</summary>
    public IReadOnlyList<(string Name, Func<int, Task> Run)> All =>
    [
        ("launch", LaunchAsync),
        ("memset", MemsetAsync),
        ("copy 4 B to device", CopyToDeviceAsync),
        ("copy 4 B to host", CopyToHostAsync),
        ("synchronize", SynchronizeAsync),
    ];

    /// <summary>n fire-and-forget launches of fill_f32 over one element, then one synchronize.</summary>
    public async Task LaunchAsync(int n)
    {
        for (var i = 0; i < n; i++)
        {
            await _session.LaunchAsync(_fill, 1, 1, _fillOne).ConfigureAwait(false);
        }

        await _session.SynchronizeAsync().ConfigureAwait(false);
    }

    /// <summary>n fire-and-forget memsets of <see cref="MemsetBytes"/> bytes, then one synchronize.</summary>
    public async Task MemsetAsync(int n)
    {
        for (var i = 0; i < n; i++)
        {
            await _session.MemsetAsync(_ptr, 0, MemsetBytes).ConfigureAwait(false);
        }

        await _session.SynchronizeAsync().ConfigureAwait(false);
    }

    /// <summary>n fire-and-forget 4-byte copies to the device, then one synchronize.</summary>
    public async Task CopyToDeviceAsync(int n)
    {
        for (var i = 0; i < n; i++)
        {
            await _session.CopyToDeviceAsync(_ptr, _four).ConfigureAwait(false);
        }

        await _session.SynchronizeAsync().ConfigureAwait(false);
    }

    /// <summary>n 4-byte copies to the host, each awaited (a copy to the host is a round trip).</summary>
    public async Task CopyToHostAsync(int n)
    {
        for (var i = 0; i < n; i++)
        {
            await _session.CopyToHostAsync(_ptr, _fourBack).ConfigureAwait(false);
        }
    }

    /// <summary>n synchronizes of an idle session, each a round trip.</summary>
    public async Task SynchronizeAsync(int n)
    {
        for (var i = 0; i < n; i++)
        {
            await _session.SynchronizeAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _session.DisposeAsync().ConfigureAwait(false);
        await _lease.DisposeAsync().ConfigureAwait(false);
    }
}
