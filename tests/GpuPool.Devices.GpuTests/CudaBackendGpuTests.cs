using System.Runtime.InteropServices;
using GpuPool.Devices.Cpu.Kernels;
using GpuPool.Devices.Cuda;

namespace GpuPool.Devices.GpuTests;

/// <summary>
/// The cuda backend on a real GPU. Skipped unless GPUPOOL_GPU_TESTS=1; with it, a machine where the backend cannot
/// start fails every test with the reason.
/// </summary>
public sealed class CudaBackendGpuTests
{
    private const ulong MiB = 1 << 20;
    private static long _seq;

    public static TheoryData<string> Kernels => [.. KernelComparison.Kernels];

    [GpuTheory]
    [MemberData(nameof(Kernels))]
    public async Task Every_builtin_kernel_matches_the_cpu_backend_on_random_inputs(string kernel)
    {
        var device = Gpu.Backend.Devices[0];
        for (var seed = 1; seed <= 3; seed++)
        {
            var outcome = await KernelComparison.CompareAsync(device, KernelComparison.Make(kernel, new Random(KernelComparison.Seed(kernel) + seed)));
            Assert.True(outcome.Failure is null, $"{kernel} (seed {seed}): {outcome.Failure}");
        }
    }

    [GpuFact]
    public void The_device_reports_its_inventory()
    {
        var device = Assert.IsType<CudaDevice>(Gpu.Backend.Devices[0]);

        Assert.Equal("cuda", device.Backend);
        Assert.Matches("^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", device.Uuid);
        Assert.True(device.MemoryTotal > 0 && device.MemoryTotal < device.PhysicalMemory);
        Assert.True(device.MultiprocessorCount > 1);
        Assert.True(device.Attributes[75] >= 7, "compute capability");
        var telemetry = device.ReadTelemetry();
        Assert.NotNull(telemetry);
        Assert.Equal(device.PhysicalMemory, telemetry.MemoryTotal);
        Assert.InRange((long?)telemetry.UtilizationPercent ?? -1, 0, 100);
        Assert.InRange(telemetry.TemperatureC ?? -1, 1, 120);
    }

    [GpuFact]
    public async Task Copies_larger_than_the_staging_buffers_and_unaligned_in_size_come_back_unchanged()
    {
        await using var context = Context(256 * MiB);
        var data = new byte[(20 * (int)MiB) + 13];
        new Random(5).NextBytes(data);
        var pointer = context.Allocate((ulong)data.Length);

        context.EnqueueCopyToDevice(0, pointer, data, Tag("memcpy_htod"));
        var back = await DownloadAsync(context, pointer, data.Length);

        Assert.Equal(data, back);
        Assert.Null(context.TakeError());
    }

    [GpuFact]
    public async Task New_memory_is_zeroed_and_a_device_copy_between_overlapping_ranges_acts_as_memmove()
    {
        await using var context = Context(64 * MiB);
        var size = 12 * (int)MiB;
        var pointer = context.Allocate((ulong)size);
        Assert.All(await DownloadAsync(context, pointer, size), b => Assert.Equal(0, b));

        var data = Enumerable.Range(0, size).Select(i => (byte)(i * 7)).ToArray();
        context.EnqueueCopyToDevice(0, pointer, data, Tag("memcpy_htod"));
        context.EnqueueCopyDeviceToDevice(0, pointer + 1000, pointer, (ulong)size - 1000, Tag("memcpy_dtod"));
        var back = await DownloadAsync(context, pointer, size);

        Assert.Equal(data.AsSpan(0, 1000).ToArray(), back.AsSpan(0, 1000).ToArray());
        Assert.Equal(data.AsSpan(0, size - 1000).ToArray(), back.AsSpan(1000).ToArray());
    }

    [GpuFact]
    public async Task An_allocation_past_the_lease_limit_fails_with_OutOfMemory_and_leases_cannot_oversubscribe_the_device()
    {
        var device = Gpu.Backend.Devices[0];
        await using var context = Context(8 * MiB);
        context.Allocate(6 * MiB);

        var error = Assert.Throws<DeviceException>(() => context.Allocate(4 * MiB));
        var tooBig = Assert.Throws<DeviceException>(() => device.CreateContext(new ContextOptions("too-big", device.MemoryTotal, 10)));

        Assert.Equal(DeviceErrorCode.OutOfMemory, error.Code);
        Assert.Equal(DeviceErrorCode.OutOfMemory, tooBig.Code);
    }

    [GpuFact]
    public async Task A_kernel_pointer_into_another_leases_memory_fails_with_InvalidAddress_and_the_lease_goes_on()
    {
        await using var a = Context(16 * MiB, "lease-a");
        await using var b = Context(16 * MiB, "lease-b");
        var theirs = b.Allocate(4096);
        var mine = a.Allocate(4096);
        var fill = a.GetFunction(a.LoadBuiltinModule(), "fill_f32");

        a.EnqueueLaunch(0, fill, new LaunchDims(1, 1, 1, 256, 1, 1, 0), Params(16, 1f, theirs), Tag("launch"));
        await a.SynchronizeAsync();
        var error = a.TakeError();
        a.EnqueueLaunch(0, fill, new LaunchDims(1, 1, 1, 256, 1, 1, 0), Params(16, 2f, mine), Tag("launch"));
        var floats = MemoryMarshal.Cast<byte, float>(await DownloadAsync(a, mine, 64)).ToArray();

        Assert.NotNull(error);
        Assert.Equal(DeviceErrorCode.InvalidAddress, error.Error.Code);
        Assert.Contains("kernel fill_f32 parameter y", error.Error.Message, StringComparison.Ordinal);
        Assert.All(floats, f => Assert.Equal(2f, f));
    }

    [GpuFact]
    public async Task Events_time_the_work_between_them()
    {
        await using var context = Context(64 * MiB);
        var n = 8 * (int)MiB;
        var x = context.Allocate((ulong)n * 4);
        var fill = context.GetFunction(context.LoadBuiltinModule(), "fill_f32");
        ulong start = context.CreateEvent(), end = context.CreateEvent();

        context.EnqueueEventRecord(0, start, Tag("event_record"));
        for (var i = 0; i < 10; i++)
        {
            context.EnqueueLaunch(0, fill, new LaunchDims(1024, 1, 1, 256, 1, 1, 0), Params((ulong)n, i, x), Tag("launch"));
        }

        context.EnqueueEventRecord(0, end, Tag("event_record"));
        await context.SynchronizeEventAsync(end);

        Assert.True(context.QueryEvent(end));
        Assert.InRange(context.EventElapsedMilliseconds(start, end), 0.001f, 10_000f);
        Assert.Null(context.TakeError());
    }

    [GpuFact]
    public async Task A_module_that_is_not_PTX_or_cubin_is_refused_and_a_client_PTX_module_runs()
    {
        await using var context = Context(16 * MiB);

        var bad = Assert.Throws<DeviceException>(() => context.LoadModule("this is not a module"u8));
        var broken = Assert.Throws<DeviceException>(() => context.LoadModule(".version 6.0\n.target sm_70\n.entry broken( { bogus; }"u8));
        var module = context.LoadModule(BuiltinModule.Image.Span);
        var x = context.Allocate(64);
        context.EnqueueLaunch(0, context.GetFunction(module, "fill_f32"), new LaunchDims(1, 1, 1, 32, 1, 1, 0), Params(16, 4f, x), Tag("launch"));

        Assert.Equal(DeviceErrorCode.InvalidArgument, bad.Code);
        Assert.Equal(DeviceErrorCode.InvalidArgument, broken.Code);
        Assert.Contains("cuModuleLoadDataEx", broken.Message, StringComparison.Ordinal);
        Assert.All(MemoryMarshal.Cast<byte, float>(await DownloadAsync(context, x, 64)).ToArray(), f => Assert.Equal(4f, f));
    }

    [GpuFact]
    public async Task Closing_a_lease_frees_its_device_memory()
    {
        var device = Gpu.Backend.Devices[0];
        var before = device.ReadTelemetry()?.MemoryUsed;
        var context = Context(1024 * MiB);
        context.Allocate(1000 * MiB);
        Assert.Equal(1000 * MiB, device.MemoryUsed);

        await context.DisposeAsync();

        Assert.Equal(0UL, device.MemoryUsed);
        Assert.Equal(0UL, device.MemoryReserved);
        var after = device.ReadTelemetry()?.MemoryUsed;
        Assert.True(after <= before + (64 * MiB), $"NVML shows {after} bytes used after the lease ended, {before} before it began");
    }

    private static IDeviceContext Context(ulong limit, string lease = "gpu-test") => Gpu.Backend.Devices[0].CreateContext(new ContextOptions(lease, limit, 500));

    private static OpTag Tag(string op) => new((ulong)Interlocked.Increment(ref _seq), op);

    private static byte[] Params(ulong n, float value, ulong pointer)
    {
        var block = new byte[24];
        BitConverter.TryWriteBytes(block.AsSpan(0), n);
        BitConverter.TryWriteBytes(block.AsSpan(8), value);
        BitConverter.TryWriteBytes(block.AsSpan(16), pointer);
        return block;
    }

    private static async Task<byte[]> DownloadAsync(IDeviceContext context, ulong pointer, int bytes)
    {
        var sink = new ChunkSink(bytes);
        context.EnqueueCopyToHost(0, pointer, (ulong)bytes, sink, Tag("memcpy_dtoh"));
        return await sink.Result.WaitAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>Takes a copy in chunks, as the broker does.</summary>
    private sealed class ChunkSink(int length) : ICopyToHostSink
    {
        private readonly byte[] _data = new byte[length];
        private readonly TaskCompletionSource<byte[]> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<byte[]> Result => _done.Task;

        public bool AcceptsChunks => true;

        public void OnData(ReadOnlySpan<byte> data) => OnChunk(0, data, true);

        public void OnChunk(ulong offset, ReadOnlySpan<byte> data, bool last)
        {
            data.CopyTo(_data.AsSpan((int)offset));
            if (last)
            {
                _done.TrySetResult(_data);
            }
        }

        public void OnError(StickyError error) => _done.TrySetException(error.Error);
    }
}
